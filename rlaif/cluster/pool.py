"""A pool of workers on Ray, each an actor holding one loaded model, that the job's driver feeds a batch at a time.

Why actors driven from here and not Ray Data's `map_batches` over an actor pool: the driver already streams the
input (planning each item, skipping what the store holds, stopping at a spending cap) and is the one writer of
the store, so what it needs from Ray is a bounded queue of batches in flight and their results as they finish.
Ray Data would take the input over: its planner reads the source itself, so the planning and the store's resume
check would have to move into its operators or the input be materialised first, and a cap could not stop it
mid-stream. It would also put its streaming executor (and the `ray[data]` extra) between the driver and the
workers, for a job that needs no shuffle, no repartitioning and no spilling: a queue of batches is all it is.
(Not measured against Ray Data here: the choice rests on where the planning, the caps and the writes must stay.)

Faults are Ray's own: each actor is created with `max_restarts` and `max_task_retries`, so when its process dies
(killed, out of memory, its node lost) Ray starts a new one (loading the model again, on any node with room) and
runs the batches it held again there; a batch is given up only after TASK_RETRIES such deaths. That is Ray's
at-least-once execution of actor tasks: a batch whose worker died may be judged twice (an HTTP judge is then paid
twice for it), but its result reaches the driver once, so each pair gets one record. A pool made with
`retry_batches=False` runs no batch again: a batch whose worker died comes back marked `lost`, for a driver that
must account for what the lost attempt did (a job with a spending cap, rlaif/jobs/ray.py). The driver keeps at
most DEPTH batches queued per worker, so its memory stays flat however long the input is.

How many workers start is decided from what the cluster's nodes have free now (`plan_workers`): Ray would hold an
actor it cannot place waiting forever, and a million of them fill its control process's memory.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from ..config.judge import WorkerResources
from .connect import ClusterError

RESTARTS = 8  # per worker, over the job: a node lost now and then is survived, a crash loop is not
TASK_RETRIES = 3  # per batch: a batch that kills its worker every time fails the job instead of looping
DEPTH = 2  # batches queued per worker: one running, one waiting, so no worker idles between batches
ALIVE_EVERY_S = 2.0  # how often the progress line asks the cluster how many workers are alive
READY_NOTE_S = 60.0  # how often a start that waits for room on the cluster says so
SETTLE_S = 5.0  # how long a start waits for resources being freed before it counts what is free


@dataclass
class WorkerStats:
    """What one worker did this run: items, and seconds spent working on them (inside the actor)."""

    items: int = 0
    busy_s: float = 0.0

    def as_dict(self) -> dict:
        return {
            "items": self.items,
            "busy_s": round(self.busy_s, 3),
            "items_per_s": round(self.items / self.busy_s, 4) if self.busy_s > 0 else None,
        }


@dataclass
class Finished:
    """A batch back from a worker: what was sent (`payload`), what the worker returned, and which worker it was."""

    payload: Any
    result: Any
    worker: int
    lost: bool = False  # the worker died running it, and it was not run again (a pool without batch retries)


class WorkerDied(ClusterError):
    """A worker's process died running a batch, and Ray ran the batch no more."""


