"""Tier 4: a real `rlaif label` subprocess killed with SIGKILL at arbitrary moments, then restarted with the
same command, ends with exactly one intact record per pair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_then_resume_loses_nothing_and_duplicates_nothing(tmp_path):
    n = 60
    pairs = tmp_path / "pairs.jsonl"
    with open(pairs, "w") as f:
        for i in range(n):
            f.write(
                json.dumps({"id": f"k{i}", "prompt": f"q{i}", "response_a": f"please {i}", "response_b": f"no {i}"})
                + "\n"
            )
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nfunction: tests.judge_fns:slow_polite\nkwargs: {delay: 0.02}\n")
    const = tmp_path / "polite.yaml"
    const.write_text("name: polite\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "rlaif.cli",
        "label",
        "--pairs",
        str(pairs),
        "--constitution",
        str(const),
        "--judge",
        str(judge),
        "--out",
        str(out),
        "--batch-size",
        "3",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    labels = out / "labels.jsonl"
    kills = 0
    for target in (6, 21, 40):  # kill once the file has grown past these line counts
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while _count_lines(labels) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read().decode()[-2000:]
    assert kills >= 2
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = labels.read_text().splitlines()
    recs = [json.loads(line) for line in lines]  # every line is whole, valid JSON
    ids = [r["id"] for r in recs]
    assert sorted(ids) == sorted(f"k{i}" for i in range(n)) and len(ids) == len(set(ids))
    assert all(r["status"] == "ok" and r["label"] == "a" for r in recs)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pairs"] == n and stats["labelled_now"] < n  # the last run resumed rather than starting over


def test_sigkill_while_superseding_then_resume_keeps_one_record_per_id(tmp_path):
    """Failed records being superseded (--retry-failed) when the job is killed: every reader meanwhile sees one
    record per id, and the resumed job folds the new attempts in, archives each failed record once."""
    from tests.labeling.jobfiles import job_files, label_command, polite_rows, rlaif_label, stored, strict_records

    n = 45
    files = job_files(tmp_path, polite_rows(n))
    assert rlaif_label(files, env={"RLAIF_TEST_JUDGE_DOWN": "1"}).returncode == 4
    out, env = files["out"], {**os.environ, "PYTHONPATH": str(ROOT), "RLAIF_TEST_DELAY": "0.02"}
    proc = subprocess.Popen(
        label_command(files, "--retry-failed", "--batch-size", "3"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while _count_lines(out / "superseding.jsonl") < 15 and proc.poll() is None and time.time() < deadline:
        assert len(stored(out)) == n  # the reader's view while new attempts wait aside
        time.sleep(0.005)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _count_lines(out / "superseding.jsonl") >= 15 and len(stored(out)) == n
    done = rlaif_label(files, "--retry-failed")
    assert done.returncode == 0, done.stderr[-2000:]
    recs = stored(out)
    assert len(recs) == n and all(r["status"] == "ok" and r["label"] == "a" for r in recs.values())
    archived = [r["id"] for r in strict_records(out / "superseded.jsonl")]
    assert sorted(archived) == sorted(recs) and not (out / "superseding.jsonl").exists()
