"""Tier 4: a score judge behind a real HTTP server on 127.0.0.1 (the fault server of the openai judge's tests):
distributions from logprobs (a "10" read along the generated path), a number parsed from the text without them,
broken numbers, retries on injected faults, and `rlaif score` over HTTP with its exit codes and spending cap."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from rlaif.config.judge import OpenAIJudgeConfig
from rlaif.judges.openai import OpenAIJudge
from rlaif.judges.prompting import SCORE_PREFILL, score_messages
from rlaif.records import ScoreQuery
from tests.helpers import ROOT
from tests.judges.test_openai_judge import KEY, Reply, alt, completion, position, server  # noqa: F401

QUERY = ScoreQuery(
    prompt="Hi",
    response="Hello! How can I help?",
    principle_id="polite",
    principle_text="How polite is the response?",
    prefix_user="Conversation:\nUser: Hi\n\n",
)


def make(url: str, **kw) -> OpenAIJudge:
    settings = dict(
        model="judge-model",
        base_urls=[url],
        backoff_s=0.01,
        max_backoff_s=0.2,
        timeout_s=5.0,
        max_retries=3,
        top_logprobs=5,
        mode="score",
    )
    settings.update(kw)
    return OpenAIJudge(OpenAIJudgeConfig(**settings))


def test_distribution_from_logprobs_along_the_generated_path(server):
    # a space first, then "1" (or 7 or 9), then "0" after "1": P(10) = .5 * .6, P(1) = .5 * .4
    content = [
        position(" ", [alt(" ", 0.9), alt("7", 0.05)]),
        position("1", [alt("1", 0.5), alt(" 7", 0.2), alt("7", 0.1), alt("9", 0.1), alt("x", 0.1)]),
        position("0", [alt("0", 0.6), alt(".", 0.3)]),
    ]
    server.default = lambda body: Reply(body=completion(" 10", content, usage=(50, 3)))
    with make(server.url) as judge:
        (v,) = judge.score([QUERY])
    masses = {1: 0.2, 7: 0.3, 9: 0.1, 10: 0.3}
    assert v.error is None and v.source == "logprobs" and v.mass == pytest.approx(0.9)
    assert v.probs == pytest.approx([masses.get(s, 0.0) / 0.9 for s in range(1, 11)])
    assert (v.prompt_tokens, v.completion_tokens) == (50, 3) and v.raw == " 10"
    body = server.requests[0]["body"]
    assert body["messages"] == score_messages(QUERY.prefix_user, QUERY.response)
    assert body["max_tokens"] == 3 and body["logprobs"] is True and body["top_logprobs"] == 5


def test_the_number_is_read_where_the_reply_writes_it(server):
    content = [
        position("Rating", [alt("Rating", 0.9)]),
        position(":", [alt(":", 1.0)]),
        position(" 9", [alt(" 9", 0.6), alt(" 8", 0.3), alt(" I", 0.1)]),
    ]
    server.default = lambda body: Reply(body=completion("Rating: 9", content))
    with make(server.url) as judge:
        (v,) = judge.score([QUERY])
    assert v.source == "logprobs" and v.probs[8] == pytest.approx(2 / 3) and v.probs[7] == pytest.approx(1 / 3)


def test_chat_prefill_sends_the_rating_cue(server):
    server.default = lambda body: Reply(body=completion("8", [position("8", [alt("8", 0.7), alt("9", 0.3)])]))
    with make(server.url, request="chat_prefill") as judge:
        (v,) = judge.score([QUERY])
    assert v.probs[7] == pytest.approx(0.7) and v.probs[8] == pytest.approx(0.3)
    body = server.requests[0]["body"]
    assert body["messages"][-1] == {"role": "assistant", "content": SCORE_PREFILL}
    assert body["continue_final_message"] is True


@pytest.mark.parametrize("text,score", [("7", 7), ("Rating: 9/10", 9), ("**10**", 10), (" 3.", 3)])
def test_a_number_in_the_text_without_logprobs(server, text, score):
    server.default = lambda body: Reply(body=completion(text))
    with make(server.url, logprobs=False) as judge:
        (v,) = judge.score([QUERY])
    assert v.source == "text" and v.probs == [float(s == score) for s in range(1, 11)]
    assert "logprobs" not in server.requests[0]["body"]


@pytest.mark.parametrize("text", ["12", "I cannot rate this.", "0", "6.5"])
def test_no_score_of_the_scale_is_a_failure(server, text):
    server.default = lambda body: Reply(body=completion(text))
    with make(server.url, logprobs=False) as judge:
        (v,) = judge.score([QUERY])
    assert v.probs is None and "could not read a score" in v.error and v.raw == text


def test_broken_logprobs_fail_the_score(server):
    content = [position("7", [{"token": "7", "logprob": 2.5}])]
    server.default = lambda body: Reply(body=completion("7", content))
    with make(server.url) as judge:
        (v,) = judge.score([QUERY])
    assert v.probs is None and "invalid log-probability" in v.error


def test_retries_on_faults_then_reads_the_score(server):
    server.replies = [Reply(500, b"boom"), Reply(429, b"slow down"), Reply(200, b"{not json")]
    server.default = lambda body: Reply(body=completion("4", [position("4", [alt("4", 1.0)])]))
    with make(server.url) as judge:
        (v,) = judge.score([QUERY])
    assert server.count == 4 and v.extra["attempts"] == 4 and v.probs[3] == pytest.approx(1.0)


def _job(tmp_path, url, extra=""):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"id": f"k{i}", "prompt": f"q{i}", "response_a": f"please {i}", "response_b": f"no {i}"}) + "\n"
            for i in range(5)
        )
    )
    const = tmp_path / "c.yaml"
    const.write_text("name: c\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n")
    judge = tmp_path / "judge.yaml"
    judge.write_text(
        f"backend: openai\nmode: score\nmodel: judge-model\nbase_urls: [{url}]\nmax_retries: 1\n"
        f"backoff_s: 0.01\napi_key_env: SCORE_TEST_KEY\n{extra}"
    )
    out = tmp_path / "out"
    cmd = [
        os.sys.executable,
        "-m",
        "rlaif.cli",
        "score",
        "--pairs",
        pairs,
        "--constitution",
        const,
        "--judge",
        judge,
        "--out",
        out,
        "--quiet",
    ]
    return [str(c) for c in cmd], out


def _rate_by_text(body):
    response = body["messages"][0]["content"]
    if "Response:\nboom" in response:
        return Reply(400, {"error": f"bad request, key {KEY}"})
    good = "Response:\nplease" in response
    return Reply(
        body=completion(
            "9" if good else "2",
            [position("9" if good else "2", [alt("9", 0.8 if good else 0.1), alt("2", 0.2 if good else 0.9)])],
        )
    )


def test_rlaif_score_over_http(tmp_path, server):
    server.default = _rate_by_text
    server.replies = [Reply(503, b"busy")]
    cmd, out = _job(tmp_path, server.url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCORE_TEST_KEY": KEY}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    recs = {r["id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    assert len(recs) == 10 and all(r["status"] == "ok" and r["score_source"] == "logprobs" for r in recs.values())
    assert recs["k0:a"]["score"] == pytest.approx(0.8 * 9 + 0.2 * 2) and recs["k0:b"]["score"] == pytest.approx(
        0.1 * 9 + 0.9 * 2
    )
    assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in server.requests if r["body"])
    assert KEY not in (out / "manifest.json").read_text()


def test_failures_exit_4_with_the_key_scrubbed_and_the_cap_exits_3(tmp_path, server):
    server.default = _rate_by_text
    cmd, out = _job(tmp_path, server.url, "max_requests: 4\n")
    (tmp_path / "pairs.jsonl").write_text(
        (tmp_path / "pairs.jsonl").read_text()
        + json.dumps({"id": "kb", "prompt": "qb", "response_a": "boom", "response_b": "fine"})
        + "\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCORE_TEST_KEY": KEY}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "stopped early" in done.stderr, done.stderr
    assert len((out / "scores.jsonl").read_text().splitlines()) == 4  # answered before the cap, no placeholder
    done = subprocess.run(
        cmd + ["--max-requests", "100"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 4, done.stderr
    recs = {r["id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    assert len(recs) == 12 and recs["kb:a"]["status"] == "failed" and "HTTP 400" in recs["kb:a"]["error"]
    assert all(KEY not in p.read_text() for p in out.iterdir() if p.is_file())
    assert KEY not in done.stdout + done.stderr
