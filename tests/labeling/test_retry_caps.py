"""`rlaif label` on the HTTP judge against a real server on 127.0.0.1: failed pairs make the exit code 4 and are
labelled again by --retry-failed; spending caps hold per job folder across reruns (3 wins over 4), and across a
SIGKILL mid-batch; a logprob of Infinity never becomes a label."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import ROOT
from tests.judges.test_openai_judge import FakeServer, Reply, alt, completion, position
from tests.labeling.jobfiles import job_files, label_command, polite_rows, rlaif_label, stored, strict_records


def _polite(body: dict) -> Reply:
    """Prefers the response containing 'please', in whichever slot it was shown."""
    first = body["messages"][-1]["content"].split("Response A:\n", 1)[1].split("\n\nResponse B:", 1)[0]
    pick, other = ("A", "B") if "please" in first else ("B", "A")
    return Reply(body=completion(pick, [position(pick, [alt(pick, 0.8), alt(other, 0.2)])], usage=(50, 1)))


def _down(body: dict) -> Reply:
    return Reply(status=503, body="the server is down")


@pytest.fixture
def server():
    s = FakeServer()
    s.default = _polite
    yield s
    s.stop()


def http_job(tmp_path, server, n: int, caps: str = "") -> dict:
    files = job_files(tmp_path, polite_rows(n))
    files["judge"].write_text(
        f"backend: openai\nmodel: m\nbase_urls: ['{server.url}']\nmax_retries: 0\n"
        f"backoff_s: 0.01\nconcurrency: 2\nprice_per_1k_prompt_tokens: 0.5\n{caps}"
    )
    return files


def test_failed_pairs_exit_4_until_retried(tmp_path, server):
    server.default = _down
    files = http_job(tmp_path, server, 6)
    p = rlaif_label(files)
    assert p.returncode == 4, p.stderr
    assert p.stderr.strip().startswith(
        "6 pairs have no label because the judge failed (6 this run, 0 before; most often: gave up after 1 attempts"
    )
    assert "run the same command with --retry-failed" in p.stderr
    server.default = _polite  # the server is back
    p = rlaif_label(files)  # without --retry-failed the failures stand, and still count
    assert p.returncode == 4 and "(0 this run, 6 before;" in p.stderr
    assert rlaif_label(files, "--allow-failed").returncode == 0
    p = rlaif_label(files, "--retry-failed")
    assert p.returncode == 0, p.stderr
    recs = stored(files["out"])
    assert len(recs) == 6 and all(r["status"] == "ok" and r["label"] == "a" for r in recs.values())
    assert len(strict_records(files["out"] / "superseded.jsonl")) == 6
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert (stats["retried_this_run"], stats["failed"], stats["failed_before"]) == (6, 0, 0)


def test_the_exit_4_summary_gives_the_whole_reason(tmp_path, server):
    server.default = lambda body: Reply(status=401, body="invalid key: ask the admin")
    files = http_job(tmp_path, server, 2)
    p = rlaif_label(files)
    assert p.returncode == 4, p.stderr
    reason = (
        f"HTTP 401 from {server.url}/chat/completions: invalid key: ask the admin (no API key was sent: name "
        f"the environment variable that holds it in the judge's api_key_env)"
    )
    assert f"most often: {reason}; all reasons in" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert stats["failure_reasons"] == {reason: 2}


def test_a_spending_cap_holds_per_job_across_reruns_and_wins_over_failures(tmp_path, server):
    files = http_job(tmp_path, server, 8, caps="max_requests: 6\n")
    p = rlaif_label(files, "--batch-size", "1")
    assert p.returncode == 3 and server.count == 6
    p = rlaif_label(files, "--batch-size", "1")  # the same cap again: the job has spent it already
    assert p.returncode == 3 and server.count == 6
    assert "over all its runs (6 requests" in p.stderr and "--max-requests" in p.stderr
    assert json.loads((files["out"] / "spend.json").read_text()) == {"requests": 6, "cost": 0.15}
    p = rlaif_label(files, "--max-requests", "100")
    assert p.returncode == 0, p.stderr
    assert server.count == 16 and len(stored(files["out"])) == 8
    assert json.loads((files["out"] / "spend.json").read_text())["requests"] == 16
    assert json.loads((files["out"] / "stats.json").read_text())["spent_requests"] == 16

    server.default = _down  # failures and a cap in one run: the cap's 3 wins
    files["out"] = tmp_path / "down"
    assert rlaif_label(files, "--batch-size", "1", "--max-requests", "3").returncode == 3
    assert [r["status"] for r in stored(files["out"]).values()] == ["failed"]


def test_a_cap_holds_when_the_job_is_killed_with_a_batch_in_flight(tmp_path, server):
    files = http_job(tmp_path, server, 4, caps="max_requests: 6\n")
    hang = {"on": True}

    def answer(body: dict) -> Reply:  # the first batch (2 pairs, 4 requests) answered, then the server hangs
        reply = _polite(body)
        reply.delay = 30.0 if hang["on"] and len(server.requests) > 4 else 0.0
        return reply

    server.default = answer
    proc = subprocess.Popen(
        label_command(files, "--batch-size", "2"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.time() + 120
    while server.count < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None and server.count == 6  # both requests of the second batch are out
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    hang["on"] = False
    # the batch in flight was held in spend.json before it went out: counted as sent, since it may have been
    assert json.loads((files["out"] / "spend.json").read_text())["reserved_requests"] == 2
    p = rlaif_label(files, "--batch-size", "2")
    assert p.returncode == 3, p.stderr
    assert server.count == 6 and "(6 requests" in p.stderr  # the resumed job sent nothing past the cap
    assert len(stored(files["out"])) == 2


def test_each_shard_folder_is_a_job_with_its_own_cap(tmp_path, server):
    files = http_job(tmp_path, server, 12, caps="max_requests: 4\n")
    for i in range(2):
        files["out"] = tmp_path / f"shard{i}"
        assert rlaif_label(files, "--shard", f"{i}/2", "--batch-size", "1").returncode == 3
        assert json.loads((files["out"] / "spend.json").read_text())["requests"] == 4
    assert server.count == 8


def test_caps_on_a_judge_without_them_are_refused(tmp_path):
    files = job_files(tmp_path, polite_rows(2))
    p = rlaif_label(files, "--max-cost", "1.5")
    assert p.returncode == 2 and p.stderr.strip() == (
        "error: --max-cost: a python judge has no spending caps (backend: openai has)"
    )


def test_an_infinite_logprob_is_a_failed_record_never_nan(tmp_path, server):
    body = completion("A", [position("A", [{"token": "A", "logprob": "INF"}, alt("B", 0.1)])])
    server.default = lambda _: Reply(body=json.dumps(body).replace('"INF"', "Infinity"))
    files = http_job(tmp_path, server, 2)
    p = rlaif_label(files)
    assert p.returncode == 4, p.stderr
    for r in stored(files["out"]).values():  # strict JSON: NaN and Infinity would fail here
        assert r["status"] == "failed" and r["p_a"] is None and r["label"] is None
