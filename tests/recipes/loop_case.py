"""What the tests of people inside the loop share: the tiny loop example with the keyword rule judge (no judge
model), configured by `key=value` overrides, and the pair ids of an iteration's files."""

from __future__ import annotations

import json
from pathlib import Path

from rlaif.config.train import load_train_config
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples/tiny/loop.yaml"
PROMPTS = ROOT / "examples/tiny/data/labels.jsonl"


def loop_config(out: Path, *overrides: str):
    return load_train_config(
        EXAMPLE,
        "loop",
        [f"output_dir={out}", f"prompts={PROMPTS}", f"judge={ROOT / 'judges/rule-keyword.yaml'}", *overrides],
    )


def two_iterations_with_people(out: Path, annotate: dict):
    """Two short iterations whose feedback is mixed on a budget of 3 pairs a time, with people reached as
    `annotate` says: the run both live-loop tests train."""
    feedback = {"source": "mixed", "budget": 3, "annotate": annotate}
    return loop_config(
        out,
        "iterations=2",
        "steps_per_iteration=2",
        "prompts_per_iteration=16",
        "eval_prompts=8",
        "batch_size=4",
        f"feedback={json.dumps(feedback)}",
    )


def ids_in(path: Path) -> list[str]:
    """The pair ids of a JSONL file, in order."""
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
