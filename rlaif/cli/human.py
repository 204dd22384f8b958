"""`rlaif annotate …`, `rlaif human …` and `rlaif calibrate …`: human feedback and calibration commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .common import guard

annotate_app = typer.Typer(help="Human annotation: serve the labelling app, export its labels, pick pairs.",
                           no_args_is_help=True)
human_app = typer.Typer(help="Human labels: import them from files.", no_args_is_help=True)




# -- annotate ----------------------------------------------------------------------------------------------------
@annotate_app.command("serve")
def annotate_serve(pairs: Path = typer.Option(..., help="Pairs to label: any input `rlaif label` reads."),
                   db: Path = typer.Option(..., help="SQLite file for pairs and labels (created if missing; "
                                           "restarting on it resumes)."),
                   constitution: Optional[Path] = typer.Option(None, help="Constitution YAML: the principle shown "
                                                               "per pair is drawn as in labelling."),
                   seed: int = typer.Option(0, help="Seed for principle draws, pair order and left/right order; "
                                            "use the one given to `rlaif label` so ids and principles match."),
                   host: str = typer.Option("127.0.0.1", help="Address to listen on."),
                   port: int = typer.Option(8000, help="Port to listen on."),
                   tokens: Optional[Path] = typer.Option(None, help="File of `annotator_name:token` lines (default: "
                                                         "one annotator with a token printed at start)."),
                   overlap: int = typer.Option(1, min=1, help="Labels wanted per pair, each from a different "
                                               "annotator (2+ measures human-human agreement)."),
                   lease_s: float = typer.Option(600.0, "--lease-s", min=1.0, help="Seconds a pair stays reserved "
                                                 "for the annotator it was handed to."),
                   skip_invalid: bool = typer.Option(False, help="Leave out rows that cannot be read (each is "
                                                     "reported on stderr) instead of refusing the file.")) -> None:
    """Serve the annotation page and its JSON API until stopped (Ctrl-C)."""
    def run():
        from ..human.server import serve
        serve(pairs, db, constitution=constitution, seed=seed, host=host, port=port, tokens_file=tokens,
              overlap=overlap, lease_s=lease_s, skip_invalid=skip_invalid)
    guard(run)


@annotate_app.command("export")
def annotate_export(db: Path = typer.Option(..., help="The annotation SQLite file."),
                    out: Path = typer.Option(..., help="Output JSONL of label records (source: human).")) -> None:
    """Write the annotation database's labels as label records (skips left out); safe while serving."""
    def run():
        from ..human.db import export_labels
        return export_labels(db, out)
    print(json.dumps(guard(run)))


# -- human -------------------------------------------------------------------------------------------------------
@human_app.command("import")
def human_import(file: Path = typer.Argument(..., help="Labels (JSONL/JSON/CSV with a `label` field) or data that "
                                             "carries a human choice (TRL chosen/rejected, HH transcripts)."),
                 out: Path = typer.Option(..., help="Output JSONL of label records (source: human)."),
                 seed: int = typer.Option(0, help="Seed for the order of chosen/rejected pairs: use the one given "
                                          "to `rlaif label` so pair ids and orders match."),
                 annotator: Optional[str] = typer.Option(None, help="Annotator for rows that name none "
                                                         "(default: imported)."),
                 skip_invalid: bool = typer.Option(False, help="Leave out rows that cannot be used (each is "
                                                   "reported on stderr) instead of stopping at the first.")) -> None:
    """Import human labels as label records, matched to AI labels by pair id."""
    def run():
        from ..human.importer import import_labels
        return import_labels(file, out, seed=seed, annotator=annotator, skip_invalid=skip_invalid)
    counts = guard(run)
    for line in counts.pop("invalid", []):
        print(f"skipped {line}", file=sys.stderr)
    print(json.dumps(counts))
