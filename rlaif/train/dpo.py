"""The DPO step, shared by `rlaif train dpo` (rlaif/recipes/dpo.py) and the self-feedback loop's DPO steps
(rlaif/recipes/loop.py): the policy's and the reference's log-probs of both responses of a pair, the loss and its
statistics, the table of reference log-probs computed once before training, and one optimizer step.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import torch

from ..models import prefix
from .data import Layout, pair_batch
from .losses import sequence_logps
from .models import reference_mode
from .preference import evaluate_pairs, optimizer_step
from .run import Check

STATS = (
    "loss",
    "pairs",
    "correct",
    "decided",
    "chosen",
    "rejected",
    "kl_data",
    "responses",
    "human_correct",
    "human_pairs",
    "logps_chosen",
    "logps_rejected",
    "tokens",
)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (Δ, p_a) -> loss per pair


def response_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits that predict the response tokens of a collated batch, aligned with their targets, and the mask
    of response tokens: (logits, targets, mask).

    Only the logits from the first response position on are computed (`logits_to_keep`), which skips the
    vocabulary projection over the shared prompt."""
    ids, completion = batch["input_ids"], batch["completion_mask"]
    start = int(completion.argmax(dim=1).min())  # first response position over the batch (≥ 1: prompts are
    keep = ids.shape[1] - start + 1  # never empty), and the logits that predict from there on
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False, logits_to_keep=keep).logits[
        :, :-1
    ]
    return logits, ids[:, start:], completion[:, start:]


def response_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(response | prompt) of every response of a collated batch, [all a; all b], and each response's token
    count; from shared-prefix rows (`collate_shared`) when the batch is one."""
    if "branch" in batch:
        return shared_response_logps(model, batch)
    logits, targets, mask = response_logits(model, batch)
    return sequence_logps(logits, targets, mask), mask.sum(dim=1)


def shared_response_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """`response_logps` of shared-prefix rows [prompt, a, b] (rlaif.models.prefix), one pair or several packed
    per row: both responses' log-probs from one forward. b's first token is predicted from the last prompt
    position, as in b's own row. The vocabulary projection runs only at the positions that predict a response
    token (a boolean `logits_to_keep`: their hidden states gathered, then the output embedding)."""
    ids, plan = batch["input_ids"], prefix.PrefixPlan(batch["segment"], batch["branch"])
    response = plan.branch > prefix.PROMPT
    rows, at = response.nonzero(as_tuple=True)
    predictor = plan.predictors()[rows, at]
    keep = torch.zeros_like(response)
    keep[rows, predictor] = True
    logits = prefix.forward(model, ids, plan, logits_to_keep=keep).logits  # [kept positions, vocabulary]
    # the kept positions come flattened row by row: a position's logits are at the count of kept ones before it
    kept = keep.flatten().cumsum(0).view_as(keep) - 1
    which = kept[rows, predictor]
    token_logps = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    token_logps = token_logps.index_put(
        (rows, at), logits[which, ids[rows, at]].float() - torch.logsumexp(logits.float(), dim=-1)[which]
    )
    return plan.per_pair(token_logps, response), plan.per_pair(response.long(), response)


def pair_terms(policy, reference, batch: dict, ref_logps: Optional[torch.Tensor], config, loss_fn: LossFn) -> dict:
    """The loss and its statistics (sums over the pairs of this micro-batch). `ref_logps`: the reference's
    log-probs of the batch's rows from the precomputed table, or None to run the reference now."""
    logps, n_tokens = response_logps(policy, batch)
    if ref_logps is None:
        with reference_mode(policy, reference) as ref:
            ref_logps, _ = response_logps(ref, batch)
    ref_logps = ref_logps.to(logps.device)
    if config.loss.length_normalize:
        logps, ref_logps = logps / n_tokens.clamp(min=1), ref_logps / n_tokens.clamp(min=1)
    ratio_a, ratio_b = (logps - ref_logps).chunk(2)
    logps_a, logps_b = logps.detach().chunk(2)
    p_a = batch["p_a"]
    losses = loss_fn(ratio_a - ratio_b, p_a)
    with torch.no_grad():
        beta = config.loss.beta
        a_wins = p_a >= 0.5
        chosen = beta * torch.where(a_wins, ratio_a, ratio_b)
        rejected = beta * torch.where(a_wins, ratio_b, ratio_a)
        decided = p_a != 0.5
        human = batch["human"]
        terms = {
            "pairs": torch.tensor(float(len(p_a))),
            "decided": decided.sum().float(),
            "correct": ((chosen > rejected) & decided).sum().float(),
            "chosen": chosen.sum(),
            "rejected": rejected.sum(),
            "logps_chosen": torch.where(a_wins, logps_a, logps_b).sum(),
            "logps_rejected": torch.where(a_wins, logps_b, logps_a).sum(),
            # mean log π/π_ref over the labelled responses: the KL to the reference estimated on the data. It is
            # KL(π‖π_ref) only on the policy's own samples; on offline pairs it can go below zero
            "kl_data": (ratio_a.sum() + ratio_b.sum()),
            "responses": torch.tensor(2.0 * len(p_a)),
            "human_pairs": (human >= 0).sum().float(),
            "human_correct": (((ratio_a > ratio_b).long() == human) & (human >= 0)).sum().float(),
            "tokens": batch["attention_mask"].sum().float(),  # what the policy encoded: fewer with shared rows
        }
    terms["loss"] = losses.sum()
    return terms


