"""Judge functions for the `python` backend in the labelling tests (importable as tests.labeling.fns)."""

import os
import time

from tests.judge_fns import prefers_polite


def flaky(prompt, first, second, principle):
    """prefers_polite, but down (every call raises) while RLAIF_TEST_JUDGE_DOWN is set; RLAIF_TEST_DELAY slows
    each call. The environment is no judge setting, so a rerun without it is the same judge."""
    time.sleep(float(os.environ.get("RLAIF_TEST_DELAY", 0)))
    if os.environ.get("RLAIF_TEST_JUDGE_DOWN"):
        raise ConnectionError("the judge server is down")
    return prefers_polite(prompt, first, second, principle)


def polite_in(prompt, first, second, principle, pids: str = "", delay: float = 0.0):
    """prefers_polite, slowed by `delay` seconds, leaving a file named by its process id in the folder `pids`:
    the tests find (and kill) the Ray worker that judges."""
    if pids:
        open(os.path.join(pids, str(os.getpid())), "a").close()
    time.sleep(delay)
    return prefers_polite(prompt, first, second, principle)
