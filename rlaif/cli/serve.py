"""`rlaif serve reward`: the judge as an HTTP reward (OpenRLHF's remote reward-model shape) for RL engines that run
elsewhere (OpenRLHF, verl)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import typer

from ..rewards.batcher import BatchLimits
from .common import fail, guard
from .options import HOST, PORT, RAY_ADDRESS

app = typer.Typer(help="Serve rlaif over HTTP for RL engines that run elsewhere.", no_args_is_help=True)


@app.command("reward")
def serve_reward(
    judge: Path = typer.Option(..., help="Judge YAML."),
    constitution: Optional[Path] = typer.Option(
        None, help="Constitution YAML (default: one generic 'which is better' principle)."
    ),
    mode: Optional[str] = typer.Option(
        None,
        help="A pairwise judge: reference (the default), "
        "2·P(response ≻ reference) − 1; group: a round-robin among the "
        "responses to the same prompt in a request. A score judge "
        "(mode: score in its YAML) rates each response alone "
        "(d-RLAIF): leave --mode out.",
    ),
    reference_model: Optional[str] = typer.Option(
        None,
        help="Directory or hub id of a causal LM: "
        "mode reference samples one reference per prompt "
        "from it (cached) when a request sends none.",
    ),
    reference_max_new_tokens: int = typer.Option(256, min=1, help="Longest reference response."),
    reference_temperature: float = typer.Option(0.0, min=0.0, help="Temperature of reference sampling; 0: greedy."),
    labels_as_references: bool = typer.Option(
        False, help="Use OpenRLHF's `labels` (its --data.label_key column) as reference responses."
    ),
    separator: Optional[str] = typer.Option(
        None,
        help="Text that starts the response in a query "
        "sent without `prompts` (default: the reference model's "
        "assistant marker, then common chat-template markers).",
    ),
    seed: int = typer.Option(0, help="Seed for principle draws and reference sampling."),
    host: str = HOST,
    allow_remote: bool = typer.Option(
        False, help="Allow a --host beyond loopback: anyone who reaches the server can spend the judge."
    ),
    port: int = PORT,
    max_body_mb: float = typer.Option(
        16.0, help="Largest request body in MB (2^20 bytes); a larger one gets 413 before it is read."
    ),
    # batching concurrent requests (docs/serving.md)
    max_batch_size: int = typer.Option(
        BatchLimits.max_batch_size, help="Most queries judged in one batch (1: each request alone)."
    ),
    max_wait_ms: float = typer.Option(
        BatchLimits.max_wait_ms, help="How long the oldest waiting query waits for more to fill its batch."
    ),
    max_queue: int = typer.Option(
        BatchLimits.max_queue, help="Most queries waiting; past it a request gets 503 with Retry-After."
    ),
    max_in_flight: Optional[int] = typer.Option(
        None,
        help="Most batches judged at once (default: the judge's `concurrency` for an openai judge, 1 for a "
        "local one). --max-batch-size 1 --max-in-flight 1 judges one query at a time.",
    ),
    # Scale-out on Ray Serve
    ray: bool = typer.Option(
        False,
        "--ray",
        help="Serve from a Ray Serve deployment: --replicas replicas, each holding one judge (its config's "
        "`resources` each), behind Ray Serve's proxy on --host and --port. Needs pip install 'rlaif\\[ray]'.",
    ),
    ray_address: Optional[str] = RAY_ADDRESS,
    replicas: Optional[int] = typer.Option(None, help="With --ray: how many replicas (default 1)."),
) -> None:
    """Serve the judge as a reward: POST /get_reward (OpenRLHF's remote reward shape), GET /health."""
    if mode not in (None, "reference", "group"):
        fail(f"error: --mode must be reference or group, got {mode!r}")
    if not ray and (ray_address is not None or replicas is not None):
        fail("error: --ray-address and --replicas go with --ray")

    def run():
        # lazy: fastapi (the human extra) and, with --ray, Ray Serve: rlaif --help does without them
        if ray:
            from ..rewards.ray_serve import serve_on_ray

            serve = partial(serve_on_ray, address=ray_address, replicas=1 if replicas is None else replicas)
        else:
            from ..rewards.server import serve

        serve(
            judge,
            constitution,
            host=host,
            port=port,
            allow_remote=allow_remote,
            max_body_mb=max_body_mb,
            limits=BatchLimits(max_batch_size, max_wait_ms, max_queue, max_in_flight),
            mode=mode,
            reference_model=reference_model,
            separator=separator,
            labels_as_references=labels_as_references,
            reference_max_new_tokens=reference_max_new_tokens,
            reference_temperature=reference_temperature,
            seed=seed,
        )

    guard(run)
