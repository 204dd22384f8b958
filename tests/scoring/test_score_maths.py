"""Tier 1: the score maths by hand — the distribution over the scale from score-token log-probabilities
(including a "10" spelt "1" then "0"), the expected score, its rescaling to [-1, 1], P(a ≻ b) from two scores,
and the binarisation of scored samples."""

from __future__ import annotations

import math

import pytest

from rlaif.data.scores import binarize, derived_labels, p_preferred, points
from rlaif.judges.reading import (
    continuation_prefixes,
    distribution_problem,
    expected_score,
    normalised,
    rescaled,
    value_masses,
)

TEXTS = [str(v) for v in range(1, 11)]
L = math.log


def test_single_token_scores_normalise():
    reads = {"": {"3": L(0.2), "7": L(0.6)}}  # the rest of the mass went to other tokens
    probs, mass, error = normalised(value_masses(TEXTS, reads))
    assert error is None and mass == pytest.approx(0.8)
    assert probs[2] == pytest.approx(0.25) and probs[6] == pytest.approx(0.75)
    assert expected_score(probs, range(1, 11)) == pytest.approx(0.25 * 3 + 0.75 * 7)  # 6.0


def test_ten_spelt_one_then_zero():
    # P("1") = 0.5 at the cue; after "1", P("0") = 0.6: so P(10) = 0.3 and P(1) = 0.5 * 0.4 = 0.2
    reads = {"": {"1": L(0.5), "9": L(0.5)}, "1": {"0": L(0.6)}}
    masses = value_masses(TEXTS, reads)
    assert masses[0] == pytest.approx(0.2) and masses[9] == pytest.approx(0.3) and masses[8] == pytest.approx(0.5)
    probs, mass, _ = normalised(masses)
    assert mass == pytest.approx(1.0)
    assert expected_score(probs, range(1, 11)) == pytest.approx(0.2 * 1 + 0.5 * 9 + 0.3 * 10)


def test_ten_as_one_token_and_as_two_add_up():
    reads = {"": {"10": L(0.1), "1": L(0.4)}, "1": {"0": L(0.5)}}
    masses = value_masses(TEXTS, reads)
    assert masses[9] == pytest.approx(0.1 + 0.4 * 0.5) and masses[0] == pytest.approx(0.4 * 0.5)


def test_a_prefix_not_read_further_counts_as_the_shorter_score():
    masses = value_masses(TEXTS, {"": {"1": L(0.5)}})
    assert masses[0] == pytest.approx(0.5) and masses[9] == 0.0


def test_no_mass_or_broken_numbers_fail():
    assert normalised(value_masses(TEXTS, {"": {"A": 0.0}}))[2] == "the judge put no probability on any score token"
    assert "not finite" in normalised([math.nan, 0.5])[2]
    assert distribution_problem([0.5, 0.6]) is not None and distribution_problem([1.2, -0.2]) is not None
    assert distribution_problem([0.25, 0.75]) is None


def test_rescaling_to_minus_one_one():
    assert rescaled(1, 1, 10) == -1.0 and rescaled(10, 1, 10) == 1.0
    assert rescaled(5.5, 1, 10) == pytest.approx(0.0)
    assert rescaled(7.75, 1, 10) == pytest.approx(2 * 6.75 / 9 - 1)
    assert rescaled(7.75, 1, 10, invert=True) == pytest.approx(-(2 * 6.75 / 9 - 1))


def test_continuation_prefixes():
    assert continuation_prefixes(TEXTS) == ["1"]
    assert continuation_prefixes([str(v) for v in range(0, 101)]) == [str(v) for v in range(1, 11)]


def _rec(prompt_id, sample, reward, status="ok", **extra):
    return {
        "id": f"{prompt_id}#{sample}",
        "key": f"k{prompt_id}{sample}",
        "prompt_id": prompt_id,
        "prompt": "q",
        "response": f"r{sample}",
        "sample": sample,
        "status": status,
        "score": None if reward is None else 1 + (reward + 1) * 4.5,
        "reward": reward,
        **extra,
    }