@dataclass
class WorkerPool:
    """`workers` actors of `actor_class(*args)` on the cluster, with `submit` and `drain` over their `method`."""

    ray: Any
    actor_class: type
    args: tuple
    resources: WorkerResources
    workers: int
    bundles: int = 1  # devices a worker spans (a judge's tensor_parallel_size): one placement group per worker
    max_in_flight: int = 0  # batches out at once; 0: DEPTH per worker
    retry_batches: bool = True  # False: a batch whose worker died comes back `lost` instead of running again
    actors: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    in_flight: dict = field(default_factory=dict)  # ObjectRef -> (worker, payload)
    stats: list[WorkerStats] = field(default_factory=list)
    _alive: tuple[float, int] = (0.0, 0)

    def start(self) -> "WorkerPool":
        """Create the actors and wait until each has loaded its model (so a bad config fails here, in one line)."""
        self.stats = [WorkerStats() for _ in range(self.workers)]
        self.max_in_flight = self.max_in_flight or self.workers * DEPTH
        for _ in range(self.workers):
            options = dict(
                max_restarts=RESTARTS,
                max_task_retries=TASK_RETRIES,
                num_cpus=self.resources.num_cpus,
                num_gpus=self.resources.num_gpus,
            )
            if self.bundles > 1:
                options.update(self._placement())
            self.actors.append(self.ray.remote(self.actor_class).options(**options).remote(*self.args))
        # no retries here: a model that fails to load fails the same way again
        self._wait_ready([a.ready.options(max_task_retries=0).remote() for a in self.actors])
        return self

    def _wait_ready(self, refs: list) -> None:
        """Wait until every worker has loaded its model, saying so now and then when the cluster is slow to place
        them (an autoscaling cluster adding nodes, or more --workers than it has room for)."""
        started = time.time()
        while True:
            ready, waiting = self.ray.wait(refs, num_returns=len(refs), timeout=READY_NOTE_S)
            self.get(ready)  # a worker whose model failed to load fails the job here, in one line
            if not waiting:
                return
            print(
                f"waiting for the Ray cluster to place the workers: {len(ready)} of {len(refs)} ready after "
                f"{time.time() - started:.0f}s ({self.resources.num_cpus:g} CPU, {self.resources.num_gpus:g} GPU "
                f"each; fewer --workers, or more nodes)",
                file=sys.stderr,
                flush=True,
            )

    def _placement(self) -> dict:
        """A worker spanning `bundles` devices: a placement group of that many bundles packed on one node; the
        actor takes bundle 0's CPUs and no GPU, and the tasks it starts (the engine's own workers, one per GPU) are
        placed in the group with it."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        share = bundle(self.resources, self.bundles)
        group = placement_group([share] * self.bundles, strategy="STRICT_PACK")
        self.groups.append(group)
        strategy = PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True
        )
        return dict(num_cpus=share.get("CPU", 0), num_gpus=0, scheduling_strategy=strategy)

    def room(self) -> list[Finished]:
        """Wait until a batch may go out, returning the batches that finished meanwhile: while every worker has
        `DEPTH` queued (or `max_in_flight` are out), the driver waits — the back-pressure that keeps its memory
        flat. Call it before computing what the next batch carries (e.g. what the job has spent so far)."""
        done = []
        while len(self.in_flight) >= self.max_in_flight:
            done.append(self._next())
        return done

    def submit(self, payload: Any, method: str, *args) -> None:
        """Call `method(*args)` on the least busy worker, `payload` kept here until it finishes (what the driver
        needs to write its result). Call `room` first."""
        load = [0] * self.workers
        for worker, _ in self.in_flight.values():
            load[worker] += 1
        worker = min(range(self.workers), key=load.__getitem__)
        call = getattr(self.actors[worker], method)
        ref = (call if self.retry_batches else call.options(max_task_retries=0)).remote(*args)
        self.in_flight[ref] = (worker, payload)

    def finished(self) -> list[Finished]:
        """The batches that have finished by now, without waiting (written at once: a SIGKILL of the driver loses
        only what is in flight)."""
        if not self.in_flight:
            return []
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=0)
        return [self._collect(ref) for ref in ready]

    def drain(self) -> Iterator[Finished]:
        """Every batch still in flight, as each finishes."""
        while self.in_flight:
            yield self._next()

    def _next(self) -> Finished:
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
        return self._collect(ready[0])

    def _collect(self, ref) -> Finished:
        worker, payload = self.in_flight.pop(ref)
        try:
            return Finished(payload, self.get(ref), worker)
        except WorkerDied:
            if self.retry_batches:
                raise
            return Finished(payload, None, worker, lost=True)

    def record(self, worker: int, items: int, busy_s: float) -> None:
        self.stats[worker].items += items
        self.stats[worker].busy_s += busy_s

    def get(self, refs):
        """ray.get, with a worker lost for good (after Ray's restarts and retries) or a model that failed to load
        as one line."""
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return self.ray.get(refs)
        except RayTaskError as e:  # the actor's own code raised: a bug
            raise ClusterError(f"a worker failed: {_cause(e)}") from None
        except RayActorError as e:
            if getattr(e, "actor_init_failed", False):  # its constructor raised: loading the model
                raise ClusterError(f"a worker could not load its model: {_last_line(e)}") from None
            raise WorkerDied(
                f"a worker died and Ray's retries ran out ({TASK_RETRIES} per batch, {RESTARTS} "
                f"restarts per worker): {_first_line(e)}. Everything finished before is kept: run the "
                f"same command again to resume."
            ) from None

    def alive(self, fresh: bool = False) -> Optional[int]:
        """How many workers are alive now (not restarting, not dead), asked of the cluster at most every few
        seconds unless `fresh`; None when the cluster cannot say."""
        checked, count = self._alive
        if not fresh and time.time() - checked < ALIVE_EVERY_S:
            return count
        try:
            from ray._private import state  # no public API for this without the dashboard's state server

            count = sum(state.actors(a._actor_id.hex()).get("State") == "ALIVE" for a in self.actors)
        except Exception:  # noqa: BLE001 - a progress figure, never a reason to stop the job
            return None
        self._alive = (time.time(), count)
        return count

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        if self.groups:
            from ray.util.placement_group import remove_placement_group

            for group in self.groups:
                remove_placement_group(group)
        self.actors, self.groups, self.in_flight = [], [], {}


def _cause(e) -> str:
    """The exception a worker's code raised, as "Type: first line" (not Ray's wrapping of it)."""
    cause = getattr(e, "cause", None) or e
    return f"{type(cause).__name__}: {_first_line(cause)}"


def _last_line(e: BaseException) -> str:
    """The last line of Ray's report of an exception: the worker's own "Type: message"."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(e).__name__


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def bundle(resources: WorkerResources, bundles: int) -> dict:
    """One device's share of a worker spanning `bundles` devices, as a placement group bundle ({"CPU": .., "GPU": ..});
    the group packs all of them on one node (STRICT_PACK), the worker's own process taking bundle 0's CPUs."""
    return {k: v / bundles for k, v in (("CPU", resources.num_cpus), ("GPU", resources.num_gpus)) if v}


