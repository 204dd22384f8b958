"""PPO's components, used by the `rlaif train ppo` recipe (rlaif/recipes/ppo.py): rollout prompts, the policy with
its value head, rollout batches and their per-token log-probs and values, the KL-penalised per-token rewards,
GAE, whitening and the KL controllers. What scores a response (a reward model, or the judge itself) is
rlaif.rewards.sources.

The per-token losses themselves live with the other losses (`rlaif.train.losses.ppo_policy_loss`,
`ppo_value_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

VALUE_HEAD_FILE = "value_head.safetensors"


# -- prompts -----------------------------------------------------------------------------------------------------
# -- the policy and its value head -------------------------------------------------------------------------------
class PolicyWithValueHead(nn.Module):
    """A causal LM policy and a value head V(s) = w·h_s + b on its last hidden state (after the final norm).

    The value function shares the policy's trunk, as in Ziegler et al. 2019 and Ouyang et al. 2022: one forward
    pass gives both the next-token distribution and the value, and no second model is held in memory. The value
    loss's gradient reaches the trunk too, scaled by `vf_coef`. The head starts at zero (V = 0 everywhere).

    `save_pretrained` writes the policy in Hugging Face format (peft adapters under LoRA) and the head next to it
    as value_head.safetensors, so the checkpoint loads with `from_pretrained` as a plain causal LM.
    """

    def __init__(self, policy, hidden_size: int):
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep: int):
        """Logits and values of the last `logits_to_keep` positions."""
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          logits_to_keep=logits_to_keep, output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states[-1][:, -logits_to_keep:]
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return out.logits, values

    def save_pretrained(self, path, state_dict: Optional[dict] = None, **kwargs) -> None:
        from safetensors.torch import save_file

        state_dict = self.state_dict() if state_dict is None else state_dict
        policy = {k[len("policy."):]: v for k, v in state_dict.items() if k.startswith("policy.")}
        head = {k[len("value_head."):]: v.detach().contiguous().cpu() for k, v in state_dict.items()
                if k.startswith("value_head.")}
        self.policy.save_pretrained(path, state_dict=policy, **kwargs)
        save_file(head, str(Path(path) / VALUE_HEAD_FILE))

    def load_value_head(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.value_head.load_state_dict(load_file(str(Path(path) / VALUE_HEAD_FILE)))


# -- rollout batches ---------------------------------------------------------------------------------------------
@dataclass
class RolloutBatch:
    """Sampled responses laid out for one forward pass: prompts left-padded to a shared width P, responses
    right-padded after them, so response token t of every row sits in column P + t. Position ids count real
    tokens only, as they did during generation."""

    input_ids: torch.Tensor      # [N, P + T]
    attention_mask: torch.Tensor  # [N, P + T]
    position_ids: torch.Tensor   # [N, P + T]
    response_mask: torch.Tensor  # [N, T], 1 on response tokens
    prompt_width: int            # P

    @property
    def responses(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width:]

    def rows(self, idx) -> "RolloutBatch":
        """The rows `idx`, with the columns that are padding in all of them cut off."""
        attention, mask = self.attention_mask[idx], self.response_mask[idx]
        left = int((attention[:, :self.prompt_width] == 0).sum(dim=1).min())
        width = max(int(mask.sum(dim=1).max()), 1)
        cols = slice(left, self.prompt_width + width)
        return RolloutBatch(self.input_ids[idx][:, cols], attention[:, cols], self.position_ids[idx][:, cols],
                            mask[:, :width], self.prompt_width - left)

    def to(self, device) -> "RolloutBatch":
        return RolloutBatch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                            self.response_mask.to(device), self.prompt_width)


def build_batch(samples: Sequence, pad_id: int) -> RolloutBatch:
    """A RolloutBatch of `rlaif.policy.sampling.Sample`s (their prompt and response token ids)."""
    width = max(len(s.prompt_ids) for s in samples)
    length = max(max(len(s.response_ids) for s in samples), 1)
    n = len(samples)
    ids = torch.full((n, width + length), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width + length), dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.float32)
    for i, s in enumerate(samples):
        p, r = len(s.prompt_ids), len(s.response_ids)
        ids[i, width - p:width] = torch.tensor(s.prompt_ids, dtype=torch.long)
        ids[i, width:width + r] = torch.tensor(s.response_ids, dtype=torch.long)
        attention[i, width - p:width + r] = 1
        mask[i, :r] = 1.0
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return RolloutBatch(ids, attention, positions, mask, width)


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position, in fp32, without the full log-softmax over the vocabulary."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float()
    return picked - torch.logsumexp(logits.float(), dim=-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) per position, in fp32."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (logits.softmax(dim=-1) * logits).sum(dim=-1)


def policy_outputs(model, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits [N, T, V], log π(a_t | s_t) [N, T] and V(s_t) [N, T] for every response token t of the batch
    (`model` is a PolicyWithValueHead, or its DDP wrapper)."""
    keep = batch.response_mask.shape[1] + 1  # the position before the response predicts its first token
    logits, values = model(batch.input_ids, batch.attention_mask, batch.position_ids, keep)
    logits, values = logits[:, :-1], values[:, :-1]
    return logits, token_logps(logits, batch.responses), values.float()


def response_token_logps(model, batch: RolloutBatch) -> torch.Tensor:
    """log π(a_t | s_t) [N, T] of every response token under a plain causal LM (the reference, or a policy
    without value head)."""
    keep = batch.response_mask.shape[1] + 1
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                   logits_to_keep=keep, use_cache=False).logits[:, :-1]
    return token_logps(logits, batch.responses)


# -- rewards and advantages --------------------------------------------------------------------------------------
def kl_penalised_rewards(scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (Ziegler et al. 2019, eq. 2; Stiennon et al. 2020, eq. 1, spread over tokens):

        r_t = −β · (log π_old(a_t|s_t) − log π_ref(a_t|s_t))  +  [t = last response token] · score

    Returns the rewards and the per-token KL estimate log π_old − log π_ref (both zero on padding); their sum over
    a response estimates KL(π‖π_ref) for its prompt.
    """
    kl = (logps - ref_logps) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores), device=rewards.device), last] += scores.to(rewards)
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), per response token:

        δ_t = r_t + γ·V(s_{t+1}) − V(s_t),   A_t = δ_t + γλ·A_{t+1},   returns R_t = A_t + V(s_t)

    with V = 0 after the last response token (the episode ends there). Padding gives zeros.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the masked entries (population variance); zero on padding."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


# -- the KL coefficient ------------------------------------------------------------------------------------------
class FixedKL:
    """β stays at its configured value."""

    def __init__(self, config):
        self.value = float(config.coef)

    def update(self, kl: float, n_responses: int) -> None:
        pass


class AdaptiveKL:
    """β steered toward a target KL (Ziegler et al. 2019, sec. 2.2, the proportional controller):

        e = clip((KL − KL_target) / KL_target, −0.2, 0.2),   β ← β · (1 + K_β · e),   K_β = n / horizon

    with KL the mean over the rollout batch of each response's summed log π/π_ref and n its response count.
    """

    def __init__(self, config):
        self.value, self.target, self.horizon = float(config.coef), float(config.target), int(config.horizon)

    def update(self, kl: float, n_responses: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_responses / self.horizon


KL_CONTROLLERS = {"fixed": FixedKL, "adaptive": AdaptiveKL}


def make_kl_controller(config):
    return KL_CONTROLLERS[config.type](config)
