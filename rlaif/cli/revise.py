"""`rlaif revise`: Constitutional AI's supervised stage as a resumable job (prompts → first answer → critique and
revision rounds under the constitution's principles → revisions.jsonl), and its summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..jobs.run import run_job
from ..revision.job import ReviseJob
from .common import exit_if_capped, exit_if_failed, guard, print_table, run_rows
from .options import (
    FORMAT,
    MAX_COST,
    MAX_NEW,
    MAX_REQUESTS,
    QUIET,
    RAY,
    RAY_ADDRESS,
    SAMPLING,
    TEMPERATURE,
    TOP_P,
    WORKERS,
    allow_failed_option,
    job_options,
    require_options,
    retry_failed_option,
    sampling_config,
)


def revise_cmd(
    ctx: typer.Context,
    prompts: Optional[Path] = typer.Option(
        None,
        help="Prompts: rows with `prompt` (text or chat "
        "messages) and optionally `response` (the answer to start "
        "from); JSONL(.gz), JSON, Parquet or a datasets directory.",
    ),
    constitution: Optional[Path] = typer.Option(
        None, help="Constitution YAML; its principles with critique and revision requests are drawn per round."
    ),
    model: Optional[Path] = typer.Option(
        None,
        help="Model YAML, as for judges (judges/default.yaml: "
        "the embedded SmolLM2; backend python: a reviser function).",
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output directory (resumes if it exists)."),
    rounds: int = typer.Option(2, help="Critique-revision rounds per prompt, 1 to 16."),
    limit: Optional[int] = typer.Option(None, help="Revise only the first N prompts of the input."),
    seed: int = typer.Option(0, help="Seed of the principle draws and of sampling."),
    shard: Optional[str] = typer.Option(None, help="I/N: revise a disjoint 1/N share of the prompts."),
    fmt: Optional[str] = FORMAT,
    config: Optional[Path] = SAMPLING,
    temperature: Optional[float] = TEMPERATURE,
    top_p: Optional[float] = TOP_P,
    max_new_tokens: Optional[int] = MAX_NEW,
    retry_failed: bool = retry_failed_option("chains"),
    allow_failed: bool = allow_failed_option("chains"),
    max_requests: Optional[int] = MAX_REQUESTS,
    max_cost: Optional[float] = MAX_COST,
    quiet: bool = QUIET,
    ray: bool = RAY,
    ray_address: Optional[str] = RAY_ADDRESS,
    workers: Optional[int] = WORKERS,
) -> None:
    """Critique and revise answers under a constitution: rlaif revise --prompts FILE --constitution FILE --model
    FILE --out DIR."""
    require_options(
        "rlaif revise",
        [("--prompts", prompts), ("--constitution", constitution), ("--model", model), ("--out", out_dir)],
    )
    options = job_options(ctx.params)

    def run():
        sampling = sampling_config(config, temperature, top_p, max_new_tokens)
        return run_job(ReviseJob(rounds=rounds, sampling=sampling), prompts, constitution, model, out_dir, options)

    result = guard(run)
    stats = result.stats
    _summary(stats, f"revisions in {out_dir}")
    exit_if_capped(result, stats, "every chain finished")
    exit_if_failed(
        stats["failed"],
        allow_failed,
        stats,
        out_dir,
        "prompts have no revision",
        "a step of their chain failed",
        "the model",
    )


def _summary(stats: dict, title: str) -> None:
    cut = stats["cut_at_max_new_tokens"]
    print_table(
        title,
        [
            ("prompts", stats["prompts"]),
            ("ok", stats["ok"]),
            ("failed", stats["failed"]),
            (
                "  this run / before",
                f"{stats['failed_this_run']} / {stats['failed_before']}" if stats["failed"] else None,
            ),
            ("rounds", stats["rounds"]),
            ("first answers from the input", stats["initial_from_input"] or None),
            (
                "mean length, first answer → final (chars)",
                f"{stats['mean_initial_chars']} → {stats['mean_final_chars']}" if stats["ok"] else None,
            ),
            ("final differs from first answer", stats["final_differs_from_initial"]),
            (
                "cut at max_new_tokens: answers / critiques / revisions",
                f"{cut['initial']} / {cut['critique']} / {cut['revision']}",
            ),
            *run_rows(
                stats,
                ReviseJob,
                ("retried this run", stats.get("retried_this_run") or None),
                ("tokens generated this run", stats.get("run_completion_tokens") or None),
            ),
        ],
    )
