"""Iterative (online) DPO with self-feedback (`rlaif loop`): the policy learns from labels of its own samples.

Each iteration k (files in OUT/iter-K/): the current policy samples two responses per training prompt (seeded by
seed and k) → pairs.jsonl; the judge labels them in both orders under the constitution through the ordinary
labelling job (labels/, resumed after a kill) — with `backend: policy` the current policy is its own judge
(Yuan et al. 2024, Self-Rewarding Language Models); the feedback source picks the labels that train
(human_queue.jsonl holds the pairs for people) → `steps_per_iteration` DPO steps against the reference (the
policy the iteration started from, or the starting policy) → evaluation on held-out prompts → a row of
OUT/iterations.jsonl and OUT/checkpoint-STEP/. Labelling fresh samples of the current policy every round is what
makes DPO on-policy (Xu et al. 2023, "Some things are more CRINGE than others", iterative DPO; Guo et al. 2024,
OAIF). One AdamW and schedule run over all iterations' steps, one continuous run as in OAIF.

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

import torch

from . import make_accelerator, make_optimizer, prepare_for_training, prepare_run_dir, save_final, with_cpu_threads
from .dpo import dpo_step, precompute_reference
from ..train.checkpoint import Checkpointer, list_checkpoints
from ..config.loop import LoopConfig
from ..config.run import PairsConfig
from ..train.data import encode_pairs, micro_batches, read_feedback, step_indices
from ..train.losses import dpo_loss_fn
from ..train.metrics import MetricsLog, read_metrics, truncate_after
from ..data.prompts import split_prompts
from ..train.models import add_lora, load_model, load_tokenizer, reference_mode
from ..train.ppo import build_batch, response_token_logps
from ..policy.sampling import PolicySampler, derived_seed

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


# -- the KL estimate ----------------------------------------------------------------------------------------------
@torch.no_grad()
def kl_estimate(policy, reference, samples, pad_id: int, batch_size: int) -> float:
    """KL(π‖π_ref) per response, estimated on samples y ~ π: mean_y Σ_t [log π(y_t) − log π_ref(y_t)]."""
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    total = 0.0
    try:
        for i in range(0, len(samples), batch_size):
            batch = build_batch(samples[i:i + batch_size], pad_id).to(device)
            logps = response_token_logps(policy, batch)
            with reference_mode(policy, reference) as ref:
                logps = logps - response_token_logps(ref, batch)
            total += float((logps * batch.response_mask).sum())
    finally:
        policy.train(was_training)
    return total / len(samples)


# -- labels that train ----------------------------------------------------------------------------------------------
def iteration_feedback(config: LoopConfig, it_dir: Path, k: int, write: bool = True):
    """The iteration's training preferences from its labels through `rlaif.feedback` (ai / human / mixed).
    `write`: write the queue for people and the iteration's human labels (the main process; the others read)."""
    from ..feedback.sources import invalid_input, queue_row
    from ..data.labels import read_labels, write_jsonl
    from ..config.feedback import FeedbackConfig

    fb, labels = config.feedback, it_dir / "labels" / "labels.jsonl"
    queue = it_dir / "human_queue.jsonl"
    if fb.source == "ai":
        source = FeedbackConfig(source="ai", ai=str(labels))
    elif fb.source == "mixed":
        source = FeedbackConfig(source="mixed", ai=str(labels), human=fb.human, queue=str(queue), margin=fb.margin,
                                require_consistent=fb.require_consistent, pending=fb.pending)
    else:  # people label every pair; their labels of this iteration's pairs (by id) train
        if write:
            records = [r for r in read_labels(labels) if not invalid_input(r)]
            write_jsonl((queue_row(r) for r in records), queue)
            ids = {r["id"] for r in records}
            mine = [r for r in read_labels(fb.human) if r.get("id") in ids] if Path(fb.human).exists() else []
            write_jsonl(mine, it_dir / "human_labels.jsonl")
        source = FeedbackConfig(source="human", human=str(it_dir / "human_labels.jsonl"))
    pairs = PairsConfig(soft=config.soft, min_margin=config.min_margin, eval_fraction=0.0)
    try:
        return read_feedback(source, pairs, config.seed, write_queue=write)
    except ValueError as e:
        if fb.source == "ai":
            hint = (" (every label a tie? min_margin: 0 trains on the soft p_a of all of them)"
                    if "tie" in str(e) else "")
            raise ValueError(f"iteration {k}: {e}{hint}") from None
        raise ValueError(f"iteration {k}: {e}. People's labels are needed for the pairs in {queue} (e.g. `rlaif "
                         f"annotate serve --pairs {queue}`, exported into {fb.human}); then run the same command "
                         "again to continue") from None


