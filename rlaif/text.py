"""The text rule: what a model returns is made valid Unicode where it enters rlaif (a judge's reply, a reviser's
answer), so that one odd character cannot stop a job when its record is written as UTF-8. A record whose text was
mended says so with the flag TEXT_REPAIRED.
"""

from __future__ import annotations

# The flag on a record whose model text held characters UTF-8 cannot encode (each became U+FFFD).
TEXT_REPAIRED = "text_repaired"


def valid_text(text: str) -> tuple[str, bool]:
    """`text` with each unpaired surrogate (a JSON reply may spell one as the escape "\\udc80"; no UTF-8 encodes
    it) replaced by U+FFFD, and whether any was. A high and a low surrogate next to each other are joined into the
    character they spell."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        # UTF-16 keeps each surrogate as one code unit: decoding pairs the ones that pair and replaces the rest
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"), True
