"""The annotators' tokens file of `rlaif annotate serve`: one `annotator_name:token` per line, checked line by line
(names, token length, no shared tokens), read into the {token: annotator} map the server authenticates with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Union

_ANNOTATOR_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
_MIN_TOKEN_CHARS = 8


class TokensFileError(ValueError):
    """A tokens file that cannot be used; the message names FILE:LINE."""


def load_tokens(path: Union[str, Path]) -> dict[str, str]:
    """`annotator_name:token` per line (blank lines and `#` comments allowed) as {token: annotator}."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TokensFileError(f"{path}: cannot read the tokens file: {e}") from e
    tokens: dict[str, str] = {}
    names: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = (part.strip() for part in line.partition(":"))
        where = f"{path}:{n}"
        if not sep:
            raise TokensFileError(f"{where}: expected annotator_name:token, found no ':'")
        if not _ANNOTATOR_NAME.match(name):
            raise TokensFileError(f"{where}: annotator name {name!r} must be 1-64 letters, digits or . _ @ + -")
        if len(token) < _MIN_TOKEN_CHARS or any(ch.isspace() for ch in token):
            raise TokensFileError(
                f"{where}: the token for '{name}' must be at least {_MIN_TOKEN_CHARS} characters "
                f"with no spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        if name in names:
            raise TokensFileError(f"{where}: annotator '{name}' is already on line {names[name]}")
        if token in tokens:
            raise TokensFileError(
                f"{where}: '{name}' has the same token as '{tokens[token]}'; each annotator needs their own"
            )
        names[name] = n
        tokens[token] = name
    if not tokens:
        raise TokensFileError(f"{path}: no annotator_name:token lines")
    return tokens
