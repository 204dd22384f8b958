"""Tier 2 and 5: the DPO recipe on a tiny random Llama built from examples/tiny/dpo.yaml (no download) — it
writes its run files and moves the weights, matches TRL's DPOTrainer step for step, and learns the rule judge's
preference (replies saying "please") so that policy samples say it measurably more often."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlaif.config.train import load_train_config
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, shares_before_after

TINY = ROOT / "examples/tiny/dpo.yaml"
LABELS = ROOT / "examples/tiny/data/labels.jsonl"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(out: Path, *overrides: str):
    return load_train_config(TINY, "dpo", [f"output_dir={out}", f"feedback.ai={LABELS}", *overrides])


def run(out: Path, *overrides: str) -> list[dict]:
    from rlaif.recipes.dpo import train

    train(tiny_config(out, *overrides))
    return read_metrics(out)


def test_a_short_run_writes_its_files_and_changes_the_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    from rlaif.train.models import build_tiny, build_tokenizer

    cfg = tiny_config(tmp_path / "run")
    rows = run(tmp_path / "run", "max_steps=3", "save_steps=2", "batch_size=8")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(
        {
            "loss",
            "reward_accuracy",
            "rewards_chosen",
            "rewards_rejected",
            "rewards_margin",
            "kl_data",
            "lr",
            "grad_norm",
            "step_s",
            "tokens",
        }
        <= set(r)
        for r in rows
    )
    assert "eval_loss" in rows[-1] and "eval_reward_accuracy" in rows[-1]
    assert rows[0]["loss"] == pytest.approx(0.6931472, abs=1e-6)  # policy = reference at the first step
    out = tmp_path / "run"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "optimizer.bin",
        "scheduler.bin",
        "random_states_0.pkl",
        "trainer_state.json",
    ):
        assert (out / "checkpoint-2" / name).exists(), name
    assert json.loads((out / "checkpoint-2/trainer_state.json").read_text())["step"] == 2
    assert load_train_config(out / "config.yaml", "dpo") == cfg.model_copy(
        update={"max_steps": 3, "save_steps": 2, "batch_size": 8}
    )
    before = build_tiny(cfg.model, build_tokenizer(cfg.model), "lm").state_dict()
    after = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)  # every weight matrix moved


def test_reference_on_the_fly_equals_precomputed(tmp_path):
    pre = run(tmp_path / "pre", "max_steps=2", "batch_size=8")
    fly = run(tmp_path / "fly", "max_steps=2", "batch_size=8", "precompute_reference=false")
    assert (tmp_path / "pre/reference_logps.pt").exists() and not (tmp_path / "fly/reference_logps.pt").exists()
    for a, b in zip(pre, fly):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["kl_data"] == pytest.approx(b["kl_data"], abs=1e-4)


def test_lora_trains_adapters_only_and_ipo_runs(tmp_path):
    rows = run(
        tmp_path / "lora",
        "max_steps=2",
        "batch_size=8",
        "lora={r: 4, alpha: 8}",
        "loss={type: ipo}",
        "optim.lr=1e-2",
        "optim.warmup_steps=0",
    )
    assert (tmp_path / "lora/model/adapter_config.json").exists()
    assert not (tmp_path / "lora/model/model.safetensors").exists()
    # IPO at policy = reference: (0 - (p - 1/2)/beta)^2 with p ∈ {0.1, 0.9}, beta 0.1 → 16
    assert rows[0]["loss"] == pytest.approx(16.0, abs=1e-4)
    assert rows[1]["loss"] < rows[0]["loss"]


def test_first_steps_match_trl_dpo_trainer(tmp_path):
    """One TRL DPOTrainer run (sigmoid loss, fp32, no gradient checkpointing) and ours on the same tiny model
    and batch: same losses and gradient norms at steps 1 and 2 (step 2 follows one AdamW update, so its loss
    checks the gradient, not only the forward)."""
    trl = pytest.importorskip("trl", reason="trl is a test-only dependency (pip install -e '.[dev]')")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif.feedback.export import trl_row
    from rlaif.train.models import build_tiny, build_tokenizer

    cfg = tiny_config(tmp_path / "unused")
    tok = build_tokenizer(cfg.model)
    build_tiny(cfg.model, tok, "lm").save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    records = [json.loads(line) for line in LABELS.read_text().splitlines()]
    records = [r for r in records if r["label"] in ("a", "b")][:8]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    rows = []
    for r in map(trl_row, records):  # our tokenizer has a chat template, so ours reads them as conversations
        rows.append(
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
        )
    args = trl.DPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=8,
        max_steps=2,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        report_to=[],
        beta=0.1,
        loss_type=["sigmoid"],
        use_cpu=True,
        save_strategy="no",
        learning_rate=1e-3,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=1.0,
        seed=0,
    )
    trainer = trl.DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(tmp_path / "m"),
    )
    trainer.train()
    theirs = [h for h in trainer.state.log_history if "loss" in h]

    ours = run(
        tmp_path / "ours",
        "max_steps=2",
        "batch_size=8",
        "optim.warmup_steps=0",
        "optim.lr=1e-3",
        "optim.scheduler=linear",
        "optim.max_grad_norm=1.0",
        "loss.beta=0.1",
        "pairs.soft=false",
        "pairs.eval_fraction=0",
        f"model={{type: pretrained, path: {tmp_path / 'm'}}}",
        f"feedback.ai={tmp_path / 'labels.jsonl'}",
    )
    assert len(theirs) == len(ours) == 2
    for t, o in zip(theirs, ours):
        assert o["loss"] == pytest.approx(t["loss"], abs=1e-4)
        assert o["grad_norm"] == pytest.approx(t["grad_norm"], abs=1e-4)
        assert o["logps_chosen"] == pytest.approx(t["logps/chosen"], abs=1e-3)
        assert o["rewards_margin"] == pytest.approx(t["rewards/margins"], abs=1e-4)
    assert ours[1]["loss"] < 0.69  # the second step really is after an update


@pytest.mark.slow
def test_dpo_on_rule_judge_labels_makes_the_policy_say_please_more_often(tmp_path):
    """Learning test: labels from the `python` judge `rlaif.rules:prefer_keyword` (examples/tiny/make_data.py);
    the share of policy samples containing "please" must rise well above the starting policy's."""
    rows = run(tmp_path / "run", "max_steps=30", "save_steps=30", "eval_steps=30")
    before, after = shares_before_after(tiny_config(tmp_path / "run").model, tmp_path / "run", LABELS)
    print(
        f"share of samples containing 'please': before {before:.3f}, after {after:.3f}; "
        f"loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}"
    )
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.05
    assert after >= before + 0.2, (before, after)
