"""Tier 4: `rlaif serve reward --ray` on the session's real Ray cluster on 127.0.0.1 (tests/conftest.py: 2 CPUs, no
dashboard) and joined by the CLI as a subprocess, as a user's server joins a cluster started with `ray start
--head`: 2 replicas of a python judge behind Ray Serve's proxy, real HTTP requests in OpenRLHF's shape, one replica
SIGKILLed mid-load."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx")
ray = pytest.importorskip("ray", reason="the Ray Serve tests need ray[serve] (the dev extra)")
pytest.importorskip("ray.serve", reason="the Ray Serve tests need ray[serve] (the dev extra)")

from rlaif.rewards.ray_serve import APP  # noqa: E402
from tests.rewards.test_serve_reward import CliServer, keyword_service, serve_reward  # noqa: E402

PROMPTS = [f"Question {i}:" for i in range(24)]
RESPONSES = [("please " if i % 3 else "") + f"answer {i}" + (" thanks" if i % 4 == 0 else "") for i in range(24)]
REFERENCES = [("please " if i % 2 else "") + f"reference {i}" for i in range(24)]


def body(items) -> dict:
    return {
        "prompts": [PROMPTS[i] for i in items],
        "responses": [RESPONSES[i] for i in items],
        "references": [REFERENCES[i] for i in items],
    }


@pytest.fixture(scope="module")
def server(ray_cluster, tmp_path_factory):
    """`rlaif serve reward --ray --replicas 2` on the session's cluster, each replica reserving half a CPU."""
    tmp = tmp_path_factory.mktemp("ray_serve")
    judge = tmp / "judge.yaml"
    judge.write_text("backend: python\nfunction: rlaif.rules:prefer_keyword\nresources: {num_cpus: 0.5}\n")
    with CliServer(tmp, "--judge", judge, "--ray", "--ray-address", ray_cluster, "--replicas", "2") as srv:
        yield srv


def replica_pids() -> list[int]:
    """The live replicas' processes, from the cluster's actor table (Ray's state, read from its GCS)."""
    from ray._private import state  # the state API proper needs the dashboard, which this cluster runs without

    return [
        a["Pid"]
        for a in state.actors().values()
        if a["ActorClassName"].startswith(f"ServeReplica:{APP}:") and a["State"] == "ALIVE"
    ]


def post(url: str, payload: dict, tries: int = 30) -> tuple[dict, list[int]]:
    """POST as OpenRLHF does, retrying on a 5xx or a dropped connection; the reply and the statuses refused."""
    refused = []
    for _ in range(tries):
        try:
            reply = httpx.post(url + "/get_reward", json=payload, timeout=60)
        except httpx.TransportError:
            refused.append(0)
        else:
            if reply.status_code == 200:
                return reply.json(), refused
            refused.append(reply.status_code)
            assert reply.status_code >= 500, reply.text  # never a 4xx for a good request
        time.sleep(0.2)
    raise AssertionError(f"no answer after {tries} tries: {refused}")


def test_bad_flag_combinations_are_refused_in_one_line(tmp_path):
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nfunction: rlaif.rules:prefer_keyword\n")
    for args, line in [
        (["--replicas", "2"], "error: --ray-address and --replicas go with --ray"),
        (["--ray-address", "127.0.0.1:1"], "error: --ray-address and --replicas go with --ray"),
        (["--ray", "--replicas", "0"], "error: --replicas is 0, not a finite number above 0"),
    ]:
        p = serve_reward("--judge", judge, *args)
        assert p.returncode == 2 and p.stderr.splitlines() == [line], p.stderr


def test_two_replicas_give_the_in_process_rewards_batched(server, ray_cluster):
    expected = keyword_service().reward.rewards(PROMPTS, RESPONSES, REFERENCES).rewards
    assert sorted(set(expected)) == [-0.8, 0.0, 0.8]  # the keyword judge tells these apart
    whole, _ = post(server.url, body(range(24)))
    assert whole["rewards"] == expected
    assert whole["scores"] == [(r + 1.0) / 2.0 for r in expected]
    with ThreadPoolExecutor(24) as pool:  # OpenRLHF's pattern: one query per request, all at once
        singles = list(pool.map(lambda i: post(server.url, body([i]))[0]["rewards"], range(24)))
    assert singles == [[r] for r in expected]
    healths = [httpx.get(server.url + "/health", timeout=30).json() for _ in range(10)]
    assert {h["mode"] for h in healths} == {"reference"}
    assert max(h["mean_batch_size"] or 0 for h in healths) > 1  # @serve.batch put requests together
    assert ray.available_resources().get("CPU") == 1.0  # 2 replicas of the judge config's 0.5 CPU


def test_a_replica_sigkilled_mid_load_loses_no_request(server):
    pids = replica_pids()
    assert len(pids) == 2
    answered, refused, lock = {}, [], threading.Lock()

    def client(k: int) -> None:
        for n in range(15):
            i = (k * 15 + n) % 24
            reply, statuses = post(server.url, body([i]))
            with lock:
                answered[(k, n)] = (i, reply["rewards"])
                refused.extend(statuses)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(answered) < 120, "the load ended before the kill"
    os.kill(pids[0], signal.SIGKILL)
    for t in threads:
        t.join(timeout=180)
    expected = keyword_service().reward.rewards(PROMPTS, RESPONSES, REFERENCES).rewards
    assert len(answered) == 120
    assert all(rewards == [expected[i]] for i, rewards in answered.values())
    assert all(status == 0 or status >= 500 for status in refused)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # the replica was killed while serving
