"""What the recipes that train on preference pairs (reward model, DPO, the loop's DPO steps) share: the start of
a run on labels (accelerator, run directory, tokenizer, labels encoded into training and held-out pairs), one
optimizer step over micro-batches of pairs, and an evaluation pass over held-out pairs. Each recipe brings its
own `terms(indices)`: the summed loss and statistics of those pairs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from .data import Layout, encode_pairs, micro_batches, read_feedback, step_indices
from .models import load_tokenizer, share_prefix
from .run import (
    Check,
    RunLog,
    add_into,
    clip_gradients,
    global_batch,
    make_optimizer,
    reduce_sums,
    start_run,
    total_steps,
)

Terms = Callable[[list[int]], dict]  # pair indices -> {"loss": summed loss, statistic: summed tensor, ...}


@dataclass
class PreferenceRun:
    """What the preference recipes (reward, DPO) set up alike: the accelerator, the run directory and its resume
    point, the tokenizer, and the feedback encoded into training and held-out pairs; then (`prepare`) the steps,
    the optimizer and the run log, and each step's micro-batches of pairs."""

    config: object
    acc: object
    out: Path
    resume: Optional[Path]
    tokenizer: object
    feedback: object
    train_pairs: list
    eval_pairs: list
    too_long: int
    steps: int = 0  # optimizer steps of the whole run (set by `prepare`)
    global_batch: int = 0  # pairs per optimizer step, over all processes
    layout: Layout = "two"  # the batches' layout (set by `share_prefix`)
    sharing: str = ""  # what the run says about it

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def share_prefix(self, *models) -> Layout:
        """Decide, from the config's prefix_sharing and packing, how the pairs are laid out for `models` (the
        unwrapped models that read them, None for one the run does not hold); see rlaif.train.models."""
        self.layout, self.sharing = share_prefix(self.config.prefix_sharing, list(models), self.config.packing)
        return self.layout

    def prepare(self, model):
        """The optimizer and its schedule over the run's steps, handed with `model` to the accelerator, and the run
        log (which knows the step to resume at); the main process says what the run will do. Returns (model,
        optimizer, scheduler, log)."""
        acc, config = self.acc, self.config
        self.steps = total_steps(config, len(self.train_pairs), acc.num_processes)
        self.global_batch = global_batch(config, acc.num_processes)
        optimizer, scheduler = make_optimizer(model, config.optim, self.steps)
        model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
        log = RunLog(acc, config, self.tokenizer, self.resume, keep=config.save_total_limit)
        if acc.is_main_process:
            print(
                f"{config.method}: {len(self.train_pairs)} training pairs, {len(self.eval_pairs)} held out, "
                f"{self.too_long} too long (feedback: {self.feedback.counts}); {self.steps} steps of "
                f"{self.global_batch} pairs; {self.sharing or 'two rows per pair'}"
                + (f"; resuming at step {log.start}" if log.start else ""),
                flush=True,
            )
        return model, optimizer, scheduler, log

    def micro_batches(self, step: int) -> list[list[int]]:
        """This process's micro-batches (lists of training pair indices) of optimizer step `step`."""
        indices = step_indices(step, len(self.train_pairs), self.global_batch, self.config.seed)
        return micro_batches(indices, self.acc.process_index, self.acc.num_processes, self.config.grad_accum)

    def epoch(self, done: int) -> float:
        """The passes over the training pairs after `done` steps."""
        return done * self.global_batch / len(self.train_pairs)


def start_preference_run(config, whole: bool) -> PreferenceRun:
    """Accelerator, run directory (resume point), seed, tokenizer and encoded pairs for a reward/DPO config.
    `whole`: a pair must fit max_length entirely (reward models read the last token)."""

    acc, resume = start_run(config)
    tokenizer = load_tokenizer(config.model, resume)
    # the mixed source writes its queue of pairs for people as it reads: the main process only
    feedback = read_feedback(config.feedback, config.pairs, config.seed, write_queue=acc.is_main_process)
    train_pairs, too_long = encode_pairs(tokenizer, feedback.train, config.max_length, whole=whole)
    eval_pairs, _ = encode_pairs(tokenizer, feedback.eval, config.max_length, whole=whole)
    return PreferenceRun(
        config, acc, Path(config.output_dir), resume, tokenizer, feedback, train_pairs, eval_pairs, too_long
    )


def optimizer_step(
    acc,
    model,
    optimizer,
    scheduler,
    micro: list[list[int]],
    terms: Terms,
    stats: Sequence[str],
    config,
    check: Check,
    scale: Optional[Callable[[list[int]], float]] = None,
) -> tuple[dict, float, Optional[float]]:
    """One optimizer step over this process's micro-batches `micro` (lists of pair indices): the mean loss per pair
    of the global batch is back-propagated micro-batch by micro-batch, then clipped, checked and applied.
    `scale(idx)` replaces the per-pair mean's factor 1 / (pairs · grad_accum) (SFT's token mean). `check` (the
    run's, rlaif.train.run.RunLog.checks) stops the run before a step whose loss or gradient norm is not finite
    is applied. Returns the statistics summed over all processes, the learning rate the step used and the
    gradient norm before clipping."""
    sums = {k: torch.zeros(()) for k in stats}
    for j, idx in enumerate(micro):
        sync = j == len(micro) - 1  # all-reduce gradients on the last micro-batch only
        with contextlib.nullcontext() if sync else acc.no_sync(model):
            batch_terms = terms(idx)
            loss = batch_terms["loss"]
            acc.backward(loss * scale(idx) if scale else loss / len(idx) / config.grad_accum)
        add_into(sums, batch_terms)
    grad_norm = clip_gradients(acc, model, config.optim.max_grad_norm)
    lr = scheduler.get_last_lr()[0]
    check(lr=lr, loss=sums["loss"], grad_norm=grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return reduce_sums(acc, sums), lr, grad_norm


def evaluate_pairs(acc, model, n_pairs: int, batch_size: int, terms: Terms, stats: Sequence[str]) -> Optional[dict]:
    """The statistics of `n_pairs` held-out pairs without gradients, each process taking a strided share in batches
    of `batch_size`, summed over processes; None when there are none."""
    if not n_pairs:
        return None
    model.eval()
    sums = {k: torch.zeros(()) for k in stats}
    mine = list(range(acc.process_index, n_pairs, acc.num_processes))
    with torch.no_grad():
        for i in range(0, len(mine), batch_size):
            add_into(sums, terms(mine[i : i + batch_size]))
    model.train()
    return reduce_sums(acc, sums)
