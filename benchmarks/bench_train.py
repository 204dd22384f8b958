#!/usr/bin/env python
"""Training-step time and memory: our DPO and reward-model steps against TRL's DPOTrainer and RewardTrainer.

Every variant runs in its own subprocess on the same saved model and the same pairs, on the CPU (or the GPU where
there is one). Ours is the recipe itself (`rlaif.recipes.run_recipe` on a config), its optimizer steps clocked;
TRL's trainers see the same pairs in the same order (`train_sampling_strategy: sequential` over our recipe's
order), so step k of every variant trains on the same batch.

--shape tiny (the default): a tiny random Llama (built from a config, byte-level tokenizer, no download) and the
pairs of examples/tiny/data/labels.jsonl, batch 8 pairs:

  ours dpo (precomputed ref)   our recipe with the reference log-probs computed once up front
  ours dpo (ref on the fly)    our recipe with a reference forward every step
  trl dpo  (precomputed ref)   DPOTrainer, precompute_ref_log_probs=True, fp32, gradient checkpointing off
  trl dpo  (ref on the fly)    DPOTrainer, fp32, gradient checkpointing off
  ours reward / trl reward     our reward recipe vs RewardTrainer, fp32, gradient checkpointing off
  trl ... (TRL defaults)       the same TRL trainers with their own defaults (bf16 on, gradient checkpointing on)
  ours ppo (rollout + update)  one PPO iteration of our recipe (rlaif/recipes/ppo.py: `collect` then `update`):
                               8 prompts x 4 samples of 32 new tokens, the rule judge in group mode, 4 epochs x 2
                               mini-batches; besides its time per iteration it reports the tokens/s of the rollout
                               (response tokens sampled / rollout time: generation, scoring, log-probs, values and
                               advantages) and of the update (prompt + response tokens through forward and backward,
                               over all epochs / update time), each the best of the timed iterations. No TRL
                               counterpart is timed (its PPO trainer is experimental in TRL 1.x).

  Time: the fastest of --steps steps after --warmup steps, best of --rounds runs (other load on a shared machine
  only ever slows a step down; medians are printed too). Ratios are ours / TRL like for like (target ≤ 1.0).

--shape smollm2 (issue 20, prefix sharing): SmolLM2-135M-Instruct's shape (the embedded judge model's config,
30 layers unless --layers) with random weights and that model's tokenizer, fp32, batch 4 pairs, max_length 384,
the reference precomputed in both DPO arms, gradient checkpointing off; per data set (--data):

  hh      --pairs real HH-RLHF harmless rows from the tuning split (the first 500 rows of
          ../shared/data/hh-rlhf-harmless-test.jsonl.gz, beside the repository), the human's choice as the label;
          the pairs whose prompt and longer response fit max_length (a reward model reads a pair whole)
  short   --pairs synthetic pairs: a prompt of about 20 tokens, responses of about 100

  and per method (--methods) the arms (--arms): ours shared (`prefix_sharing: true`), ours unshared
  (`prefix_sharing: false`), ours packed (`packing: true`: each batch's shared rows in one row) and TRL (on hh
  only). A checkout whose configs have no `prefix_sharing` (or `packing`) runs today's (unshared) path as "ours
  unshared" and says that the other arms are not available.
  Time: the sum of the --steps steps after --warmup (every variant trains on the same batches, of unequal
  lengths), best of --rounds; reported as steps/s and pairs/s.

A step is everything between two optimizer steps (forward, backward, clipping, AdamW, schedule; ours includes
collating the batch, TRL's timing starts after its data loader). Memory, in separate short runs (--memory-steps
after one warm-up step) with glibc's mmap threshold pinned so resident memory follows the live tensors: the peak
resident memory during the steps above the resident memory just before them (the kernel's high-water mark is
reset first), and the absolute peak; with CUDA, the peak allocated.

    python benchmarks/bench_train.py [--steps 10] [--warmup 3] [--rounds 2] [--threads 1] [--skip-defaults]
                                     [--json FILE]
    python benchmarks/bench_train.py --shape smollm2 [--data hh,short] [--methods dpo,reward]
                                     [--arms shared,unshared,packed,trl] [--pairs 64] [--layers 30] [--hh FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "examples/tiny/data/labels.jsonl"
BATCH = 8
MODEL = dict(
    type="tiny", hidden_size=256, intermediate_size=640, num_layers=4, num_heads=8, num_kv_heads=4, vocab=None, seed=0
)  # byte-level tokenizer; ~3.4M parameters
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"  # ../shared beside the repository
TUNING_ROWS = 500  # the HH file's tuning split (its README): the benchmark reads nothing beyond it
SMOL_BATCH, SMOL_MAX_LENGTH = 4, 384
SHORT_PROMPT, SHORT_RESPONSE = 20, 100  # tokens of the synthetic short-prompt set (each drawn ±10%)
SHORT_SYSTEM = "Answer the question."  # a system turn of our own replaces the template's default one (~20 tokens)
WORDS = (
    "the a tea bread door light river stone garden window paper music answer question simple quick careful "
    "yes no maybe please thanks why how when where what make take give keep find tell help plan write read"
).split()


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
            "total_s": sum(timed),
            "steps": len(timed),
            "peak_step_mib": (_status("VmHWM") - self.base) / 2**20,
            "peak_rss_mib": _status("VmHWM") / 2**20,
        }
        if torch.cuda.is_available():
            out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return out


# -- what the variants of one comparison share -------------------------------------------------------------------
@dataclass
class Setup:
    """The label records (and the feedback source that reads them), the saved models (causal LM, score head), the
    batch and max_length: written once by the parent, read by every variant's process."""

    feedback: dict
    lm: str
    score: str
    batch: int
    max_length: int

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "setup.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> "Setup":
        return cls(**json.loads((folder / "setup.json").read_text()))

    def records(self) -> list[dict]:
        path = self.feedback[self.feedback["source"]]
        return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _save_models(tmp: Path, tokenizer, build) -> tuple[str, str, int]:
    """`build(head)` for the causal LM and the score head, each saved with the tokenizer, so that ours and TRL
    load identical weights; returns their folders and the causal LM's parameter count."""
    paths = []
    for head in ("lm", "score"):
        model = build(head)
        if head == "lm":
            n_params = sum(p.numel() for p in model.parameters())
        paths.append(tmp / f"model-{head}")
        model.save_pretrained(paths[-1])
        tokenizer.save_pretrained(paths[-1])
    return str(paths[0]), str(paths[1]), n_params


