"""Iterative (online) DPO with self-feedback (`rlaif loop`; over 400 lines because it is one recipe, read down).

The policy learns from labels of its own samples.

Each iteration k (files in OUT/iter-K/): the current policy samples `samples_per_prompt` responses per training
prompt (seeded by seed and k) → pairs.jsonl; the judge labels every pair in both orders under the constitution
through the ordinary labelling job (labels/, resumed after a kill) — with `backend: policy` the current policy is
its own judge (Yuan et al. 2024, Self-Rewarding Language Models) — or a score judge rates each sample once and
the pairs are binarised from the scores (loop_feedback.py); the feedback source picks the labels that train
(human_queue.jsonl holds the pairs for people, who answer it live with feedback.annotate: loop_people.py) →
`steps_per_iteration` DPO steps against the reference (the policy the iteration started from, or the starting
policy) → evaluation on held-out prompts → a row of OUT/iterations.jsonl and OUT/checkpoint-STEP/. Labelling
fresh samples of the current policy every round is what makes DPO on-policy (Xu et al. 2023, "Some things are
more CRINGE than others", iterative DPO; Guo et al. 2024, OAIF). One AdamW and schedule run over all
iterations' steps, one continuous run as in OAIF.

Evaluation per iteration: the judge's win rate of the current policy against the starting policy's samples on
the held-out prompts (and a fixed `eval_judge`'s, so a self-judge cannot inflate it by preferring its own style),
the KL to the reference estimated on policy samples, mean_y Σ_t [log π(y_t) − log π_ref(y_t)], the labels'
position consistency and counts, and the share of samples containing `track_keyword`.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from pathlib import Path
from typing import Optional

from ..config.judge import load_judge_config
from ..config.loop import LoopConfig, judge_mode_problems
from ..config.yamlfile import FieldErrors
from ..constitution import GENERIC, load_constitution
from ..data.prompts import read_prompts, split_prompts
from ..eval.winrate import judge_winrate
from ..files import write_jsonl
from ..judges.base import kind_of
from ..judges.registry import load_judge
from ..models import prefix
from ..policy.generate import pair_rows
from ..policy.sampling import PolicySampler, derived_seed
from ..train.checkpoint import list_checkpoints
from ..train.data import encode_pairs, micro_batches, step_indices
from ..train.dpo import dpo_step, precompute_reference
from ..train.losses import dpo_loss_fn
from ..train.metrics import read_metrics, truncate_after
from ..train.models import load_model, load_reference, load_tokenizer, load_trainable, share_prefix
from ..train.rollout import kl_estimate
from ..train.run import RunLog, make_optimizer, prepare_for_training, start_run, with_cpu_threads
from .loop_feedback import Labelled, feedback_step, fmt, iteration_feedback  # noqa: F401 (iteration_feedback: API)
from .loop_people import People, people_in_the_loop

ITERATIONS = "iterations.jsonl"
BASELINE = "baseline_samples.jsonl"


# -- prompts and seeds --------------------------------------------------------------------------------------------
def iteration_prompts(train: list, n: Optional[int], seed: int, k: int) -> list:
    if n is None or n >= len(train):
        return list(train)
    return random.Random(derived_seed(seed, "prompts", k)).sample(train, n)


def keyword_share(texts: list[str], keyword: Optional[str]) -> Optional[float]:
    if not keyword or not texts:
        return None
    return sum(keyword.lower() in t.lower() for t in texts) / len(texts)


# -- evaluation ------------------------------------------------------------------------------------------------------
def evaluate(run: LoopRun, reference, baseline: list[str], seed: int, version: int) -> dict:
    """On the held-out prompts: the win rate against the starting policy's samples under the training judge and
    the eval judge, the KL to the reference on the policy's samples, and the keyword share."""

    config, prompts, (judge, eval_judge) = run.config, run.eval_prompts, run.judges
    with run.acc.autocast():
        drawn = run.sampler(run.model, run.tokenizer, prompts, 1, seed=seed, version=version)
        texts = [g[0].text for g in drawn]
        win = judge_winrate(judge, run.constitution, prompts, texts, baseline, seed=config.seed)
        eval_win = (
            judge_winrate(eval_judge, run.constitution, prompts, texts, baseline, seed=config.seed)
            if eval_judge is not None
            else None
        )
        kl = kl_estimate(
            run.model, reference, [g[0] for g in drawn], run.tokenizer.pad_token_id, config.eval_batch_size
        )
    out = {
        "win_rate": win.win_rate,
        "winrate": win.to_dict(),
        "eval_win_rate": eval_win.win_rate if eval_win else None,
        "eval_winrate": eval_win.to_dict() if eval_win else None,
        "kl": kl,
    }
    if config.track_keyword:
        out.update(
            keyword=config.track_keyword,
            keyword_share=keyword_share(texts, config.track_keyword),
            keyword_share_start=keyword_share(baseline, config.track_keyword),
        )
    return out


