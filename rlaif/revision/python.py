"""A reviser that is a plain Python function, named by import path in a `backend: python` model config: rule-based
revisions for examples and tests, whose effect is visible where a tiny random model would revise into noise.

The function is called as `fn(messages, step=..., principle=..., **kwargs) -> str`, with the conversation so far
(chat messages ending with the user's turn), the chain's step ("initial", "critique" or "revision") and the id of
the round's principle (None for the first answer).
"""

from __future__ import annotations

from ..config.judge import PythonJudgeConfig
from ..config.sampling import SamplingConfig
from ..judges.python import call_function, import_function
from .generators import Generator, Reply, Request


class PythonGenerator(Generator):
    config: PythonJudgeConfig

    def __init__(self, config: PythonJudgeConfig, sampling: SamplingConfig):
        super().__init__(config, sampling)
        self.fn = import_function(config.function, "reviser function")

    def generate(self, requests: list[Request]) -> list[Reply]:
        return [self._one(r) for r in requests]

    def _one(self, request: Request) -> Reply:
        # a user function's failure (SystemExit included) fails that step of that chain only
        text, error = call_function(
            self.fn,
            [dict(m) for m in request.messages],
            step=request.step,
            principle=request.principle_id,
            **self.config.kwargs,
        )
        if error is not None:
            return Reply(None, error=error)
        if not isinstance(text, str):
            return Reply(None, error=f"reviser function returned {type(text).__name__}, not a string")
        return Reply(text, "eos")