def plan_workers(ray, resources: WorkerResources, asked: Optional[int], flag: str = "--workers") -> int:
    """How many workers to start: `asked` (`flag`: --workers, or a Ray Serve deployment's --replicas), or as many
    as fit when None. What fits is counted on the cluster's nodes as they are now, each worker on one node (its
    placement group too): more asked than that is capped, with one line saying so, and none fitting is a
    ClusterError. Nodes an autoscaling cluster would add later are not waited for; resources being freed (the
    workers of a job that just ended) are, for SETTLE_S at most."""
    whole = sum(_fits(node.get("Resources", {}), resources) for node in ray.nodes() if node.get("Alive"))
    wanted, deadline = min(asked or whole, whole), time.time() + SETTLE_S
    while True:
        nodes = _free_per_node(ray)
        fits = sum(_fits(node, resources) for node in nodes)
        if fits >= wanted or time.time() > deadline:
            break
        time.sleep(0.2)
    each = f"{resources.num_cpus:g} CPU" + (f" and {resources.num_gpus:g} GPU" if resources.num_gpus else "")
    if fits < 1:
        most = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={})
        raise ClusterError(
            f"the Ray cluster has no room for one worker of {each} on one node (the most free on a "
            f"node now: {most.get('CPU', 0):g} CPU, {most.get('GPU', 0):g} GPU): lower the judge "
            f"config's resources, or add nodes (an autoscaling cluster: start them first; workers are "
            f"placed on what is free now)"
        )
    if asked is not None and asked > fits:
        print(
            f"{flag} {asked}: the Ray cluster has room for {fits} now, at {each} per worker; starting {fits} "
            f"(nodes an autoscaling cluster adds later are not waited for)",
            file=sys.stderr,
            flush=True,
        )
        return fits
    return asked or fits


def _free_per_node(ray) -> list[dict]:
    """Each live node's free resources."""
    try:
        from ray._private import state  # the per-node figures have no public API without the state server

        return list(state.available_resources_per_node().values())
    except Exception:  # noqa: BLE001 - the cluster's total, as one node, is the next best figure
        return [ray.available_resources()]


def _fits(free: dict, resources: WorkerResources) -> int:
    """How many workers of `resources` fit in one node's `free` resources (1e-9: 0.3 / 0.1 is 2.999… in floats)."""
    needs = [("CPU", resources.num_cpus), ("GPU", resources.num_gpus)]
    return min(int(free.get(name, 0) / need + 1e-9) for name, need in needs if need)


class Worker:
    """What every worker class shares: `ready`, answered once the model is loaded."""

    def ready(self) -> bool:
        return True
