"""Reward-model recipe (`rlaif train reward`): a causal-LM base with a one-output score head learns the judge's
preference distribution with the soft Bradley-Terry loss (Lee et al. 2023).

setup: labels → encoded pairs; model (optionally LoRA) → loop: loss per optimizer step, metrics, periodic
pairwise accuracy on held-out labels (and on human labels where known) and checkpoints → save: OUT/model.
Resumes from OUT's last checkpoint when restarted.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from . import (global_batch, make_optimizer, prepare_for_training, reduce_sums, save_final, start_preference_run,
               total_steps, with_cpu_threads)
from ..train.checkpoint import Checkpointer
from ..config.reward import RewardTrainConfig
from ..rewards.reward_model import sequence_rewards
from ..train.data import collate, micro_batches, step_indices
from ..train.losses import bradley_terry_loss
from ..train.metrics import MetricsLog
from ..train.models import add_lora, load_model

STATS = ("loss", "pairs", "correct", "decided", "human_correct", "human_pairs", "reward_sum", "margin_sum")


def pair_terms(model, batch: dict, config: RewardTrainConfig) -> dict:
    """The loss and its statistics (sums over the pairs of this micro-batch)."""
    r_a, r_b = sequence_rewards(model, batch["input_ids"], batch["attention_mask"]).chunk(2)
    p_a, human = batch["p_a"], batch["human"]
    losses = bradley_terry_loss(r_a, r_b, p_a, config.loss.margin, config.loss.center_coef)
    with torch.no_grad():
        decided = p_a != 0.5
        a_wins = r_a > r_b
        terms = {
            "pairs": torch.tensor(float(len(p_a))), "decided": decided.sum().float(),
            "correct": ((a_wins == (p_a > 0.5)) & decided).sum().float(),
            "human_pairs": (human >= 0).sum().float(),
            "human_correct": ((a_wins.long() == human) & (human >= 0)).sum().float(),
            "reward_sum": (r_a + r_b).sum(),
            "margin_sum": torch.where(p_a >= 0.5, r_a - r_b, r_b - r_a).sum(),
        }
    terms["loss"] = losses.sum()
    return terms


def summarise(sums: dict, prefix: str = "") -> dict:
    n = max(sums["pairs"], 1)
    out = {"loss": sums["loss"] / n,
           "accuracy": sums["correct"] / sums["decided"] if sums["decided"] else None,
           "reward_mean": sums["reward_sum"] / (2 * n),
           "margin": sums["margin_sum"] / n}  # preferred minus other response's score
    if sums.get("human_pairs"):
        out["human_accuracy"] = sums["human_correct"] / sums["human_pairs"]
    return {prefix + k: v for k, v in out.items()}


def evaluate(acc, model, pairs, config: RewardTrainConfig, pad_id: int) -> dict:
    """Pairwise accuracy against the held-out labels (and human labels where known), and the eval loss."""
    if not pairs:
        return {}
    model.eval()
    sums = {k: torch.zeros(()) for k in STATS}
    mine = list(range(acc.process_index, len(pairs), acc.num_processes))
    with torch.no_grad():
        for i in range(0, len(mine), config.eval_batch_size):
            chunk = [pairs[j] for j in mine[i:i + config.eval_batch_size]]
            batch = {k: v.to(acc.device) for k, v in collate(chunk, pad_id, config.max_length).items()}
            for k, v in pair_terms(model, batch, config).items():
                sums[k] = sums[k] + v.detach().float().cpu()
    model.train()
    return summarise(reduce_sums(acc, sums), prefix="eval_")


@with_cpu_threads
def train(config: RewardTrainConfig) -> Path:
    """Run (or resume) a reward-model training run; returns the directory of the final model."""
    # -- setup ----------------------------------------------------------------------------------------------
    run = start_preference_run(config, whole=True)
    acc, out, resume, tokenizer, feedback = run.acc, run.out, run.resume, run.tokenizer, run.feedback
    train_pairs, eval_pairs, too_long, pad_id = run.train_pairs, run.eval_pairs, run.too_long, run.pad_id

    if config.lora:
        model = add_lora(load_model(config.model, tokenizer, "score"), config.lora, "score", path=resume)
    else:
        model = load_model(config.model, tokenizer, "score", path=resume)
    prepare_for_training(model, config)
    steps = total_steps(config, len(train_pairs), acc.num_processes)
    optimizer, scheduler = make_optimizer(model, config.optim, steps)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    checkpointer = Checkpointer(acc, out, tokenizer, keep=config.save_total_limit)
    start = checkpointer.load(resume)["step"] if resume else 0
    metrics = MetricsLog(out, config.report_to, config.project, config.model_dump(mode="json"),
                         resume_step=start, enabled=acc.is_main_process)
    gb = global_batch(config, acc.num_processes)
    if acc.is_main_process:
        print(f"reward: {len(train_pairs)} training pairs, {len(eval_pairs)} held out, {too_long} too long "
              f"(feedback: {feedback.counts}); {steps} steps of {gb} pairs"
              + (f"; resuming at step {start}" if start else ""), flush=True)

    # -- loop -----------------------------------------------------------------------------------------------
    model.train()
    for step in range(start, steps):
        t0 = time.perf_counter()
        sums = {k: torch.zeros(()) for k in STATS}
        micro = micro_batches(step_indices(step, len(train_pairs), gb, config.seed), acc.process_index,
                              acc.num_processes, config.grad_accum)
        for j, idx in enumerate(micro):
            batch = {k: v.to(acc.device) for k, v in collate([train_pairs[i] for i in idx], pad_id,
                                                            config.max_length).items()}
            sync = j == len(micro) - 1  # all-reduce gradients on the last micro-batch only
            with contextlib.nullcontext() if sync else acc.no_sync(model):
                terms = pair_terms(model, batch, config)
                acc.backward(terms["loss"] / len(idx) / config.grad_accum)
            for k, v in terms.items():
                sums[k] = sums[k] + v.detach().float().cpu()
        grad_norm = (acc.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
                     if config.optim.max_grad_norm else None)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        row = summarise(reduce_sums(acc, sums))
        row.update(lr=lr, grad_norm=float(grad_norm) if grad_norm is not None else None,
                   epoch=done * gb / len(train_pairs), step_time_s=time.perf_counter() - t0)
        if done == steps or (config.eval_steps and done % config.eval_steps == 0):
            row.update(evaluate(acc, model, eval_pairs, config, pad_id))
        metrics.log(done, row)
        if acc.is_main_process and (done == steps or done % max(1, steps // 20) == 0):
            print(f"step {done}/{steps} loss {row['loss']:.4f} acc {row['accuracy'] or 0:.3f}", flush=True)
        if done % config.save_steps == 0 or done == steps:
            checkpointer.save(model, done, {"total_steps": steps, "epoch": row["epoch"]})

    # -- save -----------------------------------------------------------------------------------------------
    metrics.close()
    return save_final(acc, model, tokenizer, out)
