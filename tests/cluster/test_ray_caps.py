"""Tier 4: a spending cap on Ray holds exactly as in-process. The HTTP judge runs in the Ray workers against a
real server on 127.0.0.1; with `max_requests: 7` the job sends 7 requests whatever the number of workers, stops
cleanly (no placeholder labels), and a higher cap resumes it to the end. A worker SIGKILLed mid-batch does not
get the cap paid twice: its lost attempt counts as the rest of the cap, and the server never gets more than 7."""

from __future__ import annotations

import json
from pathlib import Path

import psutil  # ships with Ray (ray/thirdparty_files)

from rlaif.cluster.connect import RayOptions
from rlaif.labeling.job import label
from tests.judges.test_openai_judge import FakeServer
from tests.labeling.jobfiles import job_files, strict_records
from tests.labeling.test_openai_job import _polite

ROWS = [{"id": f"o{i}", "prompt": f"q{i}", "chosen": f"please {i}", "rejected": f"no {i}"} for i in range(8)]


def _judge(tmp_path: Path, server: FakeServer, cap: int) -> Path:
    path = tmp_path / f"judge{cap}.yaml"
    path.write_text(
        f"backend: openai\nmodel: m\nbase_urls: ['{server.url}']\nmax_requests: {cap}\n"
        f"backoff_s: 0.01\nconcurrency: 2\nprice_per_1k_prompt_tokens: 0.5\n"
    )
    return path


def _posts(server: FakeServer) -> int:
    return sum(r["body"] is not None for r in server.requests)


def test_a_capped_job_on_ray_stops_at_the_cap_and_resumes(tmp_path, ray_cluster):
    server = FakeServer()
    server.default = _polite
    server.models_status = 200  # a local server without a key
    try:
        files = job_files(tmp_path, ROWS)
        ray = RayOptions(ray_cluster, workers=2)
        stopped = label(
            files["pairs"],
            files["constitution"],
            _judge(tmp_path, server, 7),
            files["out"],
            batch_size=2,
            progress=False,
            ray=ray,
        )
        assert stopped.stopped and "max_requests" in stopped.stopped and _posts(server) == 7
        records = strict_records(files["out"] / "labels.jsonl")
        assert 0 < len(records) <= 3 and all(r["status"] == "ok" for r in records)
        assert json.loads((files["out"] / "spend.json").read_text())["requests"] == 7
        done = label(
            files["pairs"],
            files["constitution"],
            _judge(tmp_path, server, 1000),
            files["out"],
            batch_size=2,
            progress=False,
            ray=ray,
        )
        assert not done.stopped
        assert sorted(r["id"] for r in strict_records(files["out"] / "labels.jsonl")) == [f"o{i}" for i in range(8)]
    finally:
        server.stop()


def _kill_the_sender(port: int) -> int:
    """SIGKILL the Ray worker holding a connection to the judge server on `port` (the one judging this batch)."""
    for proc in psutil.process_iter(["cmdline"]):
        if "ModelWorker" not in " ".join(proc.info["cmdline"] or []):
            continue
        try:
            if any(c.raddr and c.raddr.port == port for c in proc.net_connections(kind="tcp")):
                proc.kill()
                return proc.pid
        except psutil.Error:
            continue
    raise AssertionError("no Ray worker is connected to the judge server")


def test_a_worker_killed_mid_batch_does_not_overrun_the_cap(tmp_path, ray_cluster):
    """Batches of 2 pairs are 4 requests (both orders). The worker is killed as the 5th request (the second batch's
    first) arrives: Ray's retry would send that batch again from 4 spent, 8 or 9 requests in all."""
    server = FakeServer()
    server.models_status = 200
    port, killed = int(server.url.rsplit(":", 1)[1].split("/")[0]), []

    def reply(body: dict):
        if _posts(server) == 5 and not killed:  # server.requests holds this request already
            killed.append(_kill_the_sender(port))
        return _polite(body)

    server.default = reply
    try:
        files = job_files(tmp_path, ROWS)
        ray = RayOptions(ray_cluster, workers=1)
        stopped = label(
            files["pairs"],
            files["constitution"],
            _judge(tmp_path, server, 7),
            files["out"],
            batch_size=2,
            progress=False,
            ray=ray,
        )
        assert killed and 5 <= _posts(server) <= 7  # what reached the server: never more than the cap
        assert stopped.stopped and "a worker died mid-batch" in stopped.stopped
        assert json.loads((files["out"] / "spend.json").read_text())["requests"] == 7  # the bound, counted
        assert sorted(r["id"] for r in strict_records(files["out"] / "labels.jsonl")) == ["o0", "o1"]
        before = _posts(server)
        done = label(
            files["pairs"],
            files["constitution"],
            _judge(tmp_path, server, 19),
            files["out"],
            batch_size=2,
            progress=False,
            ray=ray,
        )  # 12 requests left for the 6 pairs still to label
        assert not done.stopped and _posts(server) - before == 12
        assert sorted(r["id"] for r in strict_records(files["out"] / "labels.jsonl")) == [f"o{i}" for i in range(8)]
    finally:
        server.stop()
