"""`rlaif label` (a resumable labelling job: pairs → judge in both orders → labels.jsonl) and `rlaif label merge`
(combine the folders of a sharded job)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..jobs.run import run_job
from ..labeling.job import LabelJob, judge_advice
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

app = typer.Typer(help="Label pairs with a judge under a constitution (and merge shards).", invoke_without_command=True)


@app.callback()
def label_cmd(
    ctx: typer.Context,
    pairs: Optional[Path] = typer.Option(None, help="Pairs: JSONL(.gz), JSON, Parquet or a saved datasets directory."),
    constitution: Optional[Path] = typer.Option(None, help="Constitution YAML."),
    judge: Optional[Path] = typer.Option(None, help="Judge YAML (judges/default.yaml: the embedded SmolLM2)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output directory (resumes if it exists)."),
    limit: Optional[int] = typer.Option(None, help="Label only the first N pairs of the input."),
    seed: int = typer.Option(0, help="Seed for principle draws and the order of human-labelled pairs."),
    batch_size: Optional[int] = typer.Option(None, help="Pairs per judge call (default: the judge's)."),
    shard: Optional[str] = typer.Option(None, help="I/N: label a disjoint 1/N share of the pairs."),
    fmt: Optional[str] = FORMAT,
    skip_invalid: bool = typer.Option(False, help="Record invalid rows as failed and go on."),
    max_chars: int = typer.Option(100_000, help="Reject pairs longer than this many characters."),
    retry_failed: bool = retry_failed_option("pairs"),
    allow_failed: bool = allow_failed_option("pairs"),
    relabel_changed: bool = typer.Option(
        False,
        help="Label again a pair whose id was labelled with other content; the old label moves to superseded.jsonl.",
    ),
    member_labels: Optional[list[Path]] = typer.Option(
        None,
        "--member-labels",
        help="With a jury: one member's own label or score folder (repeatable); its verdicts are taken from there "
        "instead of judging again, where the stored record is what the member would write now.",
    ),
    max_requests: Optional[int] = MAX_REQUESTS,
    max_cost: Optional[float] = MAX_COST,
    quiet: bool = QUIET,
    ray: bool = RAY,
    ray_address: Optional[str] = RAY_ADDRESS,
    workers: Optional[int] = WORKERS,
) -> None:
    """Label pairs: rlaif label --pairs FILE --constitution FILE --judge FILE --out DIR."""
    if ctx.invoked_subcommand is not None:
        return
    require_options(
        "rlaif label", [("--pairs", pairs), ("--constitution", constitution), ("--judge", judge), ("--out", out_dir)]
    )
    options = job_options(ctx.params)

    job = LabelJob(relabel_changed=relabel_changed, max_chars=max_chars, member_labels=tuple(member_labels or ()))
    result = guard(lambda: run_job(job, pairs, constitution, judge, out_dir, options))
    stats = result.stats
    _summary(stats, f"labels in {out_dir}")
    advice = judge_advice(stats)
    if advice:
        print(advice)
    exit_if_capped(result, stats, "everything labelled")
    exit_if_failed(
        stats["failed_judge"], allow_failed, stats, out_dir, "pairs have no label", "the judge failed", "the judge"
    )


def _summary(stats: dict, title: str) -> None:
    print_table(
        title,
        [
            ("pairs", stats["pairs"]),
            ("ok", stats["ok"]),
            ("failed", stats["failed"]),
            (
                "  in the judge / bad input",
                f"{stats['failed_judge']} / {stats['failed_input']}" if stats["failed"] else None,
            ),
            (
                "  this run / before",
                f"{stats['failed_this_run']} / {stats['failed_before']}"
                if stats["failed"] and "failed_this_run" in stats
                else None,
            ),
            (
                "retried / relabelled this run",
                f"{stats['retried_this_run']} / {stats['relabelled_this_run']}"
                if stats.get("retried_this_run") or stats.get("relabelled_this_run")
                else None,
            ),
            ("labels a / b / tie", " / ".join(str(stats["labels"][k]) for k in ("a", "b", "tie"))),
            ("position consistency", stats["position_consistency"]),
            ("agreement with human (ties = disagree)", stats.get("agreement_with_human")),
            ("agreement, single order", stats.get("agreement_single_order")),
            (
                "member verdicts reused",
                ", ".join(f"{name} {n}" for name, n in stats["member_verdicts_reused"].items())
                if "member_verdicts_reused" in stats
                else None,
            ),
            *run_rows(stats, LabelJob),
        ],
    )


merge_command(app, LabelJob, _summary)
