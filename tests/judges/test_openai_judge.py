"""OpenAIJudge against a real HTTP server on 127.0.0.1 that each test scripts: faults, logprobs, text verdicts.

Nothing in httpx is mocked: the judge sends real requests and the server counts and records them.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Union

import pytest

from rlaif.config.judge import OpenAIJudgeConfig
from rlaif.judges.base import BudgetExhausted
from rlaif.judges.openai import OpenAIJudge
from rlaif.judges.prompting import COT_REQUEST, chat_messages
from rlaif.records import Query

KEY = "sk-test-SECRET-0123456789"


@dataclass
class Reply:
    status: int = 200
    body: Union[dict, bytes, str] = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


class FakeServer:
    """A chat-completions server: `replies` are used one per request, in order, then `default(request_body)`."""

    def __init__(self):
        self.replies: list[Reply] = []
        self.default: Callable[[dict], Reply] = lambda body: Reply(body=completion("A"))
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.models_status: Optional[int] = None  # GET /models: this status, or 501 (no GET) while None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
                if server.models_status is None or not self.path.endswith("/models"):
                    self.send_error(501)
                    return
                data = json.dumps({"object": "list", "data": [{"id": "judge-model"}]}).encode()
                self.send_response(server.models_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw)
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    reply = server.replies.pop(0) if server.replies else server.default(body)
                time.sleep(reply.delay)
                data = (
                    reply.body
                    if isinstance(reply.body, bytes)
                    else (reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode())
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the OS picks a free port
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


@pytest.fixture
def server2():
    s = FakeServer()
    yield s
    s.stop()


def alt(token: str, p: float) -> dict:
    return {"token": token, "logprob": math.log(p)}


def position(token: str, top: Optional[list[dict]] = None) -> dict:
    top = top if top is not None else [alt(token, 0.9)]
    return {
        "token": token,
        "logprob": next((a["logprob"] for a in top if a["token"] == token), -3.0),
        "top_logprobs": top,
    }


def completion(text: str, content: Optional[list[dict]] = None, usage=(100, 1), finish="stop") -> dict:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
        "logprobs": {"content": content} if content is not None else None,
    }
    out: dict[str, Any] = {"id": "x", "object": "chat.completion", "choices": [choice]}
    if usage is not None:
        out["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}
    return out


def query(first: str = "Hello! How can I help?", second: str = "Go away.") -> Query:
    return Query(
        prompt="Hi",
        first=first,
        second=second,
        principle_id="polite",
        principle_text="Which response is more polite?",
        prefix_user="Conversation:\nUser: Hi\n\n",
    )


def make(urls: list[str], **kw) -> OpenAIJudge:
    settings = dict(
        model="judge-model",
        base_urls=urls,
        backoff_s=0.01,
        max_backoff_s=0.5,
        timeout_s=5.0,
        max_retries=3,
        top_logprobs=5,
    )
    settings.update(kw)
    return OpenAIJudge(OpenAIJudgeConfig(**settings))


def test_probability_from_logprobs_and_request_body(server):
    top = [alt("A", 0.5), alt(" A", 0.1), alt("B", 0.2), alt("\nB", 0.05), alt("C", 0.1)]
    server.default = lambda body: Reply(body=completion("A", [position("A", top)], usage=(123, 1)))
    q = query()
    with make([server.url]) as judge:
        (v,) = judge.judge([q])
    assert v.p_first == pytest.approx(0.6 / 0.85)
    assert v.label_mass == pytest.approx(0.85)
    assert v.error is None and v.raw == "A" and v.extra["verdict_source"] == "logprobs"
    assert (v.prompt_tokens, v.completion_tokens) == (123, 1)
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["body"] == {
        "model": "judge-model",
        "temperature": 0.0,
        "max_tokens": 1,
        "logprobs": True,
        "top_logprobs": 5,
        "messages": chat_messages(q.prefix_user, q.first, q.second, q.principle_text, cot=False),
    }
    assert "authorization" not in {k.lower() for k in req["headers"]}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("A", 1.0),
        (" B", 0.0),
        ("B.", 0.0),
        ("**A**", 1.0),
        ("Response A", 1.0),
        ("Final answer: Response B", 0.0),
        ("The better response is Response B.", 0.0),
    ],
)
def test_text_verdict_without_logprobs(server, text, expected):
    server.default = lambda body: Reply(body=completion(text))
    with make([server.url], logprobs=False, max_tokens=16) as judge:
        (v,) = judge.judge([query()])
    assert v.p_first == expected
    assert v.extra["verdict_source"] == "text" and v.raw == text and v.label_mass is None
    assert "logprobs" not in server.requests[0]["body"]


def test_text_verdict_when_no_label_among_alternatives(server):
    content = [position("The", [alt("The", 0.7), alt("It", 0.2)])]
    server.default = lambda body: Reply(body=completion("The better one is Response B", content))
    with make([server.url], max_tokens=16) as judge:
        (v,) = judge.judge([query()])
    assert v.p_first == 0.0 and v.extra["verdict_source"] == "text"


@pytest.mark.parametrize("text", ["I cannot tell.", "Response A and Response B are equally good.", "A or B", ""])
def test_unreadable_verdict_is_a_failure(server, text):
    server.default = lambda body: Reply(body=completion(text))
    with make([server.url], logprobs=False, max_tokens=16) as judge:
        (v,) = judge.judge([query()])
    assert v.p_first is None and "could not read a verdict" in v.error and v.raw == text


def test_retries_then_success(server):
    server.replies = [Reply(500, b"boom"), Reply(503, b"busy"), Reply(200, b"{not json"), Reply(200, {"choices": []})]
    with make([server.url], max_retries=4) as judge:
        (v,) = judge.judge([query()])
    assert server.count == 5
    assert v.error is None and v.p_first == pytest.approx(1.0) and v.extra["attempts"] == 5


@pytest.mark.parametrize(
    "retry_after,max_backoff_s,least,most",
    [
        ("1", 5.0, 0.95, None),  # honoured
        ("30", 0.2, None, 5),  # capped by max_backoff_s
    ],
)
def test_retry_after(server, retry_after, max_backoff_s, least, most):
    server.replies = [Reply(429, b"slow down", headers={"Retry-After": retry_after})]
    with make([server.url], backoff_s=0.01, max_backoff_s=max_backoff_s) as judge:
        t0 = time.monotonic()
        (v,) = judge.judge([query()])
        elapsed = time.monotonic() - t0
    assert server.count == 2 and v.p_first is not None
    assert least is None or elapsed >= least
    assert most is None or elapsed < most


def test_timeout_is_retried(server):
    server.replies = [Reply(body=completion("B"), delay=1.5)]
    with make([server.url], timeout_s=0.3) as judge:
        t0 = time.monotonic()
        (v,) = judge.judge([query()])
        elapsed = time.monotonic() - t0
    assert server.count == 2 and v.p_first is not None and v.extra["attempts"] == 2
    assert elapsed < 1.4  # the slow reply was abandoned, not waited for


@pytest.mark.parametrize(
    "reply,max_retries,count,words",
    [
        (Reply(503, b"server overloaded"), 2, 3, ["3 attempts", "503", "overloaded"]),  # retries exhausted
        (Reply(401, {"error": {"message": "invalid credentials"}}), 3, 1, ["401", "invalid credentials"]),  # at once
    ],
)
def test_a_failed_request_gives_a_failed_verdict(server, reply, max_retries, count, words):
    server.default = lambda body: reply
    with make([server.url], max_retries=max_retries) as judge:
        (v,) = judge.judge([query()])
    assert server.count == count
    assert v.p_first is None and all(w in v.error for w in words)


def test_requests_spread_over_base_urls(server, server2):
    with make([server.url, server2.url + "/"], concurrency=3) as judge:
        verdicts = judge.judge([query() for _ in range(6)])
    assert all(v.p_first == 1.0 for v in verdicts)
    assert server.count == 3 and server2.count == 3


def test_retry_moves_to_the_next_url(server, server2):
    server.default = lambda body: Reply(503, b"down")
    with make([server.url, server2.url], max_retries=1) as judge:
        (v,) = judge.judge([query()])
    assert v.p_first == 1.0
    assert server.count == 1 and server2.count == 1


def test_api_key_sent_but_never_leaked(server, monkeypatch, caplog):
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    echo = {"error": f"rejected key {KEY}"}
    server.replies = [Reply(500, echo), Reply(400, echo), Reply(body=completion("B"))]
    caplog.set_level("WARNING")
    with make([server.url], api_key_env="RLAIF_TEST_KEY") as judge:
        verdicts = judge.judge([query()]) + judge.judge([query()])
    assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in server.requests)
    assert verdicts[0].p_first is None and "400" in verdicts[0].error and "rejected key" in verdicts[0].error
    assert verdicts[1].p_first == 0.0
    assert KEY not in repr(verdicts)
    assert "retry" in caplog.text and KEY not in caplog.text
    assert KEY not in json.dumps(judge.config.public_dict())


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"api_key_env": "RLAIF_MISSING_KEY"}, "RLAIF_MISSING_KEY"),  # an unset key variable
        ({"max_cost": 1.0}, "price"),  # a cost cap without prices
    ],
)
def test_a_judge_that_could_not_work_is_refused(monkeypatch, server, settings, match):
    monkeypatch.delenv("RLAIF_MISSING_KEY", raising=False)
    with pytest.raises(ValueError, match=match):
        make([server.url], **settings)


def _by_content(body: dict) -> Reply:
    """Answer A when the first response is an 'alpha', so a verdict can be matched to its query."""
    text = body["messages"][0]["content"]
    return Reply(body=completion("A" if "Response A:\nalpha" in text else "B"))


def test_max_requests_counts_retries_and_keeps_answers(server):
    server.replies = [Reply(500, b"boom")]
    server.default = _by_content
    queries = [query(first="alpha 1"), query(first="beta 2"), query(first="alpha 3")]
    with make([server.url], concurrency=1, max_requests=3) as judge:
        with pytest.raises(BudgetExhausted) as info:
            judge.judge(queries)
        verdicts = info.value.verdicts
        assert server.count == 3 and judge.spent().requests == 3
        assert len(verdicts) == 3 and sum(v is None for v in verdicts) == 1  # 3 requests: one went to a retry
        for q, v in zip(queries, verdicts):
            assert v is None or v.p_first == (1.0 if q.first.startswith("alpha") else 0.0)
        assert "max_requests=3" in str(info.value)
        with pytest.raises(BudgetExhausted) as again:  # the cap holds across calls
            judge.judge(queries[:2])
        assert again.value.verdicts == [None, None] and server.count == 3


@pytest.mark.parametrize("count, read", [("1e999", 0), ("-5", 0), ('"7"', 7)])
def test_token_counts_that_are_no_counts_read_as_0(server, count, read):
    """A server's usage that is infinite (1e999 in JSON), negative or a string is read safely, never crashes."""
    body = json.dumps(completion("A", usage=(0, 1))).replace('"prompt_tokens": 0', f'"prompt_tokens": {count}')
    server.default = lambda _: Reply(body=body)
    with make([server.url], max_cost=1.0, price_per_1k_prompt_tokens=1.0) as judge:
        (v,) = judge.judge([query()])
        assert judge.spent().cost == pytest.approx(read / 1000)
    assert v.error is None and (v.prompt_tokens, v.completion_tokens) == (read, 1)


