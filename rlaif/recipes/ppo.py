"""PPO recipe (`rlaif train ppo`): a policy with a value head learns to raise a reward — a reward model's score or
the judge's verdict (d-RLAIF) — minus a per-token KL penalty to a frozen reference (Ziegler et al. 2019; Stiennon
et al. 2020; Ouyang et al. 2022), with PPO's clipped objectives (Schulman et al. 2017) and GAE (Schulman et al. 2016).

setup: prompts; policy + value head (optionally LoRA), reference, reward source → loop: one step is one PPO
iteration — a rollout (sample, score, log-probs, values, advantages) and then `ppo_epochs` passes over it in
`num_mini_batches` mini-batches, one optimizer step each; one metrics row per iteration, periodic evaluation on
held-out prompts and checkpoints between iterations → save: OUT/model. Rollouts are seeded by (seed, step), so a
run resumed from a checkpoint samples what the uninterrupted run sampled.

Metrics per step: `score` (mean raw score, before shaping), `reward` (mean Σ_t r_t per response: shaped score
minus β·KL), `kl` (mean Σ_t log π_old/π_ref per response), `kl_coef` (β of this rollout), `entropy` (of π_old per
response token), `loss` / `policy_loss` / `value_loss`, `clipfrac` and `approx_kl` (½·mean (log π − log π_old)²)
over all update tokens, `response_length`, `rollout_tokens_per_s` (response tokens sampled / rollout time) and
`update_tokens_per_s` (prompt + response tokens through forward and backward over all epochs / update time),
`tokens` (those tokens: the update's, as every method's `tokens` counts the tokens its optimizer steps encoded) and
`step_s` (the rollout and the update).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config.ppo import PPOTrainConfig
from ..policy.sampling import PolicySampler, sample
from ..rewards.sources import check_reward_source, make_reward_source
from ..train.data import step_indices
from ..train.losses import ppo_policy_loss, ppo_value_loss
from ..train.models import load_reference, load_tokenizer, load_trainable, reference_mode
from ..train.ppo import (
    EVAL_POLICY,
    EVAL_REFERENCE,
    ORDER,
    POLICY,
    REFERENCE,
    PolicyWithValueHead,
    gae,
    kl_penalised_rewards,
    make_kl_controller,
    masked_whiten,
    policy_outputs,
    rollout_prompts,
    shape_scores,
    stream_seed,
)
from ..train.rollout import RolloutBatch, build_batch, by_row_chunks, entropy, response_token_logps
from ..train.run import (
    Check,
    RunLog,
    clip_gradients,
    frozen_dtype,
    make_optimizer,
    prepare_for_training,
    reduce_sums,
    start_run,
    with_cpu_threads,
)


@dataclass
class Rollout:
    batch: RolloutBatch
    logps: torch.Tensor  # log π_old(a_t|s_t), [N, T]
    values: torch.Tensor  # V_old(s_t)
    advantages: torch.Tensor
    returns: torch.Tensor


def draw(
    acc,
    model,
    reference,
    scorer,
    tokenizer,
    prompts: list,
    config: PPOTrainConfig,
    seeds: tuple[int, int],
    sampler: PolicySampler,
    version: int,
):
    """Sample `samples_per_prompt` responses per prompt from the policy (and, for a judge in reference mode, one
    per prompt from the reference policy) and score them: (samples, raw scores). `version` (the step) tells the
    sampler when the policy's weights changed."""
    lm = acc.unwrap_model(model).policy
    sampling = config.sampling
    k = config.samples_per_prompt
    with acc.autocast():
        groups = sampler(lm, tokenizer, prompts, k, seed=seeds[0], version=version)
        references = None
        if scorer.needs_reference:
            with reference_mode(lm, reference) as ref:
                references = [
                    g[0] for g in sample(ref, tokenizer, prompts, 1, sampling, seed=seeds[1]) for _ in range(k)
                ]
    samples = [s for g in groups for s in g]
    return samples, torch.tensor(scorer(samples, references), dtype=torch.float32)