# -- checkpoints ----------------------------------------------------------------------------------------------------
def prune(out: Path, keep: Optional[int], protect: Optional[int]) -> None:
    """Keep the newest `keep` checkpoints, and checkpoint-`protect` (the reference of a resumed iteration)."""
    if keep is None:
        return
    for step, path in list_checkpoints(out)[:-keep]:
        if step != protect:
            shutil.rmtree(path, ignore_errors=True)


def iteration_reference(run: LoopRun, first: int):
    """The DPO reference of the iteration whose first step is `first`: None under LoRA (adapters off), the
    starting policy, or (previous) the policy at step `first`: the policy itself when the iteration starts now,
    else its checkpoint (a run resumed mid-iteration)."""
    config, device = run.config, run.acc.device
    if config.lora is not None:
        return None
    if config.reference == "initial":
        return run.initial
    if run.step == first:
        reference = copy.deepcopy(run.model)
    elif first == 0:
        reference = load_reference(config.model, run.tokenizer, device)
    else:
        path = run.out / f"checkpoint-{first}"
        if not path.exists():
            raise FileNotFoundError(f"{path} (this iteration's reference) is gone; resume needs it")
        reference = load_model(config.model, run.tokenizer, "lm", path=path).to(device)
    if run.layout != "two":
        prefix.enable(reference)
    reference.eval().requires_grad_(False)
    return reference


# -- the run ---------------------------------------------------------------------------------------------------
class LoopRun:
    """The loop's setup, which its steps share: accelerator and run directory, prompts (a seeded held-out split),
    judges and constitution, the policy (and the starting policy when it is the reference), the optimiser over all
    iterations' steps, and the resume point.

    `policy` is what trains (wrapped by accelerate under DDP), `model` the same policy unwrapped (what samples and,
    with `backend: policy`, judges); `initial` is the starting policy when it is the reference (reference:
    initial, no LoRA), else None; `step` the optimizer step the policy is at (the resume point, then each
    iteration's last). Under several processes the main process samples, labels and evaluates while the others
    wait, and only it holds judges; the DPO steps are data-parallel (each process takes its share of every global
    batch)."""

    def __init__(self, config: LoopConfig):

        self.config, self.out = config, Path(config.output_dir)
        judge_config = load_judge_config(config.judge)
        problems = judge_mode_problems(config, judge_config)
        if problems:
            raise FieldErrors(problems)
        self.judge_kind = kind_of(judge_config)  # pairwise labels or d-RLAIF ratings; every process follows it
        self.acc, resume = start_run(config)
        self.main = main = self.acc.is_main_process
        self.train_prompts, self.eval_prompts = split_prompts(
            read_prompts(config.prompts), config.eval_prompts, derived_seed(config.seed, "split")
        )
        self.constitution = load_constitution(config.constitution) if config.constitution else GENERIC
        self.judges = (
            load_judge(judge_config) if main else None,
            load_judge(config.eval_judge) if config.eval_judge and main else None,
        )
        self.tokenizer = load_tokenizer(config.model, resume)
        policy = load_trainable(config.model, config.lora, self.tokenizer, "lm", resume)
        self.initial = (
            load_reference(config.model, self.tokenizer, self.acc.device)
            if not config.lora and config.reference == "initial"
            else None
        )
        prepare_for_training(policy, config)
        policy.to(self.acc.device)
        # every later reference is the policy's copy or checkpoint: the same model type and attention
        self.layout, self.sharing = share_prefix(config.prefix_sharing, [policy, self.initial], config.packing)
        optimizer, scheduler = make_optimizer(policy, config.optim, config.iterations * config.steps_per_iteration)
        self.policy, self.optimizer, self.scheduler = self.acc.prepare(policy, optimizer, scheduler)
        self.model = self.acc.unwrap_model(self.policy)
        self.log = RunLog(self.acc, config, self.tokenizer, resume, keep=None)  # prune() keeps a reference
        self.step = self.log.start
        if main:
            truncate_after(self.out / ITERATIONS, self.step)  # rows of iterations finished before the checkpoint
        # transformers generate, or one vLLM engine that gets the policy's weights when they changed
        self.sampler = PolicySampler(config.sampling, self.out / ".vllm-weights", config.seed)
        self.loss_fn = dpo_loss_fn(config.loss)


