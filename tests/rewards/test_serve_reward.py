"""Tier 4: `rlaif serve reward` as OpenRLHF and verl use it — a real uvicorn server on a loopback port (in a
thread, or the CLI as a subprocess), real HTTP requests in OpenRLHF's remote-reward shape, the verl reward
function from examples/verl called against it. Expected rewards come from JudgeReward in-process, or by hand."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
import yaml

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the reward server needs the human extra: pip install -e '.[human]'")
uvicorn = pytest.importorskip("uvicorn", reason="the reward server needs the human extra: pip install -e '.[human]'")

from rlaif.config.judge import PythonJudgeConfig  # noqa: E402
from rlaif.judges.registry import load_judge  # noqa: E402
from rlaif.rewards.judge_reward import JudgeReward  # noqa: E402
from rlaif.rewards.queries import Splitter, assistant_marker, chatml_messages  # noqa: E402
from rlaif.rewards.server import RewardService, build_service, create_app  # noqa: E402
from tests.helpers import ROOT  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"  # a ChatML prompt as OpenRLHF renders it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """A RewardService behind a real uvicorn server on 127.0.0.1, in a thread of the test process."""

    def __init__(self, service: RewardService, **app_options):
        self.port = free_port()
        app = create_app(service, **app_options)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the reward server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


class CliServer:
    """`rlaif serve reward ...` as a subprocess on --port 0: the port it announces at start is the one it serves."""

    def __init__(self, tmp: Path, *args: str):
        self.cmd = [sys.executable, "-m", "rlaif.cli", "serve", "reward", *map(str, args), "--port", "0"]
        self.log = tmp / f"serve-{time.monotonic_ns()}.log"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()}"
            announced = re.search(r"POST http://127\.0\.0\.1:(\d+)/get_reward", self.log.read_text())
            try:
                if announced:
                    self.port = int(announced.group(1))
                    if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                        return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.log.read_text()}")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def keyword_service(mode="reference", **kwargs) -> RewardService:
    judge = load_judge(PythonJudgeConfig(function="rlaif.rules:prefer_keyword"))
    return RewardService(JudgeReward(judge, mode=mode), **kwargs)


def judge_file(tmp_path: Path, function="rlaif.rules:prefer_keyword") -> Path:
    f = tmp_path / "judge.yaml"
    f.write_text(f"backend: python\nfunction: {function}\n")
    return f


# -- splitting (no server) -----------------------------------------------------------------------------------------
def test_split_by_prompt_by_marker_and_end_markers():
    s = Splitter()
    prompt = CHAT.format("fix my car")
    # with its prompt: the rest is the response, end-of-turn tokens trimmed; a ChatML prompt becomes messages
    assert s.split(0, prompt + "please try this<|im_end|>", prompt) == (
        [{"role": "user", "content": "fix my car"}],
        "please try this",
    )
    # a BOS token the prompt text lacks is allowed in front
    assert s.split(0, "<s>" + "Q: hi\nA:" + " hello</s>", "Q: hi\nA:") == ("Q: hi\nA:", "hello")
    # no prompt: cut at the last assistant marker, so earlier assistant turns stay in the prompt
    two_turns = (
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
        "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\nd<|im_end|><pad><pad>"
    )
    assert s.split(0, two_turns) == (
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
        "d",
    )
    llama3 = (
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>"
    )
    assert s.split(0, llama3)[1] == "hello"
    assert Splitter.create("### Answer:").split(0, "Q: x ### Answer: y") == ("Q: x", "y")


def test_split_errors_name_the_query():
    from rlaif.rewards.queries import RequestError

    with pytest.raises(RequestError, match="query 3 does not start with its prompt"):
        Splitter().split(3, "something else entirely", "the prompt")
    with pytest.raises(RequestError, match="query 2 cannot be split into prompt and response"):
        Splitter().split(2, "no marker in here")


def test_chatml_messages_and_assistant_marker_from_a_tokenizer():
    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tokenizer

    assert chatml_messages("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert chatml_messages("plain text") is None
    assert chatml_messages("x <|im_start|>user\nhi<|im_end|>\n") is None  # text outside the turns: keep as text
    assert assistant_marker(build_tokenizer(TinyModelConfig(vocab=["hi"]))) == "<|im_start|>assistant\n"


# -- the HTTP endpoint ---------------------------------------------------------------------------------------------
def test_openrlhf_request_gets_judge_reward_values():
    prompts = [CHAT.format("fix my car"), CHAT.format("make tea"), "Plain prompt:"]
    responses = ["please try this", "no", " ok please"]
    references = ["no", "please", "fine"]
    expected = (
        keyword_service()
        .reward.rewards(
            [[{"role": "user", "content": "fix my car"}], [{"role": "user", "content": "make tea"}], "Plain prompt:"],
            ["please try this", "no", "ok please"],
            references,
        )
        .rewards
    )
    assert expected == pytest.approx([0.8, -0.8, 0.8])
    with ThreadServer(keyword_service()) as srv:
        body = {
            "query": [p + r + "<|im_end|>" for p, r in zip(prompts, responses)],
            "prompts": prompts,
            "labels": ["", "", ""],
            "references": references,
        }
        reply = httpx.post(srv.url + "/get_reward", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        out = reply.json()
        assert out["rewards"] == pytest.approx(expected)
        assert out["scores"] == pytest.approx([0.9, 0.1, 0.9])  # (reward + 1) / 2 = P(better than reference)
        assert out["extra_logs"] == {"rlaif_judge_failed": [0.0, 0.0, 0.0]}
        health = httpx.get(srv.url + "/health", timeout=5).json()
        assert health["status"] == "ok" and health["mode"] == "reference" and health["requests"] == 1
        assert health["judge"] == "rlaif.rules:prefer_keyword" and health["judged_pairs"] == 3


def test_malformed_and_unusable_requests_get_422():
    with ThreadServer(keyword_service()) as srv:

        def post(**kw):
            return httpx.post(srv.url + "/get_reward", timeout=10, **kw)

        r = post(content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"].startswith("malformed request:")
        r = post(json={"query": "one string, not a list"})
        assert r.status_code == 422 and "query" in r.json()["detail"]
        r = post(json={"labels": ["x"]})
        assert r.status_code == 422 and "send one of `query`" in r.json()["detail"]
        r = post(json={"query": ["a", "b"], "prompts": ["a"]})
        assert r.status_code == 422 and r.json()["detail"] == "1 prompts for 2 queries"
        r = post(json={"query": [CHAT.format("q") + "x", "no marker here"], "references": ["r", "r"]})
        assert r.status_code == 422 and "query 1 cannot be split" in r.json()["detail"]
        r = post(json={"query": [CHAT.format("q") + "x"]})
        assert r.status_code == 422
        assert "query 0 has no reference response" in r.json()["detail"] and "--reference-model" in r.json()["detail"]
        r = post(json={"prompts": [CHAT.format("q")], "query": ["elsewhere"], "references": ["r"]})
        assert r.status_code == 422 and "query 0 does not start with its prompt" in r.json()["detail"]
        # wrong types: one plain line naming the field, never pydantic's list of loc/type/input
        for body, line in [
            ({"query": ["a", 3]}, "query[1]: must be a valid string"),
            ({"prompts": [5], "responses": ["a"]}, "prompts[0]: must be a valid string or a valid list"),
            (
                {"prompts": [[5]], "responses": ["a"]},
                "prompts[0]: must be a valid string, or prompts[0][0] must be a JSON object",
            ),
            ({"query": [7] * 5000}, "query[0]: must be a valid string (and 4999 more fields at fault)"),
            ([1, 2], "the request body must be a JSON object"),
        ]:
            r = post(json=body)
            assert r.status_code == 422 and r.json() == {"detail": f"malformed request: {line}"}, r.text
        r = post(content=b'{"query": ["a"],}', headers={"content-type": "application/json"})
        assert r.status_code == 422 and set(r.json()) == {"detail"}
        assert r.json()["detail"].startswith("malformed request: the request body is not valid JSON (")
        assert httpx.get(srv.url + "/health", timeout=5).json()["requests"] == 0  # nothing was scored


def test_reference_sources_and_group_mode():
    with ThreadServer(keyword_service(labels_as_references=True)) as srv:
        # OpenRLHF's labels as references (--labels-as-references); an explicit reference wins over a label
        body = {
            "query": [CHAT.format("q") + "please", CHAT.format("q") + "please"],
            "labels": ["no", "no"],
            "references": [None, "please too"],
        }
        assert httpx.post(srv.url + "/get_reward", json=body, timeout=10).json()["rewards"] == pytest.approx([0.8, 0.0])
    with ThreadServer(keyword_service(mode="group")) as srv:
        # responses sent directly (no splitting); chat prompts as messages; A beats B and C, B and C tie
        p = [{"role": "user", "content": "q"}]
        body = {"prompts": [p, p, p, "other"], "responses": ["please A", "B", "C", "alone"]}
        out = httpx.post(srv.url + "/get_reward", json=body, timeout=10).json()
        assert out["rewards"] == pytest.approx([0.8, -0.4, -0.4, 0.0])


# -- the CLI: reference model, verl ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_policy_dir(tmp_path_factory) -> Path:
    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    vocab = yaml.safe_load((ROOT / "examples" / "tiny" / "dpo.yaml").read_text())["model"]["vocab"]
    cfg = TinyModelConfig(vocab=vocab, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
    tokenizer = build_tokenizer(cfg)
    path = tmp_path_factory.mktemp("tiny-policy")
    build_tiny(cfg, tokenizer, "lm").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_reference_model_samples_and_caches_references(tiny_policy_dir):
    """--reference-model: the server samples one greedy reference per prompt from the saved model, once. The
    length rule judge makes the reward 2·σ(0.05·(len(reference) − len(response))) − 1, which pins the
    reference text the server used to the one greedy decoding gives."""
    from rlaif.config.run import PretrainedModelConfig
    from rlaif.policy.sampling import SamplingConfig, sample
    from rlaif.train.models import load_model, load_tokenizer

    source = PretrainedModelConfig(path=str(tiny_policy_dir))
    tokenizer = load_tokenizer(source)
    policy = load_model(source, tokenizer, "lm")
    prompts = [[{"role": "user", "content": "how do i fix my car"}], [{"role": "user", "content": "make tea"}]]
    greedy = [
        row[0].text for row in sample(policy, tokenizer, prompts, 1, SamplingConfig(temperature=0, max_new_tokens=8))
    ]
    assert all(greedy)
    responses = ["a", "please try this now"]

    def expected(ref: str, resp: str) -> float:
        return 2.0 / (1.0 + math.exp(-0.05 * (len(ref) - len(resp)))) - 1.0

    service = build_service(
        ROOT / "judges" / "rule-length.yaml", reference_model=str(tiny_policy_dir), reference_max_new_tokens=8
    )
    with ThreadServer(service) as srv:
        # no `prompts`: the server splits at the model's assistant marker and reads the ChatML prompt back
        body = {
            "query": [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) + r + "<|im_end|>"
                for p, r in zip(prompts, responses)
            ]
        }
        for _ in range(2):
            out = httpx.post(srv.url + "/get_reward", json=body, timeout=60)
            assert out.status_code == 200, out.text
            assert out.json()["rewards"] == pytest.approx([expected(g, r) for g, r in zip(greedy, responses)])
        health = httpx.get(srv.url + "/health", timeout=5).json()
        assert health["reference_model"] is True and health["references_sampled"] == 2  # cached after the first


def load_verl_reward():
    spec = importlib.util.spec_from_file_location("rlaif_verl_reward", ROOT / "examples" / "verl" / "rlaif_reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verl_compute_score_round_trip(tmp_path, monkeypatch):
    verl = load_verl_reward()
    judge = judge_file(tmp_path)
    constitution = ROOT / "constitutions" / "helpful.yaml"
    with CliServer(tmp_path, "--judge", judge, "--constitution", constitution) as srv:
        url = srv.url + "/get_reward"
        messages = [{"role": "user", "content": "how do i fix my car"}]
        # verl passes the response, the ground truth (here: the reference response) and extra_info
        got = verl.compute_score("hh_rlhf", "please try this", "no idea", extra_info={"prompt": messages}, url=url)
        assert isinstance(got, float) and got == pytest.approx(0.8)
        got = verl.compute_score("gsm8k", "no idea", "please", extra_info={"question": "q", "reference": "ok"}, url=url)
        assert got == pytest.approx(0.0)  # extra_info's reference wins over ground_truth
        monkeypatch.setenv("RLAIF_REWARD_URL", url)  # no url argument: the environment names the server
        assert verl.compute_score("x", "fine", "please", extra_info={"question": "q"}) == pytest.approx(-0.8)
        with pytest.raises(ValueError, match="put the prompt in the dataset's extra_info"):
            verl.compute_score("x", "fine", "please", extra_info={}, url=url)
        expected = JudgeReward(load_judge(judge_file(tmp_path)), mode="reference")(
            [messages], ["please try this"], reference=["no idea"]
        )
        assert expected == pytest.approx([0.8])

    with CliServer(tmp_path, "--judge", judge, "--mode", "group") as srv:
        # a verl-style single response has no rival in mode group: reward 0, and the server says why in its log
        assert verl.compute_score("x", "please", None, extra_info={"question": "q"}, url=srv.url + "/get_reward") == 0.0
    assert "mode group got a request with one response per prompt" in srv.log.read_text()


def test_cli_refuses_bad_options(tmp_path):
    judge = judge_file(tmp_path)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "rlaif.cli", "serve", "reward", *map(str, args)],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )

    p = run("--judge", judge, "--mode", "pairs")
    assert p.returncode == 2 and "--mode must be reference or group" in p.stderr
    p = run("--judge", judge, "--mode", "group", "--reference-model", tmp_path)
    assert p.returncode == 2 and "--reference-model is used in mode reference only" in p.stderr
    p = run("--judge", tmp_path / "missing.yaml")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = run("--judge", judge, "--reference-model", tmp_path / "no-model")
    assert p.returncode == 2 and "cannot load a causal LM" in p.stderr and "Traceback" not in p.stderr
    for host in ("0.0.0.0", "192.0.2.7"):  # beyond loopback: refused in one line unless --allow-remote
        p = run("--judge", judge, "--host", host, "--port", "0")
        (line,) = p.stderr.splitlines()
        assert p.returncode == 2 and line.startswith(
            f"error: --host {host} would serve the judge as a reward beyond this machine over plain HTTP"
        )
        assert "--allow-remote" in line and "TLS" in line


def serve_reward(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlaif.cli", "serve", "reward", *map(str, args)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_taken_port_or_a_bad_host_exits_2_in_one_line(tmp_path):
    """Not 3 (uvicorn's startup failure, and rlaif's spending-cap code), and before the judge is loaded."""
    judge = judge_file(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = serve_reward("--judge", judge, "--port", port)
    assert p.returncode == 2 and p.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (pick another --port, or --port 0 for a free "
        "one)"
    ]
    for host, why in [
        ("no-such-host.invalid", "the host does not resolve"),
        ("192.0.2.7", "that address is not one of this machine's"),
    ]:  # TEST-NET-1: never local
        p = serve_reward("--judge", judge, "--host", host, "--allow-remote", "--port", 8000)
        (line,) = p.stderr.splitlines()
        assert p.returncode == 2 and line.startswith(f"error: cannot listen on {host}:8000: {why}"), p.stderr
    p = serve_reward("--judge", judge, "--max-body-mb", "nan")
    assert p.returncode == 2 and p.stderr.splitlines() == ["error: --max-body-mb is nan, not a finite number above 0"]


def test_a_judge_of_the_kind_the_mode_does_not_take_is_refused_in_one_line_naming_the_file(tmp_path):
    """Before the port is taken (a taken port would say so) and before the judge loads."""
    from rlaif.rewards.judge_reward import judge_reward

    rater = tmp_path / "rater.yaml"
    rater.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        p = serve_reward("--judge", rater, "--mode", "reference", "--port", taken.getsockname()[1])
    assert p.returncode == 2 and p.stderr.splitlines() == [
        f"error: {rater} is a score judge (mode: score): reward mode reference needs a pairwise judge. A score judge "
        "rates each response alone: its reward mode is score (leave the mode out; in a PPO config, reward type "
        "judge_score)"
    ]
    pairwise = judge_file(tmp_path)
    with pytest.raises(ValueError) as e:
        judge_reward(str(pairwise), mode="score")
    assert str(e.value) == (
        f"{pairwise} is a pairwise judge (mode: pairwise): reward mode score needs a score judge. Set `mode: score` "
        "in the judge config; a pairwise judge takes reward mode reference or group"
    )
    assert judge_reward(str(rater)).mode == "score" and judge_reward(str(pairwise)).mode == "reference"


def test_the_policy_judge_is_refused_as_a_reward_in_one_line_naming_the_file(tmp_path):
    """It has no model of its own (rlaif loop attaches the policy): the server and judge_reward() refuse it before
    the port is taken, as rlaif label and rlaif train ppo do."""
    from rlaif.rewards.judge_reward import judge_reward

    policy = ROOT / "judges" / "self.yaml"
    p = serve_reward("--judge", policy, "--port", 0)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith(f"error: {policy}: the policy judge (backend: policy)") and "rlaif loop" in p.stderr
    with pytest.raises(ValueError, match="rlaif loop"):
        judge_reward(str(policy))


def raw_post(port: int, length: Optional[int] = None, megabytes: int = 0) -> tuple[int, dict, int]:
    """POST /get_reward on a bare socket: with `length`, only headers declaring that length; otherwise a chunked
    body of `megabytes` 1 MB chunks, poured from a thread, since the server may answer and close before it has
    taken them all. Returns the status, the JSON reply and how many body bytes went out."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = f"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(head.encode())

        def pour():
            nonlocal sent
            chunk = b"100000\r\n" + b" " * 2**20 + b"\r\n"
            try:
                for _ in range(megabytes):
                    conn.sendall(chunk)
                    sent += 2**20
                conn.sendall(b"0\r\n\r\n")
            except OSError:  # the server answered and closed: the rest was never going to be read
                pass

        pourer = threading.Thread(target=pour, daemon=True)
        if length is None:
            pourer.start()
        reply = b""
        try:
            while data := conn.recv(65536):
                reply += data
        except ConnectionResetError:  # closed with the unread body still queued; the reply came before
            pass
        if length is None:
            pourer.join(timeout=60)
    status, _, body = reply.partition(b"\r\n\r\n")
    return int(status.split()[1]), json.loads(body), sent


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (Linux's VmHWM)."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_a_body_over_the_cap_gets_413_before_it_is_read(tmp_path):
    with CliServer(tmp_path, "--judge", judge_file(tmp_path)) as srv:  # the default cap: 16 MB
        ok = {"query": [CHAT.format("q") + "please"], "references": ["no"]}
        assert httpx.post(srv.url + "/get_reward", json=ok, timeout=30).status_code == 200
        before = peak_rss(srv.proc.pid)
        # a declared length over the cap is refused at once, without a byte of the body
        started = time.monotonic()
        status, reply, _ = raw_post(srv.port, length=17 * 2**20)
        assert status == 413 and time.monotonic() - started < 10
        assert reply == {
            "detail": "the request body is over 16 MB (--max-body-mb 16): send fewer queries per "
            "request, or start the server with a larger --max-body-mb"
        }
        # no length (chunked): counted as it arrives; of 256 MB offered, the server stops taking after 16
        status, reply, sent = raw_post(srv.port, megabytes=256)
        assert status == 413 and reply["detail"].startswith("the request body is over 16 MB")
        assert sent < 128 * 2**20
        assert peak_rss(srv.proc.pid) - before < 96 * 2**20  # without the cap: 256 MB and more
        assert httpx.post(srv.url + "/get_reward", json=ok, timeout=30).json()["rewards"] == pytest.approx([0.8])
    assert srv.log.read_text().count("413 for POST /get_reward from 127.0.0.1:") == 2  # each refusal is logged


def test_build_service_checks_options(tmp_path):
    with pytest.raises(ValueError, match="--separator must not be empty"):
        build_service(judge_file(tmp_path), separator="")
