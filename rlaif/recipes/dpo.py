"""DPO recipe (`rlaif train dpo`): a policy learns the preferences directly against a frozen reference.

setup: labels → encoded pairs; policy (optionally LoRA) and reference; reference log-probs computed once up
front (cached in OUT/reference_logps.pt) or on the fly → loop: soft-label DPO/IPO loss per optimizer step
(rlaif.train.dpo), metrics, periodic eval and checkpoints → save: OUT/model. Resumes from OUT's last checkpoint
when restarted.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..config.dpo import DPOTrainConfig
from ..train.dpo import dpo_step, evaluate, precompute_reference
from ..train.losses import dpo_loss_fn
from ..train.models import load_reference, load_trainable
from ..train.preference import start_preference_run
from ..train.run import frozen_dtype, prepare_for_training, with_cpu_threads


@with_cpu_threads
def train(config: DPOTrainConfig) -> Path:
    """Run (or resume) a DPO training run; returns the directory of the final model."""
    # -- setup ----------------------------------------------------------------------------------------------
    run = start_preference_run(config, whole=False)
    acc, out, train_pairs, eval_pairs, pad_id = run.acc, run.out, run.train_pairs, run.eval_pairs, run.pad_id
    policy = load_trainable(config.model, config.lora, run.tokenizer, "lm", run.resume)
    # under LoRA the reference is the base model with the adapters switched off
    reference = None if config.lora else load_reference(config.model, run.tokenizer, acc.device, frozen_dtype(acc))
    prepare_for_training(policy, config)
    policy.to(acc.device)
    layout = run.share_prefix(policy, reference)

    ref_train = ref_eval = None
    if config.precompute_reference:
        ref_train = precompute_reference(
            acc,
            policy,
            reference,
            train_pairs,
            config.eval_batch_size,
            pad_id,
            config.max_length,
            out / "reference_logps.pt",
            layout,
        )
        ref_eval = (
            precompute_reference(
                acc,
                policy,
                reference,
                eval_pairs,
                config.eval_batch_size,
                pad_id,
                config.max_length,
                out / "reference_logps_eval.pt",
                layout,
            )
            if eval_pairs
            else None
        )
        reference = None  # no longer needed: free its memory
        policy.train()

    policy, optimizer, scheduler, log = run.prepare(policy)
    loss_fn = dpo_loss_fn(config.loss)
    steps = run.steps

    # -- loop -----------------------------------------------------------------------------------------------
    policy.train()
    for step in range(log.start, steps):
        t0 = time.perf_counter()
        micro = run.micro_batches(step)
        done = step + 1
        row = dpo_step(
            acc,
            policy,
            reference,
            optimizer,
            scheduler,
            train_pairs,
            ref_train,
            micro,
            config,
            loss_fn,
            pad_id,
            log.checks(done, steps),
            layout,
        )
        row.update(epoch=run.epoch(done), step_s=time.perf_counter() - t0)
        if log.evaluates(done, steps):
            row.update(evaluate(acc, policy, reference, eval_pairs, ref_eval, config, loss_fn, pad_id, layout))
        log.end_step(
            policy,
            done,
            steps,
            row,
            f"loss {row['loss']:.4f} acc {row['reward_accuracy'] or 0:.3f} margin {row['rewards_margin']:.4f}",
            {"epoch": row["epoch"]},
        )

    # -- save -----------------------------------------------------------------------------------------------
    return log.finish(policy)
