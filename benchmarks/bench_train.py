#!/usr/bin/env python
"""Training-step time and memory: our DPO and reward-model steps against TRL's DPOTrainer and RewardTrainer.

Every variant runs in its own subprocess on the same tiny random Llama (built from a config, byte-level
tokenizer, no download) and the same pairs (examples/tiny/data/labels.jsonl, batch 8 pairs), on the CPU:

  ours dpo (precomputed ref)   our recipe's step with the reference log-probs computed once up front
  ours dpo (ref on the fly)    our recipe's step with a reference forward every step
  trl dpo  (precomputed ref)   DPOTrainer, precompute_ref_log_probs=True, fp32, gradient checkpointing off
  trl dpo  (ref on the fly)    DPOTrainer, fp32, gradient checkpointing off
  ours reward / trl reward     our reward step vs RewardTrainer, fp32, gradient checkpointing off
  trl ... (TRL defaults)       the same TRL trainers with their own defaults (bf16 on, gradient checkpointing on)

A step is everything between two optimizer steps (forward, backward, clipping, AdamW, schedule; ours includes
collating the batch, TRL's timing starts after its data loader). Time: the fastest of --steps steps after
--warmup steps, best of --rounds runs (other load on a shared machine only ever slows a step down; medians are
printed too). Memory, in separate short runs with glibc's mmap threshold pinned so
resident memory follows the live tensors: the peak resident memory during the steps above the resident memory
just before them (the kernel's high-water mark is reset first), and the absolute peak; with CUDA, the peak
allocated.
Ratios are ours / TRL like for like (target ≤ 1.0).

  ours ppo (rollout + update)  one PPO iteration of our recipe (rlaif/recipes/ppo.py: `collect` then `update`):
                               8 prompts x 4 samples of 32 new tokens, the rule judge in group mode, 4 epochs x 2
                               mini-batches; besides its time per iteration it reports the tokens/s of the rollout
                               (response tokens sampled / rollout time: generation, scoring, log-probs, values and
                               advantages) and of the update (prompt + response tokens through forward and backward,
                               over all epochs / update time), each the best of the timed iterations. No TRL
                               counterpart is timed (its PPO trainer is experimental in TRL 1.x).

    python benchmarks/bench_train.py [--steps 10] [--warmup 3] [--rounds 2] [--threads 1] [--skip-defaults]
                                     [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "examples/tiny/data/labels.jsonl"
BATCH = 8
MODEL = dict(
    type="tiny", hidden_size=256, intermediate_size=640, num_layers=4, num_heads=8, num_kv_heads=4, vocab=None, seed=0
)  # byte-level tokenizer; ~3.4M parameters


# -- memory ------------------------------------------------------------------------------------------------------
def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
    except OSError:
        pass


class StepClock:
    """Collects step times; starts the memory window after the warm-up steps."""

    def __init__(self, warmup: int):
        self.warmup, self.times, self.t0, self.base = warmup, [], None, None

    def begin(self) -> None:
        if len(self.times) == self.warmup and self.base is None:
            import torch

            self.base = _status("VmRSS")
            _reset_peak()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def end(self) -> None:
        self.times.append(time.perf_counter() - self.t0)

    def result(self) -> dict:
        import torch

        timed = self.times[self.warmup :]
        # the fastest step is the least disturbed by other load on a shared machine (as timeit reports)
        out = {
            "step_s": min(timed),
            "median_step_s": statistics.median(timed),
            "steps": len(timed),
            "peak_step_mib": (_status("VmHWM") - self.base) / 2**20,
            "peak_rss_mib": _status("VmHWM") / 2**20,
        }
        if torch.cuda.is_available():
            out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return out


# -- shared setup ------------------------------------------------------------------------------------------------
def _records(n: int) -> list[dict]:
    rows = [json.loads(line) for line in LABELS.read_text().splitlines()]
    rows = [r for r in rows if r["label"] in ("a", "b")]
    return [rows[i % len(rows)] for i in range(n)]


def _model_dir(tmp: Path, head: str) -> Path:
    """The benchmark model saved once, so ours and TRL load identical weights."""
    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    path = tmp / f"model-{head}"
    if not path.exists():
        cfg = TinyModelConfig(**{k: v for k, v in MODEL.items()})
        tok = build_tokenizer(cfg)
        build_tiny(cfg, tok, head).save_pretrained(path)
        tok.save_pretrained(path)
    return path


def _our_config(method: str, tmp: Path, steps: int, **extra):
    from rlaif.config.dpo import DPOTrainConfig
    from rlaif.config.reward import RewardTrainConfig

    cls = DPOTrainConfig if method == "dpo" else RewardTrainConfig
    labels = tmp / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in _records(steps * BATCH)))
    return cls(
        output_dir=str(tmp / "ours"),
        model={"type": "pretrained", "path": str(_model_dir(tmp, "lm" if method == "dpo" else "score"))},
        feedback={"source": "ai", "ai": str(labels)},
        pairs={"soft": False, "eval_fraction": 0},
        batch_size=BATCH,
        max_steps=steps,
        max_length=1024,
        precision="fp32",
        optim={"lr": 1e-5, "warmup_steps": 0},
        **extra,
    )


def run_ours(method: str, tmp: Path, steps: int, warmup: int, precompute: bool = True) -> dict:
    """Our recipe's components, stepped exactly as the recipe steps them."""
    import torch

    from rlaif.train.data import collate, encode_pairs, read_feedback, step_indices
    from rlaif.train.models import load_model, load_tokenizer
    from rlaif.train.run import make_accelerator, make_optimizer

    extra = {"precompute_reference": precompute} if method == "dpo" else {}
    cfg = _our_config(method, tmp, steps, **extra)
    acc = make_accelerator(cfg)
    tok = load_tokenizer(cfg.model)
    data = read_feedback(cfg.feedback, cfg.pairs)
    pairs, _ = encode_pairs(tok, data.train, cfg.max_length, whole=method == "reward")
    head = "lm" if method == "dpo" else "score"
    model = load_model(cfg.model, tok, head).to(acc.device)
    model.config.use_cache = False
    reference = table = None
    if method == "dpo":
        from rlaif.train.dpo import pair_terms, precompute_reference
        from rlaif.train.losses import dpo_loss_fn

        loss_fn = dpo_loss_fn(cfg.loss)
        reference = load_model(cfg.model, tok, "lm").to(acc.device).eval().requires_grad_(False)
        if precompute:
            table = precompute_reference(
                acc, model, reference, pairs, 16, tok.pad_token_id, cfg.max_length, tmp / "ref.pt"
            )
            reference = None
    else:
        from rlaif.recipes.reward import pair_terms
    optimizer, scheduler = make_optimizer(model, cfg.optim, steps)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    model.train()
    clock = StepClock(warmup)
    for step in range(steps):
        clock.begin()
        idx = step_indices(step, len(pairs), BATCH, 0)
        batch = {
            k: v.to(acc.device) for k, v in collate([pairs[i] for i in idx], tok.pad_token_id, cfg.max_length).items()
        }
        if method == "dpo":
            ref = None if table is None else torch.cat([table[idx, 0], table[idx, 1]])
            terms = pair_terms(model, reference, batch, ref, cfg, loss_fn)
        else:
            terms = pair_terms(model, batch, cfg)
        acc.backward(terms["loss"] / len(idx))
        acc.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        clock.end()
    return clock.result()


