"""Labelling on a Ray cluster (`rlaif label --ray`): the worker that judges a batch, each a Ray actor holding one
judge built from the job's judge config. The label job's pass hands its batches to rlaif.cluster.runner.RayRunner
with this worker instead of judging them here; the driver still plans every pair, skips what is done, enforces the
caps and writes the store, so the records are those of the in-process job.
"""

from __future__ import annotations

from ..cluster.connect import RayOptions
from ..cluster.pool import Worker
from ..cluster.runner import RayRunner, Worked, timed
from ..config.judge import JudgeBase
from ..constitution import Constitution
from ..judges.registry import load_judge
from ..records import Spend
from .score import PlannedPair, StoppedEarly, score_planned


class JudgeWorker(Worker):
    """A Ray actor holding one loaded judge; Ray restarts it (loading the judge again) if its process dies."""

    def __init__(self, judge_config: JudgeBase, constitution: Constitution):
        self.judge = load_judge(judge_config)
        self.constitution = constitution

    def judge_batch(self, batch: list[PlannedPair], spent_before: Spend) -> Worked:
        self.judge.carry_spend(spent_before)
        return timed(spent_before, lambda: self._score(batch), self.judge.spent)

    def _score(self, batch: list[PlannedPair]):
        try:
            return score_planned(self.judge, batch, self.constitution), None
        except StoppedEarly as e:
            return e.records, f"budget: {e}"


def ray_judging(options: RayOptions) -> RayRunner:
    return RayRunner(options, JudgeWorker, "judge_batch", "pairs")
