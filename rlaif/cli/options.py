"""The options the command modules share, defined once: the job options every job over an input file takes
(`rlaif label`, `score`, `revise`, `generate`: they become one rlaif.jobs.run.JobOptions), the sampling options
(`generate`, `revise`, `eval winrate`), the Ray options and the HTTP servers' address. No command module imports
another; they all import this one (and common.py for the error path and the exit codes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..cluster.connect import RayOptions
from ..config.sampling import SamplingConfig
from ..config.yamlfile import load_model
from ..jobs.run import JobOptions
from .common import fail, guard

FORMAT = typer.Option(None, "--format", help="jsonl, json, parquet or hf_dataset (default: detected).")
MAX_REQUESTS = typer.Option(
    None, help="Cap on the requests this job sends, over all its runs (replaces the judge config's)."
)
MAX_COST = typer.Option(None, help="Cap on this job's estimated cost, over all its runs (replaces the judge config's).")
QUIET = typer.Option(False, help="No progress bar.")
SHARD = "I/N: {} a disjoint 1/N share of the {}."
# help is rich markup: "[ray]" unescaped would be read as a style and left out
RAY = typer.Option(
    False,
    "--ray",
    help="Run the work on a Ray cluster: one worker per loaded model (for a judge, "
    "its config's `resources` each), this process the one writer. Needs pip install 'rlaif\\[ray]'.",
)
RAY_ADDRESS = typer.Option(
    None,
    "--ray-address",
    help="With --ray: the cluster to join (default: RAY_ADDRESS, else a cluster started on this machine).",
)
WORKERS = typer.Option(
    None, "--workers", help="With --ray: how many workers (default: as many as the cluster's free resources hold)."
)

# the HTTP servers (`rlaif serve reward`, `rlaif annotate serve`)
HOST = typer.Option(
    "127.0.0.1",
    help="Address to listen on. Beyond loopback it needs --allow-remote; put a reverse "
    "proxy with TLS in front instead.",
)
PORT = typer.Option(8000, min=0, max=65535, help="Port to listen on; 0: a free one, announced at start.")

# sampling
SAMPLING = typer.Option(
    None,
    "--config",
    help="Sampling YAML (temperature, top_p, top_k, max_new_tokens, batch_size, backend); the flags below override it.",
)
TEMPERATURE = typer.Option(None, min=0.0, help="Softmax temperature; 0: greedy (default 1.0).")
TOP_P = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling threshold (default 1.0).")
MAX_NEW = typer.Option(None, min=1, help="Longest response in tokens (default 64).")
SEED = typer.Option(0, help="Sampling seed (the same seed draws the same samples).")
PROMPTS = typer.Option(
    ...,
    help="Prompts: rows with `prompt` (text or chat messages), or any pair or label "
    "file (prompts read once each). JSONL(.gz), JSON, Parquet or a datasets directory.",
)


def retry_failed_option(what: str):
    return typer.Option(
        False, help=f"Run again the {what} whose judge or model call failed (the new record replaces the failed one)."
    )


def allow_failed_option(what: str):
    return typer.Option(False, help=f"Exit 0 even when the folder holds failed {what} (otherwise exit 4).")


def require_options(command: str, options: list[tuple[str, object]]) -> None:
    """Exit 2 naming the (flag, value) options that were not given."""
    missing = [flag for flag, value in options if value is None]
    if missing:
        fail(f"error: missing {', '.join(missing)} (see {command} --help)")


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    """--shard I/N as (I, N); (0, 1) when not given."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
        return i, n
    except ValueError:
        raise typer.BadParameter("use I/N, e.g. 0/4") from None


def ray_options(ray: bool, address: Optional[str], workers: Optional[int]):
    """The --ray options as the jobs take them (None without --ray); --ray-address or --workers alone is refused."""
    if not ray:
        if address is not None or workers is not None:
            fail("error: --ray-address and --workers go with --ray")
        return None

    return guard(lambda: RayOptions(address, workers))


def job_options(flags: dict):
    """The job options a job command's flags give (rlaif.jobs.run.JobOptions), from its parsed parameters
    (`ctx.params`): the flags every job shares keep their names across the commands, and a command without one
    (`rlaif revise` has no --batch-size) gets the default."""

    return JobOptions(
        limit=flags.get("limit"),
        seed=flags.get("seed", 0),
        shard=parse_shard(flags.get("shard")),
        format=flags.get("fmt"),
        batch_size=flags.get("batch_size"),
        skip_invalid=flags.get("skip_invalid", False),
        retry_failed=flags.get("retry_failed", False),
        max_requests=flags.get("max_requests"),
        max_cost=flags.get("max_cost"),
        progress=not flags.get("quiet", False),
        ray=ray_options(flags.get("ray", False), flags.get("ray_address"), flags.get("workers")),
    )


def sampling_config(
    config: Optional[Path], temperature: Optional[float], top_p: Optional[float], max_new_tokens: Optional[int]
):
    """The sampling settings: the `--config` YAML (if any) with the flags that were given on top."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model would drown our own progress
    overrides = {
        k: v
        for k, v in (("temperature", temperature), ("top_p", top_p), ("max_new_tokens", max_new_tokens))
        if v is not None
    }
    return load_model(config, SamplingConfig, overrides) if config else SamplingConfig(**overrides)