def run_trl(method: str, tmp: Path, steps: int, warmup: int, defaults: bool = False, precompute: bool = False):
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

    from rlaif.feedback.export import trl_row

    clock = StepClock(warmup)

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock.begin()

        def on_step_end(self, args, state, control, **kw):
            clock.end()

    rows = []
    for r in map(trl_row, _records(steps * BATCH)):
        rows.append(
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
        )
    common = dict(
        output_dir=str(tmp / "trl"),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        report_to=[],
        save_strategy="no",
        logging_steps=steps,
        learning_rate=1e-5,
        use_cpu=not torch.cuda.is_available(),
        dataloader_drop_last=True,
        seed=0,
    )
    if not defaults:
        common.update(bf16=False, gradient_checkpointing=False)
    path = _model_dir(tmp, "lm" if method == "dpo" else "score")
    tok = AutoTokenizer.from_pretrained(path)
    if method == "dpo":
        args = trl.DPOConfig(loss_type=["sigmoid"], beta=0.1, precompute_ref_log_probs=precompute, **common)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        trainer = trl.DPOTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[Clock()]
        )
    else:
        args = trl.RewardConfig(**common)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        trainer = trl.RewardTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[Clock()]
        )
    trainer.train()
    return clock.result()


PPO_SAMPLES, PPO_NEW_TOKENS = 4, 32