def _tiny_setup(tmp: Path) -> tuple[Setup, int]:
    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    cfg = TinyModelConfig(**MODEL)
    tok = build_tokenizer(cfg)
    lm, score, n_params = _save_models(tmp, tok, lambda head: build_tiny(cfg, tok, head))
    labels = tmp / "labels.jsonl"
    labels.write_text("".join(x + "\n" for x in LABELS.read_text().splitlines() if json.loads(x)["label"] != "tie"))
    return Setup({"source": "ai", "ai": str(labels)}, lm, score, BATCH, 1024), n_params


def sharing_available(method: str, field: str = "prefix_sharing") -> bool:
    """Whether this checkout's config for `method` has `field` (issue 20: prefix_sharing, packing)."""
    from rlaif.config.dpo import DPOTrainConfig
    from rlaif.config.reward import RewardTrainConfig

    return field in (DPOTrainConfig if method == "dpo" else RewardTrainConfig).model_fields


# -- ours: the recipe, its optimizer steps clocked ---------------------------------------------------------------
class _Timed(Exception):
    """Raised after the last timed step: what follows (the final checkpoint, 2 GB at SmolLM2's size with the
    optimizer state) is not part of a step."""


def _clock_steps(clock: StepClock, n: int) -> None:
    """Time every call of the preference recipes' `optimizer_step` (collate, forward, backward, clip, AdamW,
    schedule: everything between two optimizer steps) in every module that imported it by name."""
    from rlaif.train import preference

    original = preference.optimizer_step

    def step(*args, **kwargs):
        clock.begin()
        out = original(*args, **kwargs)
        clock.end()
        if len(clock.times) == n:
            raise _Timed
        return out

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("rlaif") and getattr(module, "optimizer_step", None) is original:
            module.optimizer_step = step


