"""Metrics sinks (`report_to`): a run sends every metrics.jsonl value to TensorBoard too, read back here with
TensorBoard's own event reader; a resumed run drops the killed run's events past its checkpoint; and the sink's
package is imported only when a config names it. (trackio and Weights & Biases use the same interface; their
packages are not installed in CI, so only TensorBoard is exercised for real.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlaif.train.metrics import MetricsLog, read_metrics
from tests.helpers import ROOT

LABELS = ROOT / "examples/tiny/data/labels.jsonl"

pytestmark = pytest.mark.usefixtures("one_thread")


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_a_run_reports_its_metrics_to_tensorboard(tmp_path):
    from rlaif.config.train import load_train_config
    from rlaif.recipes.reward import train

    out = tmp_path / "run"
    train(
        load_train_config(
            ROOT / "examples/tiny/reward.yaml",
            "reward",
            [f"output_dir={out}", f"feedback.ai={LABELS}", "max_steps=3", "save_steps=3", "report_to=[tensorboard]"],
        )
    )
    rows = read_metrics(out)
    got = scalars(out, "loss")
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


def test_resume_purges_events_past_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path, ["tensorboard"], "p", {})
    for step in (1, 2, 3, 4):
        log.log(step, {"loss": float(step)})
    log.close()  # as if killed after step 4 with the last checkpoint at step 2
    log = MetricsLog(tmp_path, ["tensorboard"], "p", {}, resume_step=2)
    for step in (3, 4):
        log.log(step, {"loss": 10.0 + step})
    log.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    assert scalars(tmp_path, "loss") == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]


def test_sink_packages_are_imported_only_when_named(tmp_path):
    code = (
        "import sys; from rlaif.train.metrics import MetricsLog; "
        f"m = MetricsLog({str(tmp_path)!r}, [], 'p', {{}}); m.log(1, {{'loss': 1.0}}); m.close(); "
        "print(sorted(k for k in ('torch.utils.tensorboard', 'tensorboard', 'trackio', 'wandb') "
        "if k in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
