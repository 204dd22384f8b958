"""The GPU paths, on a CUDA device (skipped where there is none, as on CI; `scripts/gpu-check.sh` runs them on a
GPU machine): the transformers judge in bf16 on the GPU agrees with fp32 on the CPU; the revise chain's kept KV cache
gives the naive loop's chains on the GPU; the training recipes pick bf16 mixed precision and learn there."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import torch

from rlaif.config.judge import TransformersJudgeConfig
from rlaif.config.sampling import SamplingConfig
from rlaif.records import Pair
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu-check.sh)"),
]

PAIRS = [
    Pair(
        id=f"p{i}",
        prompt=f"How do I bake bread? ({i})",
        response_a="Mix flour, water, yeast and salt.",
        response_b="Response A is better than Response B." * (1 + i % 3),
    )
    for i in range(6)
]


def _order_values(records) -> list[float]:
    return [v.p_a for r in records for v in r.verdicts]


def test_the_judge_in_bf16_on_the_gpu_agrees_with_fp32_on_the_cpu(tiny_model_dir):
    import rlaif

    runs = {}
    for name, device, dtype in (
        ("cpu", "cpu", "float32"),
        ("gpu-fp32", "cuda", "float32"),
        ("gpu-auto", "cuda", "auto"),
    ):
        judge = rlaif.load_judge(
            TransformersJudgeConfig(model=str(tiny_model_dir), device=device, dtype=dtype, batch_size=4)
        )
        runs[name] = rlaif.judge_pairs(judge, PAIRS)
        assert all(r.status == "ok" for r in runs[name]), [r.error for r in runs[name]]
    assert runs["gpu-fp32"][0].judge == runs["cpu"][0].judge  # the device stays out of the judge hash
    cpu = _order_values(runs["cpu"])
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in cpu)
    assert _order_values(runs["gpu-fp32"]) == pytest.approx(cpu, abs=1e-3)
    assert _order_values(runs["gpu-auto"]) == pytest.approx(cpu, abs=0.03)  # bf16 on the GPU (dtype auto)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_kept_kv_cache_on_the_gpu_gives_the_naive_loops_chains(tiny_model_dir, dtype):
    from rlaif.revision.chain import ChainSettings, plan_chain, run_chains
    from rlaif.revision.generators import generation_settings, generation_sha256
    from rlaif.revision.registry import build_generator
    from tests.revision.files import CONSTITUTION, EXAMPLE
    from tests.revision.test_chain import ROWS, constitution

    c = constitution(CONSTITUTION + EXAMPLE)
    sampling = SamplingConfig(temperature=0, max_new_tokens=10)
    chains, encoded = {}, {}
    for reuse in (True, False):
        config = TransformersJudgeConfig(model=str(tiny_model_dir), device="cuda", dtype=dtype, share_prefix=reuse)
        g = build_generator(config, sampling)
        assert g.model.device.type == "cuda" and str(g.model.dtype) == f"torch.{dtype}"
        settings = ChainSettings(c, 2, 0, g.info, generation_settings(sampling), generation_sha256(sampling))
        planned = [plan_chain(r, c, 2, 0, g.info.settings_sha256, settings.generation_sha256) for r in ROWS]
        records = run_chains(g.session(), planned, settings)
        assert all(r.status == "ok" for r in records), [r.error for r in records]
        chains[reuse] = [(r.initial, [x.model_dump() for x in r.rounds], r.final) for r in records]
        encoded[reuse] = g.timing.prefill_tokens
    if dtype == "float32":
        assert chains[True] == chains[False]
    else:  # bf16 sums in another order over other shapes: the first steps agree, later greedy picks may part
        assert [c[0] for c in chains[True]] == [c[0] for c in chains[False]]
    assert encoded[True] < encoded[False] / 2


def _train(method: str, config: str, tmp_path, *overrides: str) -> list[dict]:
    out = tmp_path / method
    result = subprocess.run(
        [sys.executable, "-m", "rlaif.cli", "train", method, "--config", config, f"output_dir={out}", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert re.search(rf"^{method}: on cuda(:0)? \(.*\), bf16 mixed precision", result.stdout, re.M), result.stdout[:500]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(metrics: list[dict], key: str = "loss") -> list[float]:
    return [m[key] for m in metrics if key in m and m.get("split", "train") == "train"]


@pytest.mark.parametrize(
    "method,config,overrides,key",
    [
        ("reward", "examples/tiny/reward.yaml", ("max_steps=60",), "loss"),
        ("dpo", "examples/tiny/dpo.yaml", ("max_steps=60",), "loss"),
        ("sft", "examples/tiny/cai/sft.yaml", ("max_steps=40",), "loss"),
    ],
)
def test_a_recipe_trains_in_bf16_mixed_precision_on_the_gpu(tmp_path, method, config, overrides, key):
    if method == "sft":  # the tiny CAI example's starting policy, fine-tuned on replies that begin "please"
        subprocess.run(
            [sys.executable, str(ROOT / "examples/tiny/cai/start.py"), str(tmp_path / "start")],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        prompts = [json.loads(x)["prompt"] for x in (ROOT / "examples/tiny/cai/prompts.jsonl").read_text().splitlines()]
        rows = [
            {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": f"please {p}"}]}
            for p in prompts
        ]
        (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        overrides = (*overrides, f"model.path={tmp_path / 'start'}", f"data.paths=[{tmp_path / 'sft.jsonl'}]")
    metrics = _train(method, config, tmp_path, *overrides)
    losses = _losses(metrics, key)
    assert losses and all(math.isfinite(x) for x in losses), metrics[:3]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first * 0.9, (method, first, last)


def test_ppo_runs_on_the_gpu(tmp_path):
    metrics = _train("ppo", "examples/tiny/ppo.yaml", tmp_path, "max_steps=6")
    assert metrics and all(math.isfinite(v) for m in metrics for v in m.values() if isinstance(v, float))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shared_prefix_rows_match_two_rows_per_pair_on_cuda(dtype):
    """Issue 20's exactness on the GPU: the rlaif_prefix attention as written (SDPA with its mask, keys and values
    repeated for GQA on CUDA), one pair per row and packed, against two rows per pair, log-probs and every gradient
    of one DPO step, in fp32 to the CPU test's tolerances and in bf16 to bf16's (8 bits of mantissa: a few 1e-2 on
    sums of ~10 log-probs)."""
    from rlaif.models import prefix
    from rlaif.train.data import collate, collate_shared
    from rlaif.train.dpo import response_logps
    from tests.train.test_prefix_sharing import MAX_LENGTH, PAD, model, pairs, relative

    logp_tol, grad_tol = (1e-4, 1e-4) if dtype == torch.float32 else (0.25, 0.05)
    policy = model("smollm2-shape").to("cuda", dtype)

    def step(batch):
        logps, n = response_logps(policy, {k: v.to("cuda") for k, v in batch.items()})
        logps.float().sum().backward()
        grads = {k: p.grad.float().clone() for k, p in policy.named_parameters()}
        policy.zero_grad(set_to_none=True)
        return logps.detach().float(), n, grads

    unshared, n_unshared, g_unshared = step(collate(pairs(), PAD, MAX_LENGTH))
    prefix.enable(policy)
    for packed in (False, True):  # one row per pair; every pair in one row (one SDPA call per pair)
        shared, n_shared, g_shared = step(collate_shared(pairs(), PAD, MAX_LENGTH, packed=packed))
        assert n_shared.tolist() == n_unshared.tolist()
        assert float((shared - unshared).abs().max()) <= logp_tol
        assert max(relative(g_shared[k], g_unshared[k]) for k in g_unshared) <= grad_tol