def run_ours(
    method: str, setup: Setup, tmp: Path, steps: int, warmup: int, precompute=True, sharing=None, packing=False
):
    """Our recipe on the setup's pairs for `steps` optimizer steps. `sharing`: the config's `prefix_sharing`
    (None: the field left at its default, as in a checkout without it); `packing`: the config's `packing`."""
    import torch

    import rlaif.recipes.dpo  # noqa: F401  (the recipes bind optimizer_step by name: imported before it is clocked)
    import rlaif.recipes.reward  # noqa: F401
    from rlaif.config.dpo import DPOTrainConfig
    from rlaif.config.reward import RewardTrainConfig
    from rlaif.recipes import run_recipe

    extra = {"precompute_reference": precompute} if method == "dpo" else {}
    if sharing is not None and (sharing or sharing_available(method)):
        extra["prefix_sharing"] = sharing
    if packing:
        extra["packing"] = True
    out = tmp / f"ours-{os.getpid()}"
    config = (DPOTrainConfig if method == "dpo" else RewardTrainConfig)(
        output_dir=str(out),
        model={"type": "pretrained", "path": setup.lm if method == "dpo" else setup.score},
        feedback=setup.feedback,
        pairs={"soft": False, "eval_fraction": 0},
        batch_size=setup.batch,
        max_steps=steps,
        max_length=setup.max_length,
        precision="fp32",
        cpu_threads=torch.get_num_threads(),
        save_steps=steps + 1,
        optim={"lr": 1e-5, "warmup_steps": 0},
        **extra,
    )
    # the reference table (untimed, in every arm) is computed once per setup: a forward pass over every pair at
    # SmolLM2's size takes a minute; the recipe checks the cached table's key against its own pairs
    cache = tmp / "reference_logps.pt"
    out.mkdir()
    if cache.exists():
        shutil.copy(cache, out / cache.name)
    clock = StepClock(warmup)
    _clock_steps(clock, steps)
    try:
        run_recipe(config)
    except _Timed:
        pass
    if len(clock.times) <= warmup:
        raise RuntimeError(f"the {method} recipe ran {len(clock.times)} optimizer steps; {steps} were asked for")
    if (out / cache.name).exists() and not cache.exists():
        shutil.copy(out / cache.name, cache)
    shutil.rmtree(out)
    return clock.result()


