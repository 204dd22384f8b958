"""Preference losses as small functions over per-example tensors: the reward model's Bradley-Terry loss and the
DPO family. Each takes the soft preference p_a (probability that response a is preferred) and returns one loss
per pair; recipes average them. PPO's per-token losses close the file. Hand-checked in tests/train/.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..config.dpo import DPOLoss, IPOLoss, SigmoidDPOLoss


def bradley_terry_loss(
    r_a: torch.Tensor, r_b: torch.Tensor, p_a: torch.Tensor, margin: float = 0.0, center_coef: float = 0.0
) -> torch.Tensor:
    """Bradley-Terry with soft targets (Lee et al. 2023, sec. 2.2; Ouyang et al. 2022, eq. 1 for p ∈ {0, 1}):

        loss = -[p · log σ(z) + (1 - p) · log σ(-z)],   z = r_a - r_b - m · sign(p - 1/2)

    i.e. cross-entropy between σ(z) and p. The margin m (Touvron et al. 2023, eq. 2) asks the preferred response
    to win by m; a pair with p = 1/2 gets none. `center_coef` adds c · (r_a + r_b)^2 (Eisenstein et al. 2023).
    """
    z = r_a - r_b
    if margin:
        z = z - margin * torch.sign(p_a - 0.5)
    loss = F.binary_cross_entropy_with_logits(z, p_a.to(z.dtype), reduction="none")
    if center_coef:
        loss = loss + center_coef * (r_a + r_b) ** 2
    return loss


def sigmoid_dpo_loss(delta: torch.Tensor, p_a: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, eq. 7) on soft labels, with cDPO label smoothing ε (Mitchell 2023):

        loss = -[q · log σ(βΔ) + (1 - q) · log σ(-βΔ)],   q = (1 - 2ε) · p + ε

    where Δ = (log π(y_a) - log π_ref(y_a)) - (log π(y_b) - log π_ref(y_b)). At p = 1, ε = 0 this is DPO's
    -log σ(βΔ); at p = 1 and ε > 0 it is cDPO's -(1 - ε) log σ(βΔ) - ε log σ(-βΔ).
    """
    q = (1.0 - 2.0 * label_smoothing) * p_a.to(delta.dtype) + label_smoothing
    return -(q * F.logsigmoid(beta * delta) + (1.0 - q) * F.logsigmoid(-beta * delta))


def ipo_loss(delta: torch.Tensor, p_a: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17 with its population target h* = (p - 1/2) / τ, τ = beta):

        loss = (Δ - (p - 1/2) / β)^2

    which is the paper's (Δ - 1/(2τ))^2 for a hard label p = 1 and its mirror image for p = 0.
    """
    return (delta - (p_a.to(delta.dtype) - 0.5) / beta) ** 2


def dpo_loss_fn(config: DPOLoss) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss a DPO config's `loss:` names (its `type:`), as `fn(delta, p_a) -> per-pair loss`."""
    match config:
        case SigmoidDPOLoss(beta=beta, label_smoothing=smoothing):
            return lambda delta, p_a: sigmoid_dpo_loss(delta, p_a, beta, smoothing)
        case IPOLoss(beta=beta):
            return lambda delta, p_a: ipo_loss(delta, p_a, beta)
    raise TypeError(f"no DPO loss for {type(config).__name__}")


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position, in fp32: logit[target] − logsumexp(logits), without
    materialising the full log-softmax over the vocabulary."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float()
    return picked - torch.logsumexp(logits.float(), dim=-1)


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over masked positions of log softmax(logits)[target]: log π(response | prompt) per sequence.
    `logits[:, t]` must already be aligned with `targets[:, t]`."""
    return (token_logps(logits, targets) * mask).sum(dim=-1)


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, n_tokens) -> torch.Tensor:
    """Supervised fine-tuning's negative log-likelihood of the responses, as a token mean (TRL's SFTTrainer's):

        L = −(1/N) · Σ_i Σ_t m_it · log softmax(z_it)[y_it],   N = the response tokens of the whole batch

    where m marks response tokens (the prompt is read, not trained on). With gradient accumulation or several
    processes, N counts the whole global batch, so every response token weighs the same whatever micro-batch it
    lands in; `n_tokens` = 1 gives the sum. `logits[:, t]` must already be aligned with `targets[:, t]`."""
    return -(token_logps(logits, targets) * mask).sum() / n_tokens


# -- PPO ---------------------------------------------------------------------------------------------------------
def ppo_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate objective (Schulman et al. 2017, eq. 7), negated, per token:

        loss = max(−A · ρ, −A · clip(ρ, 1 − ε, 1 + ε)),   ρ = π(a|s) / π_old(a|s) = exp(log π − log π_old)

    Returns the loss and whether the clipped term was the one taken (for the clip fraction).
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), clipped > unclipped


def ppo_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped value loss of Ziegler et al. 2019 (OpenAI lm-human-preferences), per token:

        loss = ½ · max((V − R)², (V_clip − R)²),   V_clip = V_old + clip(V − V_old, −ε_v, ε_v)

    so a value estimate gains nothing from moving further than ε_v from the rollout's estimate V_old. Returns
    the loss and whether the clipped term was the larger one.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    return 0.5 * torch.maximum(unclipped, clipped), clipped > unclipped
