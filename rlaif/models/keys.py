"""The API key that the HTTP client (http.py) sends: read from its variable (refused when no HTTP header can carry
it), scrubbed from every text that could reach output (an error, a log line, a record) in every form a server may
echo it in, and, when its variable is not set, whether the servers answer without one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import string
import unicodedata
from functools import lru_cache
from typing import Optional
from urllib.parse import quote, quote_plus

import httpx

from ..config.judge import OpenAIJudgeConfig

logger = logging.getLogger(__name__)

# Any run of this many consecutive characters of the API key, in any of the forms a server may echo it in, is
# scrubbed, not only the whole key: a server may echo part of it, and a cut may split it.
_KEY_RUN = 8
# What a server may put inside an echoed key: whitespace and line breaks (a key broken over lines, base64 wrapped
# at 76 characters), and JSON's escaped line breaks (a raw JSON error body).
_GAPS = re.compile(r"(?:\s|\\[nrt])+")
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # keeps every index where it is


def key_forms(key: str) -> set[str]:
    """The forms a server may echo `key` in, lower-cased and without gaps: as written, URL-encoded (whole: a '/'
    becomes '%2F', which splits the key into shorter runs), JSON-escaped (with '/' as '\\/' too), and base64 and
    base64url at each of the three alignments it can take after other bytes (the characters that encode the key's
    bytes alone)."""
    raw = key.encode("utf-8")
    forms = {
        key,
        quote(key, safe=""),
        quote(key),
        quote_plus(key),
        json.dumps(key)[1:-1],
        json.dumps(key)[1:-1].replace("/", "\\/"),
    }
    for shift in range(3):  # a character is the key's alone from bit 8*shift to the last whole 6 bits
        data = b"\0" * shift + raw
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(encode(data).decode()[-(-8 * shift // 6) : 8 * len(data) // 6])
    return {_GAPS.sub("", f).translate(_LOWER) for f in forms} - {""}


@lru_cache(maxsize=4)
def _key_grams(key: str) -> tuple[int, frozenset[str]]:
    """(n, the n-grams of the key's forms): n is _KEY_RUN, or the length of a key shorter than that."""
    n = min(_KEY_RUN, len(key))
    return n, frozenset(form[i : i + n] for form in key_forms(key) for i in range(len(form) - n + 1))


def scrub_key(text: Optional[str], key: Optional[str]) -> Optional[str]:
    """`text` with every run of _KEY_RUN or more consecutive characters of any of the key's forms (`key_forms`),
    in any letter case and with gaps inside it, replaced by '[api key]'. A run is found through the forms'
    _KEY_RUN-grams: each window of such a run is one of them."""
    if not text or not key:
        return text
    n, grams = _key_grams(key)
    # search the text lower-cased and without gaps; `where` maps each kept character back to its index in `text`
    kept, where, pos = [], [], 0
    for gap in [*_GAPS.finditer(text), None]:
        stop = gap.start() if gap else len(text)
        kept.append(text[pos:stop])
        where.extend(range(pos, stop))
        pos = gap.end() if gap else pos
    search = "".join(kept).translate(_LOWER)
    spans: list[list[int]] = []
    for i in range(len(search) - n + 1):
        if search[i : i + n] in grams:
            if spans and i <= spans[-1][1]:
                spans[-1][1] = i + n
            else:
                spans.append([i, i + n])
    if not spans:
        return text
    parts, start = [], 0
    for begin, end in spans:  # a span covers the gaps inside it too
        parts += [text[start : where[begin]], "[api key]"]
        start = where[end - 1] + 1
    return "".join(parts) + text[start:]


def read_key(config: OpenAIJudgeConfig, user: str) -> Optional[str]:
    """The API key in the config's `api_key_env`; None when it names none, or when the variable is not set and
    every server answers without a key (else ValueError, `check_keyless`). A key no HTTP header can carry (a line
    break, another control character, a character outside ASCII: a paste gone wrong) is refused with one line that
    names the variable and where in it, never the key."""
    name = config.api_key_env
    key = (os.environ.get(name) or None) if name else None
    if name and key is None:
        check_keyless(config, user)
    for i, char in enumerate(key or ""):
        what = (
            "a line break"
            if char in "\r\n"
            else f"a control character (U+{ord(char):04X})"
            if unicodedata.category(char) == "Cc"
            else f"a character outside ASCII (U+{ord(char):04X})"
            if not char.isascii()
            else None
        )
        if what:
            raise ValueError(
                f"the environment variable {name} holds {what} at character {i + 1} of {len(key)}; "
                f"remove it (an API key travels in an HTTP header, which cannot carry it)"
            )
    return key


def check_keyless(config: OpenAIJudgeConfig, user: str) -> None:
    """The key variable is not set: go on without a key when every server answers without one (a local vLLM
    server started with no --api-key), else raise ValueError saying so. Asked once, with GET /models; `user` names
    the client's user in the log line."""
    timeout = min(config.timeout_s, 10.0)
    for base in config.base_urls:
        url = base.rstrip("/") + "/models"
        try:
            status = httpx.get(url, timeout=timeout).status_code
            problem = (
                None
                if 200 <= status < 300
                else (
                    f"{url} answered HTTP {status} without one"
                    if status in (401, 403)
                    else f"{url} could not tell whether it needs one (HTTP {status})"
                )
            )
        except httpx.HTTPError as e:
            problem = f"{url} could not be asked whether it needs one ({type(e).__name__}: {e})"
        if problem:
            raise ValueError(
                f"the judge config names api_key_env={config.api_key_env!r}, but that environment "
                f"variable is not set (or empty), and {problem}"
            )
    logger.warning(
        "%s: $%s is not set; the server answers without an API key, so none is sent", user, config.api_key_env
    )
