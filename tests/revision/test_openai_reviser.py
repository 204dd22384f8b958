"""The openai generation backend against a real HTTP server on 127.0.0.1 (tests/judges/test_openai_judge.py's
FakeServer) that injects faults: retries on 5xx, 429, garbled bodies and timeouts, a fatal reply failing its chain
with the key scrubbed, where generation stopped, and a spending cap that stops the job cleanly (exit 3) and holds
over runs."""

from __future__ import annotations

import json

import pytest

from rlaif.config.judge import OpenAIJudgeConfig
from rlaif.config.sampling import SamplingConfig
from rlaif.revision.generators import Request
from rlaif.revision.openai import OpenAIGenerator
from tests.judges.test_openai_judge import KEY, FakeServer, Reply, completion
from tests.revision.files import cli, prompt_rows, revise_args, revise_files, revised, stats


@pytest.fixture
def server():
    s = FakeServer()
    s.default = lambda body: Reply(
        body=completion(
            f"re: {body['messages'][-1]['content'][:40]}",
            usage=(50, 7),
            finish="length" if body["seed"] % 2 else "stop",
        )
    )
    yield s
    s.stop()


def http_files(tmp_path, server, n: int, **settings):
    model = {
        "backend": "openai",
        "model": "reviser-model",
        "base_urls": [server.url],
        "api_key_env": "RLAIF_TEST_KEY",
        "max_retries": 3,
        "backoff_s": 0.01,
        "max_backoff_s": 0.2,
        "timeout_s": 1.0,
        **settings,
    }
    return revise_files(tmp_path, prompt_rows(n), model=json.dumps(model))


def test_the_chain_over_http_retries_faults_and_sends_the_generation_settings(tmp_path, server, monkeypatch):
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    server.replies = [
        Reply(500, b"boom"),
        Reply(429, b"slow down", headers={"Retry-After": "0.05"}),
        Reply(200, b"{not json"),
        Reply(200, {"choices": []}),
        Reply(body=completion("x"), delay=1.5),
    ]
    files = http_files(tmp_path, server, 2)
    (tmp_path / "sampling.yaml").write_text("temperature: 0.7\ntop_p: 0.9\ntop_k: 5\nmax_new_tokens: 33\n")
    result = cli(*revise_args(files, "--rounds", "1", "--config", tmp_path / "sampling.yaml"))
    assert result.exit_code == 0, result.stderr
    records = revised(files["out"])
    assert all(r["status"] == "ok" for r in records.values())
    assert server.count == 6 + 5  # three steps for each of two prompts, and five faults retried
    bodies = [r["body"] for r in server.requests]
    assert {b["model"] for b in bodies} == {"reviser-model"}
    assert all((b["temperature"], b["top_p"], b["top_k"], b["max_tokens"]) == (0.7, 0.9, 5, 33) for b in bodies)
    assert all(isinstance(b["seed"], int) for b in bodies)
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in server.requests)
    r = records["q0"]
    assert r["final"].startswith("re: Rewrite the answer") and r["rounds"][0]["critique"].startswith("re: Say")
    finishes = [r["initial_finish"], r["rounds"][0]["critique_finish"], r["rounds"][0]["revision_finish"]]
    assert set(finishes) <= {"eos", "length"} and r["completion_tokens"] == 21 and r["prompt_tokens"] == 150
    # what the server said about where each reply stopped is what the record says
    sent = {json.dumps(b["messages"]): b["seed"] % 2 for b in bodies if "messages" in b}
    first = [{"role": "user", "content": "how do i fix thing 0"}]
    assert r["initial_finish"] == ("length" if sent[json.dumps(first)] else "eos")
    everything = "".join(p.read_text() for p in files["out"].iterdir() if p.is_file()) + result.stdout + result.stderr
    assert KEY not in everything and KEY[:8] not in everything


def test_a_fatal_reply_fails_its_chain_with_the_key_scrubbed(tmp_path, server, monkeypatch):
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    server.replies = [Reply(401, f"bad key {KEY}".encode())]
    files = http_files(tmp_path, server, 2, concurrency=1)
    result = cli(*revise_args(files, "--rounds", "1"))
    assert result.exit_code == 4
    failed = [r for r in revised(files["out"]).values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["final"] is None and failed[0]["rounds"] == []
    assert (
        failed[0]["error"].startswith("the first answer: HTTP 401 from ") and "bad key [api key]" in failed[0]["error"]
    )
    assert KEY not in (files["out"] / "revisions.jsonl").read_text() + result.stderr


def test_the_spending_cap_stops_cleanly_and_holds_over_runs(tmp_path, server, monkeypatch):
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    files = http_files(tmp_path, server, 3, concurrency=1)
    (tmp_path / "sampling.yaml").write_text("batch_size: 1\n")
    args = revise_args(files, "--rounds", "1", "--config", tmp_path / "sampling.yaml")
    stopped = cli(*args, "--max-requests", "4")
    assert stopped.exit_code == 3 and "stopped early (budget: request cap reached" in stopped.stderr
    assert sorted(revised(files["out"])) == ["q0"]  # the chain the cap cut is not recorded, nor made up
    assert json.loads((files["out"] / "spend.json").read_text())["requests"] == 4
    assert cli(*args, "--max-requests", "4").exit_code == 3 and server.count == 4  # the cap holds per job
    done = cli(*args, "--max-requests", "20")
    assert done.exit_code == 0, done.stderr
    # q1's chain, cut after its first answer, is run whole again: 4 requests before, 3 + 3 now
    assert sorted(revised(files["out"])) == ["q0", "q1", "q2"] and stats(files["out"])["spent_requests"] == 4 + 6


def test_the_reviser_retries_what_it_cannot_read_and_says_so_as_the_reviser(server, monkeypatch, caplog):
    """The reviser reads replies itself now (no judge lent it its reading): a body with no text message is retried,
    and the retry lines name the reviser and never the key."""
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    caplog.set_level("WARNING")
    server.replies = [
        Reply(body={"choices": [{"message": f"no object {KEY}"}]}),
        Reply(body={"choices": [{"message": {"content": [KEY]}}]}),
        Reply(body=[KEY]),
    ]
    config = OpenAIJudgeConfig(
        model="m", base_urls=[server.url], api_key_env="RLAIF_TEST_KEY", backoff_s=0.01, max_retries=3
    )
    generator = OpenAIGenerator(config, SamplingConfig())
    try:
        (reply,) = generator.generate([Request([{"role": "user", "content": "hi"}], "initial", None, 1)])
    finally:
        generator.close()
    assert reply.text == "re: hi" and reply.finish == "length" and server.count == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(line.startswith("openai reviser: unreadable response body") for line in lines)
    assert KEY not in caplog.text and KEY[:8] not in caplog.text
