"""Tier 4: `rlaif score --ray` on the local Ray cluster (two workers): the score records, stats and manifest are
the in-process job's, through the command line, and the same command again resumes with nothing to rate."""

from __future__ import annotations

import json
import subprocess

from tests.cluster.compare import TIMING, close
from tests.helpers import ROOT, rlaif_command
from tests.labeling.jobfiles import strict_records
from tests.scoring.test_score_job import _files


def _score(f: dict, out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        rlaif_command(
            "score",
            "--pairs",
            f["pairs"],
            "--constitution",
            f["constitution"],
            "--judge",
            f["judge"],
            "--out",
            out,
            "--quiet",
            *extra,
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_score_on_ray_writes_the_in_process_scores(tmp_path, ray_cluster):
    f = _files(tmp_path, n=20)
    ray = ("--ray", "--ray-address", ray_cluster, "--workers", "2", "--batch-size", "4")
    here, there = _score(f, tmp_path / "here", "--batch-size", "4"), _score(f, tmp_path / "there", *ray)
    assert here.returncode == there.returncode == 0, there.stderr[-2000:]
    assert "responses/s per worker" in there.stdout and "Traceback" not in there.stderr
    records = [sorted(strict_records(tmp_path / d / "scores.jsonl"), key=lambda r: r["id"]) for d in ("here", "there")]
    assert len(records[0]) == 40 and {r["status"] for r in records[1]} == {"ok"}
    close(*records, "records")
    for name in ("stats.json", "manifest.json"):
        a, b = (json.loads((tmp_path / d / name).read_text()) for d in ("here", "there"))
        assert b["ray"]["workers"] == 2
        assert name != "stats.json" or sum(w["responses"] for w in b["ray"]["per_worker"]) == 40
        close(*({k: v for k, v in j.items() if k not in TIMING | {"responses_per_s"}} for j in (a, b)), name)
    again = _score(f, tmp_path / "there", *ray)
    assert again.returncode == 0 and json.loads((tmp_path / "there" / "stats.json").read_text())["scored_now"] == 0
