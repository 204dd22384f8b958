"""Log-probabilities as the vllm and openai backends read them: a number that is finite (or -inf, probability 0) and
at most 0. A broken server or a numerically broken model (Infinity, NaN, a positive value) fails the verdict with
an error that says so, instead of a NaN p_a or a label mass above 1 stored as `ok`.
"""

from __future__ import annotations

import math
from typing import Any

# A softmax computed in float16/bfloat16 can put a near-certain token a hair above 0; more than this is no rounding.
LOGPROB_TOLERANCE = 1e-4


class InvalidLogprob(ValueError):
    """A log-probability that no softmax produces."""


def checked_logprob(value: Any, token: Any) -> float:
    """`value` as a log-probability <= 0; raises InvalidLogprob for NaN, +inf or a value above LOGPROB_TOLERANCE
    (TypeError/ValueError for what is not a number at all)."""
    logprob = float(value)
    if math.isnan(logprob) or logprob > LOGPROB_TOLERANCE:
        raise InvalidLogprob(
            f"invalid log-probability {logprob!r} for the token {token!r} (a log-probability is a finite number <= 0)"
        )
    return min(logprob, 0.0)