def test_preference_from_two_scores():
    assert p_preferred(8.0, 3.0, 1.0) == pytest.approx(1 / (1 + math.exp(-5)))
    assert p_preferred(3.0, 8.0, 2.0) == pytest.approx(1 / (1 + math.exp(2.5)))
    assert p_preferred(-1e6, 1e6, 1.0) == 0.0  # no overflow
    a, b = _rec("p", 0, 0.5), _rec("p", 1, -0.5)
    assert points(a, (1, 10)) == pytest.approx(7.75)
    (pair,) = derived_labels([a, b], (1, 10), 2.0, 0.05)
    assert pair["p_a"] == pytest.approx(p_preferred(7.75, 3.25, 2.0)) and pair["label"] == "a"
    assert pair["scores"] == [a["score"], b["score"]] and pair["source"] == "ai"


def test_derived_pairs_of_input_pairs_keep_the_pair_id_and_human_label():
    a = {**_rec("p", 0, -0.2), "pair_id": "x", "side": "a", "sample": None, "human_label": "b"}
    b = {**_rec("p", 1, 0.2), "pair_id": "x", "side": "b", "sample": None, "human_label": "b"}
    failed = {**_rec("q", 0, None, status="failed", error="boom"), "pair_id": "y", "side": "a", "sample": None}
    other = {**_rec("q", 1, 0.1), "pair_id": "y", "side": "b", "sample": None}
    by_id = {r["id"]: r for r in derived_labels([a, b, failed, other], (1, 10), 1.0, 0.05)}
    assert by_id["x"]["label"] == "b" and by_id["x"]["human_label"] == "b"
    assert by_id["y"]["status"] == "failed" and by_id["y"]["p_a"] is None and by_id["y"]["error"] == "boom"


def test_binarisation_rules():
    rewards = [0.1, 0.8, -0.6, 0.8, 0.0]  # samples 1 and 3 tie for best: sample 1 (earlier) wins
    group = [_rec("p", i, r) for i, r in enumerate(rewards)] + [_rec("p", 5, None, status="failed")]

    def pick(how, **kw):
        return [(c["sample"], r["sample"]) for c, r in binarize(group, how, (1, 10), 1.0, **kw)]

    assert pick("best-vs-worst") == [(1, 2)]
    random_pick = pick("best-vs-random", seed=3)
    assert len(random_pick) == 1 and random_pick[0][0] == 1 and random_pick[0][1] in (0, 2, 4)  # never 3: a tie
    assert pick("best-vs-random", seed=3) == random_pick  # seeded by (seed, prompt id)
    assert {pick("best-vs-random", seed=s)[0][1] for s in range(30)} == {0, 2, 4}
    # all-above-margin: every pair except the tie (1, 3), better one first; a margin in score points drops close ones
    assert len(pick("all-above-margin")) == 9
    margin = 0.5 * 4.5  # rewards 0.5 apart
    kept = pick("all-above-margin", min_margin=margin + 1e-9)
    assert all(rewards[c] - rewards[r] > 0.5 for c, r in kept) and (0, 4) not in kept and (1, 2) in kept
    assert pick("best-vs-worst", min_margin=100) == []
    with pytest.raises(ValueError, match="--pairs-from"):
        list(binarize(group, "best-of-n", (1, 10), 1.0))


def test_a_response_shared_by_pairs_of_one_prompt_is_one_candidate():
    """Pairs (A, B) and (A, C) of one prompt: A is rated twice but binarised once, so no pair reaches DPO twice."""
    recs = [
        {**_rec("p", None, r), "id": f"{pid}:{side}", "pair_id": pid, "side": side, "response": text}
        for pid, side, text, r in (
            ("k1", "a", "A", 0.8),
            ("k1", "b", "B", -0.6),
            ("k2", "a", "A", 0.8),
            ("k2", "b", "C", 0.0),
        )
    ]
    rows = [(c["response"], r["response"]) for c, r in binarize(recs, "all-above-margin", (1, 10), 1.0)]
    assert sorted(rows) == [("A", "B"), ("A", "C"), ("C", "B")]


def test_a_derived_tie_at_the_margin_is_a_tie_as_for_pairwise_labels():
    """Derived labels read p_a with the one rule pairwise labels use (rlaif.preference.label_for), float tolerance
    included: 0.55 - 0.5 is 0.05000000000000004 in floats, still a tie at the margin 0.05."""
    from rlaif.preference import label_for

    expected = {0.55: "tie", 0.45: "tie", 0.5500001: "a", 0.4499999: "b", 0.5: "tie"}
    assert {p_a: label_for(p_a, 0.05) for p_a in expected} == expected
