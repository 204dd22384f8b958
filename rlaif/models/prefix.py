"""Shared-prefix attention: the two responses of a preference pair in one row, `[prompt, a, b, padding]`, so the
prompt is encoded once (Wang & Hegde 2024, "Accelerating Direct Preference Optimization with Prefix Sharing").

Response b takes the positions it would have right after the prompt and sees the prompt and itself, never a, so
every response token computes what it computes in its own row. The row's plan (which pair and which part each
position is) reaches the attention function "rlaif_prefix" through the model's forward kwargs; that function is
`scaled_dot_product_attention` under the plan's boolean mask, so autograd is exact and it runs on any device. A
model called without a plan gets transformers' SDPA. Training (rlaif/train/) and reward models (rlaif/rewards/)
use it; the judge's tree attention (rlaif/judges/tree_attention.py) shares the list of families it is exact for.
"""

from __future__ import annotations

from typing import Optional

import torch

NAME = "rlaif_prefix"
PROMPT, A, B = 0, 1, 2  # a position's part of its pair; padding is -1

# Decoder families whose attention layers call transformers' attention interface with plain causal attention
# (no softcapping, no attention sinks, rotary or no positions); a sliding window is allowed only when it is off.
FAMILIES = {"llama", "mistral", "qwen2", "qwen3"}


def causal_family_problem(model) -> Optional[str]:
    """Why `model`'s attention is not plain causal attention through transformers' interface, or None."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES:
        return f"model type {kind!r} is not one of {', '.join(sorted(FAMILIES))}"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True) is not False:
        return f"{kind} uses a sliding window ({config.sliding_window} tokens)"
    return None


def problem(model) -> Optional[str]:
    """Why shared rows would not be exact for `model` (unwrapped: no DDP wrapper), or None."""
    if (why := causal_family_problem(model)) is not None:
        return why
    # without a plan the function below is SDPA: the model must be running SDPA already, so that its other calls
    # (sampling, evaluation) compute what they computed before
    implementation = model.config._attn_implementation
    if implementation not in ("sdpa", NAME):
        return f"its attention is {implementation!r}, not sdpa"
    return None


class PrefixPlan:
    """Which pair of its row (`segment`, -1 for padding) and which part of that pair (`branch`: PROMPT, A, B, -1)
    every position of a batch of shared rows is, [rows, width] each. A row holds one pair today; packing several
    pairs into a row is more segments. A plain class, not a dataclass, so that DDP passes it through untouched."""

    def __init__(self, segment: torch.Tensor, branch: torch.Tensor):
        self.segment, self.branch = segment, branch
        self._mask: Optional[torch.Tensor] = None

    def mask(self) -> torch.Tensor:
        """[rows, 1, width, width] bool, built once per forward: a position sees the earlier positions of its own
        pair that are its prompt or its own response; padding sees only itself (a softmax row is never empty)."""
        if self._mask is None:
            seg, branch = self.segment, self.branch
            width = seg.shape[1]
            causal = torch.ones(width, width, dtype=torch.bool, device=seg.device).tril()
            same_pair = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] >= 0)
            visible = (branch[:, None, :] == PROMPT) | (branch[:, None, :] == branch[:, :, None])
            mask = same_pair & visible & causal
            mask |= torch.eye(width, dtype=torch.bool, device=seg.device)
            self._mask = mask[:, None]
        return self._mask

    def position_ids(self) -> torch.Tensor:
        """Each position's rotary position: how many positions it sees, less one. A prompt token at t gets t, the
        j-th token of a and of b both get len(prompt) + j (as in their own rows); padding gets 0."""
        return self.mask()[:, 0].sum(dim=-1) - 1

    def predictors(self) -> torch.Tensor:
        """[rows, width]: the position whose output predicts each position's token: the one before it, except for
        the first token of a response, which the last prompt token of its pair predicts (b's first token is
        predicted from the prompt, not from a's last token)."""
        seg, branch = self.segment, self.branch
        index = torch.arange(seg.shape[1], device=seg.device).expand_as(seg)
        last_prompt = torch.where(branch == PROMPT, index, -1).cummax(dim=1).values
        follows = torch.zeros_like(branch, dtype=torch.bool)
        follows[:, 1:] = (branch[:, 1:] == branch[:, :-1]) & (seg[:, 1:] == seg[:, :-1])
        return torch.where(follows, index - 1, last_prompt)


def one_pair_rows(lengths: list[tuple[int, int, int]], width: int, right: bool = True) -> PrefixPlan:
    """The plan of rows that each hold one pair, (prompt, a, b) token counts per row, padded to `width` on the
    right (or on the left)."""
    segment = torch.full((len(lengths), width), -1, dtype=torch.long)
    branch = torch.full((len(lengths), width), -1, dtype=torch.long)
    for r, (p, a, b) in enumerate(lengths):
        start = 0 if right else width - (p + a + b)
        segment[r, start : start + p + a + b] = 0
        branch[r, start : start + p] = PROMPT
        branch[r, start + p : start + p + a] = A
        branch[r, start + p + a : start + p + a + b] = B
    return PrefixPlan(segment, branch)


def prefix_attention(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, rlaif_prefix=None, **kwargs
):
    """transformers attention-interface signature: query [R, Hq, L, D], key/value [R, Hkv, L, D]; returns
    ([R, L, Hq, D], None). `rlaif_prefix` is the rows' PrefixPlan; without one this is transformers' SDPA."""
    plan = rlaif_prefix
    if plan is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if key.shape[2] != query.shape[2]:
        raise ValueError("shared-prefix rows are encoded whole: no KV cache before them")
    groups = query.shape[1] // key.shape[1]
    # grouped-query attention without repeating keys and values, except on CUDA, where a masked call with GQA
    # would leave the fused kernels for the math one (transformers' sdpa path makes the same choice)
    if groups > 1 and query.device.type == "cuda":
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=plan.mask(),
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def enable(model) -> None:
    """Run `model` (unwrapped, `problem(model)` None) with the "rlaif_prefix" attention: SDPA for ordinary calls,
    shared rows for calls with a plan (`forward`). Idempotent; nothing of it is saved with the model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, prefix_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # ordinary calls get the masks SDPA gets
    model.config._attn_implementation = NAME


def forward(model, input_ids: torch.Tensor, plan: PrefixPlan, **kwargs):
    """`model(...)` over shared rows (the model may be wrapped by DDP or peft); kwargs go on to the model (e.g.
    logits_to_keep)."""
    inner = getattr(model, "module", model)
    if inner.config._attn_implementation != NAME:
        raise RuntimeError("shared-prefix rows need the model's attention set by rlaif.models.prefix.enable")
    rows = input_ids.shape[0]
    # the model's own mask is never built: a 4-D attention mask is passed on as is, and this one is never read
    placeholder = torch.zeros((rows, 1, 1, 1), dtype=torch.bool, device=input_ids.device)
    return model(
        input_ids=input_ids,
        attention_mask=placeholder,
        position_ids=plan.position_ids(),
        use_cache=False,
        rlaif_prefix=plan,
        **kwargs,
    )