def run_ours_ppo(tmp: Path, steps: int, warmup: int) -> dict:
    """Our PPO iterations, run exactly as the recipe runs them (same model as the other variants)."""
    import torch

    from rlaif.config.ppo import PPOTrainConfig
    from rlaif.data.prompts import read_prompts
    from rlaif.policy.sampling import PolicySampler
    from rlaif.recipes.ppo import collect, update
    from rlaif.rewards.sources import make_reward_source
    from rlaif.train.models import load_model, load_tokenizer
    from rlaif.train.ppo import PolicyWithValueHead
    from rlaif.train.run import make_accelerator, make_optimizer, not_finite

    cfg = PPOTrainConfig(
        output_dir=str(tmp / "ours-ppo"),
        model={"type": "pretrained", "path": str(_model_dir(tmp, "lm"))},
        reward={"type": "judge", "judge": str(ROOT / "judges/rule-keyword.yaml"), "mode": "group"},
        prompts={"path": str(LABELS)},
        samples_per_prompt=PPO_SAMPLES,
        batch_size=BATCH,
        sampling={"max_new_tokens": PPO_NEW_TOKENS, "batch_size": 64},
        ppo_epochs=4,
        num_mini_batches=2,
        max_length=1024,
        precision="fp32",
        optim={"lr": 1e-5, "warmup_steps": 0},
    )
    acc = make_accelerator(cfg)
    tok = load_tokenizer(cfg.model)
    prompts = read_prompts(LABELS)
    lm = load_model(cfg.model, tok, "lm")
    lm.config.use_cache = False
    reference = load_model(cfg.model, tok, "lm").to(acc.device).eval().requires_grad_(False)
    model = PolicyWithValueHead(lm, lm.config.hidden_size).to(acc.device)
    optimizer, scheduler = make_optimizer(model, cfg.optim, steps * cfg.ppo_epochs * cfg.num_mini_batches)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    scorer = make_reward_source(cfg.reward, acc.device, torch.float32, cfg.seed)
    sampler = PolicySampler(cfg.sampling, tmp / "ours-ppo-weights", cfg.seed)  # transformers here (no vLLM)
    model.train()
    clock = StepClock(warmup)
    rollout_tps, update_tps = [], []
    for step in range(steps):
        batch = [prompts[(step * BATCH + i) % len(prompts)] for i in range(BATCH)]
        clock.begin()
        t0 = time.perf_counter()
        rollout, sums = collect(acc, model, reference, scorer, tok, batch, cfg, 0.05, step, sampler)
        t1 = time.perf_counter()
        # the recipe's divergence check reads the loss and norm of every update: timed here too
        done = update(acc, model, optimizer, scheduler, rollout, cfg, step, lambda **values: not_finite(values))
        t2 = time.perf_counter()
        clock.end()
        if step >= warmup:
            rollout_tps.append(float(sums["response_tokens"]) / (t1 - t0))
            update_tps.append(float(done["seen_tokens"]) / (t2 - t1))
    return {**clock.result(), "rollout_tokens_per_s": max(rollout_tps), "update_tokens_per_s": max(update_tps)}


VARIANTS = {
    "ours dpo (precomputed ref)": lambda t, s, w: run_ours("dpo", t, s, w, precompute=True),
    "trl dpo (precomputed ref)": lambda t, s, w: run_trl("dpo", t, s, w, precompute=True),
    "ours dpo (ref on the fly)": lambda t, s, w: run_ours("dpo", t, s, w, precompute=False),
    "trl dpo (ref on the fly)": lambda t, s, w: run_trl("dpo", t, s, w),
    "ours reward": lambda t, s, w: run_ours("reward", t, s, w),
    "trl reward": lambda t, s, w: run_trl("reward", t, s, w),
    "trl dpo (TRL defaults: bf16, grad ckpt)": lambda t, s, w: run_trl("dpo", t, s, w, defaults=True),
    "trl reward (TRL defaults: bf16, grad ckpt)": lambda t, s, w: run_trl("reward", t, s, w, defaults=True),
    "ours ppo (rollout + update)": lambda t, s, w: run_ours_ppo(t, s, w),
}
PAIRS = [
    ("dpo, precomputed reference", "ours dpo (precomputed ref)", "trl dpo (precomputed ref)"),
    ("dpo, reference on the fly", "ours dpo (ref on the fly)", "trl dpo (ref on the fly)"),
    ("dpo, ours (precomputed) vs TRL's default fp32 path", "ours dpo (precomputed ref)", "trl dpo (ref on the fly)"),
    ("reward", "ours reward", "trl reward"),
]


