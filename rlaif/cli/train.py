"""`rlaif train reward | dpo | ppo | sft` and `rlaif loop`: training recipes on preference feedback, and supervised
fine-tuning (on Constitutional AI's revisions). Each command reads
one YAML config, applies trailing `key=value` overrides (dotted keys for nested fields) and runs one recipe; torch
is imported only then.
Under `accelerate launch` the same commands run on every process (e.g. `accelerate launch -m rlaif.cli train …`).
Every --help here ends with the exit codes, 5 (training diverged) among them.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..config.train import check_run_paths, load_train_config
from ..recipes import run_recipe
from ..train.run import end_processes
from .common import guard

EXIT_CODES = (
    "Exit codes: 0 trained; 2 a bad config or data; 5 training diverged (a NaN or infinite loss or "
    "gradient norm: the run stops before that step and resumes from its last checkpoint)."
)
app = typer.Typer(
    help="Train a reward model, DPO or PPO on preference feedback, or SFT on chat examples.",
    no_args_is_help=True,
    epilog=EXIT_CODES,
)

_CONFIG = typer.Option(..., "--config", "-c", help="Training config YAML (see examples/tiny/ and examples/gpu/).")
_OVERRIDES = typer.Argument(
    None, help="Overrides as key=value, e.g. output_dir=runs/x optim.lr=1e-5.", show_default=False
)


def _run(method: str, config: Path, overrides: Optional[List[str]]) -> None:

    cfg = guard(lambda: load_train_config(config, method, overrides or []))
    guard(lambda: check_run_paths(config, cfg))  # before torch is imported or any model built
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per checkpoint write would drown the step lines
    try:
        final = guard(lambda: run_recipe(cfg))
    finally:
        end_processes()
    print(f"model saved to {final}")


@app.command("reward", epilog=EXIT_CODES)
def train_reward(config: Path = _CONFIG, overrides: Optional[List[str]] = _OVERRIDES) -> None:
    """Train a reward model (Bradley-Terry on soft preferences) from label files."""
    _run("reward", config, overrides)


@app.command("dpo", epilog=EXIT_CODES)
def train_dpo(config: Path = _CONFIG, overrides: Optional[List[str]] = _OVERRIDES) -> None:
    """Train a policy with DPO / IPO on soft preferences from label files."""
    _run("dpo", config, overrides)


@app.command("ppo", epilog=EXIT_CODES)
def train_ppo(config: Path = _CONFIG, overrides: Optional[List[str]] = _OVERRIDES) -> None:
    """Train a policy with PPO against a reward model or the judge itself (d-RLAIF)."""
    _run("ppo", config, overrides)


@app.command("sft", epilog=EXIT_CODES)
def train_sft(config: Path = _CONFIG, overrides: Optional[List[str]] = _OVERRIDES) -> None:
    """Supervised fine-tuning on chat examples (e.g. rlaif export --revisions DIR --format sft), loss on the
    responses only."""
    _run("sft", config, overrides)


def loop_cmd(config: Path = _CONFIG, overrides: Optional[List[str]] = _OVERRIDES) -> None:
    """Iterative DPO with self-feedback: each iteration the policy samples pairs, the judge labels them, DPO
    trains on the labels; logs win rate, KL and label statistics per iteration."""
    _run("loop", config, overrides)