# -- TRL ---------------------------------------------------------------------------------------------------------
def run_trl(method: str, setup: Setup, tmp: Path, steps: int, warmup: int, defaults=False, precompute=False):
    """TRL's trainer on the setup's pairs, in our recipe's order of batches (so step k trains on the same pairs)."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

    from rlaif.feedback.export import trl_row
    from rlaif.train.data import step_indices

    clock = StepClock(warmup)

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock.begin()

        def on_step_end(self, args, state, control, **kw):
            clock.end()

    records = setup.records()
    order = [i for step in range(steps) for i in step_indices(step, len(records), setup.batch, 0)]
    rows = [{k: v for k, v in trl_row(records[i]).items() if k in ("prompt", "chosen", "rejected")} for i in order]
    if isinstance(rows[0]["prompt"], str):  # TRL's chat template path, as ours applies the template
        for row in rows:
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
            row["chosen"] = [{"role": "assistant", "content": row["chosen"]}]
            row["rejected"] = [{"role": "assistant", "content": row["rejected"]}]
    common = dict(
        output_dir=str(tmp / f"trl-{os.getpid()}"),
        per_device_train_batch_size=setup.batch,
        max_steps=steps,
        max_length=setup.max_length,
        train_sampling_strategy="sequential",
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
    path = setup.lm if method == "dpo" else setup.score
    tok = AutoTokenizer.from_pretrained(path)
    if method == "dpo":
        args = trl.DPOConfig(loss_type=["sigmoid"], beta=0.1, precompute_ref_log_probs=precompute, **common)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        trainer_class = trl.DPOTrainer
    else:
        args = trl.RewardConfig(**common)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        trainer_class = trl.RewardTrainer
    trainer = trainer_class(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[Clock()]
    )
    if len(trainer.train_dataset) != len(rows):  # RewardTrainer drops pairs over max_length
        raise RuntimeError(f"TRL kept {len(trainer.train_dataset)} of {len(rows)} rows: the batches would differ")
    trainer.train()
    shutil.rmtree(common["output_dir"], ignore_errors=True)
    return clock.result()


PPO_SAMPLES, PPO_NEW_TOKENS = 4, 32


def run_ours_ppo(setup: Setup, tmp: Path, steps: int, warmup: int) -> dict:
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
        model={"type": "pretrained", "path": setup.lm},
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


TINY_VARIANTS = {
    "ours dpo (precomputed ref)": lambda *a: run_ours("dpo", *a, precompute=True),
    "trl dpo (precomputed ref)": lambda *a: run_trl("dpo", *a, precompute=True),
    "ours dpo (ref on the fly)": lambda *a: run_ours("dpo", *a, precompute=False),
    "trl dpo (ref on the fly)": lambda *a: run_trl("dpo", *a),
    "ours reward": lambda *a: run_ours("reward", *a),
    "trl reward": lambda *a: run_trl("reward", *a),
    "trl dpo (TRL defaults: bf16, grad ckpt)": lambda *a: run_trl("dpo", *a, defaults=True),
    "trl reward (TRL defaults: bf16, grad ckpt)": lambda *a: run_trl("reward", *a, defaults=True),
    "ours ppo (rollout + update)": run_ours_ppo,
}
# --shape smollm2 adds these; its TRL arms are "trl dpo (precomputed ref)" and "trl reward"
VARIANTS = {
    **TINY_VARIANTS,
    "ours dpo shared": lambda *a: run_ours("dpo", *a, sharing=True),
    "ours dpo unshared": lambda *a: run_ours("dpo", *a, sharing=False),
    "ours reward shared": lambda *a: run_ours("reward", *a, sharing=True),
    "ours reward unshared": lambda *a: run_ours("reward", *a, sharing=False),
    "ours dpo packed": lambda *a: run_ours("dpo", *a, sharing=True, packing=True),
    "ours reward packed": lambda *a: run_ours("reward", *a, sharing=True, packing=True),
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
    result = VARIANTS[name](Setup.load(Path(tmp)), Path(tmp), steps, warmup)
    print("RESULT " + json.dumps(result), flush=True)


_SAID: set = set()


def _spawn(name: str, tmp: Path, steps: int, warmup: int, threads: int, env: dict | None = None) -> dict | None:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(env or {})}
    command = [sys.executable, __file__, "--worker", name, "--tmp", str(tmp), "--steps", str(steps)]
    command += ["--warmup", str(warmup), "--threads", str(threads)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(f"{name}: failed\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    # what the recipe says about prefix sharing (whether it is on), once per variant
    said = [x for x in proc.stdout.splitlines() if re.search(r"prefix[ _-]shar", x, re.IGNORECASE)]
    if said and name not in _SAID:
        _SAID.add(name)
        print(f"  {name}: {said[0].strip()}", flush=True)
    kind = "memory" if env and "MALLOC_MMAP_THRESHOLD_" in env else "time"
    print(f"  ran {name} on {tmp.name} ({kind})", file=sys.stderr, flush=True)
    return json.loads(line[len("RESULT ") :])


def measure(jobs: list[tuple[str, Path]], a, steps: int, warmup: int, key: str) -> dict:
    """Time every (variant, setup folder) of `jobs` --rounds times, interleaved, keeping each one's best (lowest
    `key`) run; then its memory in one short run. Returns {(variant, folder name): result}."""
    results: dict = {}
    # time: the other load on a shared machine only ever slows a run down, so each variant keeps the best of
    # --rounds runs (run in turn, ours and TRL's interleaved)
    for r in range(a.rounds):
        for name, folder in jobs:
            defaults = "defaults" in name
            if defaults and r:
                continue  # minutes per run; one is enough to show the gap
            res = _spawn(name, folder, a.default_steps if defaults else steps, 1 if defaults else warmup, a.threads)
            if res and ((name, folder.name) not in results or res[key] < results[name, folder.name][key]):
                results[name, folder.name] = res
    # memory: a separate short run per variant with glibc's mmap threshold pinned at 64 KiB, so freed tensors go
    # back to the OS at once and resident memory follows the live tensors (the timing runs leave malloc alone:
    # pinning it slows every step)
    if a.memory_steps:
        for name, folder in jobs:
            res = _spawn(name, folder, a.memory_steps, 1, a.threads, env={"MALLOC_MMAP_THRESHOLD_": "65536"})
            if res and (name, folder.name) in results:
                results[name, folder.name].update({k: v for k, v in res.items() if "mib" in k})
    return results


# -- --shape tiny ------------------------------------------------------------------------------------------------
def tiny_main(a, tmp: Path) -> dict:
    import torch

    folder = tmp / "tiny"
    setup, n_params = _tiny_setup(tmp)
    setup.save(folder)
    print(
        f"model: tiny Llama, {n_params / 1e6:.2f}M parameters, byte-level tokenizer; batch {BATCH} pairs; "
        f"torch {torch.__version__}, {a.threads} thread(s) of {os.cpu_count()} cores, "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
        flush=True,
    )
    names = [n for n in TINY_VARIANTS if not ("defaults" in n and a.skip_defaults)]
    timed = measure([(n, folder) for n in names], a, a.steps, a.warmup, "step_s")
    results = {name: r for (name, _), r in timed.items()}
    for name, r in results.items():
        print(
            f"{name:44s} {r['step_s'] * 1000:8.1f} ms/step (median {r['median_step_s'] * 1000:8.1f})  "
            f"peak +{r.get('peak_step_mib', 0):6.1f} MiB "
            f"(RSS peak {r.get('peak_rss_mib', 0):7.1f} MiB)  [best of {a.rounds} x {r['steps']} steps]",
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
            m = results[ours].get("peak_step_mib", 0) / max(results[theirs].get("peak_step_mib", 0), 1e-9)
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
    return {"results": results, "ratios": ratios, "params": n_params}


# -- --shape smollm2 ---------------------------------------------------------------------------------------------
def _embedded_model() -> Path:
    """The embedded judge model's folder (SmolLM2-135M-Instruct, its GGUF converted once and cached; no hub)."""
    from rlaif.config.judge import load_judge_config
    from rlaif.models.loading import quiet_loading, resolve_model_dir

    judge = load_judge_config(ROOT / "judges/default.yaml")
    with quiet_loading():
        return Path(resolve_model_dir(judge.model, judge.model_package, judge.gguf_file, judge.cache_dir))


