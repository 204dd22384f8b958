"""A jury (`backend: jury`): several judges whose verdicts on a pair combine into one label (the config and its
weights: rlaif/config/judge.py JuryJudgeConfig; the combination: rlaif.preference.jury_p_a). The judge here holds
its members, loaded (registry.py builds them), and what each has spent. It answers pairs, not single queries: each
member judges a pair as it would alone — both orders debiased, or two scores — which is the labelling code's
(rlaif/labeling/jury.py), and only then are the members' p_a combined.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..config.judge import JuryJudgeConfig
from ..preference import jury_p_a
from ..records import Spend
from .base import Judge


class JuryJudge(Judge):
    """The members, (name, judge) in the jury file's order, and the jury's combination of their p_a."""

    config: JuryJudgeConfig

    def __init__(self, config: JuryJudgeConfig, members: list[tuple[str, Judge]]):
        super().__init__(config)
        self.members = members

    @property
    def weights_sha256(self) -> Optional[str]:
        """The sha256 of the fitted weights (aggregate: fitted), which every label of the jury carries."""
        fitted = self.config.fitted()
        return fitted["sha256"] if fitted else None

    def combine(self, ps: Sequence[Optional[float]]) -> Optional[float]:
        """The jury's p_a from its members' (None: a member that failed on the pair, left out); None when every
        member failed."""
        fitted = self.config.fitted() or {}
        return jury_p_a(ps, self.config.aggregate, fitted.get("weights", ()), fitted.get("intercept", 0.0))

    def carry_spend(self, before: Spend) -> None:
        """Each member counts on from its own share: its caps hold for it alone."""
        for name, judge in self.members:
            judge.carry_spend(before.member(name))

    def spent(self) -> Spend:
        parts = tuple((name, judge.spent()) for name, judge in self.members)
        return Spend(sum(s.requests for _, s in parts), sum(s.cost for _, s in parts), parts)

    def close(self) -> None:
        close_all(judge for _, judge in self.members)


def close_all(judges) -> None:
    """Close every judge, even when one of them fails to; the first failure is raised after the rest closed."""
    error = None
    for judge in judges:
        try:
            judge.close()
        except Exception as e:  # noqa: BLE001 - the other members still hold models and connections to free
            error = error or e
    if error is not None:
        raise error
