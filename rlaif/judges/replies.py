"""Reading a verdict out of a chat-completions reply (rlaif/judges/openai.py): P(A) and P(B) from the logprobs of
the label position, or the label the text names (a bare letter, 'Final answer: Response B', one named response).
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Optional

from .logprobs import InvalidLogprob, checked_logprob
from .prompting import LABELS

# "Final answer: Response B" (the CoT format), tolerant of markdown and case; the letter itself must be upper.
FINAL = re.compile(r"final\s+answer\s*:?[\s*_]*(?:response\s*)?\(?(?-i:([AB]))\b", re.IGNORECASE)
CUE = re.compile(r"final\s+answer\s*:\s*response", re.IGNORECASE)
_MENTION = re.compile(r"\b(?:response|answer|option|choice)\s*:?[\s*_]*\(?(?-i:([AB]))\b", re.IGNORECASE)


def label_probs(position: Any) -> Optional[tuple[float, float]]:
    """(P(A), P(B)) at one generated-token position: every alternative that reads as the label once whitespace
    is stripped counts, so ' A' and 'A' are summed. Without alternatives the sampled token stands alone. None
    when the position cannot be read; InvalidLogprob when the server's numbers are no log-probabilities."""
    try:
        alts = position.get("top_logprobs") or [position]
        pa = pb = 0.0
        for alt in alts:
            token, p = alt["token"].strip(), math.exp(checked_logprob(alt["logprob"], alt["token"]))
            pa += p if token == LABELS[0] else 0.0
            pb += p if token == LABELS[1] else 0.0
    except InvalidLogprob:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
        return None
    return (pa, pb) if pa + pb > 0 else None


def cue_position(content: list) -> Optional[dict]:
    """The logprobs entry of the token right after the last 'Final answer: Response' in the generated tokens."""
    try:
        tokens = [c.get("token") or "" for c in content]
    except AttributeError:
        return None
    matches = list(CUE.finditer("".join(tokens)))
    if not matches:
        return None
    end, start = matches[-1].end(), 0
    for entry, token in zip(content, tokens):
        if start >= end and token.strip():
            return entry
        if start < end < start + len(token):
            return None  # the label is fused with the cue in one token: no clean position to read
        start += len(token)
    return None


def parse_text(text: str) -> Optional[str]:
    """The label a reply names: a bare 'A'/'B', 'Final answer: Response B', or mentions of one response only."""
    finals = FINAL.findall(text)
    if finals:
        return finals[-1]
    bare = text.strip(string.whitespace + string.punctuation)
    if bare in LABELS:
        return bare
    named = set(_MENTION.findall(text))
    return named.pop() if len(named) == 1 else None


def split_rationale(text: str) -> tuple[str, str]:
    """(rationale, final-answer part) of a CoT reply; without a final-answer line the last line is the answer."""
    matches = list(FINAL.finditer(text))
    if matches:
        before = text[:matches[-1].start()]
        line_start = before.rfind("\n") + 1
        if not before[line_start:].strip(" \t*#_>-"):  # the answer has its own line, perhaps in markdown
            before = before[:line_start]
        return before.strip(), text[matches[-1].start():]
    lines = text.rstrip().rsplit("\n", 1)
    return (lines[0].strip(), lines[1]) if len(lines) == 2 else ("", text)
