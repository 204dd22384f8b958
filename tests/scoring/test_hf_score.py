"""Tier 2: the transformers backend in score mode on a tiny random Llama — the shared-prefix tree (one prefix per
prompt, one branch per response, a read after "1" for "10") gives the probabilities of plain forward passes over
whole prompts, batched or one at a time."""

from __future__ import annotations

import math

import pytest
import torch

from rlaif.config.judge import ScoreConfig, TransformersJudgeConfig
from rlaif.constitution import Principle
from rlaif.judges.hf import TransformersJudge
from rlaif.judges.reading import ScoreTokens, normalised, value_masses

PROMPTS = ["How do I bake bread?", "Tell me a long story about a dragon and a knight please."]
RESPONSES = ["Mix flour and water.", "No.", "Knead the dough, let it rest, then bake it hot."]
PRINCIPLE = Principle(id="harm", text="Which response is less harmful?")


@pytest.fixture(scope="module")
def judge(tiny_model_dir):
    return TransformersJudge(TransformersJudgeConfig(model=str(tiny_model_dir), mode="score", batch_size=2))


def _queries(judge):
    return [q for prompt in PROMPTS for q in judge.score_queries(prompt, RESPONSES, PRINCIPLE)]


def _next_logp(judge, ids):
    with torch.no_grad():
        return judge.model(torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)


def _direct(judge, q):
    """Reference: whole-prompt forward passes, at the cue and again after each score prefix's tokens."""
    scale = judge.config.score
    tokens = ScoreTokens(judge.tokenizer, scale.values, judge.layout.score_cue)
    seg = judge.layout.score_segments(q.prefix_user, q.response)
    ids = judge._tokens(seg.prefix) + judge._tokens(seg.body) + judge._tokens(seg.tail)
    rows = {"": _next_logp(judge, ids)[tokens.read_ids].tolist()}
    for text, extra in tokens.prefix_ids.items():
        rows[text] = _next_logp(judge, ids + extra)[tokens.read_ids].tolist()
    probs, mass, error = normalised(value_masses(tokens.texts, tokens.reads_from(rows)))
    assert error is None
    return probs, mass


@pytest.mark.parametrize("batch_size,share", [(1, True), (2, True), (8, True), (1, False)])
def test_score_tree_matches_plain_forward(judge, batch_size, share):
    judge.config = judge.config.model_copy(update={"batch_size": batch_size, "share_prefix": share})
    qs = _queries(judge)
    verdicts = judge.score(qs)
    assert len(verdicts) == len(qs)
    for q, v in zip(qs, verdicts):
        probs, mass = _direct(judge, q)
        assert v.error is None and v.source == "logprobs" and v.prompt_tokens > 0
        assert v.probs == pytest.approx(probs, abs=1e-5)
        assert v.mass == pytest.approx(mass, rel=1e-4)
        assert math.isclose(sum(v.probs), 1.0, abs_tol=1e-9)


def test_batched_equals_one_at_a_time(judge):
    judge.config = judge.config.model_copy(update={"batch_size": 8, "share_prefix": True})
    qs = _queries(judge)
    together = judge.score(qs)
    alone = [judge.score([q])[0] for q in qs]
    for a, b in zip(together, alone):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)


def test_the_prefix_is_encoded_once_per_prompt(judge):
    qs = _queries(judge)
    judge.config = judge.config.model_copy(update={"share_prefix": True, "batch_size": 8})
    judge.tokens_processed = 0
    judge.score(qs)
    shared = judge.tokens_processed
    judge.config = judge.config.model_copy(update={"share_prefix": False})
    judge.tokens_processed = 0
    judge.score(qs)
    prefix_tokens = [
        len(judge._tokens(judge.layout.score_segments(q.prefix_user, q.response).prefix)) for q in qs[:: len(RESPONSES)]
    ]
    # each prompt's prefix is encoded once instead of once per response, and nothing else changes
    assert judge.tokens_processed - shared == sum((len(RESPONSES) - 1) * n for n in prefix_tokens)


def test_ten_is_read_across_two_tokens(judge):
    """This tokenizer spells "10" as "1" then "0": the scale's top score has probability only through the read
    after "1", and P(1) is what does not go on to "0"."""
    tokens = ScoreTokens(judge.tokenizer, ScoreConfig().values, judge.layout.score_cue)
    assert "10" not in tokens.groups and "1" in tokens.prefix_ids
    v = judge.score(_queries(judge)[:1])[0]
    assert v.probs[-1] > 0.0


def test_overlong_response_fails_cleanly(judge):
    judge.config = judge.config.model_copy(update={"max_length": 40})
    try:
        v = judge.score(_queries(judge)[:1])[0]
    finally:
        judge.config = judge.config.model_copy(update={"max_length": 2048})
    assert v.probs is None and v.error.startswith("pair too long for the judge")
