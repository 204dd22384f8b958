"""Sampled responses laid out for a forward pass (`RolloutBatch`: prompts left-padded, responses right-padded),
their per-token log-probs and entropies, and the KL to a reference estimated on them. PPO's rollouts
(rlaif/recipes/ppo.py) and the loop's evaluation (rlaif/recipes/loop.py) read their samples through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .losses import token_logps
from .models import reference_mode


@dataclass
class RolloutBatch:
    """Sampled responses laid out for one forward pass: prompts left-padded to a shared width P, responses
    right-padded after them, so response token t of every row sits in column P + t. Position ids count real
    tokens only, as they did during generation."""

    input_ids: torch.Tensor  # [N, P + T]
    attention_mask: torch.Tensor  # [N, P + T]
    position_ids: torch.Tensor  # [N, P + T]
    response_mask: torch.Tensor  # [N, T], 1 on response tokens
    prompt_width: int  # P

    @property
    def responses(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width :]

    def rows(self, idx) -> "RolloutBatch":
        """The rows `idx`, with the columns that are padding in all of them cut off."""
        attention, mask = self.attention_mask[idx], self.response_mask[idx]
        left = int((attention[:, : self.prompt_width] == 0).sum(dim=1).min())
        width = max(int(mask.sum(dim=1).max()), 1)
        cols = slice(left, self.prompt_width + width)
        return RolloutBatch(
            self.input_ids[idx][:, cols],
            attention[:, cols],
            self.position_ids[idx][:, cols],
            mask[:, :width],
            self.prompt_width - left,
        )

    def to(self, device) -> "RolloutBatch":
        return RolloutBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.response_mask.to(device),
            self.prompt_width,
        )


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
        ids[i, width - p : width] = torch.tensor(s.prompt_ids, dtype=torch.long)
        ids[i, width : width + r] = torch.tensor(s.response_ids, dtype=torch.long)
        attention[i, width - p : width + r] = 1
        mask[i, :r] = 1.0
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return RolloutBatch(ids, attention, positions, mask, width)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) per position, in fp32."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (logits.softmax(dim=-1) * logits).sum(dim=-1)


def response_token_logps(model, batch: RolloutBatch) -> torch.Tensor:
    """log π(a_t | s_t) [N, T] of every response token under a plain causal LM (the reference, or a policy
    without value head)."""
    keep = batch.response_mask.shape[1] + 1
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=keep,
        use_cache=False,
    ).logits[:, :-1]
    return token_logps(logits, batch.responses)


def by_row_chunks(fn, batch: RolloutBatch, size: int) -> list[torch.Tensor]:
    """`fn(sub-batch) -> tuple of [n, w] tensors` over row chunks of `batch`, reassembled as [N, T] fp32 tensors
    (zero past each chunk's own width)."""
    n, length = batch.response_mask.shape
    out: list[torch.Tensor] = []
    for start in range(0, n, size):
        rows = torch.arange(start, min(start + size, n), device=batch.input_ids.device)
        parts = fn(batch.rows(rows))
        if not out:
            out = [torch.zeros((n, length), dtype=torch.float32, device=batch.input_ids.device) for _ in parts]
        for full, part in zip(out, parts):
            full[rows, : part.shape[1]] = part.float()
    return out


@torch.no_grad()
def kl_estimate(policy, reference, samples, pad_id: int, batch_size: int) -> float:
    """KL(π‖π_ref) per response, estimated on samples y ~ π: mean_y Σ_t [log π(y_t) − log π_ref(y_t)]."""
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    total = 0.0
    try:
        for i in range(0, len(samples), batch_size):
            batch = build_batch(samples[i : i + batch_size], pad_id).to(device)
            logps = response_token_logps(policy, batch)
            with reference_mode(policy, reference) as ref:
                logps = logps - response_token_logps(ref, batch)
            total += float((logps * batch.response_mask).sum())
    finally:
        policy.train(was_training)
    return total / len(samples)
