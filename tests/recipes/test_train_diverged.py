"""Tier 4: real diverging runs stop. A finite but absurd learning rate (1e30) makes the tiny models' losses NaN
within a step or two; every training path (`rlaif train reward|dpo|ppo|sft`, `rlaif loop`) then stops before the
step is applied with TrainingDiverged (exit 5 from the CLI, one line naming the step), writes no checkpoint after
it and no OUT/model, and a rerun resumes from the last checkpoint. Weights that a step made infinite are never
saved, and under two processes both stop when only one sees a NaN."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif.config.train import load_train_config
from rlaif.numbers import TrainingDiverged
from rlaif.train.checkpoint import list_checkpoints
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ROOT / "examples/tiny"
LABELS = TINY / "data/labels.jsonl"
# lr 1e30 with no warm-up: step 1 moves every weight by about 1e30 (still finite), so step 2's loss is NaN
DIVERGING = ["optim.lr=1e30", "optim.warmup_steps=0", "optim.scheduler=constant", "save_steps=1"]


def assert_stopped_at(out: Path, step: int) -> None:
    """Nothing from `step` on was kept: checkpoints and metrics rows end before it, every logged loss is finite,
    and there is no OUT/model."""
    assert [s for s, _ in list_checkpoints(out)] == list(range(1, step))
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, step))
    assert all(isinstance(r["loss"], float) and math.isfinite(r["loss"]) for r in rows)
    assert not (out / "model").exists()


def test_a_diverging_dpo_run_exits_5_naming_the_step_and_resumes_from_its_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    overrides = [f"output_dir={out}", f"feedback.ai={LABELS}", "max_steps=6", "batch_size=8", *DIVERGING]
    done = run_cli("train", "dpo", "--config", TINY / "dpo.yaml", *overrides)
    assert done.returncode == 5, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"error: training diverged: step 2/6: loss is nan; grad_norm is nan (lr 1e+30); nothing from this step on "
        f"was saved: {out}/checkpoint-1 stays the last checkpoint, the one the same command resumes from (other "
        f"settings, e.g. a lower optim.lr, need a new output_dir)"
    ]
    assert "model saved" not in done.stdout
    assert_stopped_at(out, 2)

    # the same run again resumes from checkpoint-1 and stops at the same step, keeping it
    from rlaif.recipes.dpo import train

    with pytest.raises(TrainingDiverged, match=r"^step 2/6: loss is nan"):
        train(load_train_config(TINY / "dpo.yaml", "dpo", overrides))
    assert "resuming at step 1" in capsys.readouterr().out
    assert_stopped_at(out, 2)


def _sft_rows(path: Path) -> Path:
    labels = [json.loads(line) for line in LABELS.read_text().splitlines()][:24]
    path.write_text(
        "".join(json.dumps({"prompt": r["prompt"], "completion": r["response_a"] + " ok"}) + "\n" for r in labels)
    )
    return path


@pytest.mark.parametrize("method", ["reward", "sft", "ppo", "loop"])
def test_every_training_path_stops_before_the_step_that_diverges(tmp_path, method):
    from rlaif.recipes import run_recipe

    tiny_policy = load_train_config(TINY / "dpo.yaml", "dpo").model.model_dump()
    config, overrides = {
        # without clipping the gradient norm is still measured, and checked
        "reward": (
            TINY / "reward.yaml",
            [f"feedback.ai={LABELS}", "max_steps=6", "batch_size=8", "optim.max_grad_norm=null"],
        ),
        "sft": (
            TINY / "cai/sft.yaml",
            [
                f"data.paths=[{_sft_rows(tmp_path / 'sft.jsonl')}]",
                f"model={json.dumps(tiny_policy)}",
                "max_steps=6",
                "batch_size=8",
            ],
        ),
        "ppo": (
            TINY / "ppo.yaml",
            [
                f"prompts.path={LABELS}",
                f"reward.judge={ROOT / 'judges/rule-keyword.yaml'}",
                "max_steps=4",
                "batch_size=4",
                "ppo_epochs=1",
                "num_mini_batches=1",
                "prompts.eval_fraction=0",
            ],
        ),
        "loop": (
            TINY / "loop.yaml",
            [
                f"prompts={LABELS}",
                f"judge={ROOT / 'judges/rule-keyword.yaml'}",
                "iterations=2",
                "steps_per_iteration=3",
                "prompts_per_iteration=8",
                "eval_prompts=4",
                "batch_size=4",
            ],
        ),
    }[method]
    out = tmp_path / "run"
    with pytest.raises(
        TrainingDiverged,
        match=r"^step 2/\d+: ((loss|grad_norm) is nan|sampling the policy met "
        r"next-token probabilities that are not finite)",
    ) as e:
        run_recipe(load_train_config(config, method, [f"output_dir={out}", *overrides, *DIVERGING]))
    assert f"{out}/checkpoint-1 stays the last checkpoint" in str(e.value)
    assert_stopped_at(out, 2)


def test_weights_a_step_made_infinite_are_never_saved(tmp_path):
    """lr 1e300 turns every weight infinite in step 1, whose loss and gradients were finite: neither its
    checkpoint nor OUT/model is written."""
    from rlaif.recipes.dpo import train

    out = tmp_path / "run"
    with pytest.raises(
        TrainingDiverged,
        match=r"^step 1/1: the weights after it are not finite \(model\.[\w.]+\) "
        r"\(lr 1e\+300\); .* no checkpoint was written before it",
    ):
        train(
            load_train_config(
                TINY / "dpo.yaml",
                "dpo",
                [
                    f"output_dir={out}",
                    f"feedback.ai={LABELS}",
                    "max_steps=1",
                    "batch_size=8",
                    "pairs.eval_fraction=0",
                    "optim.lr=1e300",
                    "optim.warmup_steps=0",
                ],
            )
        )
    assert not list_checkpoints(out) and not (out / "model").exists()
    assert [r["step"] for r in read_metrics(out)] == [1]  # step 1's loss was finite, and is logged


AGREE = """
import sys
from pathlib import Path
from rlaif.config.train import load_train_config
from rlaif.numbers import TrainingDiverged
from rlaif.train.run import RunLog, end_processes, make_accelerator

