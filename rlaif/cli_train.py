"""`rlaif train …`: training recipes on preference feedback."""

from __future__ import annotations

import typer

train_app = typer.Typer(help="Train a reward model, DPO or PPO on preference feedback.", no_args_is_help=True)
