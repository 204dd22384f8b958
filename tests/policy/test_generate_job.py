"""`rlaif generate` as a job on the engine: a real subprocess SIGKILLed mid-run and run again writes the very pairs
an uninterrupted run writes (one record per prompt, none sampled twice), a second run on the same folder is
refused while the first holds its lock, and a sample record someone edited is refused at FILE:LINE."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fuzz.helpers import cli
from tests.helpers import ROOT, kill_when, rlaif_command

PROMPTS = [f"Tell me about the number {i}." for i in range(30)]


def _files(tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    sampling = tmp_path / "sampling.yaml"
    sampling.write_text("max_new_tokens: 16\nbatch_size: 2\n")  # one prompt (n = 2 samples) per batch

    def command(out):
        return rlaif_command(
            "generate",
            "--policy",
            tiny_model_dir,
            "--prompts",
            prompts,
            "--n",
            "2",
            "--out",
            out,
            "--config",
            sampling,
            "--seed",
            "5",
            "--quiet",
        )

    return command


def test_sigkill_then_same_command_writes_the_uninterrupted_pairs(tmp_path, tiny_model_dir):
    command = _files(tmp_path, tiny_model_dir)
    assert cli(*command(tmp_path / "whole.jsonl")[3:]).exit_code == 0
    killed = tmp_path / "killed.jsonl"
    kill_when(command(killed), tmp_path / "killed.job" / "samples.jsonl", 6)
    stored = (tmp_path / "killed.job" / "samples.jsonl").read_text().splitlines()
    assert 6 <= len(stored) < len(PROMPTS) and not killed.exists()  # the pairs file comes at the end of a run
    resumed = cli(*command(killed)[3:])
    assert resumed.exit_code == 0 and f"-> {killed}" in resumed.stdout
    records = [json.loads(line) for line in (tmp_path / "killed.job" / "samples.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in records}) == len(records) == len(PROMPTS)  # each prompt sampled once
    assert killed.read_text() == (tmp_path / "whole.jsonl").read_text()  # batches seeded by their place
    manifest = json.loads((tmp_path / "killed.job" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["input_prompts"] == len(PROMPTS)
    stats = json.loads((tmp_path / "killed.job" / "stats.json").read_text())
    assert stats["prompts"] == len(PROMPTS) and stats["resumed_skipped"] == len(stored)
    assert stats["sampled_now"] == len(PROMPTS) - len(stored)


HOLD = """
import sys, time
from pathlib import Path
from rlaif.jobs.folder import FolderLock
FolderLock(Path(sys.argv[1]), "sampled").acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_run_is_refused_while_the_lock_is_held_and_an_edited_record_at_its_line(tmp_path, tiny_model_dir):
    command = _files(tmp_path, tiny_model_dir)
    out = tmp_path / "pairs.jsonl"
    assert cli(*command(out)[3:]).exit_code == 0
    folder = tmp_path / "pairs.job"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = cli(*command(out)[3:])
        assert refused.exit_code == 2 and "is being sampled by another process" in refused.stderr, refused.stderr
    finally:
        holder.kill()
        holder.wait()
    store = folder / "samples.jsonl"
    lines = store.read_text().splitlines()
    record = json.loads(lines[2])
    record["samples"] = [7, 8]
    store.write_text("\n".join(lines[:2] + [json.dumps(record)] + lines[3:]) + "\n")
    edited = cli(*command(out)[3:])
    assert edited.exit_code == 2 and f"{store}:3: samples is [7, 8], not a list of texts" in edited.stderr