def summarise(sums: dict, prefix: str = "") -> dict:
    out = {
        "loss": sums["loss"] / max(sums["pairs"], 1),
        "reward_accuracy": sums["correct"] / sums["decided"] if sums["decided"] else None,
        "rewards_chosen": sums["chosen"] / max(sums["pairs"], 1),
        "rewards_rejected": sums["rejected"] / max(sums["pairs"], 1),
        "kl_data": sums["kl_data"] / max(sums["responses"], 1),
        "logps_chosen": sums["logps_chosen"] / max(sums["pairs"], 1),
        "logps_rejected": sums["logps_rejected"] / max(sums["pairs"], 1),
    }
    out["rewards_margin"] = out["rewards_chosen"] - out["rewards_rejected"]
    if sums.get("human_pairs"):
        out["human_accuracy"] = sums["human_correct"] / sums["human_pairs"]
    return {prefix + k: v for k, v in out.items()}


def _table_key(pairs) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.prompt_ids, p.a_ids, p.b_ids]).encode())
    return h.hexdigest()


def reference_rows(table: Optional[torch.Tensor], idx: list[int]) -> Optional[torch.Tensor]:
    """The reference log-probs of pairs `idx` laid out as a collated batch ([all a; all b]), or None."""
    return None if table is None else torch.cat([table[idx, 0], table[idx, 1]])


def precompute_reference(
    acc, policy, reference, pairs, batch_size: int, pad_id: int, max_length: int, cache: Path, layout: Layout = "two"
) -> torch.Tensor:
    """log π_ref of both responses of every pair, [N, 2]: each process computes a strided share, all gather;
    cached in `cache` so a resumed run does not recompute them. `layout`: the batches' layout (the same numbers
    from any, so the cache serves every one)."""
    from accelerate.utils import gather_object

    key = _table_key(pairs)
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        if saved.get("key") == key:
            return saved["logps"]
    mine = list(range(acc.process_index, len(pairs), acc.num_processes))
    rows = []
    model = reference if reference is not None else acc.unwrap_model(policy)
    with reference_mode(model, reference) as ref:
        ref.eval()
        for i in range(0, len(mine), batch_size):
            chunk = mine[i : i + batch_size]
            logps, _ = response_logps(ref, pair_batch(pairs, chunk, pad_id, max_length, acc.device, layout))
            a, b = logps.float().cpu().chunk(2)
            rows.extend((j, x, y) for j, x, y in zip(chunk, a.tolist(), b.tolist()))
    table = torch.zeros(len(pairs), 2)
    for j, x, y in gather_object(rows):
        table[j, 0], table[j, 1] = x, y
    if acc.is_main_process:
        torch.save({"key": key, "logps": table}, cache)
    acc.wait_for_everyone()
    return table


def _terms(acc, policy, reference, pairs, ref_table, config, loss_fn: LossFn, pad_id: int, layout: Layout):
    def terms(idx: list[int]) -> dict:
        batch = pair_batch(pairs, idx, pad_id, config.max_length, acc.device, layout)
        return pair_terms(policy, reference, batch, reference_rows(ref_table, idx), config, loss_fn)

    return terms


def dpo_step(
    acc,
    policy,
    reference,
    optimizer,
    scheduler,
    pairs,
    ref_table,
    micro,
    config,
    loss_fn: LossFn,
    pad_id: int,
    check: Check,
    layout: Layout = "two",
) -> dict:
    """One optimizer step over this process's micro-batches `micro` (lists of indices into `pairs`); returns the
    step's statistics (over all processes), lr, grad_norm and the tokens the policy encoded. `ref_table` holds
    precomputed reference log-probs [N, 2], or None to run the reference on the fly; `check` stops a diverging
    run (see `optimizer_step`); `layout`: the batches' layout (rlaif.train.models.share_prefix)."""
    terms = _terms(acc, policy, reference, pairs, ref_table, config, loss_fn, pad_id, layout)
    sums, lr, grad_norm = optimizer_step(acc, policy, optimizer, scheduler, micro, terms, STATS, config, check)
    return {**summarise(sums), "lr": lr, "grad_norm": grad_norm, "tokens": int(sums["tokens"])}


def evaluate(
    acc, policy, reference, pairs, ref_table, config, loss_fn: LossFn, pad_id: int, layout: Layout = "two"
) -> dict:
    """The DPO statistics of the held-out pairs, as eval_* metrics."""
    terms = _terms(acc, policy, reference, pairs, ref_table, config, loss_fn, pad_id, layout)
    sums = evaluate_pairs(acc, policy, len(pairs), config.eval_batch_size, terms, STATS)
    return summarise(sums, prefix="eval_") if sums else {}