def test_max_cost_stops_cleanly(server):
    server.default = _by_content  # each reply: 100 prompt tokens at 1.0 per 1k = 0.1
    queries = [
        query(first="alpha"),
        query(first="beta"),
        query(first="alpha"),
        query(first="beta"),
        query(first="alpha"),
    ]
    with make([server.url], concurrency=1, max_cost=0.25, price_per_1k_prompt_tokens=1.0) as judge:
        with pytest.raises(BudgetExhausted) as info:
            judge.judge(queries)
        assert judge.spent().cost == pytest.approx(0.3) and server.count == 3
    verdicts = info.value.verdicts
    assert [v.p_first if v else None for v in verdicts] == [1.0, 0.0, 1.0, None, None]
    assert "max_cost" in str(info.value)


def test_cot_reads_logprobs_after_the_answer_cue(server):
    words = ["The", " first", " is", " polite", ".", "\n", "Final", " answer", ":", " Response"]
    content = [position(w) for w in words] + [position(" B", [alt(" B", 0.6), alt(" A", 0.15), alt("B", 0.2)])]
    text = "".join(words) + " B"
    server.default = lambda body: Reply(body=completion(text, content, usage=(200, 11)))
    with make([server.url], cot={"enabled": True, "max_new_tokens": 64}) as judge:
        (v,) = judge.judge([query()])
    assert v.p_first == pytest.approx(0.15 / 0.95) and v.label_mass == pytest.approx(0.95)
    assert v.rationale == "The first is polite." and v.raw == text
    body = server.requests[0]["body"]
    assert body["max_tokens"] == 64 and COT_REQUEST in body["messages"][0]["content"]