config = load_train_config(sys.argv[1], "dpo", [f"output_dir={sys.argv[2]}"])
acc = make_accelerator(config)
log = RunLog(acc, config, None, None, keep=None)
log.check(1, 4, 0.1, loss=1.0, grad_norm=2.0)
seen = Path(sys.argv[2]) / f"process-{acc.process_index}.txt"  # one file each: printed lines may interleave
try:  # only process 1 sees a NaN loss
    log.check(2, 4, 0.1, loss=float("nan") if acc.process_index == 1 else 1.0, grad_norm=2.0)
    seen.write_text("went on")
except TrainingDiverged as e:
    seen.write_text(str(e))
acc.wait_for_everyone()  # a process that went on would wait here for one that left
end_processes()  # as `rlaif train` does: a group left alive at exit can abort the process (SIGABRT)
"""


@pytest.mark.slow
def test_two_processes_stop_together_when_one_sees_a_nan(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(AGREE)
    (tmp_path / "run").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(TINY / "dpo.yaml"),
            str(tmp_path / "run"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tail = "nothing from this step on was saved: no checkpoint was written before it, so a rerun starts over"
    assert [(tmp_path / f"run/process-{i}.txt").read_text() for i in (0, 1)] == [
        f"step 2/4: another process's loss or gradient norm is not finite (lr 0.1); {tail}",
        f"step 2/4: loss is nan (lr 0.1); {tail}",
    ]


@pytest.mark.parametrize(
    "command", [["train", "reward"], ["train", "dpo"], ["train", "ppo"], ["train", "sft"], ["loop"]]
)
def test_every_training_command_lists_exit_code_5_in_its_help(command):
    from typer.testing import CliRunner

    from rlaif.cli import app

    done = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0 and "5 training diverged" in done.output, done.output
