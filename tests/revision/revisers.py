"""Reviser functions for the `python` generation backend used by the tests (importable as tests.revision.revisers)."""

import os
import time


def polite(messages, step, principle, marker="please"):
    """Answers plainly, critiques the missing marker, and revises by adding it: its effect is visible in the
    records. Each reply names the step and principle it was asked for, so tests can check the chain's order."""
    if step == "initial":
        return f"answer to: {messages[-1]['content']}"
    if step == "critique":
        return f"critique ({principle}): the answer does not say {marker}"
    previous = messages[-4]["content"]  # the response the critique was about (then its critique, this request)
    return f"{previous} {marker}" if marker not in previous.split() else previous


def slow_polite(messages, step, principle, delay=0.05):
    time.sleep(float(os.environ.get("RLAIF_TEST_DELAY", delay)))
    return polite(messages, step, principle)


def broken(messages, step, principle):
    """Fails the critique of any conversation that mentions "boom"."""
    if step == "critique" and "boom" in messages[-2]["content"]:
        raise RuntimeError("the reviser cannot critique this")
    return polite(messages, step, principle)


def empty_revision(messages, step, principle):
    return "   " if step == "revision" else polite(messages, step, principle)


def flaky(messages, step, principle):
    """Fails every step while RLAIF_TEST_REVISER_DOWN is set (a model server that is down)."""
    if os.environ.get("RLAIF_TEST_REVISER_DOWN"):
        raise ConnectionError("the model server is down")
    return polite(messages, step, principle)


RECORDED: list = []


def recording(messages, step, principle):
    """Records what it was asked (the conversation, step and principle), then answers as `polite` does."""
    RECORDED.append({"messages": [dict(m) for m in messages], "step": step, "principle": principle})
    return polite(messages, step, principle)


def exits(messages, step, principle):
    """Ends the process (sys.exit) when asked to critique an answer about thing 1; puts a lone surrogate (no UTF-8
    encodes it) in every first answer."""
    if step == "critique" and "thing 1" in messages[-3]["content"]:
        raise SystemExit(0)
    return polite(messages, step, principle) + (" \udc80" if step == "initial" else "")
