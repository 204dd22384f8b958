"""A judge that is a plain Python function: rule-based or verifiable preferences, and tests.

The function is named by import path in the judge config and called as
`fn(prompt, first, second, principle, **kwargs) -> P(first preferred)`.
"""

from __future__ import annotations

import importlib
import math
from typing import Sequence

from ..config.judge import PythonJudgeConfig
from ..records import Query, Verdict
from .base import Judge


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