def forward_old(acc, model, reference, batch: RolloutBatch, size: int):
    """log π_old, V_old, entropy and log π_ref of every response token, without gradients, in row chunks."""
    unwrapped = acc.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()

    def policy_side(b):
        logits, logps, values = policy_outputs(unwrapped, b)
        return logps, values, entropy(logits)

    def reference_side(b):
        with reference_mode(unwrapped.policy, reference) as ref:
            return (response_token_logps(ref, b),)

    with torch.no_grad(), acc.autocast():
        logps, values, ent = by_row_chunks(policy_side, batch, size)
        (ref_logps,) = by_row_chunks(reference_side, batch, size)
    unwrapped.train(was_training)
    return logps, values, ent, ref_logps


def collect(
    acc,
    model,
    reference,
    scorer,
    tokenizer,
    prompts: list,
    config: PPOTrainConfig,
    kl_coef: float,
    step: int,
    sampler: PolicySampler,
) -> tuple[Rollout, dict]:
    """One rollout: samples, scores, per-token KL-penalised rewards, GAE advantages and returns."""
    rank = acc.process_index
    seeds = (stream_seed(config.seed, step, rank, POLICY), stream_seed(config.seed, step, rank, REFERENCE))
    samples, raw = draw(acc, model, reference, scorer, tokenizer, prompts, config, seeds, sampler, step)
    batch = build_batch(samples, tokenizer.pad_token_id).to(acc.device)
    n = len(samples)
    micro = n // (config.num_mini_batches * config.grad_accum)
    logps, values, ent, ref_logps = forward_old(acc, model, reference, batch, micro)
    mask = batch.response_mask
    finished = torch.tensor([s.finished for s in samples])
    scores = shape_scores(acc, raw, finished, config.reward).to(acc.device)
    rewards, kl = kl_penalised_rewards(scores, logps, ref_logps, mask, kl_coef)
    advantages, returns = gae(rewards, values, mask, config.loss.gamma, config.loss.lam)
    if config.loss.whiten_advantages:
        advantages = masked_whiten(advantages, mask)
    lengths = mask.sum(dim=1)
    stats = {
        "responses": torch.tensor(float(n)),
        "score": raw.sum(),
        "score_sq": (raw**2).sum(),
        "reward": rewards.sum(),
        "kl": kl.sum(),
        "response_tokens": lengths.sum(),
        "finished": finished.float().sum(),
        "entropy": (ent * mask).sum(),
        "value": (values * mask).sum(),
        "return": (returns * mask).sum(),
    }
    return Rollout(batch, logps, values, advantages, returns), stats


def update(acc, model, optimizer, scheduler, rollout: Rollout, config: PPOTrainConfig, step: int, check: Check) -> dict:
    """`ppo_epochs` passes over the rollout in `num_mini_batches` shuffled mini-batches, an optimizer step each;
    `check` stops the run before one whose loss or gradient norm is not finite is applied."""
    n = rollout.batch.response_mask.shape[0]
    per_mini = n // config.num_mini_batches
    per_micro = per_mini // config.grad_accum
    order = torch.Generator().manual_seed(stream_seed(config.seed, step, acc.process_index, ORDER))
    loss_cfg = config.loss
    sums = {
        k: torch.zeros(())
        for k in (
            "loss",
            "policy_loss",
            "value_loss",
            "clipped",
            "value_clipped",
            "approx_kl",
            "tokens",
            "seen_tokens",
            "grad_norm",
            "updates",
        )
    }
    for _ in range(config.ppo_epochs):
        perm = torch.randperm(n, generator=order).to(rollout.batch.input_ids.device)
        for m in range(config.num_mini_batches):
            mini = perm[m * per_mini : (m + 1) * per_mini]
            tokens = rollout.batch.response_mask[mini].sum().clamp(min=1)
            mini_loss = torch.zeros(())
            for j in range(config.grad_accum):
                rows = mini[j * per_micro : (j + 1) * per_micro]
                b = rollout.batch.rows(rows)
                width = b.response_mask.shape[1]
                old_logps, old_values = rollout.logps[rows, :width], rollout.values[rows, :width]
                sync = j == config.grad_accum - 1  # all-reduce gradients on the last micro-batch only
                with contextlib.nullcontext() if sync else acc.no_sync(model):
                    _, logps, values = policy_outputs(model, b)
                    mask = b.response_mask
                    pg, pg_clipped = ppo_policy_loss(
                        logps, old_logps, rollout.advantages[rows, :width], loss_cfg.clip_range
                    )
                    vf, vf_clipped = ppo_value_loss(
                        values, old_values, rollout.returns[rows, :width], loss_cfg.value_clip_range
                    )
                    loss = ((pg + loss_cfg.vf_coef * vf) * mask).sum()
                    acc.backward(loss / tokens)
                mini_loss = mini_loss + loss.detach().float().cpu()
                with torch.no_grad():
                    for key, value in (
                        ("loss", loss),
                        ("policy_loss", (pg * mask).sum()),
                        ("value_loss", (vf * mask).sum()),
                        ("clipped", (pg_clipped * mask).sum()),
                        ("value_clipped", (vf_clipped * mask).sum()),
                        ("approx_kl", (0.5 * (logps - old_logps) ** 2 * mask).sum()),
                        ("tokens", mask.sum()),
                        ("seen_tokens", b.attention_mask.sum()),
                    ):
                        sums[key] = sums[key] + value.detach().float().cpu()
            grad_norm = clip_gradients(acc, model, config.optim.max_grad_norm)
            check(lr=scheduler.get_last_lr()[0], loss=mini_loss, grad_norm=grad_norm)
            sums["grad_norm"] += grad_norm or 0.0
            sums["updates"] += 1
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    return sums


