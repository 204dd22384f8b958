"""DPO recipe (`rlaif train dpo`): a policy learns the preferences directly against a frozen reference.

setup: labels → encoded pairs; policy (optionally LoRA) and reference; reference log-probs computed once up
front (cached in OUT/reference_logps.pt) or on the fly → loop: soft-label DPO/IPO loss per optimizer step,
metrics, periodic eval and checkpoints → save: OUT/model. Resumes from OUT's last checkpoint when restarted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import torch

from . import (global_batch, make_optimizer, prepare_for_training, reduce_sums, save_final, start_preference_run,
               total_steps, with_cpu_threads)
from ..train.checkpoint import Checkpointer
from ..config.dpo import DPOTrainConfig
from ..train.data import collate, micro_batches, step_indices
from ..train.losses import dpo_loss_fn, sequence_logps
from ..train.metrics import MetricsLog
from ..train.models import add_lora, load_model, reference_mode

STATS = ("loss", "pairs", "correct", "decided", "chosen", "rejected", "kl_data", "responses", "human_correct",
         "human_pairs", "logps_chosen", "logps_rejected")


def response_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(response | prompt) for every row of a collated batch, and each response's token count.

    Only the logits from the first response position on are computed (`logits_to_keep`), which skips the
    vocabulary projection over the shared prompt."""
    ids, completion = batch["input_ids"], batch["completion_mask"]
    start = int(completion.argmax(dim=1).min())  # first response position over the batch (≥ 1: prompts are
    keep = ids.shape[1] - start + 1               # never empty), and the logits that predict from there on
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False,
                   logits_to_keep=keep).logits[:, :-1]
    mask = completion[:, start:]
    return sequence_logps(logits, ids[:, start:], mask), mask.sum(dim=1)


def pair_terms(policy, reference, batch: dict, ref_logps, config: DPOTrainConfig, loss_fn) -> dict:
    """The loss and its statistics (sums over the pairs of this micro-batch)."""
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
            "pairs": torch.tensor(float(len(p_a))), "decided": decided.sum().float(),
            "correct": ((chosen > rejected) & decided).sum().float(),
            "chosen": chosen.sum(), "rejected": rejected.sum(),
            "logps_chosen": torch.where(a_wins, logps_a, logps_b).sum(),
            "logps_rejected": torch.where(a_wins, logps_b, logps_a).sum(),
            # mean log π/π_ref over the labelled responses: the KL to the reference estimated on the data. It is
            # KL(π‖π_ref) only on the policy's own samples; on offline pairs it can go below zero
            "kl_data": (ratio_a.sum() + ratio_b.sum()), "responses": torch.tensor(2.0 * len(p_a)),
            "human_pairs": (human >= 0).sum().float(),
            "human_correct": (((ratio_a > ratio_b).long() == human) & (human >= 0)).sum().float(),
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


def precompute_reference(acc, policy, reference, pairs, batch_size: int, pad_id: int, max_length: int,
                         cache: Path) -> torch.Tensor:
    """log π_ref of both responses of every pair, [N, 2]: each process computes a strided share, all gather;
    cached in `cache` so a resumed run does not recompute them."""
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
            chunk = mine[i:i + batch_size]
            batch = {k: v.to(acc.device) for k, v in collate([pairs[j] for j in chunk], pad_id, max_length).items()}
            logps, _ = response_logps(ref, batch)
            a, b = logps.float().cpu().chunk(2)
            rows.extend((j, x, y) for j, x, y in zip(chunk, a.tolist(), b.tolist()))
    table = torch.zeros(len(pairs), 2)
    for j, x, y in gather_object(rows):
        table[j, 0], table[j, 1] = x, y
    if acc.is_main_process:
        torch.save({"key": key, "logps": table}, cache)
    acc.wait_for_everyone()
    return table


def evaluate(acc, policy, reference, pairs, ref_table, config, loss_fn, pad_id) -> dict:
    if not pairs:
        return {}
    policy.eval()
    sums = {k: torch.zeros(()) for k in STATS}
    mine = list(range(acc.process_index, len(pairs), acc.num_processes))
    with torch.no_grad():
        for i in range(0, len(mine), config.eval_batch_size):
            chunk = mine[i:i + config.eval_batch_size]
            batch = {k: v.to(acc.device) for k, v in collate([pairs[j] for j in chunk], pad_id,
                                                            config.max_length).items()}
            ref = None if ref_table is None else torch.cat([ref_table[chunk, 0], ref_table[chunk, 1]])
            for k, v in pair_terms(policy, reference, batch, ref, config, loss_fn).items():
                sums[k] = sums[k] + v.detach().float().cpu()
    policy.train()
    return summarise(reduce_sums(acc, sums), prefix="eval_")


