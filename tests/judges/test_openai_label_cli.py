"""`rlaif label` with the openai judge, as a real subprocess against a real HTTP server on 127.0.0.1 that misbehaves:
it echoes the API key in its error bodies, returns log-probabilities that no softmax makes, or is named by a base
URL that is no URL. What reaches labels.jsonl, stdout and stderr is checked as a user would see it."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli, write_jsonl
from tests.judges.test_openai_judge import FakeServer, Reply, completion

pytestmark = pytest.mark.slow

# As long as a real OpenAI project key (164 characters), with no run of 8 characters that occurs in our own text.
KEY = "sk-proj-" + "".join(hashlib.sha256(f"{i}".encode()).hexdigest()[:12] for i in range(13))
CUT = 200  # characters of a reply body kept in an error message (rlaif/models/http.py _EXCERPT)


def key_runs(text: str, key: str = KEY, run: int = 8) -> list[str]:
    """The runs of `run` consecutive key characters found in `text`: what a leak looks like."""
    return [key[i : i + run] for i in range(len(key) - run + 1) if key[i : i + run] in text]


def strict_records(path: Path) -> list[dict]:
    """labels.jsonl read as strict JSON: NaN and Infinity are refused, as most JSON readers refuse them."""

    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def label(tmp_path: Path, server_url: str, n_pairs: int, **judge_settings):
    """Run `rlaif label` on `n_pairs` pairs with an openai judge YAML pointing at `server_url`."""
    settings = {
        "backend": "openai",
        "model": "judge-model",
        "base_urls": [server_url],
        "max_retries": 1,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "timeout_s": 10,
        "concurrency": 4,
        "top_logprobs": 5,
        **judge_settings,
    }
    judge = tmp_path / "judge.yaml"
    judge.write_text(json.dumps(settings))  # JSON is YAML
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"id": f"p{i}", "prompt": f"question {i}", "response_a": f"answer {i}", "response_b": f"reply {i}"}
            for i in range(n_pairs)
        ],
    )
    out = tmp_path / "out"
    done = run_cli(
        "label",
        "--pairs",
        pairs,
        "--constitution",
        ROOT / "constitutions" / "harmless.yaml",
        "--judge",
        judge,
        "--out",
        out,
        "--quiet",
    )
    return done, out


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


def test_a_key_echoed_at_every_offset_across_the_cut_reaches_no_output(server, tmp_path, monkeypatch):
    """Every request gets an error body with the key starting at the next offset, from wholly before the cut to
    wholly after it; 500s are retried (and logged), 401s fail at once."""
    offsets = list(range(CUT - len(KEY) - 2, CUT + 3))
    counter, lock = itertools.count(), threading.Lock()

    def echo(body: dict) -> Reply:
        with lock:
            n = next(counter)
        offset = offsets[n % len(offsets)]
        return Reply(500 if n % 3 == 0 else 401, "." * offset + KEY + " was rejected")

    server.default = echo
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    done, out = label(tmp_path, server.url, n_pairs=(len(offsets) + 1) // 2 + 8, api_key_env="RLAIF_TEST_KEY")
    assert server.count >= len(offsets)
    assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in server.requests)
    for where, text in [("stdout", done.stdout), ("stderr", done.stderr)] + [
        (p.name, p.read_text()) for p in out.iterdir() if p.is_file()
    ]:
        assert key_runs(text) == [], f"{where} holds part of the key"
    records = strict_records(out / "labels.jsonl")
    assert records and all(r["status"] == "failed" for r in records)
    assert any("HTTP 401" in r["error"] for r in records) and any("gave up" in r["error"] for r in records)
    assert sum("[api key]" in r["error"] for r in records) >= len(records) // 2  # the echo was there, and cut out
    assert "retry 1" in done.stderr  # the retry log lines went to stderr too


def logprob_reply(logprob) -> dict:
    position = {
        "token": "A",
        "logprob": logprob,
        "top_logprobs": [{"token": "A", "logprob": logprob}, {"token": "B", "logprob": -2.0}],
    }
    return completion("A", [position])


@pytest.mark.parametrize("logprob", [float("inf"), float("nan"), 5.0])
def test_logprobs_no_softmax_makes_give_failed_records(server, tmp_path, logprob):
    server.default = lambda body: Reply(body=logprob_reply(logprob))  # json.dumps writes Infinity / NaN as is
    done, out = label(tmp_path, server.url, n_pairs=3)
    assert done.returncode in (0, 4), done.stderr  # 4 once failed pairs set the exit code (issue 9)
    assert "Traceback" not in done.stderr
    records = strict_records(out / "labels.jsonl")
    assert len(records) == 3
    for r in records:
        assert r["status"] == "failed" and r["p_a"] is None, r
        assert "the server returned an invalid log-probability" in r["error"] and "<= 0" in r["error"], r["error"]


def test_a_base_url_that_is_no_url_is_refused_at_load(server, tmp_path):
    judge = tmp_path / "judge.yaml"
    judge.write_text(f"backend: openai\nmodel: judge-model\nbase_urls:\n  - {server.url}\n  - not a url\n")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "response_a": "a", "response_b": "b"}])
    done = run_cli(
        "label",
        "--pairs",
        pairs,
        "--constitution",
        ROOT / "constitutions" / "harmless.yaml",
        "--judge",
        judge,
        "--out",
        tmp_path / "out",
        "--quiet",
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"{judge}:5: base_urls[1]: 'not a url' is not an http:// or https:// URL with a "
        f"host; give the server's base URL, e.g. http://localhost:8000/v1"
    )
    assert server.count == 0 and not (tmp_path / "out").exists()