def summarise(r: dict, u: dict) -> dict:
    n, tokens, updated = max(r["responses"], 1), max(r["response_tokens"], 1), max(u["tokens"], 1)
    mean = r["score"] / n
    return {
        "loss": u["loss"] / updated,
        "policy_loss": u["policy_loss"] / updated,
        "value_loss": u["value_loss"] / updated,
        "score": mean,
        "score_std": max(r["score_sq"] / n - mean**2, 0.0) ** 0.5,
        "reward": r["reward"] / n,
        "kl": r["kl"] / n,
        "entropy": r["entropy"] / tokens,
        "clipfrac": u["clipped"] / updated,
        "value_clipfrac": u["value_clipped"] / updated,
        "approx_kl": u["approx_kl"] / updated,
        "response_length": r["response_tokens"] / n,
        "finished": r["finished"] / n,
        "value_mean": r["value"] / tokens,
        "return_mean": r["return"] / tokens,
        # every process clips the same all-reduced gradient: the sums over processes share one factor
        "grad_norm": u["grad_norm"] / max(u["updates"], 1),
    }


def evaluate(
    acc, model, reference, scorer, tokenizer, prompts: list, config: PPOTrainConfig, sampler: PolicySampler, step: int
) -> dict:
    """Mean raw score, KL to the reference and length of fresh samples on the held-out prompts (the same random
    draw at every evaluation, so rows compare)."""
    if not prompts:
        return {}
    rank, world = acc.process_index, acc.num_processes
    mine = prompts[rank::world]
    sums = {k: torch.zeros(()) for k in ("responses", "score", "kl", "response_tokens")}
    for i in range(0, len(mine), config.eval_batch_size):
        chunk = mine[i : i + config.eval_batch_size]
        seeds = (stream_seed(config.seed, i, rank, EVAL_POLICY), stream_seed(config.seed, i, rank, EVAL_REFERENCE))
        samples, raw = draw(acc, model, reference, scorer, tokenizer, chunk, config, seeds, sampler, step)
        batch = build_batch(samples, tokenizer.pad_token_id).to(acc.device)
        logps, _, _, ref_logps = forward_old(acc, model, reference, batch, config.eval_batch_size)
        mask = batch.response_mask
        for key, value in (
            ("responses", torch.tensor(float(len(samples)))),
            ("score", raw.sum()),
            ("kl", ((logps - ref_logps) * mask).sum()),
            ("response_tokens", mask.sum()),
        ):
            sums[key] = sums[key] + value.float().cpu()
    s = reduce_sums(acc, sums)
    n = max(s["responses"], 1)
    return {"eval_score": s["score"] / n, "eval_kl": s["kl"] / n, "eval_response_length": s["response_tokens"] / n}


