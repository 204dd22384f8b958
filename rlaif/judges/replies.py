"""Reading a verdict out of a chat-completions reply (rlaif/judges/openai.py): P(A) and P(B) from the logprobs of
the label position, or the label the text names (a bare letter, 'Final answer: Response B', one named response);
and a score judge's distribution over its scale, from the logprobs of the score's positions or a number in the text.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Optional

from ..records import ScoreVerdict
from .prompting import LABELS
from .reading import InvalidLogprob, checked_logprob, normalised, pieces_after, value_masses

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
        before = text[: matches[-1].start()]
        line_start = before.rfind("\n") + 1
        if not before[line_start:].strip(" \t*#_>-"):  # the answer has its own line, perhaps in markdown
            before = before[:line_start]
        return before.strip(), text[matches[-1].start() :]
    lines = text.rstrip().rsplit("\n", 1)
    return (lines[0].strip(), lines[1]) if len(lines) == 2 else ("", text)


_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")


def score_reads(positions: list, texts: list[str]) -> dict[str, dict[str, float]]:
    """The reads of scores.value_masses from a reply's generated positions: the alternatives at the first
    position that generated the start of a score (what comes before, "Rating:" or a space, is passed over), and
    after it, while the generated text still spells the start of a longer
    score, those at the next position (a server shows alternatives only along the path it generated). Raises
    InvalidLogprob for numbers that are no log-probabilities."""
    reads: dict[str, dict[str, float]] = {}
    prefix = None
    first_pieces = set(pieces_after("", texts))
    for entry in positions:
        token = (entry.get("token") or "") if isinstance(entry, dict) else ""
        if prefix is None and token.strip() not in first_pieces:
            continue  # what the reply writes before the number: a space, "Rating:", "I would say"
        here = "" if prefix is None else prefix
        wanted = set(pieces_after(here, texts))
        mass: dict[str, float] = {}  # summed over spellings: "7" and " 7"
        for alt in entry.get("top_logprobs") or [entry]:
            piece = str(alt.get("token", "")).strip()
            if piece in wanted:
                mass[piece] = mass.get(piece, 0.0) + math.exp(checked_logprob(alt.get("logprob"), alt.get("token")))
        reads[here] = {piece: math.log(p) for piece, p in mass.items() if p > 0}
        prefix = here + token.strip()
        if not any(t != prefix and t.startswith(prefix) for t in texts):
            break
    return reads


def read_score(text: str, positions: list, values: list[int]) -> ScoreVerdict:
    """The distribution over `values`: from the logprobs when they put mass on a score, else from the first number
    in the text when it is a score of the scale (all probability on it); else a failed verdict saying why."""
    texts = [str(v) for v in values]
    if positions:
        try:
            probs, mass, _ = normalised(value_masses(texts, score_reads(positions, texts)))
        except InvalidLogprob as e:  # a broken server: its text is no more trusted than its numbers
            return ScoreVerdict(None, error=f"the server returned an {e}")
        if probs is not None:
            return ScoreVerdict(probs, mass=mass, source="logprobs")
    found = _NUMBER.search(text or "")
    if found and found.group(0) in texts:
        return ScoreVerdict([float(t == found.group(0)) for t in texts], mass=1.0, source="text")
    return ScoreVerdict(
        None,
        error=f"could not read a score: the reply names no score of {values[0]}..{values[-1]}"
        + (f" (it says {found.group(0)})" if found else ""),
    )
