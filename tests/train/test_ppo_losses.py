"""Tier 1: PPO's maths on hand-computed tensors — GAE, the KL-penalised per-token rewards, the clipped surrogate
and clipped value losses, whitening and the KL controllers — and the prompt reader."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rlaif.config.ppo import AdaptiveKLConfig, FixedKLConfig
from rlaif.data.prompts import read_prompts, split_prompts
from rlaif.train.losses import ppo_policy_loss, ppo_value_loss
from rlaif.train.ppo import gae, kl_penalised_rewards, make_kl_controller, masked_whiten
from tests.helpers import ROOT


def close(x: torch.Tensor, expected) -> None:
    assert torch.allclose(x, torch.tensor(expected, dtype=x.dtype), atol=1e-6), (x, expected)


def test_gae_by_hand_with_gamma_1_and_lambda_095():
    # row 0: three response tokens, the score 1 on the last; row 1: two tokens then padding (junk must not count)
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.2, -1.0, 5.0]])
    values = torch.tensor([[0.5, 0.4, 0.3], [0.1, 0.2, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # δ_2 = 1 + 0 − 0.3 = 0.7                A_2 = 0.7
    # δ_1 = 0 + 0.3 − 0.4 = −0.1             A_1 = −0.1 + 0.95·0.7 = 0.565
    # δ_0 = 0 + 0.4 − 0.5 = −0.1             A_0 = −0.1 + 0.95·0.565 = 0.43675
    # row 1: δ_1 = −1 + 0 − 0.2 = −1.2 (V = 0 after the end), δ_0 = 0.2 + 0.2 − 0.1 = 0.3, A_0 = 0.3 − 0.95·1.2
    close(adv, [[0.43675, 0.565, 0.7], [-0.84, -1.2, 0.0]])
    close(ret, [[0.93675, 0.965, 1.0], [-0.74, -1.0, 0.0]])


def test_gae_with_lambda_0_is_the_one_step_td_error_and_with_1_the_discounted_return():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    adv, _ = gae(rewards, values, mask, gamma=0.5, lam=0.0)
    close(adv, [[0.0 + 0.5 * 0.4 - 0.5, 0.0 + 0.5 * 0.3 - 0.4, 1.0 - 0.3]])
    _, ret = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    close(ret, [[0.25, 0.5, 1.0]])  # Monte-Carlo: Σ γ^k r_{t+k}, whatever the values


def test_kl_penalised_rewards_put_the_score_on_the_last_response_token():
    logps = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = kl_penalised_rewards(torch.tensor([2.0, -1.0]), logps, ref, mask, kl_coef=0.1)
    close(kl, [[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]])
    close(rewards, [[-0.05, 0.1, 2.0], [-0.1, -1.0, 0.0]])


def test_clipped_surrogate_by_hand():
    ratio = torch.tensor([1.5, 0.5, 1.1, 1.5, 0.5])
    adv = torch.tensor([1.0, -1.0, 1.0, -2.0, 2.0])
    loss, clipped = ppo_policy_loss(torch.log(ratio), torch.zeros(5), adv, clip_range=0.2)
    # max(−Aρ, −A·clip(ρ, 0.8, 1.2)):
    #   ρ 1.5, A +1: max(−1.5, −1.2) = −1.2 (clipped: no gain past 1 + ε)
    #   ρ 0.5, A −1: max(0.5, 0.8) = 0.8   (clipped: no gain below 1 − ε)
    #   ρ 1.1, A +1: −1.1 inside the trust region
    #   ρ 1.5, A −2: max(3.0, 2.4) = 3.0   (the pessimistic, unclipped term: a move the wrong way is not capped)
    #   ρ 0.5, A +2: max(−1.0, −1.6) = −1.0
    close(loss, [-1.2, 0.8, -1.1, 3.0, -1.0])
    assert clipped.tolist() == [True, True, False, False, False]
    # the gradient is zero where the clipped term is taken
    logps = torch.log(ratio).requires_grad_()
    ppo_policy_loss(logps, torch.zeros(5), adv, 0.2)[0].sum().backward()
    close(logps.grad, [0.0, 0.0, -1.1, 3.0, -1.0])  # d(−Aρ)/d log ρ = −Aρ


def test_clipped_value_loss_by_hand():
    values = torch.tensor([1.5, 1.1, 0.5, 2.5])
    old = torch.ones(4)
    returns = torch.tensor([2.0, 2.0, 2.0, 2.0])
    loss, clipped = ppo_value_loss(values, old, returns, clip_range=0.2)
    # V_clip = 1 + clip(V − 1, ±0.2); loss = ½·max((V − R)², (V_clip − R)²)
    #   V 1.5: max(0.25, (1.2 − 2)² = 0.64) → 0.32      V 1.1: V_clip = V → 0.405
    #   V 0.5: max(2.25, (0.8 − 2)² = 1.44) → 1.125     V 2.5: max(0.25, 0.64) → 0.32
    close(loss, [0.32, 0.405, 1.125, 0.32])
    assert clipped.tolist() == [True, False, False, True]


def test_masked_whiten_ignores_padding():
    out = masked_whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    s = math.sqrt(1.5)  # (x − 2) / sqrt(2/3)
    close(out, [[-s, 0.0, s, 0.0]])


def test_adaptive_kl_controller_by_hand():
    ctl = make_kl_controller(AdaptiveKLConfig(coef=0.1, target=6.0, horizon=10000))
    ctl.update(kl=9.0, n_responses=64)  # e = clip(9/6 − 1, ±0.2) = 0.2; β·(1 + 0.2·64/10000)
    assert ctl.value == pytest.approx(0.1 * 1.00128, rel=1e-12)
    ctl.update(kl=5.4, n_responses=100)  # e = −0.1; β·(1 − 0.1·100/10000)
    assert ctl.value == pytest.approx(0.1 * 1.00128 * 0.999, rel=1e-12)
    ctl.update(kl=0.0, n_responses=10000)  # e clipped to −0.2 → β·0.8
    assert ctl.value == pytest.approx(0.1 * 1.00128 * 0.999 * 0.8, rel=1e-12)
    fixed = make_kl_controller(FixedKLConfig(coef=0.3))
    fixed.update(kl=100.0, n_responses=64)
    assert fixed.value == 0.3


def test_prompts_come_from_prompt_pair_and_label_files(tmp_path):
    labels = read_prompts(ROOT / "examples/tiny/data/labels.jsonl")
    records = [json.loads(line) for line in (ROOT / "examples/tiny/data/labels.jsonl").read_text().splitlines()]
    assert labels == list(dict.fromkeys(r["prompt"] for r in records))  # distinct, in file order
    chat = [{"role": "user", "content": "hi"}]
    f = tmp_path / "prompts.jsonl"
    f.write_text(
        json.dumps({"prompt": "a"})
        + "\n\n"
        + json.dumps({"prompt": chat, "extra": 1})
        + "\n"
        + json.dumps({"prompt": "a"})
        + "\n"
    )
    assert read_prompts(f) == ["a", chat]
    f.write_text(json.dumps({"prompt": "a"}) + "\n" + json.dumps({"text": "b"}) + "\n")
    with pytest.raises(ValueError, match=f"{f}:2: row has no prompt"):
        read_prompts(f)
    train, held = split_prompts(list(range(100)), 20, seed=0)
    assert len(held) == 20 and sorted(train + held) == list(range(100))
    assert split_prompts(list(range(100)), 20, seed=0) == (train, held)
