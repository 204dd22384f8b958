"""`rlaif export --revisions`: SFT rows (the final revision as the assistant's turn) that TRL's SFTTrainer takes as
they are, and preference rows (final ≻ first answer) that go straight to TRL's DPOTrainer or through `rlaif label`,
whose judge then checks that each revision really is better."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT
from tests.labeling.jobfiles import strict_records
from tests.revision.files import cli, revise_args, revise_files

CAI = ROOT / "examples/tiny/cai"
ROWS = [
    {"id": "t", "prompt": "fix my door"},
    {"id": "m", "prompt": [{"role": "user", "content": "make tea"}]},
    {"id": "same", "prompt": "help", "response": "please sure"},
    {"id": "boom", "prompt": "boom"},
]


@pytest.fixture
def revisions(tmp_path):
    """A revision folder from the rule reviser: two revised chains (text and chat prompts), one whose input
    response already says "please" (its revision leaves it unchanged) and one failed chain."""
    files = revise_files(tmp_path, ROWS, "tests.revision.revisers:broken")
    files["model"].write_text("backend: python\nfunction: tests.revision.revisers:broken\n")
    assert cli(*revise_args(files, "--allow-failed")).exit_code == 0
    return files["out"]


def test_sft_and_trl_rows(tmp_path, revisions):
    from datasets import load_dataset

    sft = cli("export", "--revisions", revisions, "--out", tmp_path / "sft.jsonl")  # sft is the default
    assert sft.exit_code == 0 and json.loads(sft.stdout) == {"written": 3, "skipped_failed": 1, "skipped_unchanged": 0}
    rows = {r["id"]: r for r in strict_records(tmp_path / "sft.jsonl")}
    assert rows["t"]["messages"] == [
        {"role": "user", "content": "fix my door"},
        {"role": "assistant", "content": "answer to: fix my door please"},
    ]
    assert rows["m"]["messages"][0] == {"role": "user", "content": "make tea"}
    assert rows["t"]["principle_ids"] and rows["t"]["constitution_sha256"] and rows["t"]["model"]
    trl = cli("export", "--revisions", revisions / "revisions.jsonl", "--format", "trl", "--out", tmp_path / "p.jsonl")
    assert json.loads(trl.stdout) == {"written": 2, "skipped_failed": 1, "skipped_unchanged": 1}
    pairs = {r["id"]: r for r in strict_records(tmp_path / "p.jsonl")}
    assert (pairs["t"]["prompt"], pairs["t"]["chosen"], pairs["t"]["rejected"]) == (
        [{"role": "user", "content": "fix my door"}],
        [{"role": "assistant", "content": "answer to: fix my door please"}],
        [{"role": "assistant", "content": "answer to: fix my door"}],
    )  # conversational, whatever the prompt
    assert pairs["m"]["chosen"] == [{"role": "assistant", "content": "answer to: make tea please"}]
    for path in ("sft.jsonl", "p.jsonl"):
        assert len(load_dataset("json", data_files=str(tmp_path / path), split="train")) in (2, 3)
    bad = cli("export", "--revisions", revisions, "--format", "dpo", "--out", tmp_path / "x.jsonl")
    assert bad.exit_code == 2 and "unknown export format 'dpo' for revisions (known: sft, trl)" in bad.stderr


def test_trl_takes_the_rows_as_they_are(tmp_path, revisions, tiny_model_dir, one_thread):
    trl = pytest.importorskip("trl", reason="trl is a test-only dependency (pip install -e '.[dev]')")
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for fmt in ("sft", "trl"):
        assert (
            cli("export", "--revisions", revisions, "--format", fmt, "--out", tmp_path / f"{fmt}.jsonl").exit_code == 0
        )
    common = dict(
        per_device_train_batch_size=2, max_steps=1, report_to=[], use_cpu=True, save_strategy="no", bf16=False
    )
    for trainer_class, config_class, fmt in (
        (trl.SFTTrainer, trl.SFTConfig, "sft"),
        (trl.DPOTrainer, trl.DPOConfig, "trl"),
    ):
        trainer = trainer_class(
            model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            args=config_class(output_dir=str(tmp_path / fmt), **common),
            train_dataset=load_dataset("json", data_files=str(tmp_path / f"{fmt}.jsonl"), split="train"),
            processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        )
        trainer.train()
        assert trainer.state.global_step == 1 and all(h["loss"] > 0 for h in trainer.state.log_history if "loss" in h)


def test_through_rlaif_label_the_judge_checks_each_revision(tmp_path, revisions):
    assert cli("export", "--revisions", revisions, "--format", "trl", "--out", tmp_path / "p.jsonl").exit_code == 0
    labelled = cli(
        "label",
        "--pairs",
        tmp_path / "p.jsonl",
        "--constitution",
        CAI / "constitution.yaml",
        "--judge",
        ROOT / "judges/rule-keyword.yaml",
        "--out",
        tmp_path / "labels",
        "--quiet",
    )
    assert labelled.exit_code == 0, labelled.stderr
    stats = json.loads((tmp_path / "labels/stats.json").read_text())
    # the label job reads `chosen` as a known choice: agreement with it is the judge saying the revision is better
    assert stats["pairs"] == 2 and stats["agreement_with_human"] == 1.0
    assert cli("export", "--labels", tmp_path / "labels", "--out", tmp_path / "dpo.jsonl").exit_code == 0
    assert sorted(r["chosen"][0]["content"] for r in strict_records(tmp_path / "dpo.jsonl")) == [
        "answer to: fix my door please",
        "answer to: make tea please",
    ]
