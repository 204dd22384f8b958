"""A judge that is a plain Python function: rule-based or verifiable preferences, and tests.

The function is named by import path in the judge config and called as
`fn(prompt, first, second, principle, **kwargs) -> P(first preferred)`; a score judge's (mode: score) as
`fn(prompt, response, principle, **kwargs)`, returning a score on the judge's scale or a mapping {score: P}.
Whatever the function does wrong (raises, even SystemExit, or returns what is no probability or score) fails
that query only, with the reason (`call_function`, and the numbers rule of rlaif/numbers.py).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import signal
import threading
from typing import Any, Callable, Iterator, Optional, Sequence

from ..config.judge import PythonJudgeConfig
from ..numbers import distribution_problem, probability_problem, score_problem
from ..records import Query, ScoreQuery, ScoreVerdict, Verdict
from ..text import valid_text
from .base import Judge, flag_repaired


def import_function(path: str, what: str = "judge function"):
    """The function named by an import path 'package.module:function' (a config's `function`)."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what} '{path}' cannot be imported: {e}") from e


def call_function(fn: Callable, *args, **kwargs) -> tuple[Any, Optional[str]]:
    """(what `fn` returned, None), or (None, why it failed). Anything it raises fails only the call: an exception,
    and also SystemExit (a `sys.exit()` in a rule), GeneratorExit, or a KeyboardInterrupt it raises itself. A
    Ctrl-C (a real SIGINT) that arrives while it runs still stops the job, whatever the function made of it."""
    with _sigint_watch() as sigint:
        try:
            value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - a user function's failure is its call's, not the job's
            if sigint and isinstance(e, KeyboardInterrupt):
                raise
            if sigint:
                raise KeyboardInterrupt from e
            return None, _raised(e)
    if sigint:  # the function swallowed the Ctrl-C
        raise KeyboardInterrupt
    return value, None


@contextlib.contextmanager
def _sigint_watch() -> Iterator[list]:
    """A list that gets an entry when a SIGINT arrives inside the block, where Python's own handler (the one that
    raises KeyboardInterrupt) is wrapped while it runs. Elsewhere (off the main thread, or under a server's own
    handler, or with SIGINT ignored) a SIGINT raises no KeyboardInterrupt of Python's inside the block, so one
    raised there is taken as the code's own."""
    arrived: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    if not (main and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        yield arrived
        return

    def note(signum, frame):
        arrived.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield arrived
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _raised(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # noqa: BLE001 - an exception whose message cannot be made is still named
        text = ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _plain(x: Any) -> Any:
    """A numpy or torch scalar as the Python number it holds (its `item()`), for the numbers rule, which takes an
    int or a float; anything else as it is (a bool of any kind stays a bool, and is refused)."""
    item = getattr(x, "item", None)
    if not callable(item) or isinstance(x, dict):
        return x
    try:
        return item()
    except Exception:  # noqa: BLE001 - e.g. a tensor of several values: refused as it is
        return x


def _failed(kind: type, error: str) -> Verdict | ScoreVerdict:
    error, repaired = valid_text(error)  # the message of the function's exception may hold any text
    verdict = kind(None, error=error)
    flag_repaired(verdict, repaired)
    return verdict


class PythonJudge(Judge):
    def __init__(self, config: PythonJudgeConfig):
        super().__init__(config)
        self.fn = import_function(config.function)

    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        out = []
        for q in queries:
            p, error = call_function(self.fn, q.prompt, q.first, q.second, q.principle_text, **self.config.kwargs)
            p = _plain(p)
            if error is None and (problem := probability_problem(p, "the judge function's answer")):
                error = f"not a probability (P(first preferred)): {problem}"
            out.append(_failed(Verdict, error) if error is not None else Verdict(float(p)))
        return out

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreVerdict]:
        out = []
        for q in queries:
            answer, error = call_function(self.fn, q.prompt, q.response, q.principle_text, **self.config.kwargs)
            out.append(_failed(ScoreVerdict, error) if error is not None else self._distribution(answer))
        return out

    def _distribution(self, answer) -> ScoreVerdict:
        """A number on the scale (linearly split between its two neighbouring scores, so the expected score is
        the number itself) or a mapping {score: probability} over the scale."""
        values = self.config.score.values
        low, high = values[0], values[-1]
        if isinstance(answer, dict):
            unknown = [k for k in answer if not _on_scale(k, values)]
            if unknown:
                return ScoreVerdict(
                    None, error=f"judge function returned scores off the scale {low}..{high}: {unknown!r}"
                )
            answer = {k: _plain(p) for k, p in answer.items()}
            problem = distribution_problem(answer, "the judge function's distribution")
            if problem:
                return ScoreVerdict(None, error=problem)
            probs = [math.fsum(p for k, p in answer.items() if int(float(k)) == v) for v in values]
            return ScoreVerdict(probs, mass=1.0, source="text")
        x = _plain(answer)
        if problem := score_problem(x, low, high, "the judge function's answer"):
            return ScoreVerdict(
                None, error=f"not a score on the scale {low}..{high} (or a mapping {{score: probability}}): {problem}"
            )
        x = min(max(float(x), low), high)  # within the scale's rounding tolerance of it
        probs = [0.0] * len(values)
        k = min(int(math.floor(x)) - low, len(values) - 2)
        probs[k + 1] = x - (low + k)
        probs[k] = 1.0 - probs[k + 1]
        return ScoreVerdict(probs, mass=1.0, source="text")


def _on_scale(key, values) -> bool:
    if isinstance(key, bool):  # True is no score of 1
        return False
    try:
        return float(key) == int(float(key)) and int(float(key)) in values
    except Exception:  # noqa: BLE001 - a key of the function's that is no number, whatever it raises
        return False
