"""`rlaif reward score`: a trained reward model (`rlaif train reward`'s OUT/model) scores both responses of every
pair; accuracy against the human choices the input carries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..config.paths import model_problem, output_file_problem, require
from ..rewards.reward_model import score_pairs_file
from .common import guard

app = typer.Typer(help="Trained reward models: score pairs with one.", no_args_is_help=True)


@app.command("score")
def reward_score(
    model: Path = typer.Option(..., help="A saved reward model directory (OUT/model of `rlaif train reward`)."),
    pairs: Path = typer.Option(..., help="Pairs: any input `rlaif label` reads."),
    out: Optional[Path] = typer.Option(None, help="Output JSONL (default: stdout)."),
    batch_size: int = typer.Option(16, min=1, help="Pairs per forward pass."),
    max_length: Optional[int] = typer.Option(
        None,
        min=8,
        help="Longest prompt+response in tokens (default: the model's context); longer pairs are reported, not scored.",
    ),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl, json, parquet or hf_dataset (default: detected)."),
    seed: int = typer.Option(0, help="Seed for the order of chosen/rejected pairs (as in labelling)."),
) -> None:
    """Score pairs with a reward model: id, r_a, r_b, p_a = σ(r_a − r_b) per line; accuracy vs human labels."""

    def run():

        require("--model", model_problem(str(model), head="score", local_only=True))
        require("--out", out and output_file_problem(out))
        return score_pairs_file(model, pairs, out, batch_size=batch_size, max_length=max_length, format=fmt, seed=seed)

    summary = guard(run)
    acc = summary["human_accuracy"]
    line = f"{summary['scored']} of {summary['pairs']} pairs scored ({summary['too_long']} too long)" + (
        f"; pairwise accuracy vs human labels: {acc:.3f} on {summary['human_pairs']} pairs"
        if acc is not None
        else "; no human labels in the input"
    )
    print(line, file=sys.stderr if out is None else sys.stdout)  # stdout carries the scores when no --out
