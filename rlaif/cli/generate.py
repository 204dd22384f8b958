"""`rlaif generate`: N samples per prompt from a policy, written as every pair of them for `rlaif label`: a resumable
job (rlaif/policy/generate.py). torch is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import exit_if_failed, guard
from .options import (
    MAX_NEW,
    PROMPTS,
    QUIET,
    RAY,
    RAY_ADDRESS,
    SAMPLING,
    SEED,
    TEMPERATURE,
    TOP_P,
    WORKERS,
    job_options,
    sampling_config,
)


def generate_cmd(
    ctx: typer.Context,
    policy: str = typer.Option(..., help="Policy: a local model directory or a hub id."),
    prompts: Path = PROMPTS,
    n: int = typer.Option(
        2, min=2, help="Responses per prompt; every pair of them is written (n·(n−1)/2 rows per prompt)."
    ),
    out_file: Path = typer.Option(
        ...,
        "--out",
        help="Output JSONL of pairs, the input of rlaif label; "
        "the job's folder is beside it (pairs.jsonl → pairs.job/), and the "
        "same command run again resumes.",
    ),
    config: Optional[Path] = SAMPLING,
    temperature: Optional[float] = TEMPERATURE,
    top_p: Optional[float] = TOP_P,
    max_new_tokens: Optional[int] = MAX_NEW,
    seed: int = SEED,
    quiet: bool = QUIET,
    ray: bool = RAY,
    ray_address: Optional[str] = RAY_ADDRESS,
    workers: Optional[int] = WORKERS,
) -> None:
    """Sample N responses per prompt from a policy; write every pair of them as input for rlaif label."""
    options = job_options(ctx.params)

    def run():
        # lazy: torch
        from ..policy.generate import generate

        sampling = sampling_config(config, temperature, top_p, max_new_tokens)
        return generate(policy, prompts, out_file, options, n=n, config=sampling)

    result = guard(run)
    print(result.summary())
    exit_if_failed(
        result.job.stats["failed"],
        False,
        result.job.stats,
        result.job.out_dir,
        "prompts have no samples",
        "sampling failed",
        "the policy",
    )
