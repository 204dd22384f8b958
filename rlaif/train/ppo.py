"""PPO's components, used by the `rlaif train ppo` recipe (rlaif/recipes/ppo.py): rollout prompts and seeds, the
policy with its value head and its per-token log-probs and values, score shaping, the KL-penalised per-token
rewards, GAE, whitening and the KL controllers. Rollout batches are rlaif.train.rollout; what scores a response
(a reward model, or the judge itself) is rlaif.rewards.sources.

The per-token losses themselves live with the other losses (`rlaif.train.losses.ppo_policy_loss`,
`ppo_value_loss`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..config.ppo import AdaptiveKLConfig, FixedKLConfig
from ..data.prompts import read_prompts, split_prompts
from ..policy.chat import prompt_ids
from .losses import token_logps
from .rollout import RolloutBatch
from .run import reduce_sums

VALUE_HEAD_FILE = "value_head.safetensors"


# -- prompts and seeds -------------------------------------------------------------------------------------------
def rollout_prompts(config, tokenizer) -> tuple[list, list, int]:
    """(training prompts, held-out prompts, training prompts left out for length) of a PPO config: prompts longer
    than max_length − max_new_tokens leave no room for a response."""
    prompts = read_prompts(config.prompts.path)
    if config.prompts.eval_path:
        train, held_out = prompts, read_prompts(config.prompts.eval_path)
    else:
        train, held_out = split_prompts(prompts, int(round(len(prompts) * config.prompts.eval_fraction)), config.seed)
    room = config.max_length - config.sampling.max_new_tokens
    fits = [p for p in train if len(prompt_ids(tokenizer, p)) <= room]
    return fits, [p for p in held_out if len(prompt_ids(tokenizer, p)) <= room], len(train) - len(fits)


POLICY, REFERENCE, ORDER, EVAL_POLICY, EVAL_REFERENCE = range(5)  # the random streams of one step


def stream_seed(seed: int, step: int, rank: int, stream: int) -> int:
    """The seed of one random stream (policy samples, reference samples, mini-batch order, ...) of one step on
    one process: a function of the step, not of what ran before, so a resumed run draws the same."""
    return (((seed * 1_000_003 + step) * 4099 + rank) * 16 + stream) % (2**63 - 1)


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
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=logits_to_keep,
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1][:, -logits_to_keep:]
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return out.logits, values

    def save_pretrained(self, path, state_dict: Optional[dict] = None, **kwargs) -> None:
        from safetensors.torch import save_file

        state_dict = self.state_dict() if state_dict is None else state_dict
        policy = {k[len("policy.") :]: v for k, v in state_dict.items() if k.startswith("policy.")}
        head = {
            k[len("value_head.") :]: v.detach().contiguous().cpu()
            for k, v in state_dict.items()
            if k.startswith("value_head.")
        }
        self.policy.save_pretrained(path, state_dict=policy, **kwargs)
        save_file(head, str(Path(path) / VALUE_HEAD_FILE))

    def load_value_head(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.value_head.load_state_dict(load_file(str(Path(path) / VALUE_HEAD_FILE)))


def policy_outputs(model, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits [N, T, V], log π(a_t | s_t) [N, T] and V(s_t) [N, T] for every response token t of the batch
    (`model` is a PolicyWithValueHead, or its DDP wrapper)."""
    keep = batch.response_mask.shape[1] + 1  # the position before the response predicts its first token
    logits, values = model(batch.input_ids, batch.attention_mask, batch.position_ids, keep)
    logits, values = logits[:, :-1], values[:, :-1]
    return logits, token_logps(logits, batch.responses), values.float()


# -- rewards and advantages --------------------------------------------------------------------------------------
def kl_penalised_rewards(
    scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
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


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
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


def shape_scores(acc, scores: torch.Tensor, finished: torch.Tensor, config) -> torch.Tensor:
    """A reward config's score shaping, in order: the missing-EOS penalty, whitening over the rollout batch of all
    processes, clipping."""
    if config.missing_eos_penalty is not None:
        scores = scores - config.missing_eos_penalty * (~finished).float()
    if config.whiten:
        s = reduce_sums(acc, {"n": torch.tensor(float(len(scores))), "sum": scores.sum(), "sq": (scores**2).sum()})
        mean = s["sum"] / max(s["n"], 1)
        std = max(s["sq"] / max(s["n"], 1) - mean**2, 0.0) ** 0.5
        scores = (scores - mean) / (std + 1e-8)
    if config.clip is not None:
        scores = scores.clamp(-config.clip, config.clip)
    return scores


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


def make_kl_controller(config):
    """The controller a config's `kl:` names (its `type:`)."""
    match config:
        case FixedKLConfig():
            return FixedKL(config)
        case AdaptiveKLConfig():
            return AdaptiveKL(config)
    raise TypeError(f"no KL controller for {type(config).__name__}")
