"""The API key of the openai backend (openai.py): scrubbed from every text that could reach output (an error, a
log line, a record), and, when its variable is not set, whether the servers answer without one.
"""

from __future__ import annotations

import logging
from typing import Optional

import httpx

from ..config.judge import OpenAIJudgeConfig

logger = logging.getLogger("rlaif.judges.openai")

# Any run of this many consecutive characters of the API key is scrubbed, not only the whole key: a server may
# echo part of it, and a cut may split it.
_KEY_RUN = 8


def scrub_key(text: Optional[str], key: Optional[str]) -> Optional[str]:
    """`text` with the key, and every run of _KEY_RUN or more consecutive characters of it, replaced by
    '[api key]'. A run is found through the key's _KEY_RUN-grams: each window of such a run is one of them."""
    if not text or not key:
        return text
    if len(key) < _KEY_RUN:
        return text.replace(key, "[api key]")
    grams = {key[i:i + _KEY_RUN] for i in range(len(key) - _KEY_RUN + 1)}
    spans: list[list[int]] = []
    for i in range(len(text) - _KEY_RUN + 1):
        if text[i:i + _KEY_RUN] in grams:
            if spans and i <= spans[-1][1]:
                spans[-1][1] = i + _KEY_RUN
            else:
                spans.append([i, i + _KEY_RUN])
    if not spans:
        return text
    parts, start = [], 0
    for begin, end in spans:
        parts += [text[start:begin], "[api key]"]
        start = end
    return "".join(parts) + text[start:]


def check_keyless(config: OpenAIJudgeConfig) -> None:
    """The key variable is not set: go on without a key when every server answers without one (a local vLLM
    server started with no --api-key), else raise ValueError saying so. Asked once, with GET /models."""
    timeout = min(config.timeout_s, 10.0)
    for base in config.base_urls:
        url = base.rstrip("/") + "/models"
        try:
            status = httpx.get(url, timeout=timeout).status_code
            problem = None if 200 <= status < 300 else (
                f"{url} answered HTTP {status} without one" if status in (401, 403)
                else f"{url} could not tell whether it needs one (HTTP {status})")
        except httpx.HTTPError as e:
            problem = f"{url} could not be asked whether it needs one ({type(e).__name__}: {e})"
        if problem:
            raise ValueError(f"the judge config names api_key_env={config.api_key_env!r}, but that environment "
                             f"variable is not set (or empty), and {problem}")
    logger.warning("openai judge: $%s is not set; the server answers without an API key, so none is sent",
                   config.api_key_env)