def test_cot_text_only(server):
    server.replies = [
        Reply(body=completion("Both are fine, A is warmer.\n\n**Final answer: Response A**")),
        Reply(body=completion("Response A is kind but", finish="length")),
    ]
    with make([server.url], logprobs=False, concurrency=1, cot={"enabled": True}) as judge:
        ok, cut = judge.judge([query(), query()])
    assert ok.p_first == 1.0 and ok.rationale == "Both are fine, A is warmer." and ok.extra["verdict_source"] == "text"
    assert cut.p_first is None and "could not read a verdict" in cut.error


def test_works_inside_a_running_event_loop(server):
    async def caller(judge):
        return judge.judge([query()])

    with make([server.url]) as judge:
        (v,) = asyncio.run(caller(judge))
    assert v.p_first == 1.0


def test_close_stops_the_worker(server):
    judge = make([server.url])
    judge.judge([query()])
    thread = judge.client._thread
    assert thread.is_alive()
    judge.close()
    thread.join(timeout=2)
    assert not thread.is_alive()
    judge.close()  # a second close is harmless


@pytest.mark.parametrize(
    "echo",
    [
        "." * 150 + KEY + " rejected",  # wholly before the 200-character cut
        "." * 190 + KEY + " rejected",  # across it
        "." * 196 + KEY,  # across it, 4 characters in: the tag is cut too
        "." * 10 + KEY[3:19] + " is not " + KEY[-9:],  # only parts of it
    ],
    ids=["before-cut", "across-cut", "at-cut", "parts"],
)
def test_a_key_split_by_the_cut_or_echoed_in_part_is_scrubbed(server, monkeypatch, caplog, echo):
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    server.replies = [Reply(503, echo), Reply(401, echo)]
    caplog.set_level("WARNING")
    with make([server.url], api_key_env="RLAIF_TEST_KEY") as judge:
        (v,) = judge.judge([query()])
    assert v.p_first is None and "401" in v.error and "[api" in v.error  # the tag itself may be cut
    for text in (v.error, caplog.text):
        assert not any(KEY[i : i + 8] in text for i in range(len(KEY) - 7)), text


