"""Block-sparse attention for the judge's tree pass (CPU).

Below a pair's shared prefix, each row of the tree pass holds one order: its body (the two responses) followed by
one tail per principle. A token sees the prefix, its body, and — for a tail token — its own tail only. A dense
masked attention over the row computes every tail against every other tail and throws the scores away; with 18
principles that is most of the attention work. This computes only the visible blocks:

    body queries  →  prefix + body (causal)
    tail queries  →  prefix + body          (one matrix product for all tails of the row)
                  ⊕  own tail (causal)      (one small product per tail)

and merges the two parts of a tail's softmax exactly, through their log-sum-exp (the split-softmax identity used
by FlashAttention, Dao et al. 2022, and by split-KV decoding). Grouped-query attention is handled by viewing the
query heads of one key/value head as extra rows, so keys and values are never repeated.

Registered with transformers' attention interface as "rlaif_tree"; rows without a plan fall back to SDPA. The
dense path (`share_prefix` with the 4-D tree mask) stays the reference it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..models.prefix import causal_family_problem

NAME = "rlaif_tree"


@dataclass
class TreeRow:
    body_end: int  # the body is the row's tokens [0, body_end)
    tails: list[tuple[int, int]]  # [begin, end) of each tail; consecutive, starting at body_end


@dataclass
class TreePlan:
    prefix_valid: torch.Tensor  # [rows, prefix width] bool: real (not padding) prefix positions
    rows: list[TreeRow]
    layouts: Optional[list] = None  # index tensors, filled in by the first layer


def _flash(q, k, v, causal: bool = False, mask=None, scale: Optional[float] = None):
    """PyTorch's fused CPU attention kernel, returning the output and each query's log-sum-exp (needed to merge
    attention computed over separate key blocks)."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, attn_mask=mask, scale=scale)


@dataclass
class _RowLayout:
    """Per-row index tensors, built at the first layer and reused by the others."""

    plen: int  # real prefix tokens (prefixes are right-padded)
    body_bias: torch.Tensor  # [g·be, plen + be] additive mask: all of the prefix, the body causally
    tail_index: torch.Tensor  # [T, Lt] row positions of each tail, padded by repeating its last position
    tail_valid: torch.Tensor  # [T, Lt] bool


def _layout(row: TreeRow, plen: int, groups: int, dtype, device) -> _RowLayout:
    be = row.body_end
    causal = torch.full((be, be), float("-inf"), dtype=dtype, device=device).triu_(1)
    bias = torch.cat([torch.zeros(be, plen, dtype=dtype, device=device), causal], dim=1).repeat(groups, 1)
    lt = max((e - b for b, e in row.tails), default=1)
    index = torch.zeros(len(row.tails), lt, dtype=torch.long, device=device)
    valid = torch.zeros(len(row.tails), lt, dtype=torch.bool, device=device)
    for t, (b, e) in enumerate(row.tails):
        index[t, : e - b] = torch.arange(b, e, device=device)
        index[t, e - b :] = e - 1
        valid[t, : e - b] = True
    return _RowLayout(plen, bias, index, valid)


def tree_attention(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, rlaif_tree=None, **kwargs
):
    """transformers attention-interface signature: query [R, Hq, L, D], key/value [R, Hkv, P + L, D] (the prefix
    cache, then this row's tokens); returns ([R, L, Hq, D], None). `rlaif_tree` is a TreePlan, or "causal" for
    the right-padded prefix pass (no cache before it)."""
    if rlaif_tree is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    rows, hq, length, d = query.shape
    hkv = key.shape[1]
    g = hq // hkv
    p = key.shape[2] - length
    scale = scaling if scaling is not None else d**-0.5
    if rlaif_tree == "causal":  # right-padded prefixes: causal attention is exact for every real token
        o = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scale, enable_gqa=g > 1
        )
        return o.transpose(1, 2).contiguous(), None
    dtype, device = query.dtype, query.device
    if rlaif_tree.layouts is None:
        lengths = rlaif_tree.prefix_valid.sum(dim=1).tolist()
        rlaif_tree.layouts = [_layout(row, int(n), g, dtype, device) for row, n in zip(rlaif_tree.rows, lengths)]
    out = torch.zeros(rows, hq, length, d, dtype=dtype, device=device)
    for r, (row, lay) in enumerate(zip(rlaif_tree.rows, rlaif_tree.layouts)):
        be = row.body_end
        if not be:
            continue
        q, k, v = query[r], key[r], value[r]
        kc = torch.cat([k[:, : lay.plen], k[:, p : p + be]], dim=1)[None]  # the context every token sees
        vc = torch.cat([v[:, : lay.plen], v[:, p : p + be]], dim=1)[None]
        # body queries: the prefix and the body, causally (query heads of one KV head stacked as rows)
        o, _ = _flash(q[:, :be].reshape(1, hkv, g * be, d), kc, vc, mask=lay.body_bias, scale=scale)
        out[r, :, :be] = o.reshape(hq, be, d)
        if not row.tails:
            continue
        end = row.tails[-1][1]
        n = end - be
        # (a) every tail token against the shared context, one call, no mask
        oa, la = _flash(q[:, be:end].reshape(1, hkv, g * n, d), kc, vc, scale=scale)
        oa, la = oa.reshape(hq, n, d), la.reshape(hq, n)
        # (b) each tail against itself, causally: tails padded to one length and batched (padding sits after
        # every real token, so the causal mask already hides it)
        idx = lay.tail_index
        qb = q[:, idx].transpose(0, 1)  # [T, Hq, Lt, D]
        kb = k[:, p + idx].transpose(0, 1).repeat_interleave(g, dim=1)
        vb = v[:, p + idx].transpose(0, 1).repeat_interleave(g, dim=1)
        ob, lb = _flash(qb.contiguous(), kb.contiguous(), vb.contiguous(), causal=True, scale=scale)
        ob = ob.transpose(0, 1)[:, lay.tail_valid]  # [Hq, n, D], tails in row order
        lb = lb.transpose(0, 1)[:, lay.tail_valid]  # [Hq, n]
        # merge the two softmax parts exactly through their log-sum-exps
        lse = torch.logaddexp(la, lb)
        out[r, :, be:end] = oa * torch.exp(la - lse)[..., None] + ob * torch.exp(lb - lse)[..., None]
    return out.transpose(1, 2).contiguous(), None


def supports(model) -> bool:
    """Whether `model`'s attention is plain causal attention through transformers' interface (the families
    rlaif.models.prefix lists), so this function can stand in for it."""
    return causal_family_problem(model) is None


def register() -> None:
    """Make "rlaif_tree" a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, tree_attention)


def plan_rows(flat) -> Optional[list[TreeRow]]:
    """Row plans from the judge's flattened branches (tokens, positions, spans), or None when a branch is not a
    body with leaf tails directly below it (then the dense tree mask is used)."""
    plans = []
    for _, _, spans in flat:
        if not spans:
            plans.append(TreeRow(0, []))
            continue
        (_, b0, be, anc0), *tails = spans
        if b0 != 0 or anc0:
            return None
        cursor, tail_spans = be, []
        for node, begin, end, ancestors in tails:
            if ancestors != [0] or node.children or begin != cursor or end <= begin:
                return None
            tail_spans.append((begin, end))
            cursor = end
        plans.append(TreeRow(be, tail_spans))
    return plans
