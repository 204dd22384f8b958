"""What the revision tests share: a constitution with critique and revision requests, prompt files, model configs
(a python reviser, the tiny random Llama), `rlaif revise` in-process through typer's runner, and a strict reading
of what it stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tests.labeling.jobfiles import strict_records, write_rows

CONSTITUTION = """\
name: tiny-polite
version: "1"
principles:
  - id: polite
    text: Which response is more polite?
    critique: Say whether the answer is polite.
    revision: Rewrite the answer politely.
  - id: kind
    text: Which response is kinder?
    weight: 3
    critique: Say whether the answer is kind.
    revision: Rewrite the answer kindly.
  - id: judge-only
    text: Which response is shorter?
"""
EXAMPLE = """\
revision_examples:
  - prompt: Can you help me move?
    response: No.
    principle: kind
    critique: The answer is curt.
    revision: I am sorry, I cannot help you move this time.
"""


def prompt_rows(n: int, prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "prompt": f"how do i fix thing {i}"} for i in range(n)]


def revise_files(
    tmp: Path,
    rows: Iterable,
    function: str = "tests.revision.revisers:polite",
    constitution: str = CONSTITUTION,
    model: str = "",
) -> dict[str, Path]:
    """prompts.jsonl, c.yaml and model.yaml (a python reviser, unless `model` gives the YAML) in `tmp`; `out` is
    where the revisions go."""
    (tmp / "c.yaml").write_text(constitution)
    (tmp / "model.yaml").write_text(model or f"backend: python\nfunction: {function}\n")
    return {
        "prompts": write_rows(tmp / "prompts.jsonl", rows),
        "constitution": tmp / "c.yaml",
        "model": tmp / "model.yaml",
        "out": tmp / "out",
    }


def revise_args(files: dict[str, Path], *extra) -> list[str]:
    return [
        "revise",
        "--prompts",
        files["prompts"],
        "--constitution",
        files["constitution"],
        "--model",
        files["model"],
        "--out",
        files["out"],
        "--quiet",
        *extra,
    ]


def cli(*args):
    """`rlaif ARGS` in-process (typer's runner); the result has exit_code, stdout and stderr."""
    from typer.testing import CliRunner

    from rlaif.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def revised(out: Path) -> dict[str, dict]:
    """revisions.jsonl by id, read strictly, checking that no id is there twice."""
    recs = strict_records(out / "revisions.jsonl")
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)), f"an id stored twice: {sorted(i for i in ids if ids.count(i) > 1)}"
    return {r["id"]: r for r in recs}


def stats(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())
