"""Rating on a Ray cluster (`rlaif score --ray`): the worker that rates a batch of responses, each a Ray actor
holding one score judge built from the job's judge config. The score job's pass hands its batches to
rlaif.cluster.runner.RayRunner with this worker; the driver plans every response (its principle and key), skips what
is done, enforces the caps and writes the store, as without Ray.
"""

from __future__ import annotations

from ..cluster.connect import RayOptions
from ..cluster.pool import Worker
from ..cluster.runner import RayRunner, Worked, timed
from ..config.judge import JudgeBase
from ..constitution import Constitution
from ..judges.registry import load_judge
from ..records import Spend
from .rate import PlannedResponse, StoppedEarly, rate_planned


class ScoreWorker(Worker):
    """A Ray actor holding one loaded score judge; Ray restarts it (loading the judge again) if its process dies."""

    def __init__(self, judge_config: JudgeBase, constitution: Constitution):
        self.judge = load_judge(judge_config)
        self.constitution = constitution

    def rate_batch(self, batch: list[PlannedResponse], spent_before: Spend) -> Worked:
        self.judge.carry_spend(spent_before)
        return timed(spent_before, lambda: self._rate(batch), self.judge.spent)

    def _rate(self, batch: list[PlannedResponse]):
        try:
            return rate_planned(self.judge, batch, self.constitution), None
        except StoppedEarly as e:
            return e.records, f"budget: {e}"


def ray_rating(options: RayOptions) -> RayRunner:
    return RayRunner(options, ScoreWorker, "rate_batch", "responses")
