"""Tier 4: the DPO recipe unchanged under data parallelism — two CPU processes (torchrun, gloo) on a global batch
of 8 pairs log the same losses, gradient norms and learning rates as one process on the same 8 pairs, and write
one checkpoint with both processes' RNG states."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT

LABELS = ROOT / "examples/tiny/data/labels.jsonl"


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    common = [f"feedback.ai={LABELS}", "max_steps=4", "save_steps=4", "eval_steps=4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "rlaif.cli",
        "train",
        "dpo",
        "--config",
        str(ROOT / "examples/tiny/dpo.yaml"),
        f"output_dir={tmp_path / 'ddp'}",
        "batch_size=4",
        *common,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 steps of 8 pairs" in done.stdout  # 4 pairs per process × 2 processes

    from rlaif.config.train import load_train_config
    from rlaif.recipes.dpo import train

    train(
        load_train_config(
            ROOT / "examples/tiny/dpo.yaml", "dpo", [f"output_dir={tmp_path / 'one'}", "batch_size=8", *common]
        )
    )
    ddp, one = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    assert [r["step"] for r in ddp] == [1, 2, 3, 4]
    for a, b in zip(ddp, one):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)  # one schedule step per optimizer step
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], abs=1e-5)
    assert ddp[-1]["eval_loss"] == pytest.approx(one[-1]["eval_loss"], abs=1e-5)
    ckpt = tmp_path / "ddp/checkpoint-4"
    assert (ckpt / "random_states_0.pkl").exists() and (ckpt / "random_states_1.pkl").exists()
