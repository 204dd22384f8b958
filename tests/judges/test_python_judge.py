"""A python judge or reviser that misbehaves (tests/judge_fns.py odd_judge / odd_score, tests/revision/revisers.py
exits): a function that raises SystemExit, KeyboardInterrupt or GeneratorExit, or returns what is no probability or
score (a bool, a string, None, NaN, infinity), fails its record with the reason; the job goes on and ends with exit
4. A real Ctrl-C (SIGINT) that lands inside the function still stops the job. Run through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, rlaif_command, run_cli, write_jsonl
from tests.labeling.jobfiles import strict_records
from tests.revision.files import cli, prompt_rows, revise_args, revise_files, revised

pytestmark = pytest.mark.slow

CONSTITUTION = "name: c\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n"
# marker in the pair -> what the failed record's error must say
FAILURES = {
    "[sys.exit]": "SystemExit: 0",
    "[ctrl-c]": "KeyboardInterrupt",
    "[generator-exit]": "GeneratorExit",
    "[bool]": "answer is true, not a finite number",
    "[string]": "answer is the string '0.9'",
    "[none]": "answer is null",
    "[nan]": "answer is nan",
    "[inf]": "answer is inf",
}


def files(tmp_path: Path, function: str, markers, mode: str = "") -> dict[str, Path]:
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    (tmp_path / "judge.yaml").write_text(f"backend: python\n{mode}function: tests.judge_fns:{function}\n")
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"id": f"p{i}", "prompt": "q", "response_a": f"fine {marker}", "response_b": "fine"}
            for i, marker in enumerate(markers)
        ],
    )
    return {
        "pairs": pairs,
        "constitution": tmp_path / "c.yaml",
        "judge": tmp_path / "judge.yaml",
        "out": tmp_path / "out",
    }


def test_a_judge_function_that_exits_or_returns_no_probability_fails_its_pair_and_the_job_exits_4(tmp_path):
    f = files(tmp_path, "odd_judge", ["", *FAILURES])
    done = run_cli(
        "label",
        "--pairs",
        f["pairs"],
        "--constitution",
        f["constitution"],
        "--judge",
        f["judge"],
        "--out",
        f["out"],
        "--quiet",
    )
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    records = {r["id"]: r for r in strict_records(f["out"] / "labels.jsonl")}
    assert len(records) == len(FAILURES) + 1  # every pair has its record: the job went on after each
    assert records["p0"]["status"] == "ok" and records["p0"]["p_a"] == pytest.approx(0.5)
    for i, (marker, reason) in enumerate(FAILURES.items(), 1):
        r = records[f"p{i}"]
        assert r["status"] == "failed" and r["p_a"] is None and reason in r["error"], (marker, r["error"])
    stats = json.loads((f["out"] / "stats.json").read_text())
    assert stats["failed_judge"] == len(FAILURES) and stats["failure_reasons"]["SystemExit: 0"] == 1


def test_a_score_function_that_exits_or_returns_no_score_fails_its_response_and_the_job_exits_4(tmp_path):
    markers = ["[sys.exit]", "[bool]", "[string]", "[none]", "[nan]", "[dict-bool]", "[odd-text]"]
    f = files(tmp_path, "odd_score", markers, mode="mode: score\n")
    done = run_cli(
        "score",
        "--pairs",
        f["pairs"],
        "--constitution",
        f["constitution"],
        "--judge",
        f["judge"],
        "--out",
        f["out"],
        "--quiet",
    )
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    records = {r["id"]: r for r in strict_records(f["out"] / "scores.jsonl")}
    assert len(records) == 2 * len(markers)
    assert all(records[f"p{i}:b"]["status"] == "ok" and records[f"p{i}:b"]["score"] == 5 for i in range(len(markers)))
    errors = {m: records[f"p{i}:a"]["error"] for i, m in enumerate(markers)}
    assert all(
        records[f"p{i}:a"]["status"] == "failed" and records[f"p{i}:a"]["score"] is None for i in range(len(markers))
    )
    assert errors["[sys.exit]"] == "SystemExit: 0"
    assert errors["[bool]"].startswith("not a score on the scale 1..10") and "answer is true" in errors["[bool]"]
    assert "the string '0.9'" in errors["[string]"] and "null" in errors["[none]"] and "nan" in errors["[nan]"]
    assert "distribution holds true" in errors["[dict-bool]"]
    # an exception whose message holds a lone surrogate: written as valid UTF-8, and flagged
    assert errors["[odd-text]"] == "ValueError: cannot read \ufffd"
    assert records[f"p{markers.index('[odd-text]')}:a"]["flags"] == ["text_repaired"]


def test_a_reviser_function_that_exits_fails_its_chain_and_the_job_exits_4(tmp_path):
    f = revise_files(tmp_path, prompt_rows(3), function="tests.revision.revisers:exits")
    result = cli(*revise_args(f, "--rounds", "1"))
    assert result.exit_code == 4, result.stderr
    records = revised(f["out"])
    assert sorted(records) == ["q0", "q1", "q2"]
    assert records["q1"]["status"] == "failed" and records["q1"]["error"] == "round 1 critique: SystemExit: 0"
    for r in (records["q0"], records["q2"]):  # and the first answers' lone surrogate is mended, and flagged
        assert r["status"] == "ok" and r["initial"].endswith(" \ufffd") and r["flags"] == ["text_repaired"]


def test_a_real_ctrl_c_inside_the_judge_function_still_stops_the_job(tmp_path):
    """SIGINT while the function sleeps raises KeyboardInterrupt inside it: that one is the user's, not the
    function's, so the job stops (exit 130) instead of recording a failed pair and going on."""
    f = files(tmp_path, "slow_polite", [""] * 40)
    f["judge"].write_text("backend: python\nfunction: tests.judge_fns:slow_polite\nkwargs: {delay: 0.1}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        rlaif_command(
            "label",
            "--pairs",
            f["pairs"],
            "--constitution",
            f["constitution"],
            "--judge",
            f["judge"],
            "--out",
            f["out"],
            "--batch-size",
            "2",
            "--quiet",
        ),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    labels, deadline = f["out"] / "labels.jsonl", time.time() + 120
    while not (labels.exists() and labels.read_text().count("\n") >= 2) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    time.sleep(0.05)  # inside the next call's sleep (the function spends nearly all its time there)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert json.loads((f["out"] / "manifest.json").read_text())["status"] == "interrupted"
    records = strict_records(labels)
    assert 2 <= len(records) < 40
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
