"""Judge functions for the `python` backend used by the tests (importable as tests.judge_fns)."""

import os
import time


def prefers_polite(prompt, first, second, principle):
    """0.9 for the response containing 'please', whichever slot it is in; 0.5 when neither/both. Asked
    which is *ruder* (an inverted principle), it picks the other one, as a faithful judge would."""
    a, b = "please" in first.lower(), "please" in second.lower()
    p = 0.5 if a == b else (0.9 if a else 0.1)
    return 1.0 - p if "ruder" in principle.lower() else p


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
