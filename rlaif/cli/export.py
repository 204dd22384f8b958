"""`rlaif export`: label records (or a feedback source: AI, human or mixed) as TRL preference rows; a revision
folder (`rlaif revise`) as SFT rows or preference pairs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..revision.export import export_revisions
from .common import guard

# TRL's trainers read which response is chosen and drop every other column: a TRL user would train on hard labels
# without knowing it.
TRL_NOTE = (
    "note: TRL's DPOTrainer and RewardTrainer ignore p_chosen (they train as if it were 1); "
    "rlaif.integrations.trl's SoftDPOTrainer and SoftRewardTrainer train on it"
)


def export_cmd(
    labels: Optional[Path] = typer.Option(None, help="A label directory or labels.jsonl."),
    feedback: Optional[Path] = typer.Option(
        None,
        help="A feedback YAML (source: ai | human | mixed, "
        "or a training config's `feedback:` section) instead of "
        "--labels.",
    ),
    revisions: Optional[Path] = typer.Option(
        None, help="A revision folder (rlaif revise) or its revisions.jsonl, instead of --labels."
    ),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        help="Labels: trl (prompt/chosen/rejected + "
        "p_chosen, the default). Revisions: sft (messages rows, the "
        "default) or trl (chosen: final revision, rejected: first "
        "answer).",
    ),
    pairs_from: Optional[str] = typer.Option(
        None,
        help="A score folder (rlaif score) as --labels: "
        "binarise each prompt's scored responses into preference "
        "rows: best-vs-random, best-vs-worst or all-above-margin "
        "(UltraFeedback). Without it, the input pairs are exported "
        "with preferences derived from their scores.",
    ),
    min_margin: float = typer.Option(
        0.0, help="With --pairs-from: drop pairs whose expected scores are closer than this (in score points)."
    ),
    seed: int = typer.Option(0, help="With --pairs-from best-vs-random: the seed of the draw (per prompt)."),
    out_file: Path = typer.Option(..., "--out", help="Output JSONL file."),
) -> None:
    """Export labels as preference data for training (ties and failures are left out and counted), or revisions
    as SFT rows or preference pairs (failed chains are left out and counted)."""

    def run():
        if revisions is not None:
            if labels is not None or feedback is not None:
                raise ValueError("pass one of --labels, --feedback or --revisions")

            return export_revisions(revisions, out_file, fmt or "sft")
        # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
        from ..feedback.export import export

        return export(
            out_file,
            labels=labels,
            feedback=feedback,
            format=fmt or "trl",
            pairs_from=pairs_from,
            seed=seed,
            min_margin=min_margin,
        )

    counts = guard(run)
    print(json.dumps(counts))
    if revisions is None and (fmt or "trl") == "trl":  # revision pairs carry no p_chosen
        print(TRL_NOTE, file=sys.stderr)
