"""Labelling on a Ray cluster (`rlaif label --ray`): the runner that the label job's pass hands its batches to
instead of judging them in-process. Each worker is a Ray actor holding one judge, built from the job's judge config;
the driver plans every pair, skips what is done, enforces the caps and writes the store, exactly as without Ray
(rlaif/data/jobpass.py), so the records are those of the in-process job.

Spending caps hold per job: each batch goes out with what the job has spent so far, the worker's judge counts on
from there and stops the batch at the cap, and the driver stops sending batches once one comes back stopped. The
batches already in flight can each spend up to the cap's remainder: the overshoot is at most a few batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Optional

from ..cluster.connect import RayOptions, cluster_address, connect
from ..cluster.pool import Finished, Worker, WorkerPool, default_workers
from ..config.judge import JudgeBase
from ..constitution import Constitution
from ..data.jobpass import Done
from ..judges.registry import load_judge
from ..records import LabelRecord, Spend
from .score import PlannedPair, StoppedEarly, score_planned


@dataclass
class Judged:
    """What a worker sends back for a batch: its records, why it stopped early (a cap), what it spent, how long."""

    records: list[LabelRecord]
    stopped: Optional[str]
    spent: Spend
    busy_s: float


class JudgeWorker(Worker):
    """A Ray actor holding one loaded judge; Ray restarts it (loading the judge again) if its process dies."""

    def __init__(self, judge_config: JudgeBase, constitution: Constitution):
        self.judge = load_judge(judge_config)
        self.constitution = constitution

    def judge_batch(self, batch: list[PlannedPair], spent_before: Spend) -> Judged:
        started = time.perf_counter()
        self.judge.carry_spend(spent_before)
        try:
            records, stopped = score_planned(self.judge, batch, self.constitution), None
        except StoppedEarly as e:
            records, stopped = e.records, f"budget: {e}"
        spent = self.judge.spent()
        return Judged(records, stopped, Spend(spent.requests - spent_before.requests, spent.cost - spent_before.cost),
                      time.perf_counter() - started)


class RayJudging:
    """The label pass's runner on Ray (rlaif.data.jobpass.Runner): batches out to the workers, records back."""

    def __init__(self, options: RayOptions):
        self.ray = connect(options)
        self.options = options
        self.pool: Optional[WorkerPool] = None
        self._spent = Spend()

    def settings(self, judge_config: JudgeBase) -> dict:
        """The Ray settings the manifest and stats carry: the cluster, the workers, what each reserves."""
        resources = judge_config.resources
        self.workers = self.options.workers or default_workers(self.ray, resources)
        return {"address": cluster_address(self.ray), "workers": self.workers,
                "resources": resources.model_dump(mode="json"), "version": self.ray.__version__}

    def start(self, judge_config: JudgeBase, constitution: Constitution, spent: Spend) -> "RayJudging":
        self._spent = spent
        bundles = getattr(judge_config, "tensor_parallel_size", 1)
        self.pool = WorkerPool(self.ray, JudgeWorker, (judge_config, constitution), judge_config.resources,
                               self.workers, bundles=bundles).start()
        return self

    def submit(self, batch: list) -> list[Done]:
        finished = self.pool.submit(batch, "judge_batch", [pl for pl, _ in batch], self._spent)
        return [self._done(f) for f in finished]

    def drain(self) -> Iterator[Done]:
        return (self._done(f) for f in self.pool.drain())

    def _done(self, finished: Finished) -> Done:
        judged: Judged = finished.result
        self._spent = Spend(self._spent.requests + judged.spent.requests, self._spent.cost + judged.spent.cost)
        self.pool.record(finished.worker, len(judged.records), judged.busy_s)
        return Done(finished.payload, judged.records, judged.stopped)

    def spent(self) -> Spend:
        return self._spent

    def note(self) -> Optional[str]:
        alive = self.pool.alive()
        return None if alive is None else f"{alive}/{self.pool.workers} workers alive"

    def stats(self) -> dict:
        alive = self.pool.alive() if self.pool else None
        per_worker = [s.as_dict() for s in self.pool.stats] if self.pool else []
        return {"workers": self.workers, "workers_alive": alive,
                "per_worker": [{"pairs": w["items"], "busy_s": w["busy_s"], "pairs_per_s": w["items_per_s"]}
                               for w in per_worker]}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
