"""Tier 4: a real `rlaif revise` subprocess killed with SIGKILL at arbitrary moments, then restarted with the same
command, ends with exactly one intact record per prompt and no torn line."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.helpers import ROOT, rlaif_command
from tests.revision.files import prompt_rows, revise_files, revised, stats


def _lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_then_resume_loses_nothing_and_duplicates_nothing(tmp_path):
    n = 30
    files = revise_files(tmp_path, prompt_rows(n), "tests.revision.revisers:slow_polite")
    (tmp_path / "sampling.yaml").write_text("batch_size: 3\n")
    cmd = rlaif_command(
        "revise",
        "--prompts",
        files["prompts"],
        "--constitution",
        files["constitution"],
        "--model",
        files["model"],
        "--out",
        files["out"],
        "--config",
        tmp_path / "sampling.yaml",
        "--quiet",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLAIF_TEST_DELAY": "0.01"}
    out = files["out"] / "revisions.jsonl"
    kills = 0
    for target in (4, 14):  # kill once the store has grown past these line counts
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while _lines(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read().decode()[-2000:]
        assert len(revised(files["out"])) < n  # every line whole, no id twice, at every kill
    assert kills == 2
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    records = revised(files["out"])
    assert sorted(records) == sorted(f"q{i}" for i in range(n))
    assert all(
        r["status"] == "ok" and r["final"].endswith("please") and len(r["rounds"]) == 2 for r in records.values()
    )
    s = stats(files["out"])
    assert s["prompts"] == n and 0 < s["revised_now"] < n and s["resumed_skipped"] == n - s["revised_now"]
