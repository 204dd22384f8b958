"""Tier 4: `rlaif revise --ray` on the local Ray cluster (two workers): the revision records, stats and manifest are
the in-process job's, through the command line, and the same command again resumes."""

from __future__ import annotations

import json

from tests.cluster.compare import TIMING, close
from tests.labeling.jobfiles import strict_records
from tests.revision.files import cli, prompt_rows, revise_args, revise_files


def test_revise_on_ray_writes_the_in_process_revisions(tmp_path, ray_cluster):
    files = revise_files(tmp_path, prompt_rows(12))
    here = cli(*revise_args({**files, "out": tmp_path / "here"}, "--seed", "5"))
    there = cli(
        *revise_args(
            {**files, "out": tmp_path / "there"}, "--seed", "5", "--ray", "--ray-address", ray_cluster, "--workers", "2"
        )
    )
    assert here.exit_code == there.exit_code == 0, there.stderr
    assert "prompts/s per worker" in there.stdout
    records = [
        sorted(strict_records(tmp_path / d / "revisions.jsonl"), key=lambda r: r["id"]) for d in ("here", "there")
    ]
    assert len(records[0]) == 12 and len({r["rounds"][0]["principle_id"] for r in records[0]}) == 2
    close(*records, "records")
    for name in ("stats.json", "manifest.json"):
        a, b = (json.loads((tmp_path / d / name).read_text()) for d in ("here", "there"))
        assert b["ray"]["workers"] == 2
        close(*({k: v for k, v in j.items() if k not in TIMING} for j in (a, b)), name)
    again = cli(
        *revise_args(
            {**files, "out": tmp_path / "there"}, "--seed", "5", "--ray", "--ray-address", ray_cluster, "--workers", "2"
        )
    )
    assert again.exit_code == 0 and json.loads((tmp_path / "there" / "stats.json").read_text())["revised_now"] == 0
