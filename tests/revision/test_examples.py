"""The Constitutional AI examples parse: examples/tiny/cai/ (run on this CPU by its run.sh, in about half a minute)
and examples/gpu/cai/ (a real model on one GPU; not run here). Every config file loads through its own checker,
the prompt files read, and every file their run.sh names exists."""

from __future__ import annotations

import re

import pytest

from rlaif.config.judge import load_judge_config
from rlaif.config.sampling import SamplingConfig
from rlaif.config.train import load_train_config
from rlaif.config.yamlfile import load_model
from rlaif.constitution import load_constitution
from rlaif.data.prompts import read_prompt_rows
from tests.helpers import ROOT

EXAMPLES = [ROOT / "examples/tiny/cai", ROOT / "examples/gpu/cai"]


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.parent.name)
def test_the_example_files_parse(folder):
    assert load_judge_config(folder / "reviser.yaml").backend in ("python", "transformers")
    assert load_model(folder / "sampling.yaml", SamplingConfig).max_new_tokens >= 8
    sft = load_train_config(folder / "sft.yaml", "sft")
    dpo = load_train_config(folder / "dpo.yaml", "dpo")
    assert sft.output_dir.endswith("/sft") and dpo.model.path == f"{sft.output_dir}/model"
    script = (folder / "run.sh").read_text()
    constitutions = set(re.findall(r"--constitution \"?([^\s\"]+)", script))
    assert constitutions and all(
        load_constitution(ROOT / c.replace("$HERE", str(folder.relative_to(ROOT)))).revisable() for c in constitutions
    )
    named = set(re.findall(r"(?:examples|judges|constitutions)/[\w/.-]+\.(?:yaml|py|jsonl)", script))
    named |= {f"{folder.relative_to(ROOT)}/{m}" for m in re.findall(r"\$HERE/([\w.-]+)", script)}
    assert named and all((ROOT / path).exists() for path in named), sorted(p for p in named if not (ROOT / p).exists())


def test_the_tiny_example_prompts_read_and_its_starting_policy_saves(tmp_path):
    import importlib.util

    rows = list(read_prompt_rows(ROOT / "examples/tiny/cai/prompts.jsonl"))
    held_out = list(read_prompt_rows(ROOT / "examples/tiny/cai/heldout.jsonl"))
    assert len(rows) == 128 and len(held_out) == 48 and len({r.id for r in rows + held_out}) == 176
    spec = importlib.util.spec_from_file_location("start", ROOT / "examples/tiny/cai/start.py")
    start = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(start)
    saved = start.save_start(tmp_path / "start")
    assert (saved / "config.json").exists() and (saved / "tokenizer.json").exists()
