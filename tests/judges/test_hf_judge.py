"""Tier 2: the transformers backend on a tiny random Llama — the shared-prefix tree must give exactly the
probabilities of a plain forward pass over the whole prompt, for both orders, many principles and batches."""

from __future__ import annotations

import pytest
import torch

from rlaif.config.judge import CoTConfig, TransformersJudgeConfig
from rlaif.judges.hf import TransformersJudge
from rlaif.judges.prompting import render_prefix_user
from rlaif.records import Query

PRINCIPLES = ["Which response is less harmful?", "Which response is more helpful?", "Which is more polite?"]


def _queries():
    qs = []
    for prompt in ["How do I bake bread?", "Tell me a long story about a dragon and a knight please."]:
        prefix = render_prefix_user(prompt, None)
        for first, second in [("Mix flour and water.", "No."), ("No.", "Mix flour and water.")]:
            for text in PRINCIPLES:
                qs.append(Query(prompt, first, second, "p", text, prefix))
    return qs


@pytest.fixture(scope="module")
def judge(tiny_model_dir):
    return TransformersJudge(TransformersJudgeConfig(model=str(tiny_model_dir), batch_size=2))


def _direct(judge, q):
    """Reference: one full forward pass over the whole prompt, full-vocabulary softmax at the last token."""
    seg = judge.layout.segments(q.prefix_user, q.first, q.second, q.principle_text, cot=False)
    ids = judge._tokens(seg.prefix) + judge._tokens(seg.body) + judge._tokens(seg.tail)
    with torch.no_grad():
        logp = judge.model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
    a = torch.logsumexp(logp[judge.label_ids[0]], 0)
    b = torch.logsumexp(logp[judge.label_ids[1]], 0)
    return torch.sigmoid(a - b).item(), torch.exp(torch.logaddexp(a, b)).item()


@pytest.mark.parametrize("batch_size,share", [(1, True), (2, True), (4, True), (1, False)])
def test_tree_matches_plain_forward(judge, batch_size, share):
    judge.config = judge.config.model_copy(update={"batch_size": batch_size, "share_prefix": share})
    qs = _queries()
    verdicts = judge.judge(qs)
    assert len(verdicts) == len(qs)
    for q, v in zip(qs, verdicts):
        p, mass = _direct(judge, q)
        assert v.error is None
        assert v.p_first == pytest.approx(p, abs=1e-5)
        assert v.label_mass == pytest.approx(mass, rel=1e-4)
        assert v.prompt_tokens > 0


def test_sharing_processes_fewer_tokens(judge):
    qs = _queries()
    judge.config = judge.config.model_copy(update={"share_prefix": True, "batch_size": 2})
    judge.tokens_processed = 0
    judge.judge(qs)
    shared = judge.tokens_processed
    judge.config = judge.config.model_copy(update={"share_prefix": False})
    judge.tokens_processed = 0
    judge.judge(qs)
    assert shared < judge.tokens_processed / 2.5  # 12 queries share 2 prefixes and 4 bodies


def test_label_tokens_cover_spaced_variants(judge):
    ids = judge.label_ids[0] + judge.label_ids[1]
    texts = [judge.tokenizer.decode([i]) for i in ids]
    assert {"A", "B"} <= {t.strip() for t in texts}
    assert all(t.strip() in ("A", "B") for t in texts)


def test_overlong_prompt_fails_cleanly(judge):
    short = Query("x", "a", "b", "p", "Which?", "hi")
    n_short = judge.judge([short])[0].prompt_tokens
    judge.config = judge.config.model_copy(update={"max_length": n_short, "share_prefix": True})
    try:
        qs = _queries()[:2] + [short]
        verdicts = judge.judge(qs)
    finally:
        judge.config = judge.config.model_copy(update={"max_length": 2048})
    assert verdicts[0].p_first is None and "max_length" in verdicts[0].error and "too long" in verdicts[0].error
    assert verdicts[2].p_first is not None  # a short query in the same batch is still answered


def test_chain_of_thought_keeps_rationale(judge):
    judge.config = judge.config.model_copy(update={"cot": CoTConfig(enabled=True, max_new_tokens=8)})
    try:
        verdicts = judge.judge(_queries()[:2])
    finally:
        judge.config = judge.config.model_copy(update={"cot": CoTConfig()})
    for v in verdicts:
        assert 0.0 <= v.p_first <= 1.0
        assert v.rationale is not None and v.completion_tokens > 0


def test_block_sparse_tree_attention_equals_the_dense_tree_mask(judge, monkeypatch):
    """On CPU the tree pass computes only the visible blocks (rlaif/judges/tree_attention.py); it must give what
    the dense 4-D tree mask gives, for padded batches of trees with several principle tails per order."""
    assert judge._tree_attention  # a Llama on CPU: the block-sparse path is on
    used = []
    plan = judge._tree_plan
    monkeypatch.setattr(judge, "_tree_plan", lambda *a: used.append(plan(*a)) or used[-1])
    judge.config = judge.config.model_copy(update={"share_prefix": True, "batch_size": 2})
    qs = _queries() + [
        Query(
            "Hi",
            "Hello there, how can I help you today?",
            "Go away.",
            "p",
            PRINCIPLES[0],
            render_prefix_user("Hi", None),
        )
    ]
    sparse = judge.judge(qs)
    assert used and all(p is not None for p in used)
    monkeypatch.setattr(judge, "_tree_attention", False)
    dense = judge.judge(qs)
    for s, d in zip(sparse, dense):
        assert s.p_first == pytest.approx(d.p_first, abs=1e-6)
        assert s.label_mass == pytest.approx(d.label_mass, rel=1e-5)
