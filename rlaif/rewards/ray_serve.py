"""`rlaif serve reward --ray`: the reward server as a Ray Serve deployment, for a judge that outgrows one device. Each
of N replicas holds one judge, reserving the judge config's `resources` as a `--ray` job's workers do, serves the
in-process app (rlaif.rewards.server: the same routes, parsing and replies) and batches its requests with Ray Serve's
`@serve.batch`; Ray Serve's proxy spreads the requests over the replicas and restarts one that dies.

Ray Serve is imported here and in the replicas, lazily, as Ray is in rlaif/cluster/connect.py (which this module uses
to join the cluster): the `ray` extra brings both, and `rlaif serve reward` without --ray imports neither.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

from ..cluster.connect import ClusterError, RayOptions, connect
from ..cluster.pool import bundle, plan_workers
from ..numbers import positive_problem
from ..serving import listening, port_of, url
from .judge_reward import JudgeReward, RewardBatch
from .server import RewardRequest, RewardService, announce, build_service, checked_config, create_app

APP = "rlaif-reward"  # the Serve application's name on the cluster: one reward server per cluster
MAX_BATCH_SIZE = 32  # queries per judge call
MAX_WAIT_MS = 10.0  # how long a batch waits to fill after its first request arrived


class Inputs(NamedTuple):
    """One request's share of a batch: what JudgeReward.rewards takes for it."""

    prompts: list
    responses: list[str]
    references: Optional[list[str]]


def judge_together(reward: JudgeReward, requests: list[Inputs]) -> list:
    """The requests of one batch judged in one JudgeReward.rewards call, each answered with its own slice (a
    RewardBatch), or with the ValueError the judge raised for its inputs. Group mode judges each request alone: a
    round-robin among a prompt's responses must not take in another request's. When the one call is refused (a
    ValueError: something in one request's inputs), each request is judged alone, so only that one is refused."""
    if reward.mode == "group" or len(requests) == 1:
        return [_alone(reward, r) for r in requests]
    prompts, responses = [x for r in requests for x in r.prompts], [x for r in requests for x in r.responses]
    refs = [x for r in requests for x in r.references] if reward.mode == "reference" else None
    try:
        batch = reward.rewards(prompts, responses, refs)
    except ValueError:
        return [_alone(reward, r) for r in requests]
    out, start = [], 0
    for r in requests:
        end = start + len(r.prompts)
        out.append(RewardBatch(batch.rewards[start:end], batch.failed[start:end]))
        start = end
    return out


def _alone(reward: JudgeReward, request: Inputs):
    try:
        return reward.rewards(*request)
    except ValueError as e:
        return e


@dataclass
class ReplicaService(RewardService):
    """A replica's service: each request parsed and answered as in-process (RewardService.inputs and reply), its
    judging handed to `judge`, the replica's @serve.batch method, run on the replica's event loop."""

    judge: Optional[Callable] = None
    batches: int = field(default=0, init=False)
    batched_queries: int = field(default=0, init=False)

    def rewards(self, req: RewardRequest) -> dict:
        import anyio  # fastapi's: the app answers this request in one of anyio's worker threads

        inputs = Inputs(*self.inputs(req))
        batch = anyio.from_thread.run(self.judge, inputs)
        if isinstance(batch, Exception):
            raise batch
        self.requests += 1
        return self.reply(batch)

    def health(self) -> dict:
        mean = self.batched_queries / self.batches if self.batches else None
        return {**super().health(), "batches": self.batches, "mean_batch_size": mean}


