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
from typing import Optional

from ..cluster.connect import ClusterError, RayOptions, connect
from ..cluster.pool import bundle, plan_workers
from ..numbers import positive_problem
from ..serving import listening, port_of, url
from .batcher import BatchLimits, answers_of
from .server import RewardService, announce, batches_in_flight, build_service, checked_config, create_app

APP = "rlaif-reward"  # the Serve application's name on the cluster: one reward server per cluster


class ServeBatcher:
    """A replica's batching by Ray Serve's `@serve.batch`, in the shape the app submits to (a Batcher's `submit`
    and `figures`): up to `max_batch_size` queries per RewardService.judge call, a request counted as its queries
    and never split (one larger than the maximum fills a batch alone), judged off the event loop so that requests
    keep arriving meanwhile, as many batches at once as the judge takes (server.batches_in_flight)."""

    def __init__(self, service: RewardService, limits: BatchLimits):
        from ray import serve

        self.service, self.batches, self.queries = service, 0, 0
        size = limits.max_batch_size
        self._batch = serve.batch(
            max_batch_size=size,
            batch_wait_timeout_s=limits.max_wait_ms / 1000.0,
            batch_size_fn=lambda items: sum(min(len(i), size) for i in items),
            max_concurrent_batches=batches_in_flight(service.reward.judge.config, limits),
        )(self._judge)

    async def submit(self, item, size: int, gone) -> dict:
        answer = await self._batch(item)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def _judge(self, items: list) -> list:
        import asyncio

        out = await asyncio.to_thread(answers_of, self.service.judge, items)
        self.batches += 1
        self.queries += sum(map(len, items))
        return out

    def figures(self) -> dict:
        return {"batches": self.batches, "mean_batch_size": self.queries / self.batches if self.batches else None}


class RewardReplica:
    """One Ray Serve replica: a judge loaded into a RewardService, behind the in-process app (create_app) with its
    requests batched by ServeBatcher."""

    def __init__(self, config, constitution, max_body_mb: float, limits: BatchLimits, options):
        self.service = build_service(config, constitution, **options)
        self.asgi = create_app(self.service, max_body_mb, limits, ServeBatcher(self.service, limits))

    def health(self) -> dict:
        return self.service.health()

    def __serve_build_asgi_app__(self):
        return self.asgi


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
    limits: BatchLimits = BatchLimits(),
    **kwargs,
) -> None:
    """Deploy the reward server on the Ray cluster at `address` (None: RAY_ADDRESS, else one started here) as
    `replicas` replicas behind Ray Serve's proxy on host:port, and serve until Ctrl-C or SIGTERM, which take the
    deployment down (a Serve application outlives its driver otherwise, and would keep its judges loaded)."""
    config = checked_config(judge, host, allow_remote, max_body_mb, kwargs.get("mode"), limits)
    refusal = positive_problem(replicas, "--replicas")
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
        # the batches being judged, and the next one filling meanwhile
        max_ongoing_requests=(batches_in_flight(config, limits) + 1) * limits.max_batch_size,
        ray_actor_options=actor,
        **group,
    )
    app = deployment.bind(config, constitution, max_body_mb, limits, kwargs)
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
