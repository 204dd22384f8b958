"""Reading a score from a score judge (mode: score; d-RLAIF, Lee et al. 2023, sec. 2.3): the probabilities of the
score tokens after the rating cue are normalised into a distribution over the scale, whose mean is the expected
score, rescaled to [-1, 1] as the reward.

A score may take more than one token ("10" is "1" then "0" for many tokenizers), so the model is read at the cue
and again after each proper prefix of a score ("1"): `reads[prefix][piece]` is the log-probability that the
next token reads `piece` (whitespace stripped, summed over spellings such as "1" and " 1") once the reply so far
spells `prefix`. Then P(reply spells "10") = P("10") + P("1")·P("0" | "1"), and P(reply is exactly "1") =
P("1")·(1 − P("0" | "1")): a "1" that goes on to "0" is no 1. Where a backend cannot read after a prefix (an
HTTP server shows only the path it generated), the prefix is taken to end there.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from ..numbers import distribution_problem  # noqa: F401 - the rule score readers of this module apply

Reads = Mapping[str, Mapping[str, float]]


def value_masses(texts: Sequence[str], reads: Reads) -> list[float]:
    """P(the reply spells exactly `text`) for each score text, unnormalised (see the module docstring)."""

    def continuing(prefix: str) -> float:
        return sum(
            math.exp(lp)
            for piece, lp in reads.get(prefix, {}).items()
            if piece and any(t != prefix and t.startswith(prefix + piece) for t in texts)
        )

    def spelled(prefix: str, rest: str) -> float:
        total = 0.0
        for piece, lp in reads.get(prefix, {}).items():
            if piece and rest.startswith(piece):
                after = rest[len(piece) :]
                p = math.exp(lp)
                total += p * (spelled(prefix + piece, after) if after else max(0.0, 1.0 - continuing(prefix + piece)))
        return total

    return [spelled("", t) for t in texts]


def normalised(masses: Sequence[float]) -> tuple[Optional[list[float]], float, Optional[str]]:
    """(distribution, total mass, error): the masses divided by their sum; an error when it is 0 or not finite."""
    total = float(sum(masses))
    if not math.isfinite(total) or any(not math.isfinite(m) or m < 0 for m in masses):
        return None, total, f"score probabilities are not finite non-negative numbers: {list(masses)!r}"
    if total <= 0.0:
        return None, total, "the judge put no probability on any score token"
    return [m / total for m in masses], total, None


def expected_score(probs: Sequence[float], values: Sequence[int]) -> float:
    """Σ s·P(s) (Lee et al. 2023, sec. 2.3)."""
    return float(sum(v * p for v, p in zip(values, probs)))


def rescaled(score: float, low: int, high: int, invert: bool = False) -> float:
    """The expected score mapped linearly from [low, high] to [-1, 1]; negated for an inverted principle (one
    that asks for the worse response, so a high rating means a rejected response)."""
    r = 2.0 * (score - low) / (high - low) - 1.0
    return -r if invert else r


def continuation_prefixes(texts: Sequence[str]) -> list[str]:
    """The proper, non-empty prefixes of the score texts ("1" for "10"): where the model is read a second time."""
    return sorted({t[:k] for t in texts for k in range(1, len(t))} - {""}, key=lambda x: (len(x), x))


def pieces_after(prefix: str, texts: Sequence[str]) -> list[str]:
    """Every piece the next token may read once the reply spells `prefix` ("0" and "" … after "1")."""
    return sorted(
        {
            t[len(prefix) : k]
            for t in texts
            if t.startswith(prefix) and len(t) > len(prefix)
            for k in range(len(prefix) + 1, len(t) + 1)
        }
    )


class ScoreTokens:
    """The vocabulary ids of the score pieces of one tokenizer, and the reads a transformers or vLLM backend makes
    (at the cue, and after each prefix with the ids that spell it)."""

    def __init__(self, tokenizer, values: Sequence[int], cue: str):
        self.texts = [str(v) for v in values]
        wanted = {p for prefix in [""] + continuation_prefixes(self.texts) for p in pieces_after(prefix, self.texts)}
        decoded = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.groups: dict[str, list[int]] = {}  # piece -> every token that reads as it ("1", " 1", "▁1" …)
        for i, text in enumerate(decoded):
            if text.strip() in wanted:
                self.groups.setdefault(text.strip(), []).append(i)
        missing = [t for t in self.texts if not _spellable(t, self.groups)]
        if missing:
            raise ValueError(f"the judge's tokenizer has no tokens that spell the scores {', '.join(missing)}")
        cue_ids = tokenizer(cue, add_special_tokens=False).input_ids
        self.prefix_ids: dict[str, list[int]] = {}  # prefix -> the ids that follow the cue to spell it
        for prefix in continuation_prefixes(self.texts):
            ids = tokenizer(cue + prefix, add_special_tokens=False).input_ids
            self.prefix_ids[prefix] = (
                ids[len(cue_ids) :]
                if ids[: len(cue_ids)] == cue_ids
                else tokenizer(prefix, add_special_tokens=False).input_ids
            )
        self.read_ids = sorted({i for ids in self.groups.values() for i in ids})

    def reads_from(self, logp_rows: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
        """`logp_rows[prefix]`: log-probabilities of `read_ids` at that read; returns the reads by piece."""
        index = {i: k for k, i in enumerate(self.read_ids)}
        out: dict[str, dict[str, float]] = {}
        for prefix, row in logp_rows.items():
            pieces = {}
            for piece in pieces_after(prefix, self.texts):
                ids = self.groups.get(piece)
                if ids:
                    pieces[piece] = _logsumexp([row[index[i]] for i in ids])
            out[prefix] = pieces
        return out


def _spellable(text: str, pieces: Mapping[str, object]) -> bool:
    return text in pieces or any(
        text.startswith(p) and _spellable(text[len(p) :], pieces) for p in pieces if p and len(p) < len(text)
    )


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))