@with_cpu_threads
def train(config: PPOTrainConfig) -> Path:
    """Run (or resume) a PPO training run; returns the directory of the final model."""
    # -- setup ----------------------------------------------------------------------------------------------
    check_reward_source(config.reward)  # a judge that cannot give the reward is refused before any model loads
    acc, resume = start_run(config)
    out = Path(config.output_dir)
    tokenizer = load_tokenizer(config.model, resume)
    train_prompts, eval_prompts, too_long = rollout_prompts(config, tokenizer)
    world = acc.num_processes
    per_step = config.batch_size * world
    if len(train_prompts) < per_step:
        raise ValueError(f"{len(train_prompts)} training prompts are fewer than one rollout of {per_step}")
    steps = config.max_steps or max(1, int(len(train_prompts) // per_step * config.num_epochs))

    lm = load_trainable(config.model, config.lora, tokenizer, "lm", resume)
    # under LoRA the reference is the base model with the adapters switched off
    reference = None if config.lora else load_reference(config.model, tokenizer, acc.device, frozen_dtype(acc))
    prepare_for_training(lm, config)
    model = PolicyWithValueHead(lm, lm.config.get_text_config().hidden_size)
    if resume:
        model.load_value_head(resume)
    model.to(acc.device)
    updates = steps * config.ppo_epochs * config.num_mini_batches
    optimizer, scheduler = make_optimizer(model, config.optim, updates)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    log = RunLog(acc, config, tokenizer, resume, keep=config.save_total_limit)
    kl_ctl = make_kl_controller(config.kl)
    kl_ctl.value = log.state.get("kl_coef", kl_ctl.value)
    scorer = make_reward_source(config.reward, acc.device, frozen_dtype(acc), config.seed)
    # transformers generate, or one vLLM engine that gets the policy's weights before each rollout
    sampler = PolicySampler(config.sampling, out / f".vllm-weights-{acc.process_index}", config.seed)
    if acc.is_main_process:
        print(
            f"ppo: {len(train_prompts)} training prompts, {len(eval_prompts)} held out, {too_long} too long; "
            f"{steps} iterations of {per_step} prompts x {config.samples_per_prompt} samples, "
            f"{config.ppo_epochs} epochs x {config.num_mini_batches} mini-batches"
            + (f"; resuming at step {log.start}" if log.start else ""),
            flush=True,
        )

    # -- loop -----------------------------------------------------------------------------------------------
    model.train()
    for step in range(log.start, steps):
        t0 = time.perf_counter()
        prompts = [train_prompts[i] for i in step_indices(step, len(train_prompts), per_step, config.seed)]
        failed_before = scorer.failed
        kl_coef = kl_ctl.value
        done = step + 1
        with log.sampling(done, steps):
            rollout, r_sums = collect(
                acc,
                model,
                reference,
                scorer,
                tokenizer,
                prompts[acc.process_index :: world],
                config,
                kl_coef,
                step,
                sampler,
            )
        r_sums["judge_failed"] = torch.tensor(float(scorer.failed - failed_before))
        t1 = time.perf_counter()
        lr = scheduler.get_last_lr()[0]
        u_sums = update(acc, model, optimizer, scheduler, rollout, config, step, log.checks(done, steps))
        t2 = time.perf_counter()

        r, u = reduce_sums(acc, r_sums), reduce_sums(acc, u_sums)
        row = summarise(r, u)
        kl_ctl.update(row["kl"], int(r["responses"]))
        row.update(
            kl_coef=kl_coef,
            lr=lr,
            judge_failed=int(r["judge_failed"]),
            rollout_tokens_per_s=r["response_tokens"] / (t1 - t0),
            update_tokens_per_s=u["seen_tokens"] / (t2 - t1),
            rollout_time_s=t1 - t0,
            update_time_s=t2 - t1,
            step_s=t2 - t0,
            tokens=int(u["seen_tokens"]),
            epoch=done * per_step / len(train_prompts),
        )
        if log.evaluates(done, steps):
            with log.sampling(done, steps):
                row.update(evaluate(acc, model, reference, scorer, tokenizer, eval_prompts, config, sampler, done))
        log.end_step(
            model,
            done,
            steps,
            row,
            f"score {row['score']:.4f} kl {row['kl']:.4f} loss {row['loss']:.4f} len {row['response_length']:.1f}",
            {"kl_coef": kl_ctl.value},
        )

    # -- save -----------------------------------------------------------------------------------------------
    sampler.close()
    return log.finish(model)
