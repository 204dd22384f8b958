"""How the vLLM backend reads the verdict position's log-probabilities (rlaif/judges/vllm.py, checked by
rlaif/judges/reading.py): pure functions, so no vllm is needed. NaN, +inf or a positive logprob is a failed
verdict that says why; -inf is probability 0, and rounding just above 0 is 0."""

from __future__ import annotations

import math

import pytest

from rlaif.judges.reading import verdict_from_logprobs

LABEL_IDS = ([10, 11], [20])  # 'A' and ' A', 'B'


def read(top: dict):
    return verdict_from_logprobs(top, LABEL_IDS, generated="A", top_k=4, prompt_tokens=7, completion_tokens=1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.3, 2e-4])
def test_a_logprob_no_softmax_makes_fails_the_verdict(bad):
    v = read({10: math.log(0.5), 11: bad, 20: math.log(0.2)})
    assert v.p_first is None and v.label_mass is None and v.raw == "A"
    assert v.error.startswith("the engine returned an invalid log-probability") and "token id 11" in v.error


def test_minus_infinity_is_zero_and_rounding_above_zero_is_zero():
    v = read({10: 5e-5, 11: float("-inf"), 20: float("-inf")})
    assert v.error is None and v.p_first == 1.0 and v.label_mass == 1.0
    v = read({10: math.log(0.3), 20: math.log(0.1)})
    assert v.p_first == pytest.approx(0.75) and v.label_mass == pytest.approx(0.4)
