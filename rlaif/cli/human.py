"""`rlaif human import`: human labels from files (label files, Label Studio exports, TRL chosen/rejected, HH
transcripts) as label records with `source: "human"`, matched to AI labels by pair id."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..human.importer import import_labels
from .common import guard

app = typer.Typer(help="Human labels: import them from files.", no_args_is_help=True)


@app.command("import")
def human_import(
    file: Path = typer.Argument(
        ...,
        help="Labels (JSONL/JSON/CSV with a `label` field), Label Studio's "
        "JSON export of a project made by `rlaif annotate export-tasks`, or "
        "data that carries a human choice (TRL chosen/rejected, HH "
        "transcripts).",
    ),
    out: Path = typer.Option(..., help="Output JSONL of label records (source: human)."),
    seed: int = typer.Option(
        0,
        help="Seed for the order of chosen/rejected pairs: use the one given "
        "to `rlaif label` so pair ids and orders match (a Label Studio export "
        "carries the ids its tasks were written with).",
    ),
    annotator: Optional[str] = typer.Option(
        None, help="Annotator for rows that name none (default: imported; Label Studio's are label-studio:USER_ID)."
    ),
    skip_invalid: bool = typer.Option(
        False, help="Leave out rows that cannot be used (each is reported on stderr) instead of stopping at the first."
    ),
) -> None:
    """Import human labels as label records, matched to AI labels by pair id."""

    def run():

        return import_labels(file, out, seed=seed, annotator=annotator, skip_invalid=skip_invalid)

    counts = guard(run)
    for line in counts.pop("invalid", []):
        print(f"skipped {line}", file=sys.stderr)
    print(json.dumps(counts))
