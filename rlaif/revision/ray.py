"""Revising on a Ray cluster (`rlaif revise --ray`): the worker that runs a batch of critique-revision chains, each
a Ray actor holding one model built from the job's model config. The revise job's pass hands its batches to
rlaif.cluster.runner.RayRunner with this worker; the driver plans every chain (its seeded principles and key),
skips what is done, enforces the caps and writes the store, as without Ray.
"""

from __future__ import annotations

from ..cluster.connect import RayOptions
from ..cluster.pool import Worker
from ..cluster.runner import RayRunner, Worked, timed
from ..config.judge import JudgeBase
from ..config.sampling import SamplingConfig
from ..records import Spend
from .chain import ChainSettings, PlannedChain, run_chains
from .registry import build_generator


class ReviserWorker(Worker):
    """A Ray actor holding one loaded model; Ray restarts it (loading the model again) if its process dies."""

    def __init__(self, config: JudgeBase, sampling: SamplingConfig, settings: ChainSettings):
        self.generator = build_generator(config, sampling)
        self.settings = settings

    def revise_batch(self, batch: list[PlannedChain], spent_before: Spend) -> Worked:
        self.generator.carry_spend(spent_before)
        return timed(spent_before, lambda: self._run(batch), self.generator.spent)

    def _run(self, batch: list[PlannedChain]):
        records = run_chains(self.generator.session(), batch, self.settings)
        stopped = self.generator.stopped()
        return records, f"budget: {stopped}" if stopped else None


def ray_revising(options: RayOptions) -> RayRunner:
    return RayRunner(options, ReviserWorker, "revise_batch", "prompts")
