"""Score folders feed calibration like label folders: `rlaif calibrate` reports agreement and ECE of the derived
P(a ≻ b) against the human choices the pairs carry, and `rlaif calibrate fit --method temperature` fits the score
judge's T, which a second `rlaif score` run takes up without rating anything anew."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess

import pytest

from tests.helpers import ROOT, rlaif_command

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _run(*args) -> subprocess.CompletedProcess:
    done = subprocess.run(rlaif_command(*args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def test_report_and_fitted_temperature_of_a_score_judge(tmp_path):
    pairs = tmp_path / "hh.jsonl"
    with open(pairs, "w") as f:
        for i in range(80):  # people prefer the polite response in 3 pairs of 4
            polite, rude = f"\n\nHuman: q{i}\n\nAssistant: please {i}", f"\n\nHuman: q{i}\n\nAssistant: no {i}"
            chosen, rejected = (polite, rude) if i % 4 else (rude, polite)
            f.write(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")
    const = tmp_path / "c.yaml"
    const.write_text("name: c\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n")
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n")
    out = tmp_path / "scores"
    _run("score", "--pairs", pairs, "--constitution", const, "--judge", judge, "--out", out, "--quiet")

    report = _run("calibrate", "--ai", out, "--human", out, "--out", tmp_path / "report", "--resamples", "0")
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["n_pairs"] == 80 and data["agreement"] == pytest.approx(0.75)
    assert data["position_consistency"] == 1.0  # each response rated alone: no order to sway it
    # at T = 1 a 5-point gap says P = 0.993 where people agree 75% of the time: badly calibrated
    assert data["ece"] == pytest.approx(abs(1 / (1 + math.exp(-5)) - 0.75), abs=1e-3)
    assert "agreement" in report.stdout
    assert data["score_histogram"]["8"] == 80 and data["score_histogram"]["3"] == 80  # 'please' 8, the rest 3
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Expected scores (score judge)" in page and "<td>8</td><td>80</td>" in page

    fit = _run(
        "calibrate",
        "fit",
        "--ai",
        out,
        "--human",
        out,
        "--method",
        "temperature",
        "--holdout",
        "0",
        "--out",
        tmp_path / "map.json",
    )
    t = json.loads((tmp_path / "map.json").read_text())["fit"]["score_temperature"]
    assert t == pytest.approx(5 / math.log(3), rel=0.02)  # σ(5 / T) = 0.75
    assert re.search(r"fitted T = 4\.5", fit.stdout)

    applied = _run("calibrate", "apply", "--map", tmp_path / "map.json", "--labels", out, "--out", tmp_path / "cal")
    calibrated = [json.loads(line) for line in (tmp_path / "cal" / "labels.jsonl").read_text().splitlines()]
    assert len(calibrated) == 80 and json.loads(applied.stdout.strip().splitlines()[-1])
    assert all(
        r["judge"]["mode"] == "score"
        and len(r["scores"]) == 2
        and r["p_a_raw"] is not None
        and abs(r["p_a"] - 0.5) < abs(r["p_a_raw"] - 0.5)
        for r in calibrated
    )  # T > 1: softer

    judge.write_text(judge.read_text() + f"score: {{temperature: {t}}}\n")
    again = _run("score", "--pairs", pairs, "--constitution", const, "--judge", judge, "--out", out, "--quiet")
    assert re.search(r"scored this run\s*│\s*0\b", again.stdout)
    _run("calibrate", "--ai", out, "--human", out, "--out", tmp_path / "report2", "--resamples", "0")
    after = json.loads((tmp_path / "report2" / "report.json").read_text())
    # the ranking is the same; P is now about 0.75 where people agree 75% of the time (what is left is the binned
    # sampling error of 80 pairs split by a random order)
    assert after["agreement"] == pytest.approx(0.75) and after["ece"] < data["ece"] / 3