def baseline_samples(run: LoopRun, seed: int) -> list[str]:
    """The starting policy's samples on the held-out prompts, the baseline of every win rate (drawn once, kept in
    OUT/baseline_samples.jsonl); empty on the other processes."""

    path = run.out / BASELINE
    if not run.main:
        return []
    if path.exists():
        return [json.loads(line)["text"] for line in path.read_text().splitlines()]
    starting = (
        run.model
        if run.step == 0
        else (
            run.initial if run.initial is not None else load_reference(run.config.model, run.tokenizer, run.acc.device)
        )
    )
    with run.acc.autocast():
        drawn = run.sampler(starting, run.tokenizer, run.eval_prompts, 1, seed=seed, version=0)  # step-0 weights
    baseline = [g[0].text for g in drawn]
    write_jsonl([{"prompt": p, "text": t} for p, t in zip(run.eval_prompts, baseline)], path)
    return baseline


# -- one iteration, in four steps -------------------------------------------------------------------------------
def sample_pairs(run: LoopRun, k: int, first: int, it_dir: Path) -> list[dict]:
    """1. The policy samples `samples_per_prompt` responses per prompt → OUT/iter-K/pairs.jsonl, every pair of
    them with their sample indices, as `rlaif generate` writes (already there when the iteration is resumed).
    Returns the pair rows."""

    config, pairs_path = run.config, it_dir / "pairs.jsonl"
    if run.main and not pairs_path.exists():
        if run.step > first:
            raise FileNotFoundError(f"{pairs_path} is missing: the samples iteration {k} trained on are gone")
        prompts = iteration_prompts(run.train_prompts, config.prompts_per_iteration, config.seed, k)
        with run.acc.autocast():
            drawn = run.sampler(
                run.model,
                run.tokenizer,
                prompts,
                config.samples_per_prompt,
                seed=derived_seed(config.seed, "sample", k),
                version=first,
            )
        rows, _ = pair_rows(prompts, drawn, {"iteration": k, "policy_step": first})
        write_jsonl(rows, pairs_path)
    run.acc.wait_for_everyone()
    return [json.loads(line) for line in pairs_path.read_text(encoding="utf-8").splitlines() if line.strip()]


def dpo_steps(run: LoopRun, k: int, first: int, reference, train_pairs: list, it_dir: Path) -> None:
    """3. `steps_per_iteration` DPO steps on the iteration's pairs against its reference (log-probs computed once,
    cached with the iteration), checkpointing every save_steps inside the iteration."""
    config, acc, log = run.config, run.acc, run.log
    last, world = first + config.steps_per_iteration, acc.num_processes
    total = config.iterations * config.steps_per_iteration
    pad_id = run.tokenizer.pad_token_id
    ref_table = precompute_reference(
        acc,
        run.policy,
        reference,
        train_pairs,
        config.eval_batch_size,
        pad_id,
        config.max_length,
        it_dir / "reference_logps.pt",
        run.layout,
    )
    run.policy.train()
    gb = min(config.batch_size * config.grad_accum * world, len(train_pairs))
    gb -= gb % (config.grad_accum * world)  # whole micro-batches on every process
    order_seed = derived_seed(config.seed, "order", k) % 2**31
    for step in range(max(run.step, first), last):
        t_step = time.perf_counter()
        micro = micro_batches(
            step_indices(step - first, len(train_pairs), gb, order_seed), acc.process_index, world, config.grad_accum
        )
        done = step + 1
        row = dpo_step(
            acc,
            run.policy,
            reference,
            run.optimizer,
            run.scheduler,
            train_pairs,
            ref_table,
            micro,
            config,
            run.loss_fn,
            pad_id,
            log.checks(done, total),
            run.layout,
        )
        row.update(iteration=k, epoch=(done - first) * gb / len(train_pairs), step_s=time.perf_counter() - t_step)
        log.metrics.log(done, row)
        if done % config.save_steps == 0 and done != last:
            log.save(run.policy, done, {"total_steps": total, "iteration": k, "iteration_done": False})
            if run.main:
                prune(run.out, config.save_total_limit, first if config.reference == "previous" else None)


