#!/usr/bin/env python
"""Ranking n samples per prompt: a score judge (n calls) against the pairwise judge's both-orders round robin
(n·(n−1) calls), in one run, on the same prompts, samples and loaded model.

The prompts are held-out HH-RLHF harmless conversations (rows after the first --offset 500 tuning rows of
../shared/data/hh-rlhf-harmless-test.jsonl.gz); the n samples per prompt are drawn once, before any timing, from
the judge's own model (SmolLM2-135M-Instruct, temperature 1, --max-new-tokens). Both routes judge by the first
principle of the constitution:

  score     `judge.score`: each sample rated on 1..10 (one prefix per prompt shared by its n samples); the
            ranking is by expected score.
  pairwise  `judge.judge` on every pair i < j in both orders (each prompt's prefix shared by its pairs); the
            ranking is by the sum of each sample's debiased P(wins) over its n − 1 games.

It prints judge calls, tokens run through the model, prompts/s and the ratio, and Kendall's τ-b between the two
rankings (mean over prompts), for each n. Target: score prompts/s ≥ 5 × pairwise prompts/s at n = 8.

    python benchmarks/bench_score.py                  # 6 prompts, n = 4 and 8
    python benchmarks/bench_score.py -p 2 --ns 4      # a quick look
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_PAIRS = str(ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz")  # ../shared beside the repo


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """Kendall's τ-b (ties in either ranking handled), NaN when either is constant."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx * dy > 0:
            concordant += 1
        else:
            discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else math.nan


def prompts_from(path: str, offset: int, count: int) -> list:
    from rlaif.data.pairs import read_pairs

    return [
        p.prompt for p in itertools.islice(read_pairs(path, skip_invalid=True), offset, offset + count) if not p.invalid
    ]


def rank_by_scores(judge, prompt, samples, principle) -> tuple[list[float], int, int]:
    before = judge.tokens_processed
    verdicts = judge.score(judge.score_queries(prompt, samples, principle))
    values = judge.config.score.values
    scores = [sum(v * p for v, p in zip(values, vd.probs)) if vd.probs else math.nan for vd in verdicts]
    return scores, len(verdicts), judge.tokens_processed - before


def rank_by_pairs(judge, prompt, samples, principle, constitution) -> tuple[list[float], int, int]:
    from rlaif.records import Pair

    before = judge.tokens_processed
    games = list(itertools.combinations(range(len(samples)), 2))
    queries = [
        q for i, j in games for q in judge.queries(Pair(prompt, samples[i], samples[j]), [principle], constitution)
    ]
    verdicts = judge.judge(queries)
    wins = [0.0] * len(samples)
    for k, (i, j) in enumerate(games):
        p_i = (verdicts[2 * k].p_first + 1.0 - verdicts[2 * k + 1].p_first) / 2  # both orders, debiased
        wins[i] += p_i
        wins[j] += 1.0 - p_i
    return wins, len(queries), judge.tokens_processed - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=DEFAULT_PAIRS)
    ap.add_argument("--judge", default=str(ROOT / "judges" / "default.yaml"))
    ap.add_argument("--constitution", default=str(ROOT / "constitutions" / "harmless.yaml"))
    ap.add_argument("--offset", type=int, default=500)
    ap.add_argument("-p", "--prompts", type=int, default=6)
    ap.add_argument("--ns", default="4,8", help="samples per prompt, comma-separated")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    ns = [int(n) for n in args.ns.split(",")]

    import torch

    from rlaif.config.judge import load_judge_config
    from rlaif.constitution import load_constitution
    from rlaif.judges.registry import build_judge
    from rlaif.policy.sampling import SamplingConfig, sample

    constitution = load_constitution(args.constitution)
    principle = constitution.principles[0]
    config = load_judge_config(args.judge)
    t0 = time.time()
    pairwise = build_judge(config)
    scorer = copy.copy(pairwise)  # the same loaded model, in score mode
    scorer.config = config.model_copy(update={"mode": "score"})
    log(f"judge loaded in {time.time() - t0:.1f}s; sampling {max(ns)} responses for {args.prompts} prompts")
    prompts = prompts_from(args.pairs, args.offset, args.prompts)
    groups = sample(
        pairwise.model,
        pairwise.tokenizer,
        prompts,
        max(ns),
        SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0, batch_size=16),
        seed=args.seed,
    )
    samples = [[s.text.strip() or "(empty)" for s in g] for g in groups]

    results = {
        "threads": torch.get_num_threads(),
        "prompts": len(prompts),
        "principle": principle.id,
        "max_new_tokens": args.max_new_tokens,
        "by_n": {},
    }
    for n in ns:
        row = {}
        for route in ("score", "pairwise"):  # the two sides of each ratio run next to each other
            calls = tokens = 0
            rankings = []
            start = time.perf_counter()
            for prompt, group in zip(prompts, samples):
                if route == "score":
                    values, c, t = rank_by_scores(scorer, prompt, group[:n], principle)
                else:
                    values, c, t = rank_by_pairs(pairwise, prompt, group[:n], principle, constitution)
                rankings.append(values)
                calls, tokens = calls + c, tokens + t
            wall = time.perf_counter() - start
            row[route] = {
                "calls_per_prompt": calls / len(prompts),
                "tokens_per_prompt": tokens / len(prompts),
                "prompts_per_s": len(prompts) / wall,
                "wall_s": wall,
                "rankings": rankings,
            }
            log(f"n={n} {route}: {wall:.1f}s")
        taus = [kendall_tau_b(a, b) for a, b in zip(row["score"]["rankings"], row["pairwise"]["rankings"])]
        finite = [t for t in taus if not math.isnan(t)]
        row["kendall_tau_b_per_prompt"] = taus
        row["kendall_tau_b_mean"] = sum(finite) / len(finite) if finite else math.nan
        row["speedup"] = row["score"]["prompts_per_s"] / row["pairwise"]["prompts_per_s"]
        results["by_n"][n] = row

    print(
        f"\n{len(prompts)} held-out HH prompts from row {args.offset + 1}, {max(ns)} samples each "
        f"({args.max_new_tokens} new tokens max), judge {config.model}, principle '{principle.id}', "
        f"{results['threads']} torch threads, load average {os.getloadavg()[0]:.2f}\n"
    )
    print("| n | route | judge calls / prompt | tokens run / prompt | prompts/s |")
    print("|---|---|---|---|---|")
    for n, row in results["by_n"].items():
        for route in ("score", "pairwise"):
            r = row[route]
            print(
                f"| {n} | {route} | {r['calls_per_prompt']:.0f} | {r['tokens_per_prompt']:,.0f} | "
                f"{r['prompts_per_s']:.3f} |"
            )
    print(
        "\n| n | score / pairwise prompts/s | pairwise / score calls | Kendall τ-b, score vs pairwise ranking "
        "(mean over prompts) |"
    )
    print("|---|---|---|---|")
    for n, row in results["by_n"].items():
        print(
            f"| {n} | {row['speedup']:.1f}× "
            f"| {row['pairwise']['calls_per_prompt'] / row['score']['calls_per_prompt']:.0f}× "
            f"| {row['kendall_tau_b_mean']:+.3f} |"
        )
    if 8 in results["by_n"]:
        speedup = results["by_n"][8]["speedup"]
        print(f"\ntarget: score ≥ 5× pairwise prompts/s at n = 8: {speedup:.1f}× {'PASS' if speedup >= 5 else 'MISS'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
