"""Text a model may return: a real HTTP server on 127.0.0.1 (the openai judge's FakeServer) whose replies hold a
lone surrogate, sent as the JSON escape "\\udc80" (json.dumps writes it so), which no UTF-8 encodes. `rlaif label`
(a CoT judge, read from the text), `rlaif score` and `rlaif revise` finish as usual; every record is valid UTF-8
JSON, holds U+FFFD where the surrogate was, and carries the flag text_repaired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import write_jsonl
from tests.judges.test_openai_judge import FakeServer, Reply, completion
from tests.revision.files import cli, prompt_rows, revise_args, revise_files

CONSTITUTION = "name: c\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n"
ODD = "\udc80"


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


def utf8_records(path: Path) -> list[dict]:
    """The records of a JSONL file, its bytes decoded as strict UTF-8, and every string in them encodable."""
    records = [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]
    json.dumps(records, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate, escaped or not
    return records


def judge_files(tmp_path: Path, url: str, extra: str) -> list:
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    (tmp_path / "judge.yaml").write_text(f"backend: openai\nmodel: m\nbase_urls: [{url}]\nmax_retries: 0\n{extra}")
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"id": f"p{i}", "prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(3)],
    )
    return [
        "--pairs",
        pairs,
        "--constitution",
        tmp_path / "c.yaml",
        "--judge",
        tmp_path / "judge.yaml",
        "--out",
        tmp_path / "out",
        "--quiet",
    ]


def test_label_with_a_cot_judge_whose_rationale_holds_a_lone_surrogate(tmp_path, server):
    server.default = lambda body: Reply(body=completion(f"The first is kind {ODD}.\nFinal answer: Response A"))
    result = cli("label", *judge_files(tmp_path, server.url, "cot: {enabled: true}\n"))
    assert result.exit_code == 0, result.stderr
    records = utf8_records(tmp_path / "out" / "labels.jsonl")
    assert len(records) == 3
    for r in records:
        assert r["status"] == "ok" and r["verdict_source"] == ["text", "text"]
        assert r["rationale"] == ["The first is kind \ufffd.", "The first is kind \ufffd."]
        assert r["flags"] == ["text_repaired"]


def test_score_whose_reply_holds_a_lone_surrogate(tmp_path, server):
    server.default = lambda body: Reply(body=completion(f"{ODD} 7"))
    result = cli("score", *judge_files(tmp_path, server.url, "mode: score\n"))
    assert result.exit_code == 0, result.stderr
    records = utf8_records(tmp_path / "out" / "scores.jsonl")
    assert len(records) == 6
    for r in records:
        assert r["status"] == "ok" and r["score"] == 7 and r["raw"] == "\ufffd 7" and r["flags"] == ["text_repaired"]


def test_revise_whose_replies_hold_lone_surrogates(tmp_path, server):
    # every reply in the chain of q0 holds the surrogate, none in q1's; an emoji, which json.dumps escapes as its
    # surrogate pair, is a valid character and is kept as it is
    def reply(body):
        odd = ODD if "thing 0" in body["messages"][0]["content"] else ""
        return Reply(body=completion(f"{body['messages'][-1]['content'][:12]} {odd}\U0001f600"))

    server.default = reply
    model = json.dumps({"backend": "openai", "model": "m", "base_urls": [server.url], "max_retries": 0})
    files = revise_files(tmp_path, prompt_rows(2), model=model)
    result = cli(*revise_args(files, "--rounds", "1"))
    assert result.exit_code == 0, result.stderr
    records = {r["id"]: r for r in utf8_records(files["out"] / "revisions.jsonl")}
    assert sorted(records) == ["q0", "q1"] and all(r["status"] == "ok" for r in records.values())
    texts = {k: [r["initial"], r["rounds"][0]["critique"], r["final"]] for k, r in records.items()}
    assert all(t.endswith(" \ufffd\U0001f600") for t in texts["q0"]) and records["q0"]["flags"] == ["text_repaired"]
    assert all(t.endswith(" \U0001f600") for t in texts["q1"]) and "flags" not in records["q1"]