class RewardReplica:
    """One Ray Serve replica: a judge loaded into a ReplicaService, behind the in-process app (create_app), its
    requests batched by @serve.batch up to `max_batch_size` queries; a request with more is judged alone."""

    def __init__(self, config, constitution, max_body_mb: float, max_batch_size: int, max_wait_ms: float, options):
        from ray import serve

        base = build_service(config, constitution, **options)
        self.service = ReplicaService(base.reward, base.splitter, base.sampler, base.labels_as_references)
        self.max_body_mb = max_body_mb
        # A request counts its queries, up to the maximum: one larger than that fills a batch alone (Ray Serve
        # refuses an item larger than the batch), and a request is never split, so group mode keeps its responses.
        self.service.judge = serve.batch(
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=max_wait_ms / 1000.0,
            batch_size_fn=lambda items: sum(min(len(i.prompts), max_batch_size) for i in items),
        )(self._judge)

    async def _judge(self, requests: list[Inputs]) -> list:
        import asyncio

        # off the event loop, so that requests keep arriving (and filling the next batch) while this one is judged;
        # one batch at a time (serve.batch's max_concurrent_batches=1): the judge holds one model
        out = await asyncio.to_thread(judge_together, self.service.reward, requests)
        self.service.batches += 1
        self.service.batched_queries += sum(len(r.prompts) for r in requests)
        return out

    def health(self) -> dict:
        return self.service.health()

    def __serve_build_asgi_app__(self):
        return create_app(self.service, self.max_body_mb)


def serve_on_ray(
    judge,
    constitution=None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    allow_remote: bool = False,
    max_body_mb: float = 16.0,
    address: Optional[str] = None,
    replicas: int = 1,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_wait_ms: float = MAX_WAIT_MS,
    **kwargs,
) -> None:
    """Deploy the reward server on the Ray cluster at `address` (None: RAY_ADDRESS, else one started here) as
    `replicas` replicas behind Ray Serve's proxy on host:port, and serve until Ctrl-C or SIGTERM, which take the
    deployment down (a Serve application outlives its driver otherwise, and would keep its judges loaded)."""
    config = checked_config(judge, host, allow_remote, max_body_mb, kwargs.get("mode"))
    refusal = positive_problem(replicas, "--replicas") or positive_problem(max_batch_size, "--max-batch-size")
    if refusal:
        raise ValueError(refusal)
    with listening(host, port) as sockets:  # a taken port or a bad host is one line; --port 0 picks a free port,
        port, where = port_of(sockets), url(host, sockets, "/get_reward")  # given back for Ray Serve's proxy to bind
    ray = connect(RayOptions(address))
    from ray import serve

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines narrate each step of a deployment
    resources, ranks = config.resources, getattr(config, "tensor_parallel_size", 1)
    replicas = plan_workers(ray, resources, replicas, "--replicas")
    actor = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    group = {}
    if ranks > 1:  # as a --ray job's worker: its engine's ranks in a placement group on one node
        share = bundle(resources, ranks)
        actor = {"num_cpus": share.get("CPU", 0), "num_gpus": 0}
        group = {"placement_group_bundles": [share] * ranks, "placement_group_strategy": "STRICT_PACK"}
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(
        serve.ingress()(RewardReplica),
        name="reward",
        num_replicas=replicas,
        max_ongoing_requests=2 * max_batch_size,  # one batch judged while the next fills
        ray_actor_options=actor,
        **group,
    )
    app = deployment.bind(config, constitution, max_body_mb, max_batch_size, max_wait_ms, kwargs)
    stop = _stop_on_signals()
    try:
        handle = serve.run(app, name=APP, route_prefix="/", blocking=False)
        health = handle.health.remote().result()
        announce(
            health,
            where,
            host if allow_remote else None,
            kwargs.get("labels_as_references", False),
            f", {replicas} replica{'s' if replicas > 1 else ''} on Ray Serve",
        )
        while not stop.wait(0.5):  # a timed wait, so that the signal handler runs promptly
            pass
    except RuntimeError as e:  # Serve's own failures: a replica whose judge fails to load, a taken port
        raise ClusterError(f"Ray Serve could not run the reward server: {str(e).splitlines()[0][:300]}") from None
    finally:
        serve.delete(APP)


def _stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, so that either ends the server through `serve_on_ray`'s cleanup."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
