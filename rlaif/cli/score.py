"""`rlaif score`: a resumable job that rates every response of a file of pairs (or of `rlaif generate`'s samples)
with a score judge (mode: score; d-RLAIF) into scores.jsonl, one record per response."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..jobs.run import run_job
from ..scoring.job import ScoreJob
from .common import exit_if_capped, exit_if_failed, guard, merge_command, print_table, run_rows
from .options import (
    FORMAT,
    MAX_COST,
    MAX_REQUESTS,
    QUIET,
    RAY,
    RAY_ADDRESS,
    WORKERS,
    allow_failed_option,
    job_options,
    require_options,
    retry_failed_option,
)

app = typer.Typer(
    help="Rate responses with a score judge (d-RLAIF), one record per response (and merge shards).",
    invoke_without_command=True,
)


@app.callback()
def score_cmd(
    ctx: typer.Context,
    pairs: Optional[Path] = typer.Option(
        None,
        help="Pairs, or rlaif generate's output (each sample is "
        "rated once): JSONL(.gz), JSON, Parquet or a saved datasets "
        "directory.",
    ),
    constitution: Optional[Path] = typer.Option(None, help="Constitution YAML."),
    judge: Optional[Path] = typer.Option(None, help="Judge YAML with `mode: score`."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output directory (resumes if it exists)."),
    limit: Optional[int] = typer.Option(None, help="Rate only the responses of the first N rows."),
    seed: int = typer.Option(0, help="Seed for the principle drawn per prompt."),
    batch_size: Optional[int] = typer.Option(None, help="Responses per judge call (default: the judge's)."),
    shard: Optional[str] = typer.Option(None, help="I/N: rate a disjoint 1/N share of the prompts."),
    fmt: Optional[str] = FORMAT,
    max_chars: int = typer.Option(100_000, help="Reject rows longer than this many characters."),
    skip_invalid: bool = typer.Option(
        False, help="Record the responses of invalid rows, and those too long for the judge, as failed and go on."
    ),
    retry_failed: bool = retry_failed_option("responses"),
    allow_failed: bool = allow_failed_option("responses"),
    max_requests: Optional[int] = MAX_REQUESTS,
    max_cost: Optional[float] = MAX_COST,
    quiet: bool = QUIET,
    ray: bool = RAY,
    ray_address: Optional[str] = RAY_ADDRESS,
    workers: Optional[int] = WORKERS,
) -> None:
    """Rate responses one at a time: rlaif score --pairs FILE --constitution FILE --judge FILE --out DIR."""
    if ctx.invoked_subcommand is not None:
        return
    require_options(
        "rlaif score", [("--pairs", pairs), ("--constitution", constitution), ("--judge", judge), ("--out", out_dir)]
    )
    options = job_options(ctx.params)

    result = guard(lambda: run_job(ScoreJob(max_chars=max_chars), pairs, constitution, judge, out_dir, options))
    stats = result.stats
    _summary(stats, f"scores in {out_dir}")
    exit_if_capped(result, stats, "everything scored")
    exit_if_failed(
        stats["failed_judge"], allow_failed, stats, out_dir, "responses have no score", "the judge failed", "the judge"
    )


def _summary(stats: dict, title: str) -> None:
    print_table(
        title,
        [
            ("responses", stats["responses"]),
            ("prompts", stats["prompts"]),
            ("ok", stats["ok"]),
            ("failed", stats["failed"] or None),
            (
                "  in the judge / bad input",
                f"{stats['failed_judge']} / {stats['failed_input']}" if stats["failed"] else None,
            ),
            ("rows skipped as invalid", stats.get("invalid_rows") or None),
            ("expected score histogram", " ".join(f"{k}:{v}" for k, v in stats["score_histogram"].items())),
            (
                "mean reward by principle",
                ", ".join(f"{k} {v:+.3f}" for k, v in stats["mean_reward_by_principle"].items()) or None,
            ),
            ("agreement with human (derived pairs)", stats.get("agreement_with_human")),
            *run_rows(stats, ScoreJob),
        ],
    )


merge_command(app, ScoreJob, _summary)
