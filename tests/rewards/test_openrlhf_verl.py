"""Tier 4: `rlaif serve reward` (a real subprocess on 127.0.0.1) as today's OpenRLHF and verl reach it.

OpenRLHF is too heavy to install here, so its request is replayed exactly as its current client builds and sends
it, read in OpenRLHF/OpenRLHF v0.11.0 (commit 3c3be6234e0c), openrlhf/utils/agent.py:
SingleTurnAgentExecutor.execute (the query is the prompt's and the generated tokens' ids decoded with
skip_special_tokens=False; the label is the --data.label_key column, "" without one) and _fetch_rewards_via_http
(aiohttp's `session.post(url, json={"query": [...], "prompts": [...], "labels": [...]})`, one query per request,
`raise_for_status()`, 5 tries). verl's side is its parquet data read back as verl reads it, with
examples/verl/rlaif_reward.py (its sync and async reward functions) and examples/verl/preprocess_hh.py; the async
one's retries meet a small stand-in server that answers 503 or drops the connection on a first try."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import ROOT, write_jsonl
from tests.rewards.test_serve_reward import ENV, CliServer, judge_file, load_verl_reward

httpx = pytest.importorskip("httpx")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CHAT = [{"role": "user", "content": "how do i fix my car"}]


def openrlhf_payload(tokenizer, chat: list, response: str, label: str) -> dict:
    """The body OpenRLHF POSTs for one rollout under --data.apply_chat_template: the prompt rendered with the
    generation prompt, the query decoded from prompt ids + generated ids (vLLM's output ends in EOS)."""
    prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(text=prompt, add_special_tokens=False)["input_ids"]
    action_ids = tokenizer(text=response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    query = tokenizer.decode(prompt_ids + action_ids, skip_special_tokens=False)
    return {"query": [query], "prompts": [prompt], "labels": [label]}


def post_like_openrlhf(url: str, payload: dict) -> httpx.Response:
    # aiohttp's json=: the body is json.dumps(payload), sent as application/json
    return httpx.post(
        url, content=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, timeout=30
    )


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)  # ChatML, byte-level: decoding gives the text back


def test_openrlhf_without_label_key_gets_a_422_that_names_the_fix_and_a_log_line(tmp_path, tokenizer):
    payload = openrlhf_payload(tokenizer, CHAT, "please try this", "")
    assert payload["query"][0].endswith("please try this<|im_end|>")  # special tokens kept, as OpenRLHF sends
    with CliServer(tmp_path, "--judge", judge_file(tmp_path)) as srv:
        replies = [post_like_openrlhf(srv.url + "/get_reward", payload) for _ in range(5)]  # OpenRLHF's 5 tries
        wrong_path = httpx.post(srv.url + "/reward", json=payload, timeout=10)
    detail = replies[0].json()["detail"]
    assert [r.status_code for r in replies] == [422] * 5
    assert "--data.label_key" in detail and "--labels-as-references" in detail and "--reference-model" in detail
    log = srv.log.read_text()
    assert "no --reference-model and no --labels-as-references" in log  # said once, at start
    refusals = [line for line in log.splitlines() if "422 for POST /get_reward" in line]
    assert len(refusals) == 5 and all(detail in line for line in refusals)  # every refusal, with its reason
    assert wrong_path.status_code == 404 and "POST /get_reward" in wrong_path.json()["detail"]
    assert "404 for POST /reward" in log


def test_openrlhf_with_label_key_gets_the_judges_rewards(tmp_path, tokenizer):
    from rlaif.judges.registry import load_judge
    from rlaif.rewards.judge_reward import JudgeReward

    judge = judge_file(tmp_path)
    expected = JudgeReward(load_judge(judge), mode="reference")(
        [CHAT, CHAT], ["please try this", "no idea"], reference=["no idea", "please do"]
    )
    assert expected == pytest.approx([0.8, -0.8])
    with CliServer(tmp_path, "--judge", judge, "--labels-as-references") as srv:
        got = [
            post_like_openrlhf(srv.url + "/get_reward", openrlhf_payload(tokenizer, CHAT, response, label))
            for response, label in (("please try this", "no idea"), ("no idea", "please do"))
        ]
    assert [r.status_code for r in got] == [200, 200], [r.text for r in got]
    assert [r.json()["rewards"][0] for r in got] == pytest.approx(expected)
    assert [r.json()["scores"][0] for r in got] == pytest.approx([0.9, 0.1])
    assert got[0].json()["extra_logs"] == {"rlaif_judge_failed": [0.0]}
    assert "422" not in srv.log.read_text()


def test_verl_rows_mixing_prompt_and_question_in_one_parquet_file(tmp_path):
    """Arrow unifies `extra_info` across rows: a row written with `question` reads back with `prompt: None` (and a
    row without `reference` with `reference: None`), however verl loads the file."""
    datasets = pytest.importorskip("datasets")
    verl = load_verl_reward()
    rows = [
        {"data_source": "chat", "reward_model": {"ground_truth": "no idea"}, "extra_info": {"prompt": CHAT}},
        {
            "data_source": "qa",
            "reward_model": {"ground_truth": "no idea"},
            "extra_info": {"question": "how do i fix my car", "reference": "please do"},
        },
    ]
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    loaded = {
        "pyarrow": pq.read_table(path).to_pylist(),
        "datasets": list(datasets.Dataset.from_parquet(str(path))),
        "pandas": pq.read_table(path).to_pandas().to_dict("records"),
    }  # lists come back as numpy arrays
    assert loaded["datasets"][1]["extra_info"]["prompt"] is None
    assert loaded["datasets"][0]["extra_info"]["reference"] is None
    with CliServer(tmp_path, "--judge", judge_file(tmp_path)) as srv:
        for how, back in loaded.items():
            rewards = [
                verl.compute_score(
                    r["data_source"],
                    "please try this",
                    r["reward_model"]["ground_truth"],
                    extra_info=r["extra_info"],
                    url=srv.url + "/get_reward",
                )
                for r in back
            ]
            assert rewards == pytest.approx([0.8, 0.0]), how  # vs "no idea", then vs extra_info's "please do"


def test_preprocess_hh_writes_what_the_verl_reward_needs(tmp_path):
    from rlaif.judges.registry import load_judge
    from rlaif.rewards.judge_reward import JudgeReward

    hh = write_jsonl(
        tmp_path / "hh.jsonl",
        [
            {
                "chosen": "\n\nHuman: how do i fix my car\n\nAssistant: please check the battery first",
                "rejected": "\n\nHuman: how do i fix my car\n\nAssistant: no idea",
            },
            {
                "chosen": "\n\nHuman: make tea\n\nAssistant: boil water\n\nHuman: then?\n\nAssistant: steep it",
                "rejected": "\n\nHuman: make tea\n\nAssistant: boil water\n\nHuman: then?\n\nAssistant: please stop",
            },
            {"chosen": "no transcript here", "rejected": "nor here"},
        ],
    )
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/verl/preprocess_hh.py"),
            "--input",
            str(hh),
            "--out",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 2 rows" in done.stdout and "1 unreadable rows skipped" in done.stdout
    rows = pq.read_table(tmp_path / "data/train.parquet").to_pylist()
    assert (
        rows[1]["prompt"]
        == rows[1]["extra_info"]["prompt"]
        == [
            {"role": "user", "content": "make tea"},
            {"role": "assistant", "content": "boil water"},
            {"role": "user", "content": "then?"},
        ]
    )
    assert (
        [r["reward_model"]["ground_truth"] for r in rows]
        == [r["extra_info"]["reference"] for r in rows]
        == ["please check the battery first", "steep it"]
    )
    assert [r["extra_info"]["index"] for r in rows] == [0, 1] and rows[0]["reward_model"]["style"] == "model"

    verl = load_verl_reward()
    judge = judge_file(tmp_path)
    responses = ["no idea", "please steep it"]
    expected = JudgeReward(load_judge(judge), mode="reference")(
        [r["extra_info"]["prompt"] for r in rows], responses, reference=[r["extra_info"]["reference"] for r in rows]
    )
    with CliServer(tmp_path, "--judge", judge) as srv:
        got = [
            verl.compute_score(
                r["data_source"],
                response,
                r["reward_model"]["ground_truth"],
                extra_info=r["extra_info"],
                url=srv.url + "/get_reward",
            )
            for r, response in zip(rows, responses)
        ]
    assert got == pytest.approx(expected) and expected == pytest.approx([-0.8, 0.8])


def verl_samples(n: int) -> list[dict]:
    """`n` verl calls whose rewards differ from one to the next (0.8, 0 or -0.8), so an answer that reached the
    wrong caller shows."""
    responses = ["please try this", "no idea", "please, maybe"]
    references = ["no idea", "please do", "also no idea", None]
    return [
        {
            "solution_str": f"{responses[i % 3]} #{i}",
            "ground_truth": "fallback" if references[i % 4] is None else references[i % 4],
            "extra_info": {"prompt": CHAT} if i % 2 else {"question": f"question {i}"},
        }
        for i in range(n)
    ]


async def score_all(verl, samples: list[dict], **settings) -> list[float]:
    return await asyncio.gather(*(verl.compute_score_async("hh", **s, **settings) for s in samples))


def test_verl_async_reward_gives_the_sync_rewards_with_many_in_flight(tmp_path):
    verl = load_verl_reward()
    samples = verl_samples(48)
    with CliServer(tmp_path, "--judge", judge_file(tmp_path)) as srv:
        url = srv.url + "/get_reward"
        expected = [verl.compute_score("hh", **s, url=url) for s in samples]
        got = asyncio.run(score_all(verl, samples, url=url, max_in_flight=16))
        no_reference = {"solution_str": "x", "ground_truth": None, "extra_info": {"question": "q"}}
        with pytest.raises(ValueError, match="references"):  # a 422 says what to fix, and is not sent again
            asyncio.run(score_all(verl, [no_reference], url=url))
    assert sorted(set(expected)) == pytest.approx([-0.8, 0.0, 0.8])
    assert got == expected
    assert srv.log.read_text().count("422 for POST /get_reward") == 1


class FlakyRewardServer(ThreadingHTTPServer):
    """A stand-in for a busy reward server on 127.0.0.1: the first request for a response that starts with "busy"
    gets 503 with Retry-After: 1, the first for "drop" a closed connection and no reply; every other request is
    answered after 50 ms with reward len(response) / 100. It records when each response arrived and the most
    requests it held at once."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {}
        self.in_flight = self.peak = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/get_reward"


class FlakyHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        srv = self.server
        response = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["responses"][0]
        with srv.lock:
            srv.arrivals.setdefault(response, []).append(time.monotonic())
            first = len(srv.arrivals[response]) == 1
            srv.in_flight += 1
            srv.peak = max(srv.peak, srv.in_flight)
        try:
            if first and response.startswith("drop"):
                self.close_connection = True
                return
            status, reply = (503, {"detail": "queue full"}) if first and response.startswith("busy") else (200, None)
            if reply is None:
                time.sleep(0.05)
                reply = {"rewards": [len(response) / 100], "scores": [0.5], "extra_logs": {}}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    srv = FlakyRewardServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_verl_async_reward_retries_a_503_after_retry_after_and_a_dropped_connection(flaky_server):
    verl = load_verl_reward()
    responses = ["busy one", "drop one"] + [f"fine {'x' * i}" for i in range(22)]
    samples = [{"solution_str": r, "ground_truth": "ref", "extra_info": {"question": "q"}} for r in responses]
    got = asyncio.run(score_all(verl, samples, url=flaky_server.url, max_in_flight=8))
    assert got == pytest.approx([len(r) / 100 for r in responses])  # each caller got its own answer, once
    busy, dropped = flaky_server.arrivals["busy one"], flaky_server.arrivals["drop one"]
    assert len(busy) == 2 and busy[1] - busy[0] >= 0.95  # tried again once, no sooner than Retry-After said
    assert len(dropped) == 2
    assert 1 < flaky_server.peak <= 8  # many at once, never more than max_in_flight
    # the sync function retries the same way
    assert verl.compute_score("hh", "busy two", "ref", {"question": "q"}, url=flaky_server.url) == 0.08
    assert len(flaky_server.arrivals["busy two"]) == 2
