#!/usr/bin/env python
"""Labelling throughput and memory: naive generate-and-parse judging vs rlaif's shared-prefix logit read.

One run, one loaded model, the same held-out pairs for every method:

  (1) naive single    one random order per pair (seeded), the first principle of the constitution, verdict parsed
                      from `model.generate()` (greedy, max_new_tokens=8) one pair at a time, as common
                      LLM-as-judge code does. The prompt text is exactly ours (`layout.segments(...).text`, answer
                      prefill included), so the only difference is generate-and-parse vs our logit read.
  (2) naive all       the same naive judge once per principle (same order per pair); label = weighted vote.
  (3) ours, 1 princ.  `judge_pairs`, both orders, sampling fixed to the first principle.
  (4) ours, all       `judge_pairs`, both orders, `sampling: all`.

For each: pairs/s, tokens/s (tokens actually run through the model: `judge.tokens_processed` deltas for ours,
prompt + generated tokens for naive) and the fraction of a FLOP bound reached. The bound uses this machine's
matmul FLOP/s measured in the same run on the model's own shapes, (tokens × hidden) @ (hidden × intermediate),
with torch's default thread count:

    bound_pairs_per_s = matmul_flops_per_s / (2 × non-embedding parameters × tokens processed per pair)

Then the target ratios and the peak RSS of the labelling job (`rlaif.labeling.label`) over N and 10×N pairs,
each in its own subprocess. Progress goes to stderr; the table, ratios and PASS/MISS lines to stdout.

    python benchmarks/bench_label.py                # n=24 held-out pairs (rows after the first 500)
    python benchmarks/bench_label.py -n 3 --methods 1,3 --skip-memory   # quick look while developing
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = str(ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz")  # ../shared beside the repo
DEFAULT_JUDGE = str(ROOT / "judges" / "default.yaml")
DEFAULT_CONSTITUTION = str(ROOT / "constitutions" / "harmless.yaml")
RULE_FUNCTION = "rlaif.rules:prefer_shorter"

METHODS = {
    "1": "naive single (1 order, 1 principle)",
    "2": "naive whole constitution (1 order)",
    "3": "ours, both orders, 1 principle",
    "4": "ours, both orders, all principles",
}
RUN_ORDER = ("1", "3", "2", "4")  # each ratio's two sides run next to each other: less drift on a busy machine

TARGETS = {  # name: (threshold, comparison)
    "ours1_over_naive1_pairs_per_s": (0.7, ">="),
    "oursall_over_naiveall_pairs_per_s": (3.0, ">="),
    "ours1_fraction_of_bound": (0.7, ">="),
    "oursall_fraction_of_bound": (0.7, ">="),
    "peak_rss_ratio": (1.5, "<"),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# -------------------------------------------------------------------------------------------------------------
# Inputs
# -------------------------------------------------------------------------------------------------------------


def select_pairs(path: str, offset: int, n: int, seed: int):
    """n valid pairs from the rows after `offset`, plus one more valid pair for the untimed warm-up."""
    from rlaif.data.pairs import read_pairs

    out, skipped = [], 0
    for pair in itertools.islice(read_pairs(path, seed=seed, skip_invalid=True), offset, None):
        if pair.invalid:
            skipped += 1
            continue
        out.append(pair)
        if len(out) == n + 1:
            break
    if len(out) < 2:
        sys.exit(f"bench_label: fewer than 2 valid pairs after row {offset} of {path}")
    if len(out) < n + 1:
        log(f"only {len(out) - 1} valid pairs after row {offset}; using them all")
    return out[:-1], out[-1], skipped


def model_params(model) -> dict:
    """Non-embedding parameter count; the output head is counted apart when it is not tied to the embedding."""
    emb = model.get_input_embeddings().weight
    head_mod = model.get_output_embeddings()
    head = head_mod.weight if head_mod is not None else None
    tied = head is None or head is emb or head.data_ptr() == emb.data_ptr()
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    head_n = 0 if tied else head.numel()
    return {
        "total": total,
        "embedding": emb.numel(),
        "head": head_n,
        "tied_head": tied,
        "non_embedding": total - emb.numel() - head_n,
    }


# -------------------------------------------------------------------------------------------------------------
# Matmul FLOP/s on the model's shapes
# -------------------------------------------------------------------------------------------------------------


def matmul_flops(m: int, k: int, n: int, device, dtype, seconds: float = 3.0) -> dict:
    """(m×k)@(k×n) repeated in blocks of ~0.25 s until `seconds` have passed (at least 8 blocks)."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        flop = 2.0 * m * k * n
        t = time.perf_counter()
        reps = 0
        while time.perf_counter() - t < 0.3:  # warm-up, and calibrate a block to ~0.25 s
            a @ b
            sync()
            reps += 1
        per_block = max(1, int(reps * 0.25 / (time.perf_counter() - t)))
        rates: list[float] = []
        end = time.perf_counter() + seconds
        while len(rates) < 8 or time.perf_counter() < end:
            t0 = time.perf_counter()
            for _ in range(per_block):
                a @ b
            sync()
            rates.append(flop * per_block / (time.perf_counter() - t0))
    return {
        "shape": f"({m}x{k})@({k}x{n})",
        "dtype": str(dtype).replace("torch.", ""),
        "blocks": len(rates),
        "matmuls_per_block": per_block,
        "best": max(rates),
        "median": statistics.median(rates),
        "min": min(rates),
    }