@pytest.mark.parametrize("logprob", [float("inf"), float("nan"), 0.5, 1e-3])
def test_a_logprob_no_softmax_makes_fails_the_verdict(server, logprob):
    content = [position("A", [{"token": "A", "logprob": logprob}, alt("B", 0.1)])]
    server.default = lambda body: Reply(body=completion("A", content))
    with make([server.url]) as judge:
        (v,) = judge.judge([query()])
    assert v.p_first is None and v.label_mass is None and v.raw == "A"
    assert v.error.startswith("the server returned an invalid log-probability") and "'A'" in v.error


def test_logprobs_within_rounding_of_zero_and_minus_infinity_are_read(server):
    content = [position("A", [{"token": "A", "logprob": 5e-5}, {"token": "B", "logprob": float("-inf")}])]
    server.default = lambda body: Reply(body=completion("A", content))
    with make([server.url]) as judge:
        (v,) = judge.judge([query()])
    assert v.error is None and v.p_first == 1.0 and v.label_mass == 1.0


@pytest.mark.parametrize("field", ["price_per_1k_prompt_tokens", "price_per_1k_completion_tokens", "max_cost"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_prices_and_cost_cap_must_be_finite(tmp_path, field, value):
    """An infinite price would make every estimate inf (and stop a capped job at once); nan would pass every cap."""
    from rlaif.config.judge import load_judge_config
    from rlaif.config.yamlfile import ConfigFileError

    f = tmp_path / "judge.yaml"
    other = "price_per_1k_completion_tokens" if field == "price_per_1k_prompt_tokens" else "price_per_1k_prompt_tokens"
    f.write_text(
        f"backend: openai\nmodel: m\nbase_urls: ['http://127.0.0.1:9/v1']\n{other}: 1.0\n"
        f"{field}: {'.inf' if value == float('inf') else '.nan'}\n"
    )
    with pytest.raises(ConfigFileError) as e:
        load_judge_config(f)
    assert any(f"{f.name}:5: {field}:" in line and "finite" in line for line in e.value.errors), e.value.errors
