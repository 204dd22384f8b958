"""Tier 4: a real `rlaif train dpo` subprocess killed with SIGKILL mid-run, then started again with the same
command, resumes from its last checkpoint at that step: metrics.jsonl ends with every step exactly once, and the
losses equal those of a run that was never interrupted (same weights, optimiser, schedule, data order)."""

from __future__ import annotations

import pytest

from rlaif.train.checkpoint import list_checkpoints
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, kill_then_resume, rlaif_command

LABELS = ROOT / "examples/tiny/data/labels.jsonl"
STEPS = 24
OVERRIDES = [
    f"feedback.ai={LABELS}",
    f"max_steps={STEPS}",
    "save_steps=5",
    "save_total_limit=2",
    "batch_size=8",
    "eval_steps=12",
]


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_at_the_checkpoint_step(tmp_path):
    out = tmp_path / "run"
    cmd = rlaif_command("train", "dpo", "--config", ROOT / "examples/tiny/dpo.yaml", f"output_dir={out}", *OVERRIDES)
    resumed = kill_then_resume(cmd, out, STEPS)
    assert [s for s, _ in list_checkpoints(out)] == [20, 24]  # save_total_limit keeps the newest two

    from rlaif.config.train import load_train_config
    from rlaif.recipes.dpo import train

    train(
        load_train_config(ROOT / "examples/tiny/dpo.yaml", "dpo", [f"output_dir={tmp_path / 'straight'}", *OVERRIDES])
    )
    straight = read_metrics(tmp_path / "straight")
    for a, b in zip(resumed, straight):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), a["step"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    assert resumed[-1]["eval_loss"] == pytest.approx(straight[-1]["eval_loss"], abs=1e-5)


def test_a_run_directory_refuses_a_different_config(tmp_path):
    from rlaif.config.train import load_train_config
    from rlaif.recipes.dpo import train

    cfg = load_train_config(
        ROOT / "examples/tiny/dpo.yaml",
        "dpo",
        [f"output_dir={tmp_path}", f"feedback.ai={LABELS}", "max_steps=1", "batch_size=4"],
    )
    train(cfg)
    with pytest.raises(ValueError, match="loss changed"):
        train(cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"beta": 0.5})}))
    # a longer run of the same config continues from the checkpoint
    train(cfg.model_copy(update={"max_steps": 2}))
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
