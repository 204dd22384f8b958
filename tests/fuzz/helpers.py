"""What the fuzz tests share: derandomized settings, the CLI run in-process, what a clean end of a command is, the
check on a label store, and the pieces generated files are made of (values of any type, damaged YAML bytes).

The fuzz tests (tests/fuzz/test_*.py) feed constitutions, pair rows and training configs, valid and broken, to the
command line. Every run must end in success (0, or 3 and 4 where a cap or judge failures apply) or in exit code 2
with clean lines on stderr, never a traceback or an internal error; after every labelling run the store must be
strict JSON (no NaN, no Infinity) with one record per id. Derandomized, so CI draws the same examples every run,
and bounded to well under a minute on two cores.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from typer.testing import CliRunner


def fuzz_settings(examples: int, shrink: bool = True):
    """Derandomized (the same examples in CI every run), no example database, no deadline (a first training run
    imports torch); families expected to fail skip shrinking, which could take minutes."""
    phases = (Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ())
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=examples,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def cli(*args):
    from rlaif.cli import app

    _library_logs_to_stderr()
    return CliRunner().invoke(app, [str(a) for a in args])


def _library_logs_to_stderr() -> None:
    """transformers' log handler keeps the stderr of the moment it was made (its stream, and its `flush` bound to
    that stream). Made inside an earlier runner's invoke (another test's), it writes to a closed stream, and logging
    prints '--- Logging error ---' and a traceback into the next run's stderr: a fault of this harness, not of the
    command. The handlers are pointed at the process's own stderr."""
    for name in ("transformers", "huggingface_hub"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                handler.__dict__.pop("flush", None)  # transformers binds flush to the stderr of that moment
                handler.stream = sys.__stderr__  # not setStream: it would flush the closed stream first


def assert_clean_end(result, allowed=(0,)):
    """Success (an allowed code) or exit 2 with clean lines: no traceback, no internal error, no exception."""
    err = result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    assert result.exit_code in (*allowed, 2), (result.exit_code, err[-2000:])
    if result.exit_code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines, "exit 2 with nothing said"


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def assert_store_valid(out: Path) -> None:
    """labels.jsonl holds strict JSON objects, one record per id."""
    store = out / "labels.jsonl"
    if not store.exists():
        return
    ids = [strict_json(line)["id"] for line in store.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(ids) == len(set(ids)), f"duplicate ids in {store}: {sorted(i for i in ids if ids.count(i) > 1)}"


# -- the pieces files are made of --------------------------------------------------------------------------------
short_text = st.text(max_size=12)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10),
    st.sampled_from([0, -1, 1e308, 10**40, 1e-320]),
)
anything = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    short_text,
    st.lists(short_text, max_size=2),
    st.dictionaries(short_text, short_text, max_size=2),
)


def damaged(text: str, damage: str) -> bytes:
    """A YAML file's bytes after one of the ways files go wrong."""
    raw = text.encode("utf-8")
    lines = text.splitlines(keepends=True)
    if damage == "truncated":
        return raw[: len(raw) // 2]
    if damage == "latin1":
        return raw + b"description: caf\xe9\n"
    if damage == "utf16":
        return text.encode("utf-16")
    if damage == "duplicate_key" and lines:
        return (text + lines[0]).encode("utf-8")
    if damage == "deep":
        return raw + b"deep: " + b"[" * 3000 + b"]" * 3000 + b"\n"
    if damage == "control":
        return raw + b"description: a\x00b\n"
    if damage == "alias_bomb":
        rows = ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
        rows += [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]" for i in range(1, 7)]
        return raw + ("\n".join(rows) + "\n").encode()
    if damage == "not_a_mapping":
        return b"- just\n- a list\n"
    return raw


DAMAGE = st.sampled_from(
    ["none"] * 12 + ["truncated", "latin1", "utf16", "duplicate_key", "deep", "control", "alias_bomb", "not_a_mapping"]
)


def as_yaml(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def mostly(valid, broken, weight: int = 4):
    """`valid` about `weight` times as often as `broken`."""
    return st.one_of(*[valid] * weight, broken)