# -------------------------------------------------------------------------------------------------------------
# The naive judge: generate a few tokens, parse a letter
# -------------------------------------------------------------------------------------------------------------

_LETTER = re.compile(r"\b([AB])\b")


class NaiveJudge:
    """What common LLM-as-judge code does: one prompt at a time through `model.generate()`, then a regex."""

    def __init__(self, judge, constitution):
        self.model, self.tok, self.layout, self.device = judge.model, judge.tokenizer, judge.layout, judge.device
        self.instructions = judge.config.instructions or constitution.instructions
        self.few_shot = constitution.few_shot
        self.texts = {p.id: p.text for p in constitution.principles}
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.prompt_tokens = self.generated_tokens = self.calls = 0

    def ask(self, pair, first: str, second: str, principle_text: str) -> Optional[str]:
        import torch

        from rlaif.judges.prompting import render_prefix_user

        prefix_user = render_prefix_user(pair.prompt, self.instructions, self.few_shot, self.texts)
        text = self.layout.segments(prefix_user, first, second, principle_text, cot=False).text
        enc = self.tok(text, add_special_tokens=False, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=self.pad)
        n_prompt = enc.input_ids.shape[1]
        new = out[0, n_prompt:]
        self.prompt_tokens += n_prompt
        self.generated_tokens += int(new.numel())
        self.calls += 1
        m = _LETTER.search(self.tok.decode(new, skip_special_tokens=True))
        return m.group(1) if m else None

    def label(self, pair, principles, seed: int) -> tuple[Optional[str], int]:
        """One random order per pair; each principle votes (weight, inverted when it asks for the worse one).
        Returns (label or None when nothing parsed, number of unparsed answers)."""
        swapped = random.Random(f"{seed}:{pair.id}").random() < 0.5
        first, second = (pair.response_b, pair.response_a) if swapped else (pair.response_a, pair.response_b)
        votes = {"a": 0.0, "b": 0.0}
        unparsed = 0
        for p in principles:
            letter = self.ask(pair, first, second, p.text)
            if letter is None:
                unparsed += 1
                continue
            pick = "a" if (letter == "A") != swapped else "b"
            if p.invert:
                pick = "b" if pick == "a" else "a"
            votes[pick] += p.weight
        if unparsed == len(principles):
            return None, unparsed
        if votes["a"] == votes["b"]:
            return "tie", unparsed
        return ("a" if votes["a"] > votes["b"] else "b"), unparsed


