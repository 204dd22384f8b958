"""Tier 4: `rlaif serve reward` batching concurrent requests — a real uvicorn server on 127.0.0.1 (in a thread, or
the CLI as a subprocess for SIGTERM), real concurrent HTTP clients in threads. The rewards of the same queries sent
as one request, as concurrent single-query requests and one after another are compared; faults stay per request."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.rewards.test_serve_reward import CHAT, ROOT, CliServer, ThreadServer, judge_file, serve_reward

httpx = pytest.importorskip("httpx")

from rlaif.config.judge import OpenAIJudgeConfig, PythonJudgeConfig, TransformersJudgeConfig  # noqa: E402
from rlaif.constitution import load_constitution  # noqa: E402
from rlaif.judges.registry import load_judge  # noqa: E402
from rlaif.rewards.batcher import Batcher, BatchLimits, ClientGone  # noqa: E402
from rlaif.rewards.judge_reward import JudgeReward  # noqa: E402
from rlaif.rewards.server import RewardService, batches_in_flight  # noqa: E402

HELPFUL = ROOT / "constitutions" / "helpful.yaml"  # several principles: one drawn per pair, by its content
WAIT = BatchLimits(max_wait_ms=300)  # long enough that threads started together share batches on a busy machine


def service(config, mode=None, constitution=None, **kwargs) -> RewardService:
    rules = load_constitution(constitution) if constitution else None
    return RewardService(JudgeReward(load_judge(config), rules, mode=mode), **kwargs)


def counted(svc: RewardService) -> list[int]:
    """The size of every JudgeReward.rewards call the service makes (the judge sees one call per batch)."""
    sizes: list[int] = []
    inner = svc.reward.rewards

    def rewards(prompts, completions, references=None):
        sizes.append(len(prompts))
        return inner(prompts, completions, references)

    svc.reward.rewards = rewards
    return sizes


def singles(prompts: list, responses: list[str], refs=None) -> list[dict]:
    """One single-query body per response, in the `responses` shape (nothing to split)."""
    return [
        {"prompts": [p], "responses": [r], **({"references": [refs[i]]} if refs else {})}
        for i, (p, r) in enumerate(zip(prompts, responses))
    ]


def joined(bodies: list[dict]) -> dict:
    return {k: [x for b in bodies for x in b[k]] for k in bodies[0]}


def post(url: str, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(url + "/get_reward", json=body, timeout=timeout)


def at_once(url: str, bodies: list[dict], send=post) -> list[httpx.Response]:
    """Each body from its own thread, released together."""
    start = threading.Barrier(len(bodies))

    def one(body):
        start.wait()
        return send(url, body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def three_ways(url: str, bodies: list[dict]) -> tuple[list[float], list[float], list[float]]:
    """The rewards of one request of all the queries, of the single-query requests at once, and one after another."""
    whole = post(url, joined(bodies))
    assert whole.status_code == 200, whole.text
    concurrent = at_once(url, bodies)
    assert all(r.status_code == 200 for r in concurrent), [r.text for r in concurrent]
    sequential = [post(url, b) for b in bodies]
    assert all(r.status_code == 200 for r in sequential)
    return (
        whole.json()["rewards"],
        [r.json()["rewards"][0] for r in concurrent],
        [r.json()["rewards"][0] for r in sequential],
    )


PROMPTS = [[{"role": "user", "content": f"question {i}: how do I fix my car?"}] for i in range(12)]
RESPONSES = [("please " if i % 3 else "") + f"try answer {i}" + " more" * (i % 4) for i in range(12)]
REFS = [("please " if i % 2 else "") + f"reference {i}" for i in range(12)]


def test_python_judge_same_rewards_three_ways_and_batches_over_1():
    """Exactly the same rewards, under a constitution of several principles (a pair's draw follows its content, not
    its place in a batch); concurrent single-query requests reach the judge in batches larger than 1."""
    svc = service(PythonJudgeConfig(function="rlaif.rules:prefer_keyword"), constitution=HELPFUL)
    sizes = counted(svc)
    bodies = singles(PROMPTS, RESPONSES, REFS)
    with ThreadServer(svc, limits=WAIT) as srv:
        whole, concurrent, sequential = three_ways(srv.url, bodies)
        health = httpx.get(srv.url + "/health", timeout=10).json()
    assert whole == concurrent == sequential
    assert len(set(whole)) > 1  # the rule tells the answers apart: equality is not all zeros
    assert sizes[0] == 12 and sizes[-12:] == [1] * 12  # the one request; then one after another
    concurrent_calls = sizes[1:-12]
    assert sum(concurrent_calls) == 12 and max(concurrent_calls) > 1 and len(concurrent_calls) < 12
    assert health["queue_depth"] == 0 and health["requests"] == 25 and health["requests_per_s"] > 0
    assert health["mean_batch_size"] == pytest.approx(36 / (13 + len(concurrent_calls)), abs=0.01)
    assert health["queries_per_s"] > health["requests_per_s"] > 0
    assert 0 < health["latency_p50_ms"] <= health["latency_p99_ms"]


@pytest.mark.parametrize("mode", ["score", "reference"])
def test_tiny_transformers_judge_same_rewards_three_ways(tiny_model_dir, mode):
    config = TransformersJudgeConfig(
        model=str(tiny_model_dir), max_length=400, batch_size=4, **({"mode": "score"} if mode == "score" else {})
    )
    svc = service(config)
    n = 6
    bodies = singles(PROMPTS[:n], RESPONSES[:n], REFS[:n] if mode == "reference" else None)
    with ThreadServer(svc, limits=WAIT) as srv:
        whole, concurrent, sequential = three_ways(srv.url, bodies)
    assert len(set(whole)) > 1
    assert concurrent == pytest.approx(whole, abs=1e-6) and sequential == pytest.approx(whole, abs=1e-6)


def test_one_malformed_request_among_32_good_ones_and_a_judge_failing_one_query():
    svc = service(PythonJudgeConfig(function="tests.judge_fns:broken"), labels_as_references=True)
    sizes = counted(svc)
    good = [
        {"query": [CHAT.format(f"q{i}") + ("boom" if i == 7 else f"answer {i}")], "labels": [f"ref {i}"]}
        for i in range(32)
    ]
    bad = {"query": ["a query with no assistant marker"], "labels": ["ref"]}
    with ThreadServer(svc, limits=WAIT) as srv:
        replies = at_once(srv.url, [*good[:16], bad, *good[16:]])
    refused = replies.pop(16)
    assert refused.status_code == 422 and "query 0 cannot be split" in refused.json()["detail"]
    assert [r.status_code for r in replies] == [200] * 32
    failed = [r.json()["extra_logs"]["rlaif_judge_failed"] for r in replies]
    assert failed[7] == [1.0] and failed[:7] + failed[8:] == [[0.0]] * 31  # only the query the judge failed on
    rewards = [r.json()["rewards"][0] for r in replies]
    assert rewards == [0.0] * 32  # 0.7 in both orders debiases to a tie; the failed query gets 0 too
    assert max(sizes) > 1  # the failing query was judged in a batch with others


def test_past_max_queue_503_with_retry_after_and_nothing_lost_on_retry():
    svc = service(PythonJudgeConfig(function="tests.judge_fns:slow_polite"))  # 0.1 s a pair: both orders
    limits = BatchLimits(max_batch_size=1, max_wait_ms=0, max_queue=2)
    bodies = singles(PROMPTS[:8], ["please " + r if i % 2 else r for i, r in enumerate(RESPONSES[:8])], REFS[:8])
    refusals = []

    def retrying(url, body):
        while True:
            r = post(url, body)
            if r.status_code != 503:
                return r
            refusals.append(r)
            time.sleep(float(r.headers["Retry-After"]) / 4)  # a quarter of the hint: keeps the test short

    with ThreadServer(svc, limits=limits) as srv:
        replies = at_once(srv.url, bodies, retrying)
        health = httpx.get(srv.url + "/health", timeout=10).json()
    assert refusals and all(r.headers["Retry-After"] == "1" for r in refusals)
    assert "--max-queue 2" in refusals[0].json()["detail"]
    assert [r.status_code for r in replies] == [200] * 8
    expected = svc.reward.rewards(PROMPTS[:8], [b["responses"][0] for b in bodies], REFS[:8]).rewards
    assert [r.json()["rewards"][0] for r in replies] == expected and len(set(expected)) > 1
    assert health["requests"] == 8 and health["mean_batch_size"] == 1


def test_a_request_whose_client_left_is_not_judged():
    svc = service(PythonJudgeConfig(function="tests.judge_fns:slow_polite"))
    long = joined(singles(PROMPTS[:4], RESPONSES[:4], REFS[:4]))  # 0.4 s in the judge
    with ThreadServer(svc, limits=BatchLimits(max_batch_size=4, max_wait_ms=0)) as srv:
        first = threading.Thread(target=post, args=(srv.url, long))
        first.start()
        time.sleep(0.1)
        with pytest.raises(httpx.TimeoutException):  # gives up while the first request is being judged
            post(srv.url, singles(PROMPTS[4:5], RESPONSES[4:5], REFS[4:5])[0], timeout=0.1)
        first.join(timeout=30)
        time.sleep(0.2)
        health = httpx.get(srv.url + "/health", timeout=10).json()
    assert health["left_unjudged"] == 1 and health["judged_pairs"] == 4 and health["requests"] == 1


def test_sigterm_answers_every_queued_request(tmp_path):
    judge = judge_file(tmp_path, "tests.judge_fns:slow_polite")  # 0.1 s a pair
    with CliServer(tmp_path, "--judge", judge, "--max-batch-size", "2", "--max-wait-ms", "0") as srv:
        bodies = singles(PROMPTS, RESPONSES, REFS)
        replies: list = []
        sender = threading.Thread(target=lambda: replies.extend(at_once(srv.url, bodies)))
        sender.start()
        deadline = time.monotonic() + 30
        while httpx.get(srv.url + "/health", timeout=10).json()["queue_depth"] < 4:
            assert time.monotonic() < deadline, "the requests never queued"
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGTERM)
        sender.join(timeout=60)
        srv.proc.wait(timeout=60)
    assert [r.status_code for r in replies] == [200] * 12
    expected = JudgeReward(load_judge(PythonJudgeConfig(function="tests.judge_fns:slow_polite"))).rewards(
        PROMPTS, RESPONSES, REFS
    )
    assert [r.json()["rewards"][0] for r in replies] == expected.rewards
    with pytest.raises(httpx.TransportError):  # and it stopped accepting
        httpx.get(srv.url + "/health", timeout=5)


def test_openrlhf_client_replayed_from_16_threads(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from tests.rewards.test_openrlhf_verl import openrlhf_payload, post_like_openrlhf

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chats = [[{"role": "user", "content": f"how do i fix car {i}"}] for i in range(16)]
    answers = [("please " if i % 2 else "") + f"try this {i}" for i in range(16)]
    labels = [f"reference {i}" for i in range(16)]
    payloads = [openrlhf_payload(tokenizer, c, a, lab) for c, a, lab in zip(chats, answers, labels)]
    svc = service(PythonJudgeConfig(function="rlaif.rules:prefer_keyword"), labels_as_references=True)
    sizes = counted(svc)
    with ThreadServer(svc, limits=WAIT) as srv:
        replies = at_once(srv.url, payloads, lambda url, p: post_like_openrlhf(url + "/get_reward", p))
    assert [r.status_code for r in replies] == [200] * 16
    assert [r.json()["rewards"][0] for r in replies] == pytest.approx([0.8 if i % 2 else 0.0 for i in range(16)])
    assert max(sizes) > 1 and sum(sizes) == 16


# -- the batcher alone -------------------------------------------------------------------------------------------
def test_batcher_keeps_requests_whole_and_faults_per_request():
    calls: list[list] = []

    def judge(items):
        calls.append(list(items))
        if any(i == "bad" for i in items):
            raise ValueError("cannot judge bad")
        return [f"answer {i}" for i in items]

    async def scenario():
        batcher = Batcher(judge, BatchLimits(max_batch_size=3, max_wait_ms=50))

        async def here():
            return False

        async def gone():
            return True

        sizes = {"a": 2, "b": 2, "bad": 1, "c": 5, "left": 1}
        tasks = [
            asyncio.ensure_future(batcher.submit(i, sizes[i], gone if i == "left" else here))
            for i in ("a", "b", "bad", "c", "left")
        ]
        return await asyncio.gather(*tasks, return_exceptions=True)

    a, b, bad, c, left = asyncio.run(scenario())
    assert (a, b, c) == ("answer a", "answer b", "answer c")
    assert isinstance(bad, ValueError) and isinstance(left, ClientGone)
    # a (2) alone: b would make 4 > 3; b + bad; c (5 > 3) whole, alone; bad judged again alone; left never judged
    assert calls == [["a"], ["b", "bad"], ["b"], ["bad"], ["c"]]


def test_batches_in_flight_follow_the_judge_and_max_in_flight():
    hosted = OpenAIJudgeConfig(model="m", base_urls=["http://127.0.0.1:9/v1"], concurrency=16)
    local = PythonJudgeConfig(function="rlaif.rules:prefer_keyword")
    assert batches_in_flight(hosted) == 16 and batches_in_flight(hosted, BatchLimits(max_in_flight=1)) == 1
    assert batches_in_flight(local) == 1 and batches_in_flight(local, BatchLimits(max_in_flight=4)) == 1


def test_bad_batch_options_exit_2_in_one_line(tmp_path):
    judge = judge_file(tmp_path)
    for flag, value, line in [
        ("--max-batch-size", "0", "error: --max-batch-size is 0, not a finite number above 0"),
        ("--max-wait-ms", "-1", "error: --max-wait-ms = -1.0 is outside [0, 60000]"),
        ("--max-queue", "0", "error: --max-queue is 0, not a finite number above 0"),
        ("--max-in-flight", "0", "error: --max-in-flight is 0, not a finite number above 0"),
        ("--max-in-flight", "2", f"error: --max-in-flight 2: {judge} judges at most 1 batch at a time"),
    ]:
        p = serve_reward("--judge", judge, flag, value, "--port", "0")
        assert p.returncode == 2 and p.stderr.splitlines() == [line], p.stderr
