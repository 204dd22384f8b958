"""Tier 1: the training losses on hand-computed tensors (values worked out with log σ(1) = -0.3132617 and
log σ(-1) = -1.3132617, i.e. softplus(∓1))."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rlaif.config.dpo import IPOLoss, SigmoidDPOLoss
from rlaif.train.losses import bradley_terry_loss, dpo_loss_fn, ipo_loss, sequence_logps, sigmoid_dpo_loss

LS1, LSM1 = -0.3132617, -1.3132617  # log σ(1), log σ(-1)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


# -- reward model ------------------------------------------------------------------------------------------------
def test_bradley_terry_soft_target_is_cross_entropy_with_p():
    # r_a - r_b = 1, p = 0.9: -(0.9 log σ(1) + 0.1 log σ(-1))
    loss = bradley_terry_loss(t(1.5), t(0.5), t(0.9))
    assert loss.item() == pytest.approx(-(0.9 * LS1 + 0.1 * LSM1), abs=1e-6)
    assert loss.item() == pytest.approx(0.4132617, abs=1e-6)


def test_bradley_terry_hard_labels_are_the_usual_pairwise_loss():
    r_a, r_b = t(0.3, -1.2, 2.0), t(-0.4, 0.8, 2.5)
    assert torch.allclose(bradley_terry_loss(r_a, r_b, t(1, 1, 1)), -F.logsigmoid(r_a - r_b), atol=1e-6)
    assert torch.allclose(bradley_terry_loss(r_a, r_b, t(0, 0, 0)), -F.logsigmoid(r_b - r_a), atol=1e-6)


def test_bradley_terry_margin_applies_in_the_direction_of_the_label():
    # r_a - r_b = 1, margin 0.5: a preferred → z = 0.5; b preferred → z = 1.5 with target 0; p = 1/2 → no margin
    assert bradley_terry_loss(t(1.0), t(0.0), t(1.0), margin=0.5).item() == pytest.approx(
        math.log1p(math.exp(-0.5)), abs=1e-6
    )
    assert bradley_terry_loss(t(1.0), t(0.0), t(0.0), margin=0.5).item() == pytest.approx(
        math.log1p(math.exp(1.5)), abs=1e-6
    )
    assert bradley_terry_loss(t(1.0), t(0.0), t(0.5), margin=0.5).item() == pytest.approx(
        bradley_terry_loss(t(1.0), t(0.0), t(0.5)).item(), abs=1e-7
    )


def test_bradley_terry_centering_term():
    base = bradley_terry_loss(t(1.0), t(2.0), t(1.0))
    assert bradley_terry_loss(t(1.0), t(2.0), t(1.0), center_coef=0.01).item() == pytest.approx(
        base.item() + 0.01 * 9.0, abs=1e-6
    )


# -- DPO family --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "p, expected", [(1.0, -LS1), (0.0, -LSM1), (0.75, -(0.75 * LS1 + 0.25 * LSM1)), (0.5, -(0.5 * LS1 + 0.5 * LSM1))]
)
def test_sigmoid_dpo_soft_label_hand_values(p, expected):
    # beta · delta = 0.5 · 2 = 1
    assert sigmoid_dpo_loss(t(2.0), t(p), beta=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_sigmoid_dpo_soft_equals_hard_at_the_ends():
    delta = t(-3.0, -0.2, 0.0, 0.7, 4.0)
    assert torch.allclose(sigmoid_dpo_loss(delta, torch.ones(5), 0.1), -F.logsigmoid(0.1 * delta), atol=1e-7)
    # p = 0 is the same pair with a and b swapped
    assert torch.allclose(sigmoid_dpo_loss(delta, torch.zeros(5), 0.1), -F.logsigmoid(-0.1 * delta), atol=1e-7)


def test_sigmoid_dpo_is_symmetric_in_the_order_of_the_pair():
    delta, p = t(1.3, -0.4), t(0.8, 0.3)
    assert torch.allclose(sigmoid_dpo_loss(delta, p, 0.2), sigmoid_dpo_loss(-delta, 1 - p, 0.2), atol=1e-7)


def test_cdpo_label_smoothing_by_hand():
    # ε = 0.1, p = 1: -(0.9 log σ(1) + 0.1 log σ(-1)) = 0.4132617 (Mitchell 2023's conservative DPO)
    assert sigmoid_dpo_loss(t(2.0), t(1.0), beta=0.5, label_smoothing=0.1).item() == pytest.approx(0.4132617, abs=1e-6)
    # ε = 0.1 on a soft p = 0.75: target q = 0.8 · 0.75 + 0.1 = 0.7
    assert sigmoid_dpo_loss(t(2.0), t(0.75), beta=0.5, label_smoothing=0.1).item() == pytest.approx(
        -(0.7 * LS1 + 0.3 * LSM1), abs=1e-6
    )


def test_soft_label_gradient_vanishes_where_the_policy_matches_p():
    # d/dΔ of the soft loss is -β (p - σ(βΔ)): zero when σ(βΔ) = p
    p = 0.8
    delta = torch.tensor([math.log(p / (1 - p)) / 0.5], requires_grad=True)
    sigmoid_dpo_loss(delta, t(p), beta=0.5).sum().backward()
    assert abs(delta.grad.item()) < 1e-6


@pytest.mark.parametrize("p, expected", [(1.0, 1.0), (0.0, 25.0), (0.5, 9.0), (0.75, 4.0)])
def test_ipo_hand_values(p, expected):
    # delta = 3, beta (tau) = 0.25: target (p - 1/2) / 0.25 ∈ {2, -2, 0, 1}
    assert ipo_loss(t(3.0), t(p), beta=0.25).item() == pytest.approx(expected, abs=1e-6)


def test_loss_registry_follows_the_config():
    d, p = t(2.0), t(1.0)
    assert dpo_loss_fn(SigmoidDPOLoss(beta=0.5, label_smoothing=0.1))(d, p).item() == pytest.approx(0.4132617, abs=1e-6)
    assert dpo_loss_fn(IPOLoss(beta=0.25))(t(3.0), p).item() == pytest.approx(1.0, abs=1e-6)


# -- log-probabilities -------------------------------------------------------------------------------------------
def test_sequence_logps_sums_masked_token_logprobs():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    targets = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[1, 1, 0]])
    assert sequence_logps(logits, targets, mask).item() == pytest.approx(math.log(0.5) + math.log(0.8), abs=1e-6)
    assert sequence_logps(logits + 7.0, targets, mask).item() == pytest.approx(math.log(0.4), abs=1e-5)
