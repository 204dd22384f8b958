"""The `policy` backend: the policy being trained judges pairs of its own samples (Self-Rewarding Language Models,
Yuan et al. 2024). It loads no model: `rlaif loop` calls `attach(model, tokenizer)` each iteration with the
policy's current weights, and verdicts are then read exactly as by the transformers backend (same prompt layout,
same shared-prefix tree, same label tokens).
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..config.judge import PolicyJudgeConfig
from ..records import JudgeInfo, Query, ScoreQuery, ScoreVerdict, Verdict
from .base import NOT_ATTACHED, Judge
from .hf import TransformersJudge


class PolicyJudge(TransformersJudge):
    def __init__(self, config: PolicyJudgeConfig):
        Judge.__init__(self, config)  # no model to load: it is attached later
        self.model = None
        self.name: Optional[str] = None

    def attach(self, model, tokenizer, name: Optional[str] = None) -> "PolicyJudge":
        """Judge with `model` (the policy's current weights, in memory, unwrapped from DDP/accelerate) and its
        tokenizer from now on. `name` (e.g. "policy@iter-2" or a checkpoint path) is recorded on labels as the
        judge's model; by default the config's `model` ("policy")."""
        import torch

        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        self._setup(model, tokenizer, next(model.parameters()).device)
        self.name = name
        return self

    @property
    def info(self) -> JudgeInfo:
        info = super().info
        return info if self.name is None else info.model_copy(update={"model": self.name})

    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        return self._evaluating(super().judge, queries)

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreVerdict]:
        return self._evaluating(super().score, queries)

    def _evaluating(self, answer, queries):
        """`answer(queries)` with the attached policy in eval mode (no dropout, no gradient checkpointing, which
        would drop the prefix cache), then back in the mode the loop left it in; refused before `attach`."""
        if self.model is None:
            raise RuntimeError(NOT_ATTACHED)
        was_training = self.model.training
        self.model.eval()
        try:
            return answer(queries)
        finally:
            self.model.train(was_training)

    def close(self) -> None:
        self.model = None  # let go of the policy; it belongs to the loop