def _worker(name: str, tmp: str, steps: int, warmup: int, threads: int) -> None:
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    result = VARIANTS[name](Path(tmp), steps, warmup)
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(name: str, tmp: str, steps: int, warmup: int, threads: int, env: dict | None = None) -> dict | None:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--tmp",
            tmp,
            "--steps",
            str(steps),
            "--warmup",
            str(warmup),
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(f"{name}: failed\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    print(
        f"  ran {name} ({'memory' if env and 'MALLOC_MMAP_THRESHOLD_' in env else 'time'})", file=sys.stderr, flush=True
    )
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=2, help="timing runs per variant (the best counts)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads in every variant (on a busy "
        "machine more threads than free cores make every small op wait for a descheduled thread)",
    )
    ap.add_argument("--default-steps", type=int, default=3, help="timed steps for TRL's (slow) defaults")
    ap.add_argument("--skip-defaults", action="store_true", help="leave out TRL's bf16 default runs")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return _worker(a.worker, a.tmp, a.steps + a.warmup, a.warmup, a.threads)

    import tempfile

    import torch

    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    cfg = TinyModelConfig(**MODEL)
    n_params = sum(p.numel() for p in build_tiny(cfg, build_tokenizer(cfg), "lm").parameters())
    print(
        f"model: tiny Llama, {n_params / 1e6:.2f}M parameters, byte-level tokenizer; batch {BATCH} pairs; "
        f"torch {torch.__version__}, {a.threads} thread(s) of {os.cpu_count()} cores, "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
        flush=True,
    )
    results: dict[str, dict] = {}
    names = [n for n in VARIANTS if not ("defaults" in n and a.skip_defaults)]
    with tempfile.TemporaryDirectory() as tmp:
        # time: the other load on a shared machine only ever slows a run down, so each variant keeps the best
        # of --rounds runs (run in turn, ours and TRL's interleaved)
        for r in range(a.rounds):
            for name in names:
                defaults = "defaults" in name
                if defaults and r:
                    continue  # minutes per run; one is enough to show the gap
                res = _spawn(
                    name, tmp, a.default_steps if defaults else a.steps, 1 if defaults else a.warmup, a.threads
                )
                if res and (name not in results or res["step_s"] < results[name]["step_s"]):
                    results[name] = res
        # memory: a separate short run per variant with glibc's mmap threshold pinned at 64 KiB, so freed
        # tensors go back to the OS at once and resident memory follows the live tensors (the timing runs leave
        # malloc alone: pinning it slows every step)
        for name in names:
            res = _spawn(name, tmp, 3, 1, a.threads, env={"MALLOC_MMAP_THRESHOLD_": "65536"})
            if res and name in results:
                results[name].update({k: v for k, v in res.items() if "mib" in k})
    for name, r in results.items():
        print(
            f"{name:44s} {r['step_s'] * 1000:8.1f} ms/step (median {r['median_step_s'] * 1000:8.1f})  "
            f"peak +{r['peak_step_mib']:6.1f} MiB "
            f"(RSS peak {r['peak_rss_mib']:7.1f} MiB)  [best of {a.rounds} x {r['steps']} steps]",
            flush=True,
        )
    ppo = results.get("ours ppo (rollout + update)")
    if ppo:
        print(
            f"ppo ({BATCH} prompts x {PPO_SAMPLES} samples x {PPO_NEW_TOKENS} new tokens): rollout "
            f"{ppo['rollout_tokens_per_s']:.0f} response tokens/s, update {ppo['update_tokens_per_s']:.0f} "
            "tokens/s",
            flush=True,
        )
    print("\nratios ours / TRL (target ≤ 1.0):")
    ratios = {}
    for label, ours, theirs in PAIRS:
        if ours in results and theirs in results:
            t = results[ours]["step_s"] / results[theirs]["step_s"]
            m = results[ours]["peak_step_mib"] / max(results[theirs]["peak_step_mib"], 1e-9)
            ratios[label] = {"time": t, "step_memory": m}
            print(f"  {label:52s} time {t:5.2f}  step memory {m:5.2f}  {'PASS' if t <= 1.0 and m <= 1.0 else 'MISS'}")
    for name in ("trl dpo (TRL defaults: bf16, grad ckpt)", "trl reward (TRL defaults: bf16, grad ckpt)"):
        if name in results:
            base = "ours dpo (precomputed ref)" if "dpo" in name else "ours reward"
            if base in results:
                print(
                    f"  TRL default vs ours: {name.split(' (')[0]} {results[name]['step_s']:.2f} s/step, "
                    f"{results[name]['step_s'] / results[base]['step_s']:.1f}x ours"
                )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"results": results, "ratios": ratios, "params": n_params}, indent=2))


if __name__ == "__main__":
    main()
