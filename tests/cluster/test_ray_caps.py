"""Tier 4: a spending cap on Ray holds exactly as in-process. The HTTP judge runs in the Ray workers against a
real server on 127.0.0.1; with `max_requests: 7` the job sends 7 requests whatever the number of workers, stops
cleanly (no placeholder labels), and a higher cap resumes it to the end."""

from __future__ import annotations

import json

from rlaif.cluster.connect import RayOptions
from rlaif.labeling.job import label
from tests.judges.test_openai_judge import FakeServer
from tests.labeling.jobfiles import job_files, strict_records
from tests.labeling.test_openai_job import _polite


def test_a_capped_job_on_ray_stops_at_the_cap_and_resumes(tmp_path, ray_cluster):
    server = FakeServer()
    server.default = _polite
    server.models_status = 200  # a local server without a key
    try:
        rows = [{"id": f"o{i}", "prompt": f"q{i}", "chosen": f"please {i}", "rejected": f"no {i}"} for i in range(8)]
        files = job_files(tmp_path, rows)

        def judge(cap: int):
            path = tmp_path / f"judge{cap}.yaml"
            path.write_text(f"backend: openai\nmodel: m\nbase_urls: ['{server.url}']\nmax_requests: {cap}\n"
                            f"backoff_s: 0.01\nconcurrency: 2\nprice_per_1k_prompt_tokens: 0.5\n")
            return path

        ray = RayOptions(ray_cluster, workers=2)
        stopped = label(files["pairs"], files["constitution"], judge(7), files["out"], batch_size=2,
                        progress=False, ray=ray)
        posts = [r for r in server.requests if r["body"] is not None]
        assert stopped.stopped and "max_requests" in stopped.stopped and len(posts) == 7
        records = strict_records(files["out"] / "labels.jsonl")
        assert 0 < len(records) <= 3 and all(r["status"] == "ok" for r in records)
        assert json.loads((files["out"] / "spend.json").read_text())["requests"] == 7
        done = label(files["pairs"], files["constitution"], judge(1000), files["out"], batch_size=2,
                     progress=False, ray=ray)
        assert not done.stopped
        assert sorted(r["id"] for r in strict_records(files["out"] / "labels.jsonl")) == [f"o{i}" for i in range(8)]
    finally:
        server.stop()
