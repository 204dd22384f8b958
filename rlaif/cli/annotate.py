"""`rlaif annotate serve | export | export-tasks | select`: the annotation web app on a SQLite file, its labels as
label records, the same pairs as tasks for another annotation tool (Label Studio), and picking the pairs where a
human label is worth most."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..human.db import export_labels
from ..human.label_studio import export_tasks
from .common import eprint, guard
from .options import HOST, PORT

app = typer.Typer(
    help="Human annotation: serve the labelling app, export its labels, write tasks for Label Studio, pick pairs.",
    no_args_is_help=True,
)


@app.command("serve")
def annotate_serve(
    pairs: Path = typer.Option(..., help="Pairs to label: any input `rlaif label` reads."),
    db: Path = typer.Option(
        ..., help="SQLite file for pairs and labels (created if missing; restarting on it resumes)."
    ),
    constitution: Optional[Path] = typer.Option(
        None, help="Constitution YAML: the principle shown per pair is drawn as in labelling."
    ),
    seed: int = typer.Option(
        0,
        help="Seed for principle draws, pair order and left/right order; "
        "use the one given to `rlaif label` so ids and principles match.",
    ),
    host: str = HOST,
    allow_remote: bool = typer.Option(
        False, help="Allow a --host beyond loopback: tokens and labels then travel unencrypted unless TLS is in front."
    ),
    port: int = PORT,
    tokens: Optional[Path] = typer.Option(
        None, help="File of `annotator_name:token` lines (default: one annotator with a token printed at start)."
    ),
    overlap: int = typer.Option(
        1, min=1, help="Labels wanted per pair, each from a different annotator (2+ measures human-human agreement)."
    ),
    lease_s: float = typer.Option(
        600.0, "--lease-s", min=1.0, help="Seconds a pair stays reserved for the annotator it was handed to."
    ),
    skip_invalid: bool = typer.Option(
        False, help="Leave out rows that cannot be read (each is reported on stderr) instead of refusing the file."
    ),
) -> None:
    """Serve the annotation page and its JSON API until stopped (Ctrl-C)."""

    def run():
        # lazy: fastapi (the human extra): rlaif --help does without it
        from ..human.server import serve

        serve(
            pairs,
            db,
            constitution=constitution,
            seed=seed,
            host=host,
            port=port,
            tokens_file=tokens,
            overlap=overlap,
            lease_s=lease_s,
            skip_invalid=skip_invalid,
            allow_remote=allow_remote,
        )

    guard(run)


@app.command("export")
def annotate_export(
    db: Path = typer.Option(..., help="The annotation SQLite file."),
    out: Path = typer.Option(..., help="Output JSONL of label records (source: human)."),
) -> None:
    """Write the annotation database's labels as label records (skips left out); safe while serving."""

    def run():

        return export_labels(db, out)

    print(json.dumps(guard(run)))


@app.command("export-tasks")
def export_tasks_cmd(
    fmt: str = typer.Option(
        ..., "--format", help="label-studio: tasks.json and a pairwise labeling config.xml for a Label Studio project."
    ),
    pairs: Path = typer.Option(..., help="Pairs to label: any input `rlaif label` reads."),
    constitution: Path = typer.Option(
        ..., help="Constitution YAML: each task shows the principle the judge drew for its pair."
    ),
    out: Path = typer.Option(..., help="Folder for tasks.json and config.xml (created if missing)."),
    seed: int = typer.Option(
        0,
        help="Seed for principle draws, pair order and each task's "
        "left/right order; use the one given to `rlaif label` so ids and "
        "principles match.",
    ),
    skip_invalid: bool = typer.Option(
        False, help="Leave out rows that cannot be read (each is reported on stderr) instead of refusing the file."
    ),
) -> None:
    """Write the pairs as tasks for another annotation tool; `rlaif human import` reads its export back."""

    def run():
        if fmt != "label-studio":
            raise ValueError(f"--format: unknown task format '{fmt}' (known: label-studio)")

        return export_tasks(pairs, constitution, out, seed=seed, skip_invalid=skip_invalid)

    counts = guard(run)
    for line in counts.pop("invalid", []):
        eprint(f"skipped {line}")
    print(json.dumps(counts))


@app.command("select")
def select_cmd(
    labels: Path = typer.Option(..., help="AI labels: a labels JSONL file or a label directory."),
    budget: int = typer.Option(..., help="How many pairs to pick."),
    out_file: Path = typer.Option(
        ...,
        "--out",
        help="Pairs for people (JSONL, `rlaif label` input "
        "format with ids): serve with `rlaif annotate serve --pairs`.",
    ),
    human: Optional[Path] = typer.Option(None, help="Human labels: pairs that already have one are not picked again."),
) -> None:
    """Pick the N pairs where a human label is worth most: low confidence, orders or principles disagreeing."""

    def run():
        # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
        from ..feedback.select import select_pairs

        return select_pairs(labels, budget, out_file, human=human)

    print(json.dumps(guard(run)))