def dpo_step(acc, policy, reference, optimizer, scheduler, pairs, ref_table, micro, config, loss_fn,
             pad_id: int) -> dict:
    """One optimizer step over this process's micro-batches `micro` (lists of indices into `pairs`): gradients
    accumulated, clipped and applied; returns the step's statistics (over all processes), lr and grad_norm.
    `ref_table` holds precomputed reference log-probs [N, 2], or None to run the reference on the fly."""
    sums = {k: torch.zeros(()) for k in STATS}
    for j, idx in enumerate(micro):
        batch = {k: v.to(acc.device) for k, v in collate([pairs[i] for i in idx], pad_id,
                                                        config.max_length).items()}
        ref = None if ref_table is None else torch.cat([ref_table[idx, 0], ref_table[idx, 1]])
        sync = j == len(micro) - 1  # all-reduce gradients on the last micro-batch only
        with contextlib.nullcontext() if sync else acc.no_sync(policy):
            terms = pair_terms(policy, reference, batch, ref, config, loss_fn)
            acc.backward(terms["loss"] / len(idx) / config.grad_accum)
        for k, v in terms.items():
            sums[k] = sums[k] + v.detach().float().cpu()
    grad_norm = (acc.clip_grad_norm_(policy.parameters(), config.optim.max_grad_norm)
                 if config.optim.max_grad_norm else None)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    row = summarise(reduce_sums(acc, sums))
    row.update(lr=lr, grad_norm=float(grad_norm) if grad_norm is not None else None)
    return row


@with_cpu_threads
def train(config: DPOTrainConfig) -> Path:
    """Run (or resume) a DPO training run; returns the directory of the final model."""
    # -- setup ----------------------------------------------------------------------------------------------
    run = start_preference_run(config, whole=False)
    acc, out, resume, tokenizer, feedback = run.acc, run.out, run.resume, run.tokenizer, run.feedback
    train_pairs, eval_pairs, too_long, pad_id = run.train_pairs, run.eval_pairs, run.too_long, run.pad_id

    if config.lora:
        policy = add_lora(load_model(config.model, tokenizer, "lm"), config.lora, "lm", path=resume)
        reference = None  # the base model with the adapters switched off
    else:
        policy = load_model(config.model, tokenizer, "lm", path=resume)
        ref_dtype = torch.bfloat16 if acc.mixed_precision == "bf16" else torch.float32
        reference = load_model(config.model, tokenizer, "lm", dtype=ref_dtype).to(acc.device).eval()
        reference.requires_grad_(False)
    prepare_for_training(policy, config)
    policy.to(acc.device)

    ref_train = ref_eval = None
    if config.precompute_reference:
        ref_train = precompute_reference(acc, policy, reference, train_pairs, config.eval_batch_size, pad_id,
                                         config.max_length, out / "reference_logps.pt")
        ref_eval = precompute_reference(acc, policy, reference, eval_pairs, config.eval_batch_size, pad_id,
                                        config.max_length, out / "reference_logps_eval.pt") if eval_pairs else None
        reference = None  # no longer needed: free its memory
        policy.train()

    steps = total_steps(config, len(train_pairs), acc.num_processes)
    optimizer, scheduler = make_optimizer(policy, config.optim, steps)
    policy, optimizer, scheduler = acc.prepare(policy, optimizer, scheduler)
    checkpointer = Checkpointer(acc, out, tokenizer, keep=config.save_total_limit)
    start = checkpointer.load(resume)["step"] if resume else 0
    metrics = MetricsLog(out, config.report_to, config.project, config.model_dump(mode="json"),
                         resume_step=start, enabled=acc.is_main_process)
    loss_fn = dpo_loss_fn(config.loss)
    gb = global_batch(config, acc.num_processes)
    if acc.is_main_process:
        print(f"dpo: {len(train_pairs)} training pairs, {len(eval_pairs)} held out, {too_long} too long "
              f"(feedback: {feedback.counts}); {steps} steps of {gb} pairs"
              + (f"; resuming at step {start}" if start else ""), flush=True)

    # -- loop -----------------------------------------------------------------------------------------------
    policy.train()
    for step in range(start, steps):
        t0 = time.perf_counter()
        micro = micro_batches(step_indices(step, len(train_pairs), gb, config.seed), acc.process_index,
                              acc.num_processes, config.grad_accum)
        row = dpo_step(acc, policy, reference, optimizer, scheduler, train_pairs, ref_train, micro, config, loss_fn,
                       pad_id)
        done = step + 1
        row.update(epoch=done * gb / len(train_pairs), step_time_s=time.perf_counter() - t0)
        if done == steps or (config.eval_steps and done % config.eval_steps == 0):
            row.update(evaluate(acc, policy, reference, eval_pairs, ref_eval, config, loss_fn, pad_id))
        metrics.log(done, row)
        if acc.is_main_process and (done == steps or done % max(1, steps // 20) == 0):
            print(f"step {done}/{steps} loss {row['loss']:.4f} acc {row['reward_accuracy'] or 0:.3f} "
                  f"margin {row['rewards_margin']:.4f}", flush=True)
        if done % config.save_steps == 0 or done == steps:
            checkpointer.save(policy, done, {"total_steps": steps, "epoch": row["epoch"]})

    # -- save -----------------------------------------------------------------------------------------------
    metrics.close()
    return save_final(acc, policy, tokenizer, out)
