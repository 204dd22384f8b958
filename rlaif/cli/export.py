"""`rlaif export`: label records (or a feedback source: AI, human or mixed) as TRL preference rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .common import guard

# TRL's trainers read which response is chosen and drop every other column: a TRL user would train on hard labels
# without knowing it.
TRL_NOTE = ("note: TRL's DPOTrainer and RewardTrainer ignore p_chosen (they train as if it were 1); "
            "rlaif.integrations.trl's SoftDPOTrainer and SoftRewardTrainer train on it")


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
    counts = guard(run)
    print(json.dumps(counts))
    if fmt == "trl":
        print(TRL_NOTE, file=sys.stderr)
