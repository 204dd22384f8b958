"""Shared-prefix attention: the two responses of a preference pair in one row, `[prompt, a, b, padding]`, so the
prompt is encoded once (Wang & Hegde 2024, "Accelerating Direct Preference Optimization with Prefix Sharing").

Response b takes the positions it would have right after the prompt and sees the prompt and itself, never a, so
every response token computes what it computes in its own row. Several pairs may be packed into one row, each
pair's positions starting again at 0. The row's plan (which pair and which part each position is) reaches the
attention function "rlaif_prefix" through the model's forward kwargs; that function is
`scaled_dot_product_attention` under the plan's boolean mask (one call per pair in packed rows), so autograd is
exact and it runs on any device. A model called without a plan gets transformers' SDPA. Training (rlaif/train/)
and reward models (rlaif/rewards/) use it; the judge's tree attention (rlaif/judges/tree_attention.py) shares the
list of families it is exact for.
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
    """Which pair of the batch (`segment`: pairs numbered over the batch, -1 for padding) and which part of that
    pair (`branch`: PROMPT, A, B, -1) every position of a batch of shared rows is, [rows, width] each. A row holds
    one pair, or several one after another (packed: each pair's positions start again at 0 and it sees only
    itself). A plain class, not a dataclass, so that DDP passes it through untouched."""

    def __init__(self, segment: torch.Tensor, branch: torch.Tensor):
        self.segment, self.branch = segment, branch
        self._mask: Optional[torch.Tensor] = None
        self._blocks: Optional[list] = None
        self._pairs: Optional[int] = None

    def mask(self) -> torch.Tensor:
        """[rows, 1, width, width] bool, built once per forward: a position sees the earlier positions of its own
        pair that are its prompt or its own response; padding sees only itself (a softmax row is never empty)."""
        if self._mask is None:
            seg = self.segment
            same_pair = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] >= 0)
            mask = same_pair & _visible(self.branch)
            mask |= torch.eye(seg.shape[1], dtype=torch.bool, device=seg.device)
            self._mask = mask[:, None]
        return self._mask

    def blocks(self) -> list[tuple[int, int, int, torch.Tensor]]:
        """(row, start, end, mask [1, 1, n, n]) of every pair, in pair order, built once per forward: the span a
        pair's attention is confined to, and its mask there."""
        if self._blocks is None:
            seg = self.segment
            real = seg >= 0
            edge = torch.ones_like(seg[:, :1], dtype=torch.bool)
            starts = (real & torch.cat([edge, seg[:, 1:] != seg[:, :-1]], dim=1)).nonzero().tolist()
            ends = (real & torch.cat([seg[:, :-1] != seg[:, 1:], edge], dim=1)).nonzero().tolist()
            self._blocks = [
                (r, s, e + 1, _visible(self.branch[r : r + 1, s : e + 1])[:, None])
                for (r, s), (_, e) in zip(starts, ends)
            ]
        return self._blocks

    def packed(self) -> bool:
        """Whether some row holds several pairs."""
        return self.pairs() > self.segment.shape[0]

    def position_ids(self) -> torch.Tensor:
        """Each position's rotary position: how many positions it sees, less one. A prompt token at t gets t (t
        counted from its pair's start), the j-th token of a and of b both get len(prompt) + j (as in their own
        rows); padding gets 0."""
        seg, branch = self.segment, self.branch
        index = torch.arange(seg.shape[1], device=seg.device).expand_as(seg)
        new_pair = torch.ones_like(seg, dtype=torch.bool)
        new_pair[:, 1:] = seg[:, 1:] != seg[:, :-1]
        start = torch.where(new_pair, index, 0).cummax(dim=1).values  # where each position's pair starts
        # b's tokens come after a's: b's position leaves out a's tokens, the a positions of its pair
        a_seen = (branch == A).cumsum(dim=1)
        a_before_pair = a_seen.gather(1, start) - (branch.gather(1, start) == A).long()
        position = index - start - torch.where(branch == B, a_seen - a_before_pair, 0)
        return torch.where(seg >= 0, position, 0)

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

    def pairs(self) -> int:
        """How many pairs the batch holds (read once: on a GPU, reading it waits for the device)."""
        if self._pairs is None:
            self._pairs = int(self.segment.max()) + 1
        return self._pairs

    def per_pair(self, values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """[2 × pairs]: the sums of `values` ([rows, width]) over each pair's a positions, then over its b
        positions, counting only the positions `where` is true ([all a; all b], as two rows per pair lay out)."""
        rows, at = (where & (self.branch > PROMPT)).nonzero(as_tuple=True)
        sums = values.new_zeros(2, self.pairs())
        sums = sums.index_put((self.branch[rows, at] - A, self.segment[rows, at]), values[rows, at], accumulate=True)
        return sums.flatten()

    def last(self, part: int, where: torch.Tensor) -> torch.Tensor:
        """[pairs]: each pair's last position, as an index into the flattened rows, among its prompt and its
        response `part` where `where` ([rows, width] bool) is true: where that response's own row would end."""
        flat = torch.arange(self.segment.numel(), device=self.segment.device).view_as(self.segment)
        real = self.segment >= 0
        # from each pair's first position: where its own row's read would fall if nothing qualifies
        first = flat.new_full((self.pairs(),), self.segment.numel()).scatter_reduce(
            0, self.segment[real], flat[real], "amin"
        )
        seen = where & real & ((self.branch == PROMPT) | (self.branch == part))
        return first.scatter_reduce(0, self.segment[seen], flat[seen], "amax")


def _visible(branch: torch.Tensor) -> torch.Tensor:
    """[rows, n, n] bool over the positions of one pair per row (`branch`, [rows, n]): each sees the earlier
    positions that are its prompt or its own response."""
    causal = torch.ones(branch.shape[1], branch.shape[1], dtype=torch.bool, device=branch.device).tril()
    return causal & ((branch[:, None, :] == PROMPT) | (branch[:, None, :] == branch[:, :, None]))


def packed_rows(rows: list[list[tuple[int, int, int]]], width: int, right: bool = True) -> PrefixPlan:
    """The plan of rows each holding one or more pairs one after another ((prompt, a, b) token counts per pair;
    pairs numbered in order over the rows), padded to `width` on the right (or on the left)."""
    segment = torch.full((len(rows), width), -1, dtype=torch.long)
    branch = torch.full((len(rows), width), -1, dtype=torch.long)
    pair = 0
    for r, lengths in enumerate(rows):
        start = 0 if right else width - sum(map(sum, lengths))
        for p, a, b in lengths:
            segment[r, start : start + p + a + b] = pair
            branch[r, start : start + p] = PROMPT
            branch[r, start + p : start + p + a] = A
            branch[r, start + p + a : start + p + a + b] = B
            start, pair = start + p + a + b, pair + 1
    return PrefixPlan(segment, branch)


def one_pair_rows(lengths: list[tuple[int, int, int]], width: int, right: bool = True) -> PrefixPlan:
    """The plan of rows that each hold one pair, (prompt, a, b) token counts per row, padded to `width` on the
    right (or on the left)."""
    return packed_rows([[pair] for pair in lengths], width, right)


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

    def attend(q, k, v, mask):
        gqa = k.shape[1] != q.shape[1]
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling, enable_gqa=gqa
        )

    if not plan.packed():
        return attend(query, key, value, plan.mask()).transpose(1, 2).contiguous(), None
    # packed rows: one call per pair over its own span, so no pair computes scores against another's tokens (a
    # dense call over a packed row would, then mask them); the spans' outputs are joined in order, and padding,
    # which nothing reads, gets zeros
    rows, width = query.shape[0], query.shape[2]
    pieces: list[list[torch.Tensor]] = [[] for _ in range(rows)]
    done = [0] * rows

    def gap(r: int, until: int) -> None:
        if until > done[r]:
            pieces[r].append(query.new_zeros(1, until - done[r], query.shape[1], query.shape[3]))

    for r, start, end, mask in plan.blocks():
        gap(r, start)
        span = slice(start, end)
        q, k, v = query[r : r + 1, :, span], key[r : r + 1, :, span], value[r : r + 1, :, span]
        pieces[r].append(attend(q, k, v, mask).transpose(1, 2))
        done[r] = end
    for r in range(rows):
        gap(r, width)
    return torch.cat([torch.cat(row, dim=1) for row in pieces]), None


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
