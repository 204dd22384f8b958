"""Tier 2: the `policy` judge backend (self-rewarding, Yuan et al. 2024) on a tiny random Llama built in-process.
Attached to a model in memory it must read exactly the verdicts the transformers judge reads from the same model
saved to disk, follow the weights it is handed, and say it is for `rlaif loop` when nothing is attached."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import rlaif
from rlaif.config.judge import PolicyJudgeConfig, TransformersJudgeConfig, load_judge_config
from rlaif.config.run import TinyModelConfig
from rlaif.constitution import load_constitution
from rlaif.judges.hf import TransformersJudge
from rlaif.judges.policy import PolicyJudge
from rlaif.judges.prompting import render_prefix_user
from rlaif.judges.registry import load_judge
from rlaif.records import Pair, Query
from rlaif.train.models import build_tiny, build_tokenizer
from tests.helpers import ROOT


def _policy(seed: int = 0):
    cfg = TinyModelConfig(seed=seed)
    tokenizer = build_tokenizer(cfg)
    return build_tiny(cfg, tokenizer, "lm"), tokenizer


def _queries():
    qs = []
    for prompt in ["How do I bake bread?", "Tell me a story please."]:
        prefix = render_prefix_user(prompt, None)
        for first, second in [("Mix flour and water.", "No."), ("No.", "Mix flour and water.")]:
            for text in ["Which response is more helpful?", "Which is more polite?"]:
                qs.append(Query(prompt, first, second, "p", text, prefix))
    return qs


@pytest.fixture(scope="module")
def policy():
    return _policy(0)


@pytest.fixture(scope="module")
def saved_judge(policy, tmp_path_factory):
    model, tokenizer = policy
    path = tmp_path_factory.mktemp("policy-saved")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return TransformersJudge(TransformersJudgeConfig(model=str(path), batch_size=2))


def _p(verdicts):
    assert all(v.error is None for v in verdicts)
    return [v.p_first for v in verdicts]


def test_attached_policy_reads_what_the_transformers_judge_reads(policy, saved_judge):
    model, tokenizer = policy
    judge = PolicyJudge(PolicyJudgeConfig(batch_size=2)).attach(model, tokenizer)
    qs = _queries()
    ours, theirs = _p(judge.judge(qs)), _p(saved_judge.judge(qs))
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert len(set(round(p, 6) for p in ours)) > 1  # a real signal, not a constant
    # and the unshared reference path agrees too
    judge.config = judge.config.model_copy(update={"share_prefix": False})
    assert _p(judge.judge(qs)) == pytest.approx(theirs, abs=1e-5)


def test_verdicts_follow_the_weights_it_is_handed(policy):
    model, tokenizer = _policy(0)  # a private copy: its weights are changed below
    judge = PolicyJudge(PolicyJudgeConfig()).attach(model, tokenizer)
    qs = _queries()[:4]
    before = _p(judge.judge(qs))
    a_ids = judge.label_ids[0]
    with torch.no_grad():  # one "training step": push the lm head towards the label A
        model.lm_head.weight[a_ids] += 0.5 * model.model.norm.weight
    judge.attach(model, tokenizer)
    after = _p(judge.judge(qs))
    assert all(a > b + 1e-3 for a, b in zip(after, before))
    other, _ = _policy(1)
    assert _p(judge.attach(other, tokenizer).judge(qs)) != pytest.approx(after, abs=1e-4)


def test_training_mode_is_restored_and_checkpointing_does_not_break_it(policy):
    model, tokenizer = _policy(0)
    judge = PolicyJudge(PolicyJudgeConfig()).attach(model, tokenizer)
    qs = _queries()[:2]
    expected = _p(judge.judge(qs))
    model.gradient_checkpointing_enable()
    model.train()
    assert _p(judge.judge(qs)) == pytest.approx(expected, abs=1e-6)
    assert model.training


def test_lora_wrapped_policy(policy):
    peft = pytest.importorskip("peft")
    model, tokenizer = _policy(0)
    judge = PolicyJudge(PolicyJudgeConfig()).attach(model, tokenizer)
    qs = _queries()[:2]
    expected = _p(judge.judge(qs))
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    # fresh adapters are zero: the wrapped policy judges as the base did
    assert _p(judge.attach(wrapped, tokenizer).judge(qs)) == pytest.approx(expected, abs=1e-6)


def test_labels_record_backend_policy(policy):
    model, tokenizer = policy
    config = PolicyJudgeConfig()
    judge = PolicyJudge(config).attach(model, tokenizer)
    pair = Pair(prompt="How do I bake bread?", response_a="Mix flour and water.", response_b="No.")
    (record,) = rlaif.judge_pairs(judge, [pair])
    assert record.status == "ok"
    assert record.judge.backend == "policy" and record.judge.model == "policy"
    assert record.judge.settings_sha256 == config.settings_sha256()
    judge.attach(model, tokenizer, name="policy@iter-2")
    helpful = load_constitution(ROOT / "constitutions" / "helpful.yaml")
    (record,) = rlaif.judge_pairs(judge, [pair], constitution=helpful)
    assert record.judge.model == "policy@iter-2" and record.judge.backend == "policy"
    # plumbing does not change the hash; a verdict setting does
    assert PolicyJudgeConfig(batch_size=9).settings_sha256() == config.settings_sha256()
    assert PolicyJudgeConfig(tie_margin=0.2).settings_sha256() != config.settings_sha256()


def test_unattached_policy_judge_says_it_is_for_the_loop(tmp_path):
    cfg = load_judge_config(ROOT / "judges" / "self.yaml")
    assert isinstance(cfg, PolicyJudgeConfig) and cfg.model == "policy"
    judge = load_judge(cfg)
    assert isinstance(judge, PolicyJudge)
    with pytest.raises(RuntimeError, match="rlaif loop"):
        rlaif.judge_pairs(judge, [Pair(prompt="p", response_a="a", response_b="b")])
    principle = load_constitution(ROOT / "constitutions" / "helpful.yaml").principles[0]
    with pytest.raises(RuntimeError, match="rlaif loop"):  # a score before attach is refused the same way
        judge.score(judge.score_queries("p", ["a", "b"], principle))

    from rlaif.cli import app

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "response_a": "a", "response_b": "b"}\n')
    result = CliRunner().invoke(
        app,
        [
            "label",
            "--pairs",
            str(pairs),
            "--constitution",
            str(ROOT / "constitutions" / "helpful.yaml"),
            "--judge",
            str(ROOT / "judges" / "self.yaml"),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert result.exit_code == 2
    assert "rlaif loop" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_policy_config_rejects_transformers_only_fields():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PolicyJudgeConfig(device="cuda")
