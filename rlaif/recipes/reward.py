"""Reward-model recipe (`rlaif train reward`): a causal-LM base with a one-output score head learns the judge's
preference distribution with the soft Bradley-Terry loss (Lee et al. 2023).

setup: labels → encoded pairs; model (optionally LoRA) → loop: loss per optimizer step, metrics, periodic
pairwise accuracy on held-out labels (and on human labels where known) and checkpoints → save: OUT/model.
Resumes from OUT's last checkpoint when restarted.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config.reward import RewardTrainConfig
from ..rewards.reward_model import pair_rewards
from ..train.data import pair_batch
from ..train.losses import bradley_terry_loss
from ..train.models import load_trainable
from ..train.preference import evaluate_pairs, optimizer_step, start_preference_run
from ..train.run import prepare_for_training, with_cpu_threads

STATS = ("loss", "pairs", "correct", "decided", "human_correct", "human_pairs", "reward_sum", "margin_sum", "tokens")


def pair_terms(model, batch: dict, config: RewardTrainConfig) -> dict:
    """The loss and its statistics (sums over the pairs of this micro-batch)."""
    r_a, r_b = pair_rewards(model, batch)
    p_a, human = batch["p_a"], batch["human"]
    losses = bradley_terry_loss(r_a, r_b, p_a, config.loss.margin, config.loss.center_coef)
    with torch.no_grad():
        decided = p_a != 0.5
        a_wins = r_a > r_b
        terms = {
            "pairs": torch.tensor(float(len(p_a))),
            "decided": decided.sum().float(),
            "correct": ((a_wins == (p_a > 0.5)) & decided).sum().float(),
            "human_pairs": (human >= 0).sum().float(),
            "human_correct": ((a_wins.long() == human) & (human >= 0)).sum().float(),
            "reward_sum": (r_a + r_b).sum(),
            "margin_sum": torch.where(p_a >= 0.5, r_a - r_b, r_b - r_a).sum(),
            "tokens": batch["attention_mask"].sum().float(),  # what the model encoded: fewer with shared rows
        }
    terms["loss"] = losses.sum()
    return terms


def summarise(sums: dict, prefix: str = "") -> dict:
    n = max(sums["pairs"], 1)
    out = {
        "loss": sums["loss"] / n,
        "accuracy": sums["correct"] / sums["decided"] if sums["decided"] else None,
        "reward_mean": sums["reward_sum"] / (2 * n),
        "margin": sums["margin_sum"] / n,
    }  # preferred minus other response's score
    if sums.get("human_pairs"):
        out["human_accuracy"] = sums["human_correct"] / sums["human_pairs"]
    return {prefix + k: v for k, v in out.items()}


@with_cpu_threads
def train(config: RewardTrainConfig) -> Path:
    """Run (or resume) a reward-model training run; returns the directory of the final model."""
    # -- setup ----------------------------------------------------------------------------------------------
    run = start_preference_run(config, whole=True)
    acc, train_pairs, eval_pairs = run.acc, run.train_pairs, run.eval_pairs
    model = load_trainable(config.model, config.lora, run.tokenizer, "score", run.resume)
    prepare_for_training(model, config)
    layout = run.share_prefix(model)
    model, optimizer, scheduler, log = run.prepare(model)
    steps = run.steps

    def terms(pairs):
        def of(idx):
            return pair_terms(model, pair_batch(pairs, idx, run.pad_id, config.max_length, acc.device, layout), config)

        return of

    # -- loop -----------------------------------------------------------------------------------------------
    model.train()
    for step in range(log.start, steps):
        t0 = time.perf_counter()
        micro = run.micro_batches(step)
        done = step + 1
        sums, lr, grad_norm = optimizer_step(
            acc, model, optimizer, scheduler, micro, terms(train_pairs), STATS, config, log.checks(done, steps)
        )
        row = {
            **summarise(sums),
            "lr": lr,
            "grad_norm": grad_norm,
            "epoch": run.epoch(done),
            "step_s": time.perf_counter() - t0,
            "tokens": int(sums["tokens"]),
        }
        if log.evaluates(done, steps):
            held_out = evaluate_pairs(acc, model, len(eval_pairs), config.eval_batch_size, terms(eval_pairs), STATS)
            row.update(summarise(held_out, prefix="eval_") if held_out else {})
        log.end_step(
            model, done, steps, row, f"loss {row['loss']:.4f} acc {row['accuracy'] or 0:.3f}", {"epoch": row["epoch"]}
        )

    # -- save -----------------------------------------------------------------------------------------------
    return log.finish(model)