def iteration_summary(
    run: LoopRun,
    k: int,
    reference,
    rows: list,
    labelled: Labelled,
    trained: tuple[int, int],
    baseline: list[str],
    eval_seed: int,
) -> dict:
    """4. The iteration's row of OUT/iterations.jsonl: its labels (the feedback step's fields) and losses, and the
    evaluation on the held-out prompts. `trained`: (pairs trained on, pairs too long)."""
    config, last = run.config, k * run.config.steps_per_iteration
    steps_rows = [r for r in read_metrics(run.out) if r.get("iteration") == k]
    summary = {
        "iteration": k,
        "step": last,
        **labelled.fields,
        "train_pairs": trained[0],
        "too_long": trained[1],
        "feedback": labelled.feedback.counts,
        "loss_first": steps_rows[0]["loss"] if steps_rows else None,
        "loss_last": steps_rows[-1]["loss"] if steps_rows else None,
        "reference": "initial" if config.lora else config.reference,
        **evaluate(run, reference, baseline, eval_seed, last),
    }
    if config.track_keyword:
        summary["keyword_share_samples"] = keyword_share(
            [r[x] for r in rows for x in ("response_a", "response_b")], config.track_keyword
        )
    return summary


# -- the recipe -----------------------------------------------------------------------------------------------------
@with_cpu_threads
def train(config: LoopConfig) -> Path:
    """Run (or resume) the loop; returns the directory of the final model."""
    # -- setup ----------------------------------------------------------------------------------------------
    run = LoopRun(config)
    S = config.steps_per_iteration
    eval_seed = derived_seed(config.seed, "eval")
    baseline = baseline_samples(run, eval_seed)
    if run.main:
        print(
            f"loop: {len(run.train_prompts)} training prompts, {len(run.eval_prompts)} held out; "
            f"{config.iterations} iterations of {S} steps on {run.acc.num_processes} process(es); {run.sharing}"
            + (f"; resuming at step {run.step}" if run.step else ""),
            flush=True,
        )

    # -- loop (people inside it, when feedback.annotate says so, for its whole length) -------------------------
    with people_in_the_loop(config, run.main) as people:
        for k in range(run.step // S + 1, config.iterations + 1):
            iteration(run, k, people, baseline, eval_seed)

    # -- save -----------------------------------------------------------------------------------------------
    run.sampler.close()
    for j in run.judges:
        if j is not None:
            j.close()
    return run.log.finish(run.policy)


def iteration(run: LoopRun, k: int, people: Optional[People], baseline: list[str], eval_seed: int) -> None:
    """Iteration k: sample, label (and people's answers), DPO steps, its row of iterations.jsonl, the checkpoint."""
    config, S = run.config, run.config.steps_per_iteration
    total = config.iterations * S
    t0 = time.perf_counter()
    first, last, it_dir = (k - 1) * S, k * S, run.out / f"iter-{k}"
    reference = iteration_reference(run, first)
    with run.log.sampling(first + 1, total):
        rows = sample_pairs(run, k, first, it_dir)
    labelled = feedback_step(run, k, first, it_dir, rows, people)
    train_pairs, too_long = encode_pairs(run.tokenizer, labelled.feedback.train, config.max_length, whole=False)
    if len(train_pairs) < config.grad_accum * run.acc.num_processes:
        raise ValueError(f"iteration {k}: {len(train_pairs)} usable pairs (feedback: {labelled.feedback.counts})")
    dpo_steps(run, k, first, reference, train_pairs, it_dir)
    if run.main:  # the other processes wait at the checkpoint
        with run.log.sampling(last, total):
            summary = iteration_summary(
                run, k, reference, rows, labelled, (len(train_pairs), too_long), baseline, eval_seed
            )
        summary["time_s"] = round(time.perf_counter() - t0, 3)
        with open(run.out / ITERATIONS, "a", encoding="utf-8") as f:  # before the checkpoint that marks it done
            f.write(json.dumps(summary) + "\n")
        print(_summary(summary, config.iterations, labelled.phrase), flush=True)
    run.log.save(run.policy, last, {"total_steps": total, "iteration": k, "iteration_done": True})
    if run.main:
        prune(run.out, config.save_total_limit, None)
    run.step = last


def _summary(row: dict, iterations: int, labels: str) -> str:
    f = fmt
    win = row["winrate"]
    line = (
        f"iteration {row['iteration']}/{iterations}: {labels}, {row['train_pairs']} trained on; loss "
        f"{f(row['loss_first'], '.4f')} -> {f(row['loss_last'], '.4f')}; win rate vs start {f(row['win_rate'])} "
        f"[{f(win['ci_low'])}, {f(win['ci_high'])}]"
    )
    if row["eval_winrate"] is not None:
        line += f" (eval judge {f(row['eval_win_rate'])})"
    line += f"; KL to reference {f(row['kl'])}"
    if "keyword_share" in row:
        line += (
            f"; '{row['keyword']}' in {f(row['keyword_share'])} of samples (start "
            f"{f(row['keyword_share_start'])}, this iteration's pairs {f(row['keyword_share_samples'])})"
        )
    return line
