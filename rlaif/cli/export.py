"""`rlaif export`: label records (or a feedback source: AI, human or mixed) as TRL preference rows; a revision
folder (`rlaif revise`) as SFT rows or preference pairs."""

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
               revisions: Optional[Path] = typer.Option(None, help="A revision folder (rlaif revise) or its "
                                                        "revisions.jsonl, instead of --labels."),
               fmt: Optional[str] = typer.Option(None, "--format", help="Labels: trl (prompt/chosen/rejected + "
                                                 "p_chosen, the default). Revisions: sft (messages rows, the "
                                                 "default) or trl (chosen: final revision, rejected: first "
                                                 "answer)."),
               out_file: Path = typer.Option(..., "--out", help="Output JSONL file.")) -> None:
    """Export labels as preference data for training (ties and failures are left out and counted), or revisions
    as SFT rows or preference pairs (failed chains are left out and counted)."""
    def run():
        if revisions is not None:
            if labels is not None or feedback is not None:
                raise ValueError("pass one of --labels, --feedback or --revisions")
            from ..revision.export import export_revisions
            return export_revisions(revisions, out_file, fmt or "sft")
        from ..feedback.export import export
        return export(out_file, labels=labels, feedback=feedback, format=fmt or "trl")
    print(json.dumps(guard(run)))
