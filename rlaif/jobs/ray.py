"""The runner a job's pass (rlaif/jobs/run.py) hands its batches to when it runs on Ray: batches out to a pool of
workers (rlaif/cluster/pool.py), records back to the driver, which stays the one writer. Every worker is a ModelWorker:
a job brings how to load its model and its batch function, the same one its pass calls when it runs in-process.

Spending caps hold per job, exactly as in-process: with a cap, one batch is out at a time, sent with what the job
has spent so far; the worker's model counts on from there and stops the batch at the cap, and the driver sends no
more. (Batches side by side would each see the same remainder and could together overshoot it. A judge with a cap
is an HTTP API, which keeps its own requests in flight inside one batch.)

A capped batch is never run again: when its worker dies mid-batch, what that attempt had sent died with it, and
Ray's retry would count on from the same start, paying twice for the part of the cap the lost attempt used. The
driver counts the lost attempt as having spent the rest of the cap, the exact bound on what it can have sent (its
judge stops at the cap; for max_cost, as in-process, plus what its requests in flight when it crossed the cap cost),
and the job stops there, keeping what was written. Without a cap, Ray runs the batch again, and spend.json counts
the attempts that came back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from ..cluster.connect import RayOptions, cluster_address, connect
from ..cluster.pool import Finished, Worker, WorkerPool, plan_workers
from ..config.judge import JudgeBase, WorkerResources
from ..records import Spend
from .folder import cap_holders, caps, up_to_caps


@dataclass
class Done:
    """A batch back from a runner (rlaif.jobs.run.Runner: in-process, or this one on Ray): its items (each with the
    record it replaces), their records, and why the job must stop (a spending cap reached inside the batch), if it
    must."""

    batch: list
    records: list
    stopped: Optional[str] = None


@dataclass
class Worked:
    """A batch's result from a worker: its records, why it stopped early (a cap), what it spent, how long it took."""

    records: list
    stopped: Optional[str]
    spent: Spend
    busy_s: float


def timed(spent_before: Spend, work: Callable[[], tuple[list, Optional[str]]], spent: Callable[[], Spend]) -> Worked:
    """Run a worker's `work` (records, why stopped) and say what it spent beyond `spent_before` and how long."""
    started = time.perf_counter()
    records, stopped = work()
    now = spent()
    return Worked(
        records,
        stopped,
        now - spent_before,
        time.perf_counter() - started,
    )


class ModelWorker(Worker):
    """A Ray actor holding one model, `load()` (a judge, a reviser), and working batches with `work(model, batch)`,
    the job's own batch function (the one its pass calls in-process), which returns (records, why it stopped).
    Ray restarts it, loading the model again, if its process dies."""

    def __init__(self, load: Callable[[], Any], work: Callable[[Any, list], tuple[list, Optional[str]]]):
        self.model, self.work = load(), work

    def work_batch(self, batch: list, spent_before: Spend) -> Worked:
        self.model.carry_spend(spent_before)  # the cap counts what the job spent before this batch
        return timed(spent_before, lambda: self.work(self.model, batch), self.model.spent)


class RayRunner:
    """A pass's runner (rlaif.jobs.run.Runner) on Ray: ModelWorkers work the batches; `unit` names the items
    in the stats ("pairs", "prompts")."""

    def __init__(self, options: RayOptions, unit: str):
        self.ray = connect(options)
        self.options, self.unit = options, unit
        self.pool: Optional[WorkerPool] = None
        self.workers = 0
        self._spent = Spend()

    def settings(self, config: JudgeBase) -> dict:
        """Take the workers' model config (what each reserves, the devices it spans, whether a cap holds) and
        return the Ray settings the manifest and stats carry: the cluster, the workers, what each reserves. A
        config that reserves nothing itself (`resources` None: a policy to sample) takes one CPU, and one GPU when
        the cluster has GPUs."""
        resources = config.resources or WorkerResources(
            num_gpus=1.0 if self.ray.cluster_resources().get("GPU") else 0.0
        )
        self.resources = resources
        self.bundles = getattr(config, "tensor_parallel_size", 1)  # a worker spanning N GPUs: a placement group
        self.config = config
        self.workers = plan_workers(self.ray, resources, self.options.workers)
        return {
            "address": cluster_address(self.ray),
            "workers": self.workers,
            "resources": resources.model_dump(mode="json"),
            "version": self.ray.__version__,
        }

    def start(self, load: Callable[[], Any], work: Callable, spent: Spend) -> "RayRunner":
        """Start the workers as `settings` planned them, each a ModelWorker(load, work) (picklable callables: a
        partial of the job's loader and of its batch function); the job has spent `spent` in its earlier runs
        (with a cap, one batch is out at a time)."""
        self._spent = spent
        capped = bool(cap_holders(self.config))
        self.pool = WorkerPool(
            self.ray,
            ModelWorker,
            (load, work),
            self.resources,
            self.workers,
            self.bundles,
            max_in_flight=1 if capped else 0,
            retry_batches=not capped,
        ).start()
        return self

    def submit(self, batch: list) -> list[Done]:
        done = [self._done(f) for f in self.pool.room()]  # first: what they spent counts for this batch's cap
        self.pool.submit(batch, "work_batch", [planned for planned, _ in batch], self._spent)
        return done + [self._done(f) for f in self.pool.finished()]

    def drain(self) -> Iterator[Done]:
        return (self._done(f) for f in self.pool.drain())

    def _done(self, finished: Finished) -> Done:
        if finished.lost:  # a capped batch (see the module's docstring)
            self._spent = up_to_caps(self._spent, self.config)
            limits = ", ".join(
                f"{f'{name}: ' if name else ''}{cap}={value:g}"
                for name, c in cap_holders(self.config)
                for cap, value in caps(c).items()
            )
            return Done(
                finished.payload,
                [],
                f"budget: a worker died mid-batch, and what it had sent cannot be "
                f"known: the rest of the cap ({limits}) counts as spent",
            )
        worked: Worked = finished.result
        self._spent = self._spent + worked.spent
        self.pool.record(finished.worker, len(worked.records), worked.busy_s)
        return Done(finished.payload, worked.records, worked.stopped)

    def spent(self) -> Spend:
        return self._spent

    def note(self) -> Optional[str]:
        alive = self.pool.alive()
        return None if alive is None else f"{alive}/{self.workers} workers alive"

    def stats(self) -> dict[str, Any]:
        """For stats.json: the workers, how many are alive, and each one's items and rate (over its busy time)."""
        per_worker = [s.as_dict() for s in self.pool.stats] if self.pool else []
        return {
            "workers": self.workers,
            "workers_alive": self.pool.alive(fresh=True) if self.pool else None,
            "per_worker": [
                {self.unit: w["items"], "busy_s": w["busy_s"], f"{self.unit}_per_s": w["items_per_s"]}
                for w in per_worker
            ],
        }

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
