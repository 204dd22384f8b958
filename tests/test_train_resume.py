"""Tier 4: a real `rlaif train dpo` subprocess killed with SIGKILL mid-run, then started again with the same
command, resumes from its last checkpoint at that step: metrics.jsonl ends with every step exactly once, and the
losses equal those of a run that was never interrupted (same weights, optimiser, schedule, data order)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlaif.train.checkpoint import list_checkpoints
from rlaif.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "examples/tiny/data/labels.jsonl"
STEPS = 24
OVERRIDES = [f"feedback.ai={LABELS}", f"max_steps={STEPS}", "save_steps=5", "save_total_limit=2", "batch_size=8",
             "eval_steps=12"]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_at_the_checkpoint_step(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlaif.cli", "train", "dpo", "--config", str(ROOT / "examples/tiny/dpo.yaml"),
           f"output_dir={out}", *OVERRIDES]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    metrics = out / "metrics.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while _lines(metrics) < 12 and proc.poll() is None and time.time() < deadline:  # past checkpoint-10
        time.sleep(0.002)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = [r["step"] for r in read_metrics(out)]
    saved = [step for step, _ in list_checkpoints(out)]
    assert saved and max(saved) < STEPS and killed_at[-1] > max(saved)  # some logged steps are past the checkpoint

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming at step {max(saved)}" in done.stdout
    resumed = read_metrics(out)
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))  # no gap, no repeat
    assert [s for s, _ in list_checkpoints(out)] == [20, 24]  # save_total_limit keeps the newest two

    from rlaif.recipes.dpo import train
    from rlaif.train.config import load_train_config

    train(load_train_config(ROOT / "examples/tiny/dpo.yaml", "dpo", [f"output_dir={tmp_path / 'straight'}",
                                                                      *OVERRIDES]))
    straight = read_metrics(tmp_path / "straight")
    for a, b in zip(resumed, straight):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), a["step"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    assert resumed[-1]["eval_loss"] == pytest.approx(straight[-1]["eval_loss"], abs=1e-5)


def test_a_run_directory_refuses_a_different_config(tmp_path):
    from rlaif.recipes.dpo import train
    from rlaif.train.config import load_train_config

    cfg = load_train_config(ROOT / "examples/tiny/dpo.yaml", "dpo", [f"output_dir={tmp_path}", f"feedback.ai={LABELS}",
                                                                      "max_steps=1", "batch_size=4"])
    train(cfg)
    with pytest.raises(ValueError, match="loss changed"):
        train(cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"beta": 0.5})}))
    # a longer run of the same config continues from the checkpoint
    train(cfg.model_copy(update={"max_steps": 2}))
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
