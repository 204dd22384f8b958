"""The openai backend's request shapes (`request: chat | chat_prefill | completions`), the verdict source it keeps
per order, and a key variable that is not set, against the real HTTP server of test_openai_judge.py on 127.0.0.1.
The completions prompt is checked token for token against the transformers backend's own prompt."""

from __future__ import annotations

import json
import math

import pytest

from rlaif.config.judge import OpenAIJudgeConfig, load_judge_config
from rlaif.judges.prompting import ANSWER_PREFILL, ChatLayout
from tests.helpers import ROOT, run_cli, write_jsonl
from tests.judges.test_openai_judge import FakeServer, Reply, alt, completion, make, position, query


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


def text_completion(text: str, top: dict[str, float], usage=(80, 1)) -> dict:
    """A /completions reply (the legacy API's shape: logprobs as parallel lists, alternatives as a dict)."""
    logprobs = {
        "tokens": [text],
        "token_logprobs": [math.log(top.get(text, 0.5))],
        "text_offset": [0],
        "top_logprobs": [{t: math.log(p) for t, p in top.items()}],
    }
    return {
        "id": "x",
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": "length"}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def local_prompt_ids(tokenizer, q) -> list[int]:
    """What the transformers backend feeds its model for `q`: the segments, each tokenised on its own."""
    seg = ChatLayout(tokenizer).segments(q.prefix_user, q.first, q.second, q.principle_text, cot=False)
    ids = [i for part in (seg.prefix, seg.body, seg.tail) for i in tokenizer(part, add_special_tokens=False).input_ids]
    assert tokenizer.decode(ids).endswith(ANSWER_PREFILL)
    return ids


def test_completions_sends_the_local_backends_prompt_and_reads_its_logprobs(server, tiny_model_dir):
    from transformers import AutoTokenizer

    server.default = lambda body: Reply(body=text_completion(" A", {" A": 0.6, "A": 0.1, " B": 0.2, "x": 0.1}))
    with make([server.url], request="completions", tokenizer=str(tiny_model_dir)) as judge:
        (v,) = judge.judge([query()])
    sent = server.requests[0]
    assert sent["path"] == "/v1/completions"
    assert sent["body"]["prompt"] == local_prompt_ids(AutoTokenizer.from_pretrained(tiny_model_dir), query())
    assert sent["body"]["logprobs"] == 5 and sent["body"]["max_tokens"] == 1 and "messages" not in sent["body"]
    assert v.error is None and v.p_first == pytest.approx(0.7 / 0.9) and v.label_mass == pytest.approx(0.9)
    assert v.extra["verdict_source"] == "logprobs" and v.prompt_tokens == 80


def test_completions_without_logprobs_reads_the_text(server, tiny_model_dir):
    reply = text_completion("B", {})
    reply["choices"][0]["logprobs"] = None
    server.default = lambda body: Reply(body=reply)
    with make([server.url], request="completions", tokenizer=str(tiny_model_dir), logprobs=False) as judge:
        (v,) = judge.judge([query()])
    assert "logprobs" not in server.requests[0]["body"]
    assert v.p_first == 0.0 and v.extra["verdict_source"] == "text"


def test_chat_prefill_continues_the_answer_cue(server):
    server.default = lambda body: Reply(body=completion(" A", [position(" A", [alt(" A", 0.3), alt(" B", 0.6)])]))
    with make([server.url], request="chat_prefill") as judge:
        (v,) = judge.judge([query()])
    body = server.requests[0]["body"]
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["messages"][-1]["content"] == ANSWER_PREFILL
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert v.p_first == pytest.approx(1 / 3)
    with make([server.url]) as judge:  # chat, the default: the prompt as one user message, as before
        judge.judge([query()])
    body = server.requests[1]["body"]
    assert len(body["messages"]) == 1 and "continue_final_message" not in body


def test_request_shape_is_hashed_only_when_not_the_default(tmp_path, tiny_model_dir):
    base = dict(model="m", base_urls=["http://127.0.0.1:8000/v1"])
    chat = OpenAIJudgeConfig(**base)
    assert "request" not in chat.hashed_form() and "tokenizer" not in chat.hashed_form()
    assert chat.settings_sha256() == OpenAIJudgeConfig(**base, request="chat").settings_sha256()
    hashes = {
        chat.settings_sha256(),
        OpenAIJudgeConfig(**base, request="chat_prefill").settings_sha256(),
        OpenAIJudgeConfig(**base, request="completions").settings_sha256(),
        OpenAIJudgeConfig(**base, request="completions", tokenizer=str(tiny_model_dir)).settings_sha256(),
    }
    assert len(hashes) == 4
    f = tmp_path / "judge.yaml"
    f.write_text("backend: openai\nmodel: m\nbase_urls: [http://127.0.0.1:8000/v1]\ntokenizer: t\n")
    with pytest.raises(Exception, match="tokenizer is read by request: completions only"):
        load_judge_config(f)


def test_a_tokenizer_that_cannot_be_loaded_names_the_way_out(server, tmp_path):
    with pytest.raises(ValueError, match="set `tokenizer:`.*or use request: chat_prefill"):
        make([server.url], request="completions", tokenizer=str(tmp_path / "no-such-folder"))


def test_an_unset_key_variable_is_fine_for_a_server_that_needs_no_key(server, monkeypatch, caplog):
    monkeypatch.delenv("RLAIF_UNSET_KEY", raising=False)
    server.models_status = 200  # like vLLM's server started without --api-key
    with make([server.url], api_key_env="RLAIF_UNSET_KEY") as judge:
        (v,) = judge.judge([query()])
    assert v.p_first is not None
    assert server.requests[0]["path"] == "/v1/models"
    assert all("Authorization" not in r["headers"] for r in server.requests)
    assert "RLAIF_UNSET_KEY is not set" in caplog.text
    server.models_status = 401  # a server that wants a key: refused before any labelling, saying why
    with pytest.raises(ValueError, match=r"RLAIF_UNSET_KEY.*not set.*answered HTTP 401 without one"):
        make([server.url], api_key_env="RLAIF_UNSET_KEY")


@pytest.mark.parametrize(
    "key,words",
    [
        (None, "no API key was sent: name the environment variable"),
        ("sk-wrong-0123456789", "refused the API key in $RLAIF_SOME_KEY"),
    ],
)
def test_a_401_says_what_to_do_about_the_key(server, monkeypatch, key, words):
    if key:
        monkeypatch.setenv("RLAIF_SOME_KEY", key)
    server.default = lambda body: Reply(401, {"error": "Unauthorized"})
    with make([server.url], **({"api_key_env": "RLAIF_SOME_KEY"} if key else {})) as judge:
        (v,) = judge.judge([query()])
    assert v.p_first is None and "HTTP 401" in v.error and words in v.error
    assert server.count == 1  # no retries on a 401


def _logprobs_then_text(body: dict) -> Reply:
    """Logprobs when response A holds the first-shown reply (the pair's own order), only text otherwise."""
    shown_first = body["messages"][0]["content"].split("Response A:\n", 1)[1].split("\n\n", 1)[0]
    if shown_first.startswith("first"):
        return Reply(body=completion("A", [position("A", [alt("A", 0.7), alt("B", 0.3)])]))
    return Reply(body=completion("Response B is better."))


def test_label_records_and_stats_keep_the_verdict_source_per_order(server, tmp_path):
    server.default = _logprobs_then_text
    judge = tmp_path / "judge.yaml"
    judge.write_text(json.dumps({"backend": "openai", "model": "m", "base_urls": [server.url], "max_retries": 0}))
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"id": f"p{i}", "prompt": f"q{i}", "response_a": f"first {i}", "response_b": f"second {i}"} for i in range(3)],
    )
    out = tmp_path / "out"
    done = run_cli(
        "label",
        "--pairs",
        pairs,
        "--constitution",
        ROOT / "constitutions" / "helpful.yaml",
        "--judge",
        judge,
        "--out",
        out,
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert [r["verdict_source"] for r in records] == [["logprobs", "text"]] * 3
    assert all(r["p_a_orders"][1] == 1.0 for r in records)  # b shown first, "Response B" named: a preferred
    assert json.loads((out / "stats.json").read_text())["verdict_sources"] == {"logprobs": 3, "text": 3}


def test_completions_with_chain_of_thought_reads_the_label_after_the_cue(server, tiny_model_dir):
    from rlaif.config.judge import CoTConfig
    from rlaif.judges.prompting import COT_REQUEST

    tokens = ["A", " is", " kinder", ".\n", "Final", " answer", ":", " Response", " A"]
    reply = text_completion("".join(tokens), {})
    reply["choices"][0]["logprobs"] = {
        "tokens": tokens,
        "token_logprobs": [-0.1] * len(tokens),
        "top_logprobs": [{t: -0.1} for t in tokens[:-1]] + [{" A": math.log(0.8), " B": math.log(0.2)}],
    }
    server.default = lambda body: Reply(body=reply)
    with make(
        [server.url],
        request="completions",
        tokenizer=str(tiny_model_dir),
        cot=CoTConfig(enabled=True, max_new_tokens=64),
    ) as judge:
        (v,) = judge.judge([query()])
    from transformers import AutoTokenizer

    sent = AutoTokenizer.from_pretrained(tiny_model_dir).decode(server.requests[0]["body"]["prompt"])
    assert COT_REQUEST in sent and not sent.endswith(ANSWER_PREFILL)  # the local CoT prompt: no answer cue
    assert server.requests[0]["body"]["max_tokens"] == 64
    assert v.p_first == pytest.approx(0.8) and v.rationale == "A is kinder." and v.extra["verdict_source"] == "logprobs"
