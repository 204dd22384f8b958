"""`rlaif annotate …`, `rlaif human …` and `rlaif calibrate …`: human feedback and calibration commands."""

from __future__ import annotations

import typer

annotate_app = typer.Typer(help="Human annotation: serve the labelling app, export its labels, pick pairs.",
                           no_args_is_help=True)
human_app = typer.Typer(help="Human labels: import them from files.", no_args_is_help=True)
