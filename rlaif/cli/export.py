"""`rlaif export`: label records (or a feedback source: AI, human or mixed) as TRL preference rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import guard


def export_cmd(labels: Optional[Path] = typer.Option(None, help="A label directory or labels.jsonl."),
               feedback: Optional[Path] = typer.Option(None, help="A feedback YAML (source: ai | human | mixed, "
                                                       "or a training config's `feedback:` section) instead of "
                                                       "--labels."),
               fmt: str = typer.Option("trl", "--format", help="trl: prompt/chosen/rejected + p_chosen."),
               out_file: Path = typer.Option(..., "--out", help="Output JSONL file.")) -> None:
    """Export labels as preference data for training (ties and failures are left out and counted)."""
    def run():
        from ..feedback.export import export
        return export(out_file, labels=labels, feedback=feedback, format=fmt)
    print(json.dumps(guard(run)))