def run_naive(naive: NaiveJudge, pairs, principles, seed: int, name: str) -> dict:
    naive.prompt_tokens = naive.generated_tokens = naive.calls = 0
    labels, unparsed = [], 0
    start = time.perf_counter()
    for i, pair in enumerate(pairs, 1):
        lab, bad = naive.label(pair, principles, seed)
        labels.append(lab)
        unparsed += bad
        log(f"  [{name}] {i}/{len(pairs)} pairs, {time.perf_counter() - start:.1f} s")
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "tokens": naive.prompt_tokens + naive.generated_tokens,
        "prompt_tokens": naive.prompt_tokens,
        "generated_tokens": naive.generated_tokens,
        "calls": naive.calls,
        "logit_positions": naive.generated_tokens,
        "labels": labels,
        "unparsed_answers": unparsed,
        "no_label": sum(lab is None for lab in labels),
    }


# -------------------------------------------------------------------------------------------------------------
# Ours
# -------------------------------------------------------------------------------------------------------------


def run_ours(judge, pairs, constitution, seed: int, name: str) -> dict:
    from rlaif.labeling.pairwise import judge_pairs

    cache = getattr(judge, "_tok_cache", None)
    if cache is not None:
        cache.clear()  # every method starts with a cold tokenizer cache
    chunk = max(1, getattr(judge.config, "batch_size", 1))  # what the labelling job hands the judge at a time
    before = judge.tokens_processed
    records = []
    start = time.perf_counter()
    for i in range(0, len(pairs), chunk):
        records.extend(judge_pairs(judge, pairs[i : i + chunk], constitution, seed))
        log(f"  [{name}] {min(i + chunk, len(pairs))}/{len(pairs)} pairs, {time.perf_counter() - start:.1f} s")
    wall = time.perf_counter() - start
    n_principles = [len(constitution.principles_for(p, seed)) for p in pairs]
    return {
        "wall_s": wall,
        "tokens": judge.tokens_processed - before,
        "calls": None,
        "logit_positions": 2 * sum(n_principles),  # one label read per query (upper bound with shared tails)
        "labels": [r.label if r.status == "ok" else None for r in records],
        "no_label": sum(r.status != "ok" for r in records),
        "consistent": sum(bool(r.position_consistent) for r in records),
    }


# -------------------------------------------------------------------------------------------------------------
# Peak RSS of the labelling job (child process)
# -------------------------------------------------------------------------------------------------------------