# -- evaluation ------------------------------------------------------------------------------------------------------
def evaluate(config: LoopConfig, acc, model, reference, tokenizer, judges, constitution, prompts: list,
             baseline: list[str], seed: int, sampler: PolicySampler, version: int) -> dict:
    """On the held-out prompts: the win rate against the starting policy's samples under the training judge and
    the eval judge, the KL to the reference on the policy's samples, and the keyword share."""
    from ..eval.winrate import judge_winrate

    judge, eval_judge = judges
    with acc.autocast():
        drawn = sampler(model, tokenizer, prompts, 1, seed=seed, version=version)
        texts = [g[0].text for g in drawn]
        win = judge_winrate(judge, constitution, prompts, texts, baseline, seed=config.seed)
        eval_win = (judge_winrate(eval_judge, constitution, prompts, texts, baseline, seed=config.seed)
                    if eval_judge is not None else None)
        kl = kl_estimate(model, reference, [g[0] for g in drawn], tokenizer.pad_token_id, config.eval_batch_size)
    out = {"win_rate": win.win_rate, "winrate": win.to_dict(),
           "eval_win_rate": eval_win.win_rate if eval_win else None,
           "eval_winrate": eval_win.to_dict() if eval_win else None, "kl": kl}
    if config.track_keyword:
        out.update(keyword=config.track_keyword, keyword_share=keyword_share(texts, config.track_keyword),
                   keyword_share_start=keyword_share(baseline, config.track_keyword))
    return out


# -- checkpoints ----------------------------------------------------------------------------------------------------
def prune(out: Path, keep: Optional[int], protect: Optional[int]) -> None:
    """Keep the newest `keep` checkpoints, and checkpoint-`protect` (the reference of a resumed iteration)."""
    if keep is None:
        return
    for step, path in list_checkpoints(out)[:-keep]:
        if step != protect:
            shutil.rmtree(path, ignore_errors=True)


def iteration_reference(config: LoopConfig, acc, policy, tokenizer, initial, out: Path, first: int, start: int):
    """The DPO reference of the iteration whose first step is `first`: None under LoRA (adapters off), the
    starting policy, or (previous) the policy at step `first`: the policy itself when the iteration starts now,
    else its checkpoint (a run resumed mid-iteration)."""
    if config.lora is not None:
        return None
    if config.reference == "initial":
        return initial
    if start == first:
        reference = copy.deepcopy(acc.unwrap_model(policy))
    elif first == 0:
        return _starting_model(config, acc, tokenizer)
    else:
        path = out / f"checkpoint-{first}"
        if not path.exists():
            raise FileNotFoundError(f"{path} (this iteration's reference) is gone; resume needs it")
        reference = load_model(config.model, tokenizer, "lm", path=path).to(acc.device)
    reference.eval().requires_grad_(False)
    return reference


def _starting_model(config: LoopConfig, acc, tokenizer):
    model = load_model(config.model, tokenizer, "lm").to(acc.device).eval()
    return model.requires_grad_(False)


