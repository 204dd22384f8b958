"""Judge functions for the `python` backend used by the tests (importable as tests.judge_fns)."""

import os
import time


def prefers_polite(prompt, first, second, principle):
    """0.9 for the response containing 'please', whichever slot it is in; 0.5 when neither/both. Asked
    which is *ruder* (an inverted principle), it picks the other one, as a faithful judge would."""
    a, b = "please" in first.lower(), "please" in second.lower()
    p = 0.5 if a == b else (0.9 if a else 0.1)
    return 1.0 - p if "ruder" in principle.lower() else p


JUDGED: list = []  # every (first, second) counted_polite was shown, in order (tests clear it)


def counted_polite(prompt, first, second, principle):
    """prefers_polite, keeping a record of each call in JUDGED (to count the judge calls of a job)."""
    JUDGED.append((first, second))
    return prefers_polite(prompt, first, second, principle)


def first_slot(prompt, first, second, principle):
    """A judge with pure position bias: always prefers whatever is shown first."""
    return 0.85


def slow_polite(prompt, first, second, principle, delay=0.05):
    time.sleep(float(os.environ.get("RLAIF_TEST_DELAY", delay)))
    return prefers_polite(prompt, first, second, principle)


def broken(prompt, first, second, principle):
    if "boom" in first + second:
        raise RuntimeError("the rule cannot judge this pair")
    return 0.7


# score judges (mode: score): fn(prompt, response, principle) -> a score on the scale, or {score: P}
def score_polite(prompt, response, principle):
    """8 for a response containing 'please', 3 otherwise (asked which is *ruder*, the other way round)."""
    polite = "please" in response.lower()
    if "ruder" in principle.lower():
        polite = not polite
    return 8 if polite else 3


def slow_score_polite(prompt, response, principle, delay=0.05):
    time.sleep(float(os.environ.get("RLAIF_TEST_DELAY", delay)))
    return score_polite(prompt, response, principle)


def score_distribution(prompt, response, principle):
    """A distribution: half on 10 and half on 6 for 'please' (expected 8), else all on 2."""
    return {10: 0.5, "6": 0.5} if "please" in response else {2: 1.0}


def score_broken(prompt, response, principle):
    if "boom" in response:
        raise RuntimeError("the rule cannot rate this response")
    if "nan" in response:
        return float("nan")
    if "eleven" in response:
        return 11
    return 5


RATED: list = []  # every response counted_score_polite was asked to rate, in order (tests clear it)


def counted_score_polite(prompt, response, principle):
    """score_polite, keeping a record of each call in RATED (to count the judge calls of a job)."""
    RATED.append(response)
    return score_polite(prompt, response, principle)


# what careless rules do, chosen by a marker in the text they are shown (tests/judges/test_python_judge.py)
ODD_ANSWERS = {
    "[bool]": True,
    "[string]": "0.9",
    "[none]": None,
    "[nan]": float("nan"),
    "[inf]": float("inf"),
    "[dict-bool]": {5: True},
}


def _odd(text: str, fine):
    if "[sys.exit]" in text:
        raise SystemExit(0)
    if "[ctrl-c]" in text:
        raise KeyboardInterrupt
    if "[generator-exit]" in text:
        raise GeneratorExit
    if "[odd-text]" in text:
        raise ValueError("cannot read \udc80")
    return next((answer for marker, answer in ODD_ANSWERS.items() if marker in text), fine)


def odd_judge(prompt, first, second, principle):
    """0.7, unless the pair carries a marker: then it exits, interrupts itself, or returns what is no probability."""
    return _odd(first + second, 0.7)


def odd_score(prompt, response, principle):
    """5, unless the response carries a marker (as odd_judge)."""
    return _odd(response, 5)