def _status_kb(field: str) -> Optional[int]:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def memory_child(judge_spec: str, n: int, pairs_path: str, constitution_path: str, seed: int) -> None:
    """Load the judge, reset the RSS high-water mark, run `label` over the first n rows, print the peaks."""
    import rlaif
    from rlaif.config.judge import PythonJudgeConfig
    from rlaif.labeling.job import label

    judge = rlaif.load_judge(PythonJudgeConfig(function=RULE_FUNCTION) if judge_spec == "rule" else judge_spec)
    gc.collect()
    rss_before = _status_kb("VmRSS")
    load_peak = _status_kb("VmHWM")
    try:  # Linux ≥ 4.0: writing 5 resets VmHWM to the current RSS, so the peak is the job's, not the load's
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    with tempfile.TemporaryDirectory(prefix="bench_label_mem_") as out:
        t = time.perf_counter()
        res = label(pairs_path, constitution_path, judge, out, limit=n, seed=seed, skip_invalid=True, progress=False)
        wall = time.perf_counter() - t
    job_peak = _status_kb("VmHWM") if reset else None
    # VmHWM belongs to this process image. ru_maxrss would not do: Linux carries it over fork + exec, so a
    # child of the benchmark (which holds the model) would report the parent's peak.
    process_peak = (
        max(filter(None, (load_peak, job_peak))) if load_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    print(
        "MEMORY_RESULT "
        + json.dumps(
            {
                "judge": judge_spec,
                "rows": n,
                "labelled": res.labelled_now,
                "wall_s": round(wall, 2),
                "rss_before_job_kb": rss_before,
                "job_peak_kb": job_peak,
                "process_peak_kb": process_peak,
                "hwm_reset": reset,
            }
        ),
        flush=True,
    )


def run_memory(judge_spec: str, n: int, args) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_memory-child",
        judge_spec,
        str(n),
        "--pairs",
        args.pairs,
        "--constitution",
        args.constitution,
        "--seed",
        str(args.seed),
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY_RESULT ")]
    if proc.returncode != 0 or not lines:
        log(proc.stderr[-3000:])
        raise RuntimeError(f"memory child {judge_spec} n={n} failed (exit {proc.returncode})")
    out = json.loads(lines[-1][len("MEMORY_RESULT ") :])
    out["peak_kb"] = out["job_peak_kb"] or out["process_peak_kb"]
    log(
        f"  [memory {judge_label(judge_spec)}] {n} rows: peak {out['peak_kb'] / 1024:.0f} MiB "
        f"({time.perf_counter() - t:.1f} s)"
    )
    return out


def judge_label(spec: str) -> str:
    return f"rule judge ({RULE_FUNCTION})" if spec == "rule" else f"real model ({Path(spec).name})"


# -------------------------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------------------------


def agreement(labels, pairs) -> dict:
    judged = [(lab, p.human_label) for lab, p in zip(labels, pairs) if p.human_label in ("a", "b")]
    agree = sum(lab == h for lab, h in judged)
    decided = [(lab, h) for lab, h in judged if lab in ("a", "b")]
    return {
        "with_human_label": len(judged),
        "agree": agree,
        "agreement": agree / len(judged) if judged else None,
        "ties": sum(lab == "tie" for lab, _ in judged),
        "agreement_when_decided": (sum(lab == h for lab, h in decided) / len(decided)) if decided else None,
    }


def finish(res: dict, n_pairs: int, params: dict, flops: float) -> dict:
    res["pairs"] = n_pairs
    res["pairs_per_s"] = n_pairs / res["wall_s"]
    res["tokens_per_s"] = res["tokens"] / res["wall_s"]
    res["tokens_per_pair"] = res["tokens"] / n_pairs
    flop_pp = 2.0 * params["non_embedding"] * res["tokens_per_pair"]
    if not params["tied_head"]:  # an untied head costs only where logits are computed
        flop_pp += 2.0 * params["head"] * res["logit_positions"] / n_pairs
    res["model_flop_per_pair"] = flop_pp
    res["bound_pairs_per_s"] = flops / flop_pp
    res["fraction_of_bound"] = res["pairs_per_s"] / res["bound_pairs_per_s"]
    return res


def verdict(value: Optional[float], name: str) -> str:
    if value is None:
        return "n/a "
    threshold, op = TARGETS[name]
    ok = value >= threshold if op == ">=" else value < threshold
    return "PASS" if ok else "MISS"


def fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_report(report: dict) -> None:
    env, params, mm = report["machine"], report["model"]["params"], report["matmul"]
    print(
        f"# rlaif labelling benchmark  ({report['model']['name']}, {report['constitution']['name']}: "
        f"{report['constitution']['principles']} principles)"
    )
    print(
        f"pairs: {report['pairs']['n']} valid held-out pairs from row {report['pairs']['offset']} of "
        f"{report['pairs']['path']} (seed {report['seed']}; {report['pairs']['invalid_skipped']} invalid "
        f"rows skipped)"
    )
    print(
        f"machine: {env['platform']}, {env['cpu_count']} CPUs, torch {env['torch']} with "
        f"{env['torch_threads']} threads, device {env['device']}, dtype {env['dtype']}; load average "
        f"{env['loadavg_start']} at start, {env['loadavg_end']} at end"
    )
    if (env["loadavg_end"] or 0) > (env["cpu_count"] or 1) * 0.5 or (env["loadavg_start"] or 0) > (
        env["cpu_count"] or 1
    ) * 0.5:
        print("WARNING: the machine was busy during this run; timings are noisy.")
    print(
        f"model: {params['total'] / 1e6:.1f} M parameters, {params['non_embedding'] / 1e6:.1f} M non-embedding "
        f"(input embedding {params['embedding'] / 1e6:.1f} M excluded; output head "
        + (
            "tied to it, so excluded too"
            if params["tied_head"]
            else f"untied, {params['head'] / 1e6:.1f} M, counted only at positions where logits are computed: label "
            "reads for ours, generated tokens for naive generate() (transformers keeps last-position logits)"
        )
        + ")"
    )
    print(
        f"matmul {mm['shape']} {mm['dtype']}: best {mm['best'] / 1e9:.1f} GFLOP/s, median "
        f"{mm['median'] / 1e9:.1f} (measured before and after the methods; the best block is the bound)"
    )
    print(
        "bound pairs/s = matmul FLOP/s / (2 x non-embedding params x tokens run per pair); "
        "attention FLOPs are not counted, so the bound is generous to no one."
    )
    print()
    hdr = (
        f"{'method':<40} {'pairs':>5} {'wall s':>8} {'pairs/s':>9} {'tokens/s':>9} {'tok/pair':>9} "
        f"{'bound p/s':>9} {'%bound':>7} {'human agree':>12} {'ties':>5} {'no label':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    for key in sorted(report["methods"]):
        r = report["methods"][key]
        ag = r["agreement"]
        agree_s = f"{ag['agree']}/{ag['with_human_label']}" if ag["with_human_label"] else "-"
        print(
            f"({key}) {METHODS[key]:<36} {r['pairs']:>5} {r['wall_s']:>8.1f} {r['pairs_per_s']:>9.4f} "
            f"{r['tokens_per_s']:>9.1f} {r['tokens_per_pair']:>9.0f} {r['bound_pairs_per_s']:>9.4f} "
            f"{100 * r['fraction_of_bound']:>6.1f}% {agree_s:>12} {ag['ties']:>5} {r['no_label']:>8}"
        )
    notes = []
    for key in ("1", "2"):
        r = report["methods"].get(key)
        if r:
            notes.append(
                f"({key}) {r['calls']} generate() calls, {r['prompt_tokens']} prompt + "
                f"{r['generated_tokens']} generated tokens, {r['unparsed_answers']} answers without a "
                "parsable A/B"
            )
    for key in ("3", "4"):
        r = report["methods"].get(key)
        if r:
            notes.append(
                f"({key}) tokens from judge.tokens_processed; {r['consistent']}/{r['pairs']} labels position-consistent"
            )
    for key in ("3", "4"):
        r = report["methods"].get(key)
        if r and mm["median"] < 0.9 * mm["best"]:
            notes.append(
                f"({key}) against the median matmul rate instead of the best: "
                f"{100 * r['fraction_of_bound'] * mm['best'] / mm['median']:.1f}% of the bound "
                "(the rates differ: the machine was not quiet)"
            )
    for line in notes:
        print("  " + line)
    print(
        "  human agree: the method's label equals the human choice (ties and missing labels count as "
        "disagreement); for information only"
    )
    print()
    print("targets:")
    for name, (label_, value, fmt_) in report["ratios_display"].items():
        threshold, op = TARGETS[name]
        print(f"  {verdict(value, name)}  {label_:<60} {fmt(value, fmt_):>9}   (target {op} {threshold:g})")
    for mem in report.get("memory", []):
        name = "peak_rss_ratio"
        print(
            f"  {verdict(mem['ratio'], name)}  peak RSS {mem['n_big']}/{mem['n_small']} rows, "
            f"{mem['judge_label']:<44}{mem['ratio']:>7.3f}   (target < 1.5)"
        )
        for run in (mem["small"], mem["big"]):
            print(
                f"          {run['rows']:>5} rows: {run['labelled']} labelled in {run['wall_s']} s, RSS before "
                f"job {run['rss_before_job_kb'] / 1024:.0f} MiB, job peak {run['peak_kb'] / 1024:.0f} MiB, "
                f"whole-process peak {run['process_peak_kb'] / 1024:.0f} MiB"
            )
    if report.get("memory_skipped"):
        print(f"  n/a   peak RSS ratio: {report['memory_skipped']}")
    print(
        "  (job peak = VmHWM reset after the judge is loaded, so a model's load-time transient does not hide "
        "growth; it still includes the resident model)"
    )


# -------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help="pairs file (default: %(default)s)")
    ap.add_argument("--offset", type=int, default=500, help="skip this many rows: the tuning rows (default 500)")
    ap.add_argument("-n", type=int, default=24, help="number of held-out pairs (default 24)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", default=DEFAULT_JUDGE, help="transformers judge config (default judges/default.yaml)")
    ap.add_argument("--constitution", default=DEFAULT_CONSTITUTION)
    ap.add_argument("--methods", default="1,2,3,4", help="which of the four methods to run (default 1,2,3,4)")
    ap.add_argument(
        "--matmul-tokens",
        type=int,
        default=256,
        help="rows of the FLOP/s matmul: tokens in a typical forward (default 256)",
    )
    ap.add_argument("--matmul-seconds", type=float, default=3.0, help="time per FLOP/s measurement (default 3)")
    ap.add_argument("--skip-memory", action="store_true", help="skip the peak-RSS subprocess runs")
    ap.add_argument(
        "--memory-n", type=int, default=200, help="rule-judge memory run: N rows, then 10×N rows (default 200)"
    )
    ap.add_argument(
        "--memory-model-n",
        type=int,
        default=2,
        help="real-model memory run: N rows, then 10×N rows (default 2; 0 skips it)",
    )
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--_memory-child", nargs=2, metavar=("JUDGE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._memory_child:
        memory_child(args._memory_child[0], int(args._memory_child[1]), args.pairs, args.constitution, args.seed)
        return 0

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        ap.error("--methods takes a comma-separated subset of 1,2,3,4")
    load_start = loadavg()

    import torch
    import transformers

    import rlaif
    from rlaif.constitution import load_constitution

    transformers.logging.set_verbosity_error()
    constitution = load_constitution(args.constitution)
    first = constitution.principles[0]
    c_one = constitution.model_copy(update={"sampling": first.id})
    c_all = constitution.model_copy(update={"sampling": "all"})

    log(f"reading {args.n} held-out pairs from row {args.offset} of {args.pairs}")
    pairs, warm_pair, invalid = select_pairs(args.pairs, args.offset, args.n, args.seed)
    log(f"loading the judge {args.judge}")
    judge = rlaif.load_judge(args.judge)
    if not hasattr(judge, "model") or not hasattr(judge, "tokens_processed"):
        sys.exit("bench_label: the judge must be a transformers judge (it needs .model and .tokens_processed)")
    model = judge.model
    params = model_params(model)
    dtype = next(model.parameters()).dtype
    hidden = model.config.hidden_size
    inter = getattr(model.config, "intermediate_size", 4 * hidden)
    naive = NaiveJudge(judge, constitution)
    device = judge.device  # measure() runs after `del judge` too

    def measure(when: str) -> dict:
        log(f"measuring matmul FLOP/s ({when}): ({args.matmul_tokens}x{hidden})@({hidden}x{inter})")
        mm = matmul_flops(args.matmul_tokens, hidden, inter, device, dtype, args.matmul_seconds)
        log(f"  best {mm['best'] / 1e9:.1f} GFLOP/s, median {mm['median'] / 1e9:.1f}")
        return mm

    mm_before = measure("before")
    log("warming up both paths on one pair outside the timed set")
    naive.ask(warm_pair, warm_pair.response_a, warm_pair.response_b, first.text)
    from rlaif.labeling.pairwise import judge_pairs

    judge_pairs(judge, [warm_pair], c_one, args.seed)

    raw: dict[str, dict] = {}
    for key in RUN_ORDER:
        if key not in methods:
            continue
        log(f"({key}) {METHODS[key]}")
        if key == "1":
            raw[key] = run_naive(naive, pairs, [first], args.seed, "naive single")
        elif key == "2":
            raw[key] = run_naive(naive, pairs, constitution.principles, args.seed, "naive all")
        elif key == "3":
            raw[key] = run_ours(judge, pairs, c_one, args.seed, "ours 1 principle")
        else:
            raw[key] = run_ours(judge, pairs, c_all, args.seed, "ours all")
    mm_after = measure("after")
    best = max(mm_before["best"], mm_after["best"])
    matmul = dict(mm_before if mm_before["best"] >= mm_after["best"] else mm_after)
    matmul.update(
        best=best, median=statistics.median([mm_before["median"], mm_after["median"]]), before=mm_before, after=mm_after
    )

    results = {}
    for key, res in raw.items():
        res = finish(res, len(pairs), params, best)
        res["agreement"] = agreement(res["labels"], pairs)
        results[key] = res

    def ratio(a: str, b: str) -> Optional[float]:
        return results[a]["pairs_per_s"] / results[b]["pairs_per_s"] if a in results and b in results else None

    ratios = {
        "ours1_over_naive1_pairs_per_s": (
            "pairs/s (3)/(1): ours both orders vs naive one order",
            ratio("3", "1"),
            ".3f",
        ),
        "oursall_over_naiveall_pairs_per_s": (
            "pairs/s (4)/(2): whole constitution, ours vs naive",
            ratio("4", "2"),
            ".3f",
        ),
        "ours1_fraction_of_bound": (
            "fraction of FLOP bound, (3) ours 1 principle",
            results["3"]["fraction_of_bound"] if "3" in results else None,
            ".3f",
        ),
        "oursall_fraction_of_bound": (
            "fraction of FLOP bound, (4) ours all principles",
            results["4"]["fraction_of_bound"] if "4" in results else None,
            ".3f",
        ),
    }
    model_name, device_name = judge.config.model, str(judge.device)
    del judge, naive, model
    gc.collect()

    memory, memory_skipped = [], None
    if args.skip_memory:
        memory_skipped = "skipped (--skip-memory)"
    else:
        log("peak RSS of the labelling job, each size in its own subprocess")
        runs = []
        if args.memory_model_n > 0:
            runs.append((args.judge, args.memory_model_n))
        if args.memory_n > 0:
            runs.append(("rule", args.memory_n))
        for spec, n in runs:
            small, big = run_memory(spec, n, args), run_memory(spec, 10 * n, args)
            memory.append(
                {
                    "judge": spec,
                    "judge_label": judge_label(spec),
                    "n_small": n,
                    "n_big": 10 * n,
                    "small": small,
                    "big": big,
                    "ratio": big["peak_kb"] / small["peak_kb"],
                }
            )

    report = {
        "seed": args.seed,
        "pairs": {
            "path": args.pairs,
            "offset": args.offset,
            "n": len(pairs),
            "invalid_skipped": invalid,
            "ids": [p.id for p in pairs],
        },
        "constitution": {
            "path": args.constitution,
            "name": constitution.name,
            "principles": len(constitution.principles),
            "first_principle": first.id,
        },
        "model": {
            "name": model_name,
            "judge_config": args.judge,
            "params": params,
            "hidden": hidden,
            "intermediate": inter,
        },
        "machine": {
            "platform": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": device_name,
            "dtype": str(dtype).replace("torch.", ""),
            "loadavg_start": load_start,
            "loadavg_end": loadavg(),
        },
        "matmul": matmul,
        "methods": {k: {kk: vv for kk, vv in v.items()} for k, v in results.items()},
        "ratios": {k: v[1] for k, v in ratios.items()},
        "ratios_display": ratios,
        "targets": {k: {"threshold": t, "op": op} for k, (t, op) in TARGETS.items()},
        "memory": memory,
        "memory_skipped": memory_skipped,
    }
    report["verdicts"] = {k: verdict(v, k).strip() for k, v in report["ratios"].items()}
    for mem in memory:
        report["verdicts"][f"peak_rss_ratio[{mem['judge_label']}]"] = verdict(mem["ratio"], "peak_rss_ratio")
    print_report(report)
    if args.json:
        out = {k: v for k, v in report.items() if k != "ratios_display"}
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
