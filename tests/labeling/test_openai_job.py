"""A whole `rlaif label` job on the HTTP judge against a real server on 127.0.0.1: the spending cap stops the
job cleanly (exit 3, no placeholder labels), the same command resumes it, and the API key is written nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT
from tests.judges.test_openai_judge import FakeServer, Reply, alt, completion, position

KEY = "sk-job-SECRET-987654321"


def _polite(body: dict) -> Reply:
    """Prefers the response containing 'please', in whichever slot it was shown."""
    text = body["messages"][-1]["content"]
    first = text.split("Response A:\n", 1)[1].split("\n\nResponse B:", 1)[0]
    pick = "A" if "please" in first else "B"
    other = "B" if pick == "A" else "A"
    return Reply(body=completion(pick, [position(pick, [alt(pick, 0.8), alt(other, 0.2)])], usage=(50, 1)))


def test_capped_job_stops_cleanly_and_resumes(tmp_path):
    server = FakeServer()
    server.default = _polite
    try:
        pairs = tmp_path / "pairs.jsonl"
        pairs.write_text(
            "".join(
                json.dumps({"id": f"o{i}", "prompt": f"q{i}", "chosen": f"please {i}", "rejected": f"no {i}"}) + "\n"
                for i in range(8)
            )
        )
        const = tmp_path / "c.yaml"
        const.write_text("name: c\nversion: '1'\nprinciples:\n  - id: p\n    text: Which is more polite?\n")

        def judge_file(cap):
            f = tmp_path / f"judge{cap}.yaml"
            f.write_text(
                f"backend: openai\nmodel: m\nbase_urls: ['{server.url}']\napi_key_env: RLAIF_TEST_KEY\n"
                f"max_requests: {cap}\nbackoff_s: 0.01\nconcurrency: 2\n"
                f"price_per_1k_prompt_tokens: 0.5\n"
            )
            return f

        env = {**os.environ, "PYTHONPATH": str(ROOT), "RLAIF_TEST_KEY": KEY}
        cmd = [
            sys.executable,
            "-m",
            "rlaif.cli",
            "label",
            "--pairs",
            str(pairs),
            "--constitution",
            str(const),
            "--out",
            str(tmp_path / "out"),
            "--batch-size",
            "2",
            "--quiet",
            "--judge",
        ]
        p = subprocess.run(cmd + [str(judge_file(7))], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 3, p.stderr[-2000:]
        assert "stopped early" in p.stderr and "max_requests" in p.stderr
        recs = [json.loads(x) for x in (tmp_path / "out" / "labels.jsonl").read_text().splitlines()]
        assert 0 < len(recs) <= 3 and all(r["status"] == "ok" for r in recs)  # 7 requests: at most 3 whole pairs
        assert all(r["label"] == r["human_label"] for r in recs)
        assert server.count == 7
        # A bigger cap is plumbing, not a different judge: the same output directory resumes.
        p = subprocess.run(
            cmd + [str(judge_file(1000))], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0, p.stderr[-2000:]
        recs = [json.loads(x) for x in (tmp_path / "out" / "labels.jsonl").read_text().splitlines()]
        assert sorted(r["id"] for r in recs) == [f"o{i}" for i in range(8)]
        stats = json.loads((tmp_path / "out" / "stats.json").read_text())
        assert stats["estimated_cost"] == 8 * 2 * 50 * 0.5 / 1000 and stats["agreement_with_human"] == 1.0
        assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in server.requests)
        for f in (tmp_path / "out").iterdir():
            assert KEY not in f.read_text(), f"API key leaked into {f.name}"
    finally:
        server.stop()