def _smol_models(tmp: Path, layers: int):
    """SmolLM2-135M's shape (its config, `layers` layers) with random weights, and its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM, LlamaForSequenceClassification

    source = _embedded_model()
    tok = AutoTokenizer.from_pretrained(source)
    cfg = AutoConfig.from_pretrained(source)
    cfg.num_hidden_layers, cfg.num_labels, cfg.pad_token_id = layers, 1, tok.pad_token_id

    def build(head):
        torch.manual_seed(0)
        return (LlamaForCausalLM if head == "lm" else LlamaForSequenceClassification)(cfg)

    return (*_save_models(tmp, tok, build), tok, cfg)


def _hh_records(path: Path, n: int, tok) -> list[dict]:
    """The first `n` usable HH rows of the tuning split as label records (the human's choice): readable, and
    short enough for a reward model to read whole, so every arm trains on all of them."""
    from rlaif.data.pairs import read_pairs
    from rlaif.policy.chat import encode_pair
    from rlaif.records import IMPORTED_ANNOTATOR, human_record

    out, left_out = [], Counter()
    for pair in read_pairs(path, skip_invalid=True):
        if pair.source_line > TUNING_ROWS or len(out) == n:
            break
        if pair.invalid or pair.human_label not in ("a", "b"):
            left_out["unreadable"] += 1
        elif encode_pair(tok, pair.prompt, pair.response_a, pair.response_b, SMOL_MAX_LENGTH, True) is None:
            left_out[f"longer than {SMOL_MAX_LENGTH} tokens"] += 1
        else:
            out.append(
                human_record(
                    pair_id=pair.id,
                    prompt=pair.prompt,
                    response_a=pair.response_a,
                    response_b=pair.response_b,
                    label=pair.human_label,
                    annotator=IMPORTED_ANNOTATOR,
                    conversational=pair.conversational,
                ).to_json()
            )
    if len(out) < n:
        raise SystemExit(f"{path}: {len(out)} usable pairs in its first {TUNING_ROWS} rows, {n} asked for")
    print(f"hh: rows 1–{pair.source_line - 1} of {path.name}, left out {dict(left_out) or 'none'}", flush=True)
    return out


def _short_records(n: int, tok) -> list[dict]:
    """`n` synthetic pairs: a prompt of about SHORT_PROMPT tokens, two responses of about SHORT_RESPONSE."""
    from rlaif.policy.chat import prompt_ids
    from rlaif.records import IMPORTED_ANNOTATOR, human_record

    rng = random.Random(0)

    def grow(count, target: int) -> str:
        words = [rng.choice(WORDS)]
        while count(" ".join(words)) < target:
            words.append(rng.choice(WORDS))
        return " ".join(words)

    def about(tokens: int) -> int:
        return rng.randint(round(tokens * 0.9), round(tokens * 1.1))

    def messages(text: str) -> list[dict]:
        return [{"role": "system", "content": SHORT_SYSTEM}, {"role": "user", "content": text}]

    def tokens(text: str) -> int:
        return len(tok(text)["input_ids"]) + 2  # the turn's end: <|im_end|> and a newline

    out = []
    for i in range(n):
        prompt = messages(grow(lambda text: len(prompt_ids(tok, messages(text))), about(SHORT_PROMPT)))
        a, b = grow(tokens, about(SHORT_RESPONSE)), grow(tokens, about(SHORT_RESPONSE))
        record = human_record(
            pair_id=f"short-{i:04d}",
            prompt=prompt,
            response_a=a,
            response_b=b,
            label=rng.choice("ab"),
            annotator=IMPORTED_ANNOTATOR,
            conversational=True,
        )
        out.append(record.to_json())
    return out


def _token_shares(name: str, records: list[dict], tok) -> dict:
    """Mean prompt / chosen / rejected tokens as our recipe encodes them, and the prompt's share of what an
    unshared step encodes (2P / (2P + C + R); encoding the prompt once removes P / (2P + C + R))."""
    from rlaif.policy.chat import encode_pair

    sums = Counter()
    for r in records:
        prompt, a, b = encode_pair(tok, r["prompt"], r["response_a"], r["response_b"], SMOL_MAX_LENGTH, True)
        chosen, rejected = (a, b) if r["label"] == "a" else (b, a)
        sums.update(prompt=len(prompt), chosen=len(chosen), rejected=len(rejected))
    mean = {k: v / len(records) for k, v in sums.items()}
    unshared = 2 * mean["prompt"] + mean["chosen"] + mean["rejected"]
    mean.update(prompt_share=2 * mean["prompt"] / unshared, removed=mean["prompt"] / unshared)
    print(
        f"{name}: {len(records)} pairs; prompt {mean['prompt']:.1f} tokens, chosen {mean['chosen']:.1f}, rejected "
        f"{mean['rejected']:.1f}: the prompt is {mean['prompt_share']:.1%} of the tokens an unshared step encodes; "
        f"encoding it once removes {mean['removed']:.1%} of them",
        flush=True,
    )
    return mean


def _smol_arms(data: str, methods: list[str], arms: list[str]) -> list[str]:
    names = []
    for method in methods:
        trl = "trl dpo (precomputed ref)" if method == "dpo" else "trl reward"
        wanted = {arm: f"ours {method} {arm}" for arm in ("shared", "unshared", "packed")} | {"trl": trl}
        for arm in arms:
            if arm == "trl" and data != "hh":
                continue  # the short set compares ours with ours only
            if arm == "shared" and not sharing_available(method):
                continue
            if arm == "packed" and not sharing_available(method, "packing"):
                continue
            names.append(wanted[arm])
    return names


# (label, numerator, denominator, what is compared, target): for ratio of pairs/s, a higher number is better
SMOL_RATIOS = [
    ("hh", "dpo pairs/s: ours shared / TRL", "ours dpo shared", "trl dpo (precomputed ref)", "pairs", 1.5),
    ("hh", "dpo pairs/s: ours shared / ours unshared", "ours dpo shared", "ours dpo unshared", "pairs", 1.3),
    ("hh", "dpo peak step memory: shared / unshared", "ours dpo shared", "ours dpo unshared", "memory", 1.0),
    ("hh", "dpo pairs/s: ours unshared / TRL", "ours dpo unshared", "trl dpo (precomputed ref)", "pairs", None),
    ("hh", "reward pairs/s: ours shared / TRL", "ours reward shared", "trl reward", "pairs", 1.3),
    ("hh", "reward pairs/s: ours shared / ours unshared", "ours reward shared", "ours reward unshared", "pairs", None),
    ("hh", "reward peak step memory: shared / unshared", "ours reward shared", "ours reward unshared", "memory", None),
    ("hh", "reward pairs/s: ours unshared / TRL", "ours reward unshared", "trl reward", "pairs", None),
    ("short", "dpo pairs/s: shared / unshared", "ours dpo shared", "ours dpo unshared", "pairs", 1.0),
    ("short", "dpo peak step memory: shared / unshared", "ours dpo shared", "ours dpo unshared", "memory", None),
    ("short", "reward pairs/s: shared / unshared", "ours reward shared", "ours reward unshared", "pairs", 1.0),
    # packing (packing: true): several pairs' shared rows in one row, no padding
    ("hh", "dpo pairs/s: ours packed / ours shared", "ours dpo packed", "ours dpo shared", "pairs", 1.05),
    ("hh", "dpo pairs/s: ours packed / TRL", "ours dpo packed", "trl dpo (precomputed ref)", "pairs", None),
    ("hh", "dpo peak step memory: packed / shared", "ours dpo packed", "ours dpo shared", "memory", None),
    ("hh", "reward pairs/s: ours packed / ours shared", "ours reward packed", "ours reward shared", "pairs", 1.05),
    ("hh", "reward pairs/s: ours packed / TRL", "ours reward packed", "trl reward", "pairs", None),
    ("short", "dpo pairs/s: packed / shared", "ours dpo packed", "ours dpo shared", "pairs", 1.0),
    ("short", "reward pairs/s: packed / shared", "ours reward packed", "ours reward shared", "pairs", 1.0),
]


def smol_main(a, tmp: Path) -> dict:
    import torch

    datas, methods, arms = a.data.split(","), a.methods.split(","), a.arms.split(",")
    lm, score, n_params, tok, cfg = _smol_models(tmp, a.layers)
    load = os.getloadavg()[0]
    print(
        f"model: SmolLM2-135M-Instruct's shape, random weights: {cfg.num_hidden_layers} layers, hidden "
        f"{cfg.hidden_size}, {cfg.num_attention_heads} heads / {cfg.num_key_value_heads} KV heads, vocabulary "
        f"{cfg.vocab_size}, {n_params / 1e6:.1f}M parameters; fp32, batch {SMOL_BATCH} pairs, max_length "
        f"{SMOL_MAX_LENGTH}, reference precomputed; torch {torch.__version__}, {a.threads} thread(s) of "
        f"{os.cpu_count()} cores, {'cuda' if torch.cuda.is_available() else 'cpu'}; load average {load:.2f}",
        flush=True,
    )
    for method in methods:
        for arm, field in (("shared", "prefix_sharing"), ("packed", "packing")):
            if arm in arms and not sharing_available(method, field):
                print(f"ours {arm} ({method}): not available in this checkout", flush=True)
    shares, jobs = {}, []
    for data in datas:
        records = _hh_records(Path(a.hh), a.pairs, tok) if data == "hh" else _short_records(a.pairs, tok)
        shares[data] = _token_shares(data, records, tok)
        labels = tmp / data / "labels.jsonl"
        Setup({"source": "human", "human": str(labels)}, lm, score, SMOL_BATCH, SMOL_MAX_LENGTH).save(tmp / data)
        labels.write_text("".join(json.dumps(r) + "\n" for r in records))
        jobs += [(name, tmp / data) for name in _smol_arms(data, methods, arms)]
    t0 = time.perf_counter()
    results = measure(jobs, a, a.steps, a.warmup, "total_s")
    print(
        f"\n(best of {a.rounds} rounds of {a.steps} steps after {a.warmup} warm-up, {time.perf_counter() - t0:.0f} s; "
        f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after; memory over {a.memory_steps} steps)"
    )
    print(f"{'':34s} {'steps/s':>8s} {'pairs/s':>8s} {'s/step':>7s} {'median':>7s} {'peak step':>10s} {'peak RSS':>9s}")
    for (name, data), r in results.items():
        r["steps_per_s"] = r["steps"] / r["total_s"]
        r["pairs_per_s"] = r["steps_per_s"] * SMOL_BATCH
        print(
            f"{data + ': ' + name:34s} {r['steps_per_s']:8.3f} {r['pairs_per_s']:8.3f} {r['total_s'] / r['steps']:7.2f}"
            f" {r['median_step_s']:7.2f} {r.get('peak_step_mib', float('nan')):6.0f} MiB "
            f"{r.get('peak_rss_mib', float('nan')):5.0f} MiB"
        )
    print("\nratios (one run):")
    ratios = {}
    for data, label, top, bottom, what, target in SMOL_RATIOS:
        x, y = results.get((top, data)), results.get((bottom, data))
        key = "pairs_per_s" if what == "pairs" else "peak_step_mib"
        if not (x and y and key in x and key in y):
            continue
        ratio = x[key] / max(y[key], 1e-9)
        ratios[f"{data}: {label}"] = ratio
        verdict = ""
        if target is not None:  # judged as printed: a memory ratio of 1.000004 is a tie, not a miss
            ok = round(ratio, 2) >= target if what == "pairs" else round(ratio, 2) <= target
            verdict = f"(target {'≥' if what == 'pairs' else '≤'} {target}) {'PASS' if ok else 'MISS'}"
        print(f"  {data + ': ' + label:55s} {ratio:5.2f}  {verdict}")
    rows = {f"{data}: {name}": r for (name, data), r in results.items()}
    return {"results": rows, "ratios": ratios, "tokens": shares, "params": n_params, "layers": cfg.num_hidden_layers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=("tiny", "smollm2"), default="tiny", help="the model and data (see above)")
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
    ap.add_argument("--memory-steps", type=int, default=3, help="steps of each memory run (0: no memory runs)")
    ap.add_argument("--default-steps", type=int, default=3, help="tiny: timed steps for TRL's (slow) defaults")
    ap.add_argument("--skip-defaults", action="store_true", help="tiny: leave out TRL's bf16 default runs")
    ap.add_argument("--data", default="hh,short", help="smollm2: data sets, of hh, short")
    ap.add_argument("--methods", default="dpo,reward", help="smollm2: methods, of dpo, reward")
    ap.add_argument(
        "--arms", default="shared,unshared,packed,trl", help="smollm2: arms, of shared, unshared, packed, trl"
    )
    ap.add_argument("--pairs", type=int, default=64, help="smollm2: pairs per data set")
    ap.add_argument("--layers", type=int, default=30, help="smollm2: layers (30 is SmolLM2-135M's; fewer to try)")
    ap.add_argument("--hh", default=str(HH), help="smollm2: the HH-RLHF harmless file (its first 500 rows are read)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return _worker(a.worker, a.tmp, a.steps + a.warmup, a.warmup, a.threads)

    import tempfile

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        report = (tiny_main if a.shape == "tiny" else smol_main)(a, Path(tmp))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
