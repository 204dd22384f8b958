"""Tiers 2, 4 and 5: the PPO recipe on a tiny random Llama built from examples/tiny/ppo.yaml (no download) — its
rollout batches give the log-probs of unpadded sequences, a short run writes its files and moves the weights, a
real tiny reward model scores re-tokenised text, a real `rlaif train ppo` subprocess killed with SIGKILL resumes
exactly, and PPO with the rule judge as the reward makes the policy say "please" measurably more often."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlaif.config.train import load_train_config
from rlaif.train.checkpoint import list_checkpoints
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, kill_then_resume, rlaif_command, shares_before_after

TINY = ROOT / "examples/tiny/ppo.yaml"
LABELS = ROOT / "examples/tiny/data/labels.jsonl"
JUDGE = ROOT / "judges/rule-keyword.yaml"
PATHS = [f"prompts.path={LABELS}", f"reward.judge={JUDGE}"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(out: Path, *overrides: str):
    return load_train_config(TINY, "ppo", [f"output_dir={out}", *PATHS, *overrides])


def run(out: Path, *overrides: str) -> list[dict]:
    from rlaif.recipes.ppo import train

    train(tiny_config(out, *overrides))
    return read_metrics(out)


def test_example_configs_parse():
    tiny = load_train_config(TINY, "ppo")
    assert tiny.reward.type == "judge" and tiny.model.type == "tiny"
    gpu = load_train_config(ROOT / "examples/gpu/ppo.yaml", "ppo")
    assert gpu.model.type == "pretrained" and gpu.precision in ("auto", "bf16") and gpu.kl.type == "adaptive"


@pytest.mark.parametrize(
    "overrides, error",
    [
        (["reward.mode=group", "samples_per_prompt=1"], "samples_per_prompt: reward mode group needs"),
        (["batch_size=3", "samples_per_prompt=1", "num_mini_batches=2"], "num_mini_batches: .* equal parts"),
    ],
)
def test_config_checks_its_shapes(overrides, error):
    from rlaif.config.yamlfile import ConfigFileError

    with pytest.raises(ConfigFileError, match=error):
        load_train_config(TINY, "ppo", overrides)


def test_rollout_batch_log_probs_equal_those_of_each_sequence_alone():
    """Left-padded prompts, right-padded responses and real-token position ids give every response token the
    log-prob it has in its own unpadded sequence (and so the one it was sampled with)."""
    from rlaif.policy.sampling import Sample
    from rlaif.train.losses import token_logps
    from rlaif.train.models import build_tiny, build_tokenizer
    from rlaif.train.ppo import PolicyWithValueHead, policy_outputs
    from rlaif.train.rollout import build_batch

    cfg = tiny_config(Path("unused"))
    tok = build_tokenizer(cfg.model)
    lm = build_tiny(cfg.model, tok, "lm").eval()
    model = PolicyWithValueHead(lm, 64)
    torch.nn.init.normal_(model.value_head.weight)
    samples = [
        Sample("x", [1, 5, 6], [7, 8, 9, 2], "", True),
        Sample("y", [1, 5, 6, 10, 11, 12], [13], "", False),
        Sample("z", [1, 14], [15, 0, 16], "", False),
    ]  # a sampled pad id inside a response is a token
    batch = build_batch(samples, tok.pad_token_id)
    with torch.no_grad():
        _, logps, values = policy_outputs(model, batch)
        for i, s in enumerate(samples):
            ids = torch.tensor([s.prompt_ids + s.response_ids])
            out = lm(input_ids=ids, output_hidden_states=True)
            r, p = len(s.response_ids), len(s.prompt_ids)
            alone = token_logps(out.logits[0, p - 1 : -1], ids[0, p:])
            assert torch.allclose(logps[i, :r], alone, atol=1e-5)
            head = model.value_head(out.hidden_states[-1][0, p - 1 : -1]).squeeze(-1)
            assert torch.allclose(values[i, :r], head, atol=1e-5)
        sub = batch.rows(torch.tensor([2, 0]))  # a row subset drops the columns that are padding in all of them
        assert sub.prompt_width == 3 and sub.response_mask.shape == (2, 4)
        _, sub_logps, _ = policy_outputs(model, sub)
        assert torch.allclose(sub_logps * sub.response_mask, logps[[2, 0], :4] * sub.response_mask, atol=1e-5)


def test_a_short_run_writes_its_files_and_changes_the_weights(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from rlaif.train.models import build_tiny, build_tokenizer

    out = tmp_path / "run"
    # one optimizer step per rollout: the update starts from the rollout's own policy, so no ratio is clipped
    overrides = [
        "max_steps=3",
        "save_steps=2",
        "batch_size=4",
        "samples_per_prompt=2",
        "ppo_epochs=1",
        "num_mini_batches=1",
        "eval_steps=2",
        "prompts.eval_fraction=0.05",
        "kl={type: adaptive, coef: 0.1, target: 0.5, horizon: 100}",
    ]
    cfg = tiny_config(out, *overrides)
    rows = run(out, *overrides)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {
            "loss",
            "policy_loss",
            "value_loss",
            "score",
            "kl",
            "kl_coef",
            "entropy",
            "clipfrac",
            "approx_kl",
            "response_length",
            "rollout_tokens_per_s",
            "update_tokens_per_s",
            "lr",
            "grad_norm",
        } <= set(r)
        assert r["clipfrac"] == 0 and r["approx_kl"] < 1e-9 and r["response_length"] > 0
        assert r["rollout_tokens_per_s"] > 0 and r["update_tokens_per_s"] > 0
        assert r["tokens"] > 0 and 0 < r["update_time_s"] < r["step_s"]  # every method logs step_s and tokens
    assert "eval_score" in rows[1] and "eval_kl" in rows[2] and "eval_score" not in rows[0]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the policy is the reference at the first rollout
    # the adaptive controller (Ziegler et al. 2019) from the logged KL of each step: 8 responses, horizon 100
    for prev, cur in zip(rows, rows[1:]):
        error = min(max(prev["kl"] / 0.5 - 1, -0.2), 0.2)
        assert cur["kl_coef"] == pytest.approx(prev["kl_coef"] * (1 + error * 8 / 100), rel=1e-9)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "value_head.safetensors",
        "optimizer.bin",
        "scheduler.bin",
        "random_states_0.pkl",
        "trainer_state.json",
    ):
        assert (out / "checkpoint-2" / name).exists(), name
    state = json.loads((out / "checkpoint-2/trainer_state.json").read_text())
    assert state["step"] == 2 and state["kl_coef"] == pytest.approx(rows[2]["kl_coef"])
    assert load_train_config(out / "config.yaml", "ppo") == cfg
    before = build_tiny(cfg.model, build_tokenizer(cfg.model), "lm").state_dict()
    after = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)  # every weight matrix moved
    head = load_file(out / "model/value_head.safetensors")
    assert head["weight"].shape == (1, 64) and head["weight"].abs().sum() > 0  # the value head left zero


def test_group_mode_and_lora_run(tmp_path):
    rows = run(
        tmp_path / "lora",
        "max_steps=2",
        "batch_size=4",
        "reward.mode=group",
        "samples_per_prompt=2",
        "lora={r: 4, alpha: 8}",
        "ppo_epochs=2",
    )
    assert (tmp_path / "lora/model/adapter_config.json").exists()
    assert (tmp_path / "lora/model/value_head.safetensors").exists()
    assert not (tmp_path / "lora/model/model.safetensors").exists()
    assert all(r["score"] == pytest.approx(0.0, abs=1e-9) for r in rows)  # a round-robin is zero-sum
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # adapters start at zero: policy = reference
    assert rows[1]["kl"] != 0.0


def _reward_model(path: Path) -> Path:
    """A tiny random LlamaForSequenceClassification with a byte-level tokenizer (not the policy's word-level one)."""
    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    cfg = TinyModelConfig(vocab=None, seed=3)
    tok = build_tokenizer(cfg)
    model = build_tiny(cfg, tok, "score")
    torch.nn.init.normal_(model.score.weight, std=1.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_reward_model_directory_scores_the_re_tokenised_text(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rlaif.config.ppo import ModelRewardConfig
    from rlaif.policy.chat import encode
    from rlaif.policy.sampling import Sample
    from rlaif.rewards.sources import ModelRewardSource

    path = _reward_model(tmp_path / "rm")
    scorer = ModelRewardSource(ModelRewardConfig(path=str(path), batch_size=2), torch.device("cpu"))
    samples = [
        Sample("how do i fix my car", [], [], "please try this", True),
        Sample([{"role": "user", "content": "why"}], [], [], "no", True),
        Sample("tea", [], [], "here is a good plan you can try now maybe", False),
    ]
    scores = scorer(samples)
    rm = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        for s, got in zip(samples, scores):
            p, r = encode(tok, s.prompt, s.text)  # the chat template, as `rlaif train reward` encodes pairs
            alone = rm(input_ids=torch.tensor([p + r])).logits[0, 0].item()
            assert got == pytest.approx(alone, abs=1e-5)
    assert len(set(round(x, 6) for x in scores)) == 3

    rows = run(
        tmp_path / "run",
        "max_steps=2",
        "batch_size=4",
        "samples_per_prompt=2",
        f"reward={{type: model, path: {path}, batch_size: 3}}",
    )
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["score_std"] > 0 and all(r["judge_failed"] == 0 for r in rows)


@pytest.mark.slow
def test_ppo_with_the_rule_judge_as_reward_makes_the_policy_say_please_more_often(tmp_path):
    """Learning test: the `python` judge `rlaif.rules:prefer_keyword` as the reward (mode reference); the share of
    policy samples containing "please" must rise well above the starting policy's, and the score with it."""
    rows = run(tmp_path / "run", "max_steps=25", "save_steps=25", "eval_steps=25")
    before, after = shares_before_after(tiny_config(tmp_path / "run").model, tmp_path / "run", LABELS)
    first = sum(r["score"] for r in rows[:5]) / 5
    last = sum(r["score"] for r in rows[-5:]) / 5
    print(
        f"share of samples containing 'please': before {before:.3f}, after {after:.3f}; "
        f"score (mean of 5 steps) {first:.3f} -> {last:.3f}; eval score {rows[-1]['eval_score']:.3f}"
    )
    assert last > first + 0.25, (first, last)
    assert after >= before + 0.4, (before, after)


# -- resume after SIGKILL (the pattern of tests/recipes/test_train_resume.py) ------------------------------------
STEPS = 24
RESUME = [
    *PATHS,
    f"max_steps={STEPS}",
    "save_steps=5",
    "save_total_limit=2",
    "batch_size=8",
    "eval_steps=12",
    "kl={type: adaptive, coef: 0.05, target: 1.0, horizon: 200}",
]


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_at_the_checkpoint_step(tmp_path):
    out = tmp_path / "run"
    cmd = rlaif_command("train", "ppo", "--config", TINY, f"output_dir={out}", *RESUME)
    resumed = kill_then_resume(cmd, out, STEPS)
    assert [s for s, _ in list_checkpoints(out)] == [20, 24]  # save_total_limit keeps the newest two

    from rlaif.recipes.ppo import train

    train(load_train_config(TINY, "ppo", [f"output_dir={tmp_path / 'straight'}", *RESUME]))
    straight = read_metrics(tmp_path / "straight")
    assert len(straight) == STEPS
    for a, b in zip(resumed, straight):
        for key in ("loss", "policy_loss", "value_loss", "score", "kl", "kl_coef", "response_length"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["step"], key)
    assert resumed[-1]["eval_score"] == pytest.approx(straight[-1]["eval_score"], abs=1e-6)


@pytest.mark.slow
def test_two_processes_share_a_rollout_and_checkpoint_together(tmp_path):
    """Under torchrun (two CPU processes, gloo) each process samples its own half of the prompts (seeded by its
    rank) and the update all-reduces the gradients; metrics count both halves."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "rlaif.cli",
        "train",
        "ppo",
        "--config",
        str(TINY),
        f"output_dir={out}",
        *PATHS,
        "batch_size=4",
        "max_steps=2",
        "save_steps=2",
        "eval_steps=2",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 iterations of 8 prompts x 4 samples" in done.stdout  # 4 prompts per process × 2 processes
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5) and rows[1]["kl"] != 0.0
    assert rows[0]["response_length"] > 0 and "eval_score" in rows[1]
    ckpt = out / "checkpoint-2"
    for name in ("random_states_0.pkl", "random_states_1.pkl", "value_head.safetensors", "model.safetensors"):
        assert (ckpt / name).exists(), name
