"""What the label-folder tests share: input files, a constitution and a python judge written to disk, `rlaif label`
run as a real subprocess, and a strict reading of what it stored."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterable, Optional

from tests.helpers import ROOT, rlaif_command

CONSTITUTION = "name: c\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n"


def polite_rows(n: int, prefix: str = "p") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "prompt": f"question {i}", "response_a": f"please, {i}", "response_b": f"no {i}"}
        for i in range(n)
    ]


def write_rows(path: Path, rows: Iterable) -> Path:
    """Rows as JSON lines; a str row is written as it is (a broken line)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def job_files(
    tmp: Path, rows: Iterable, function: str = "tests.labeling.fns:flaky", constitution: str = CONSTITUTION
) -> dict[str, Path]:
    """pairs.jsonl, c.yaml and judge.yaml (a python judge) in `tmp`; `out` is where the labels go."""
    (tmp / "c.yaml").write_text(constitution)
    (tmp / "judge.yaml").write_text(f"backend: python\nfunction: {function}\n")
    return {
        "pairs": write_rows(tmp / "pairs.jsonl", rows),
        "constitution": tmp / "c.yaml",
        "judge": tmp / "judge.yaml",
        "out": tmp / "out",
    }


def label_command(files: dict[str, Path], *extra) -> list[str]:
    return rlaif_command(
        "label",
        "--pairs",
        files["pairs"],
        "--constitution",
        files["constitution"],
        "--judge",
        files["judge"],
        "--out",
        files["out"],
        "--quiet",
        *extra,
    )


def rlaif_label(
    files: dict[str, Path], *extra, env: Optional[dict] = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`rlaif label` on `files` as a subprocess (whatever its exit code); `env` is added to the environment."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        label_command(files, *extra), cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def strict_records(path: Path) -> list[dict]:
    """The records of a JSONL file, read as strict JSON (NaN and Infinity refused), every line whole."""
    text = path.read_text(encoding="utf-8")
    assert not text or text.endswith("\n"), f"{path} ends in a partial line"
    return [json.loads(line, parse_constant=_no_constant) for line in text.splitlines()]


def stored(out: Path) -> dict[str, dict]:
    """labels.jsonl by id, checking that no id is there twice."""
    recs = strict_records(out / "labels.jsonl")
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), f"an id stored twice: {sorted(i for i in ids if ids.count(i) > 1)}"
    return {r["id"]: r for r in recs}
