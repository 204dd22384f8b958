"""SFT recipe (`rlaif train sft`): a policy is fine-tuned on chat examples, the loss on the response tokens only —
Constitutional AI's supervised stage trains on the final revisions this way (Bai et al. 2022, sec. 3.1).

The loss is the token mean over the global batch, as TRL's SFTTrainer computes it: the summed negative
log-likelihood of every response token in the step's batch (all micro-batches and processes), divided by how many
there are (rlaif.train.losses.sft_loss), so a long response weighs more than a short one and the step does not
depend on how the batch is cut into micro-batches.

setup: examples → token ids; model (optionally LoRA) → loop: one optimizer step per global batch, metrics,
periodic held-out loss and checkpoints → save: OUT/model. Resumes from OUT's last checkpoint when restarted, at
that step (the order of examples per step is a function of the step alone).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from ..config.sft import SFTTrainConfig
from ..train.data import micro_batches, step_indices
from ..train.models import load_tokenizer, load_trainable
from ..train.preference import evaluate_pairs, optimizer_step
from ..train.run import (
    RunLog,
    global_batch,
    make_optimizer,
    prepare_for_training,
    start_run,
    total_steps,
    with_cpu_threads,
)
from ..train.sft import encode_examples, example_batch, read_examples, sft_terms

STATS = ("loss", "response_tokens", "tokens")


def _split(config: SFTTrainConfig, examples: list) -> tuple[list, list]:
    """(training, held-out) examples: the eval files, or a seeded share of the training ones."""
    if config.data.eval_paths:
        return examples, read_examples(config.data.eval_paths)
    order = list(range(len(examples)))
    random.Random(config.seed).shuffle(order)
    held = set(order[: int(round(len(examples) * config.data.eval_fraction))])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


@with_cpu_threads
def train(config: SFTTrainConfig) -> Path:
    """Run (or resume) an SFT run; returns the directory of the final model."""
    # -- setup ----------------------------------------------------------------------------------------------
    acc, resume = start_run(config)
    tokenizer = load_tokenizer(config.model, resume)
    train_rows, eval_rows = _split(config, read_examples(config.data.paths))
    train_set, too_long = encode_examples(tokenizer, train_rows, config.max_length)
    eval_set, _ = encode_examples(tokenizer, eval_rows, config.max_length)
    if not train_set:
        raise ValueError(
            f"no training examples in {', '.join(config.data.paths)} ({too_long} longer than "
            f"max_length={config.max_length} in the prompt alone)"
        )
    model = load_trainable(config.model, config.lora, tokenizer, "lm", resume)
    prepare_for_training(model, config)
    steps = total_steps(config, len(train_set), acc.num_processes)
    optimizer, scheduler = make_optimizer(model, config.optim, steps)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    log = RunLog(acc, config, tokenizer, resume, keep=config.save_total_limit)
    gb, pad_id = global_batch(config, acc.num_processes), tokenizer.pad_token_id
    if acc.is_main_process:
        print(
            f"sft: {len(train_set)} training examples, {len(eval_set)} held out, {too_long} too long; {steps} "
            f"steps of {gb} examples" + (f"; resuming at step {log.start}" if log.start else ""),
            flush=True,
        )

    def terms(examples):
        return lambda idx: sft_terms(model, example_batch(examples, idx, pad_id, config.max_length, acc.device))

    # -- loop -----------------------------------------------------------------------------------------------
    model.train()
    for step in range(log.start, steps):
        t0 = time.perf_counter()
        indices = step_indices(step, len(train_set), gb, config.seed, what="examples")
        # N: the response tokens of the whole global batch (every process knows it: the batch is a function of
        # the step); DDP averages gradients over processes, so each process's sum is scaled by world / N
        n_tokens = max(1, sum(train_set[i].response_tokens(config.max_length) for i in indices))
        micro = micro_batches(indices, acc.process_index, acc.num_processes, config.grad_accum)
        done = step + 1
        sums, lr, grad_norm = optimizer_step(
            acc,
            model,
            optimizer,
            scheduler,
            micro,
            terms(train_set),
            STATS,
            config,
            log.checks(done, steps),
            scale=lambda idx: acc.num_processes / n_tokens,
        )
        row = {
            "loss": sums["loss"] / max(sums["response_tokens"], 1),
            "response_tokens": int(sums["response_tokens"]),
            "tokens": int(sums["tokens"]),
            "lr": lr,
            "grad_norm": grad_norm,
            "epoch": done * gb / len(train_set),
            "step_s": time.perf_counter() - t0,
        }
        if log.evaluates(done, steps) and eval_set:
            held = evaluate_pairs(acc, model, len(eval_set), config.eval_batch_size, terms(eval_set), STATS)
            row["eval_loss"] = held["loss"] / max(held["response_tokens"], 1)
        log.end_step(model, done, steps, row, f"loss {row['loss']:.4f}", {"epoch": row["epoch"]})

    # -- save -----------------------------------------------------------------------------------------------
    return log.finish(model)
