"""A judge that is a plain Python function: rule-based or verifiable preferences, and tests.

The function is named by import path in the judge config and called as
`fn(prompt, first, second, principle, **kwargs) -> P(first preferred)`; a score judge's (mode: score) as
`fn(prompt, response, principle, **kwargs)`, returning a score on the judge's scale or a mapping {score: P}.
"""

from __future__ import annotations

import importlib
import math
from typing import Sequence

from ..config.judge import PythonJudgeConfig
from ..records import Query, ScoreQuery, ScoreVerdict, Verdict
from .base import Judge
from .scores import distribution_problem


def import_function(path: str, what: str = "judge function"):
    """The function named by an import path 'package.module:function' (a config's `function`)."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what} '{path}' cannot be imported: {e}") from e


class PythonJudge(Judge):
    def __init__(self, config: PythonJudgeConfig):
        super().__init__(config)
        self.fn = import_function(config.function)

    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        out = []
        for q in queries:
            try:
                p = float(self.fn(q.prompt, q.first, q.second, q.principle_text, **self.config.kwargs))
            except Exception as e:  # a user function's failure fails that query only
                out.append(Verdict(None, error=f"{type(e).__name__}: {e}"))
                continue
            if not (0.0 <= p <= 1.0) or math.isnan(p):
                out.append(Verdict(None, error=f"judge function returned {p!r}, not a probability in [0, 1]"))
            else:
                out.append(Verdict(p))
        return out

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreVerdict]:
        out = []
        for q in queries:
            try:
                answer = self.fn(q.prompt, q.response, q.principle_text, **self.config.kwargs)
                out.append(self._distribution(answer))
            except Exception as e:  # a user function's failure fails that query only
                out.append(ScoreVerdict(None, error=f"{type(e).__name__}: {e}"))
        return out

    def _distribution(self, answer) -> ScoreVerdict:
        """A number on the scale (linearly split between its two neighbouring scores, so the expected score is
        the number itself) or a mapping {score: probability} over the scale."""
        values = self.config.score.values
        low, high = values[0], values[-1]
        if isinstance(answer, dict):
            unknown = [k for k in answer if not _on_scale(k, values)]
            if unknown:
                return ScoreVerdict(None, error=f"judge function returned scores off the scale {low}..{high}: "
                                    f"{unknown!r}")
            probs = [float(sum(p for k, p in answer.items() if int(float(k)) == v)) for v in values]
            problem = distribution_problem(probs)
            return ScoreVerdict(None, error=f"judge function: {problem}") if problem else \
                ScoreVerdict(probs, mass=1.0, source="text")
        x = float(answer)
        if not (math.isfinite(x) and low <= x <= high):
            return ScoreVerdict(None, error=f"judge function returned {answer!r}, not a score in [{low}, {high}]")
        probs = [0.0] * len(values)
        k = min(int(math.floor(x)) - low, len(values) - 2)
        probs[k + 1] = x - (low + k)
        probs[k] = 1.0 - probs[k + 1]
        return ScoreVerdict(probs, mass=1.0, source="text")


def _on_scale(key, values) -> bool:
    try:
        return float(key) == int(float(key)) and int(float(key)) in values
    except (TypeError, ValueError):
        return False