# -- the recipe -----------------------------------------------------------------------------------------------------
@with_cpu_threads
def train(config: LoopConfig) -> Path:
    """Run (or resume) the loop; returns the directory of the final model."""
    from accelerate.utils import set_seed

    from ..constitution import load_constitution
    from ..data.prompts import read_prompts
    from ..policy.generate import pair_rows
    from ..data.labels import write_jsonl
    from ..judges.base import load_judge
    from ..labeling.job import GENERIC, label

    # -- setup ----------------------------------------------------------------------------------------------
    acc = make_accelerator(config)
    # Under several processes (DDP) the main process samples, labels and evaluates while the others wait; the
    # DPO steps are data-parallel (each process takes its share of every global batch).
    main = acc.is_main_process
    out = Path(config.output_dir)
    resume = prepare_run_dir(config, acc)
    set_seed(config.seed)
    train_prompts, eval_prompts = split_prompts(read_prompts(config.prompts), config.eval_prompts,
                                                derived_seed(config.seed, "split"))
    constitution = load_constitution(config.constitution) if config.constitution else GENERIC
    judge = load_judge(config.judge) if main else None
    eval_judge = load_judge(config.eval_judge) if config.eval_judge and main else None
    tokenizer = load_tokenizer(config.model, resume)
    pad_id = tokenizer.pad_token_id

    if config.lora:
        policy = add_lora(load_model(config.model, tokenizer, "lm"), config.lora, "lm", path=resume)
        initial = None
    else:
        policy = load_model(config.model, tokenizer, "lm", path=resume)
        initial = _starting_model(config, acc, tokenizer) if config.reference == "initial" else None
    prepare_for_training(policy, config)
    policy.to(acc.device)

    S = config.steps_per_iteration
    steps = config.iterations * S
    optimizer, scheduler = make_optimizer(policy, config.optim, steps)
    policy, optimizer, scheduler = acc.prepare(policy, optimizer, scheduler)
    model = acc.unwrap_model(policy)  # what samples and (backend: policy) judges
    checkpointer = Checkpointer(acc, out, tokenizer)
    start = checkpointer.load(resume)["step"] if resume else 0
    metrics = MetricsLog(out, config.report_to, config.project, config.model_dump(mode="json"), resume_step=start,
                         enabled=main)
    if main:
        truncate_after(out / ITERATIONS, start)  # rows of iterations finished before the checkpoint stay
    loss_fn = dpo_loss_fn(config.loss)
    eval_seed = derived_seed(config.seed, "eval")

    # the starting policy's samples on the held-out prompts: the baseline of every win rate
    # transformers generate, or one vLLM engine that gets the policy's weights when they changed
    sampler = PolicySampler(config.sampling, out / ".vllm-weights", config.seed)
    baseline: list[str] = []
    if not main:
        pass
    elif (out / BASELINE).exists():
        baseline = [json.loads(line)["text"] for line in (out / BASELINE).read_text().splitlines()]
    else:
        starting = model if start == 0 else (initial if initial is not None else
                                             _starting_model(config, acc, tokenizer))
        with acc.autocast():
            drawn = sampler(starting, tokenizer, eval_prompts, 1, seed=eval_seed, version=0)  # step-0 weights
        baseline = [g[0].text for g in drawn]
        write_jsonl([{"prompt": p, "text": t} for p, t in zip(eval_prompts, baseline)], out / BASELINE)
    if main:
        print(f"loop: {len(train_prompts)} training prompts, {len(eval_prompts)} held out; {config.iterations} "
              f"iterations of {S} steps on {acc.num_processes} process(es)"
              + (f"; resuming at step {start}" if start else ""), flush=True)

    # -- loop -----------------------------------------------------------------------------------------------
    for k in range(start // S + 1, config.iterations + 1):
        t0 = time.perf_counter()
        first, last = (k - 1) * S, k * S
        it_dir = out / f"iter-{k}"
        reference = iteration_reference(config, acc, policy, tokenizer, initial, out, first, start)

        # 1. the policy samples two responses per prompt (already on disk when the iteration is resumed)
        pairs_path = it_dir / "pairs.jsonl"
        if main and not pairs_path.exists():
            if start > first:
                raise FileNotFoundError(f"{pairs_path} is missing: the samples iteration {k} trained on are gone")
            prompts = iteration_prompts(train_prompts, config.prompts_per_iteration, config.seed, k)
            with acc.autocast():
                drawn = sampler(model, tokenizer, prompts, 2, seed=derived_seed(config.seed, "sample", k),
                                version=first)
            rows, _ = pair_rows(prompts, drawn, {"iteration": k, "policy_step": first})
            write_jsonl(rows, pairs_path)
        acc.wait_for_everyone()
        rows = [json.loads(line) for line in pairs_path.read_text(encoding="utf-8").splitlines() if line.strip()]

        # 2. the judge labels them (the durable labelling job: a killed iteration resumes its labelling)
        job = None
        if main:
            for j in (judge, eval_judge):
                if hasattr(j, "attach"):  # backend: policy judges with the current weights
                    j.attach(model, tokenizer, name=f"policy@step-{first}")
            with acc.autocast():
                job = label(pairs_path, constitution, judge, it_dir / "labels", seed=config.seed,
                            skip_invalid=True, progress=False)
            feedback = iteration_feedback(config, it_dir, k)
        acc.wait_for_everyone()
        if not main:
            feedback = iteration_feedback(config, it_dir, k, write=False)
        train_pairs, too_long = encode_pairs(tokenizer, feedback.train, config.max_length, whole=False)
        world = acc.num_processes
        if len(train_pairs) < config.grad_accum * world:
            raise ValueError(f"iteration {k}: {len(train_pairs)} usable pairs (feedback: {feedback.counts})")

        # 3. DPO steps on them against the reference (log-probs computed once, cached with the iteration)
        ref_table = precompute_reference(acc, policy, reference, train_pairs, config.eval_batch_size, pad_id,
                                         config.max_length, it_dir / "reference_logps.pt")
        policy.train()
        gb = min(config.batch_size * config.grad_accum * world, len(train_pairs))
        gb -= gb % (config.grad_accum * world)  # whole micro-batches on every process
        order_seed = derived_seed(config.seed, "order", k) % 2**31
        for step in range(max(start, first), last):
            t_step = time.perf_counter()
            micro = micro_batches(step_indices(step - first, len(train_pairs), gb, order_seed), acc.process_index,
                                  world, config.grad_accum)
            row = dpo_step(acc, policy, reference, optimizer, scheduler, train_pairs, ref_table, micro, config,
                           loss_fn, pad_id)
            done = step + 1
            row.update(iteration=k, epoch=(done - first) * gb / len(train_pairs),
                       step_time_s=time.perf_counter() - t_step)
            metrics.log(done, row)
            if done % config.save_steps == 0 and done != last:
                checkpointer.save(policy, done, {"total_steps": steps, "iteration": k, "iteration_done": False})
                if main:
                    prune(out, config.save_total_limit, first if config.reference == "previous" else None)

        # 4. evaluate on the held-out prompts, log the iteration, checkpoint
        if main:  # the other processes wait at the checkpoint
            steps_rows = [r for r in read_metrics(out) if r.get("iteration") == k]
            stats = job.stats
            summary = {
                "iteration": k, "step": last, "pairs": len(rows), "labels_ok": stats["ok"],
                "labels_tie": stats["labels"]["tie"], "labels_failed": stats["failed"],
                "position_consistency": stats["position_consistency"], "train_pairs": len(train_pairs),
                "too_long": too_long, "feedback": feedback.counts,
                "loss_first": steps_rows[0]["loss"] if steps_rows else None,
                "loss_last": steps_rows[-1]["loss"] if steps_rows else None,
                "reference": "initial" if config.lora else config.reference,
                **evaluate(config, acc, model, reference, tokenizer, (judge, eval_judge), constitution, eval_prompts,
                           baseline, eval_seed, sampler, last),
            }
            if config.track_keyword:
                summary["keyword_share_samples"] = keyword_share(
                    [r[x] for r in rows for x in ("response_a", "response_b")], config.track_keyword)
            summary["time_s"] = round(time.perf_counter() - t0, 3)
            with open(out / ITERATIONS, "a", encoding="utf-8") as f:  # before the checkpoint that marks it done
                f.write(json.dumps(summary) + "\n")
            print(_summary(summary, config.iterations), flush=True)
        checkpointer.save(policy, last, {"total_steps": steps, "iteration": k, "iteration_done": True})
        if main:
            prune(out, config.save_total_limit, None)
        start, reference = last, None  # the next iteration's reference replaces this one

    # -- save -----------------------------------------------------------------------------------------------
    metrics.close()
    sampler.close()
    for j in (judge, eval_judge):
        if j is not None:
            j.close()
    return save_final(acc, policy, tokenizer, out)


def _summary(row: dict, iterations: int) -> str:
    def f(x, spec=".3f"):
        return "n/a" if x is None else format(x, spec)

    win = row["winrate"]
    line = (f"iteration {row['iteration']}/{iterations}: {row['pairs']} pairs labelled (ok {row['labels_ok']}, "
            f"tie {row['labels_tie']}, failed {row['labels_failed']}; position consistency "
            f"{f(row['position_consistency'])}), {row['train_pairs']} trained on; loss {f(row['loss_first'], '.4f')}"
            f" -> {f(row['loss_last'], '.4f')}; win rate vs start {f(row['win_rate'])} "
            f"[{f(win['ci_low'])}, {f(win['ci_high'])}]")
    if row["eval_winrate"] is not None:
        line += f" (eval judge {f(row['eval_win_rate'])})"
    line += f"; KL to reference {f(row['kl'])}"
    if "keyword_share" in row:
        line += (f"; '{row['keyword']}' in {f(row['keyword_share'])} of samples (start "
                 f"{f(row['keyword_share_start'])}, this iteration's pairs {f(row['keyword_share_samples'])})")
    return line

