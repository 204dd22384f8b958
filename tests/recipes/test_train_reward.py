"""Tier 2 and 5: the reward-model recipe on a tiny random Llama with a score head, built from
examples/tiny/reward.yaml (no download): the weights move, the soft Bradley-Terry loss falls to the entropy of the
judge's 0.9/0.1 labels, and held-out pairwise accuracy (against the labels and against human choices) is high."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlaif.config.train import load_train_config
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT

TINY = ROOT / "examples/tiny/reward.yaml"
LABELS = ROOT / "examples/tiny/data/labels.jsonl"


def run(out: Path, *overrides: str) -> list[dict]:
    from rlaif.recipes.reward import train

    train(load_train_config(TINY, "reward", [f"output_dir={out}", f"feedback.ai={LABELS}", *overrides]))
    return read_metrics(out)


def test_one_step_moves_every_weight_and_writes_a_checkpoint(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rlaif.train.models import build_tiny, build_tokenizer

    cfg = load_train_config(TINY, "reward")
    rows = run(tmp_path / "run", "max_steps=1", "batch_size=8", "optim.warmup_steps=0")
    assert [r["step"] for r in rows] == [1]
    assert {"loss", "accuracy", "margin", "eval_accuracy", "step_s", "tokens"} <= set(rows[0])
    before = build_tiny(cfg.model, build_tokenizer(cfg.model), "score").state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run/checkpoint-1").state_dict()
    assert after["score.weight"].shape == (1, cfg.model.hidden_size)
    assert [k for k in before if torch.equal(before[k], after[k])] == []


@pytest.mark.slow
def test_reward_model_learns_the_judges_preference_and_agrees_with_humans(tmp_path):
    records = [json.loads(line) for line in LABELS.read_text().splitlines()]
    held = [r for r in records if r["label"] in ("a", "b")][-40:]
    train = [r for r in records if r not in held]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    # the held-out pairs as human labels (the same choices, source human): the human-agreement accuracy
    (tmp_path / "human.jsonl").write_text(
        "".join(json.dumps({**r, "source": "human", "p_a": 1.0 if r["label"] == "a" else 0.0}) + "\n" for r in held)
    )
    rows = run(
        tmp_path / "run",
        "max_steps=25",
        "eval_steps=25",
        f"feedback.ai={tmp_path / 'train.jsonl'}",
        f"pairs.eval_paths=[{tmp_path / 'human.jsonl'}]",
    )
    first, last = rows[0], rows[-1]
    print(
        f"reward loss {first['loss']:.4f} -> {last['loss']:.4f}; eval accuracy {last['eval_accuracy']:.3f}, "
        f"human accuracy {last['eval_human_accuracy']:.3f}"
    )
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # the soft loss cannot go below H(0.9) = 0.325
    assert first["loss"] > 0.6 and last["loss"] < entropy + 0.05
    assert last["eval_accuracy"] >= 0.9 and last["eval_human_accuracy"] >= 0.9
