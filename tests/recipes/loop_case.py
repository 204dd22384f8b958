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


def ids_in(path: Path) -> list[str]:
    """The pair ids of a JSONL file, in order."""
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
