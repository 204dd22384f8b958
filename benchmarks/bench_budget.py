"""What a human budget buys: people's labels for the pairs of highest priority against the same number at random.

The AI labels are the fitted jury's on HH-RLHF harmless rows 501–900 (`benchmarks/hh_jury.py` writes them to
WORK/report/jury). People's labels (the data's human choice) are revealed only for the pairs a budget sends to
them, through the mixed feedback source as `rlaif train` reads it:

  (0) AI only: `source: ai`, the jury's labels;
  (r) a share of the pairs to people at random: `source: mixed` with the revealed labels and no routing
      (margin 0), the mean over --seeds seeds with its spread;
  (u) the same share by priority: `source: mixed` with `budget_fraction`, which picks the pairs of highest
      `rlaif annotate select` priority.

For each share it prints the agreement of the resulting feedback with people's labels on every pair (a tie
counting ½, as in hh_jury.py) and each way's gain over (0). The target: gain(u) > gain(r).

Then the feedback reaches a reward model: SmolLM2-135M (the embedded model) with its weights frozen and a linear
reward head on its last hidden state at the last token, trained with rlaif's Bradley–Terry loss on each feedback
set's soft labels (p_a), and scored by pairwise accuracy against people on rows 901+ (--eval-rows of them). The
head alone is trained because a full or LoRA fine-tune of 135M parameters per feedback set, 20 random seeds
included, is hours of this 2-core CPU; the features are computed once and cached in WORK/features.pt.

  python benchmarks/bench_budget.py --work runs/hh-jury
"""

from __future__ import annotations

import argparse
import gzip
import random
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from rlaif.config.feedback import AIFeedback, MixedFeedback
from rlaif.data.labels import read_labels
from rlaif.data.pairs import read_pairs
from rlaif.feedback.calibration.match import human_record_from
from rlaif.feedback.calibration.metrics import agreement_ties_half
from rlaif.feedback.sources import budgeted, load_feedback
from rlaif.files import write_json_atomic, write_jsonl
from rlaif.intervals import bootstrap_ci
from rlaif.preference import label_for
from rlaif.train.losses import bradley_terry_loss

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"
EVAL_START = 900  # rows 901+, 0-based


# ---------------------------------------------------------------------------------------------- feedback sets


def jury_labels(work: Path) -> list[dict]:
    """The fitted jury's labels of the report split (ok ones with the data's human choice), in file order."""
    rows = [r for r in read_labels(work / "report" / "jury") if r.get("status") == "ok" and r.get("human_label")]
    if not rows:
        raise SystemExit(f"no labels in {work / 'report' / 'jury'}: run benchmarks/hh_jury.py --work {work} first")
    return rows


def revealed(records: list[dict], ids: set[str], path: Path) -> str:
    """People's labels of `ids` only, as a human label file: what the people a budget paid would have said."""
    write_jsonl((human_record_from(r) for r in records if r["id"] in ids), path)
    return str(path)


def feedback(config) -> dict[str, float]:
    """{pair id: p_a} of the feedback a source config yields, read as `rlaif train` reads it."""
    return {r["id"]: r["p_a"] for r in load_feedback(config, write_queue=False)}


def agreement_with_people(fb: dict[str, float], records: list[dict], tie_margin: float) -> float:
    ai = np.array([label_for(fb[r["id"]], tie_margin) for r in records], dtype=object)
    return agreement_ties_half(ai, np.array([r["human_label"] for r in records], dtype=object))


def credit(r: dict, tie_margin: float) -> float:
    """What one AI label earns against people: 1 right, ½ a tie, 0 wrong (agreement_ties_half per pair)."""
    label = label_for(r["p_a"], tie_margin)
    return 0.5 if label == "tie" else float(label == r["human_label"])


def feedback_sets(records: list[dict], labels: Path, fraction: float, seeds: int, tmp: Path) -> dict:
    """(u) by priority and (r) at random, `seeds` times, for one share of the pairs; each set's pairs for people
    and its {pair id: p_a}."""
    common = dict(source="mixed", ai=str(labels), queue=str(tmp / "queue.jsonl"), pending="ai")
    chosen = set(budgeted(MixedFeedback(**common, budget_fraction=fraction)))
    by_priority = MixedFeedback(**common, budget_fraction=fraction, human=revealed(records, chosen, tmp / "u.jsonl"))
    out = {"u": [(chosen, feedback(by_priority))], "r": []}
    ids = [r["id"] for r in records]
    for seed in range(seeds):
        pick = set(random.Random(seed).sample(ids, len(chosen)))
        at_random = MixedFeedback(**common, margin=0.0, human=revealed(records, pick, tmp / f"r{seed}.jsonl"))
        out["r"].append((pick, feedback(at_random)))
    return out


# ---------------------------------------------------------------------------------------------- the reward model


def hh_rows(data: Path, start: int, stop: int) -> list:
    """Pairs of rows [start, stop) of the HH file that read as a pair."""
    with gzip.open(data, "rt", encoding="utf-8") as f:
        lines = [line for i, line in enumerate(f) if start <= i < stop]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.jsonl"
        path.write_text("".join(lines), encoding="utf-8")
        return [p for p in read_pairs(path, skip_invalid=True) if not p.invalid]


@torch.no_grad()
def features(texts: dict[str, tuple[list, str]], max_length: int, threads: int) -> dict[str, torch.Tensor]:
    """The embedded model's last-layer hidden state at the last token of prompt + response, per key."""
    from transformers import AutoModel, AutoTokenizer

    from rlaif.config.judge import load_judge_config
    from rlaif.models.loading import resolve_model_dir

    torch.set_num_threads(threads)
    judge = load_judge_config(ROOT / "judges" / "default.yaml")
    path = resolve_model_dir(judge.model, judge.model_package, judge.gguf_file)
    tok = AutoTokenizer.from_pretrained(path)
    tok.truncation_side = "left"  # keep the response and the end of the prompt
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    out, t0 = {}, time.perf_counter()
    for i, (key, (prompt, response)) in enumerate(texts.items()):
        text = tok.apply_chat_template(
            [*prompt, {"role": "assistant", "content": response}], tokenize=False, add_generation_prompt=False
        )
        ids = tok(text, return_tensors="pt", truncation=True, max_length=max_length)
        out[key] = model(**ids).last_hidden_state[0, -1].clone()
        if (i + 1) % 200 == 0:
            print(f"  features {i + 1}/{len(texts)} ({(i + 1) / (time.perf_counter() - t0):.1f}/s)", flush=True)
    return out


def messages(prompt) -> list[dict]:
    """A pair's prompt as chat messages (a plain prompt is one user turn)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [m if isinstance(m, dict) else {"role": m.role, "content": m.content} for m in prompt]


def train_head(fa: torch.Tensor, fb: torch.Tensor, p_a: torch.Tensor, l2: float, steps: int) -> torch.nn.Linear:
    """A linear reward head r(x) = w·h(x) + c on frozen features, fitted by full-batch L-BFGS on the mean
    Bradley–Terry loss with soft targets p_a plus l2·|w|²."""
    torch.manual_seed(0)
    head = torch.nn.Linear(fa.shape[1], 1)
    torch.nn.init.zeros_(head.weight)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = bradley_terry_loss(head(fa)[:, 0], head(fb)[:, 0], p_a).mean() + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def accuracy(head: torch.nn.Linear, ea: torch.Tensor, eb: torch.Tensor, chosen_a: torch.Tensor) -> np.ndarray:
    """Per eval pair: 1 if the head ranks people's choice higher, ½ on an exact tie, else 0."""
    with torch.no_grad():
        d = head(ea)[:, 0] - head(eb)[:, 0]
    d = torch.where(chosen_a, d, -d)
    return torch.where(d > 0, 1.0, torch.where(d == 0, 0.5, 0.0)).numpy()


# ---------------------------------------------------------------------------------------------- the run


def _fmt(ci: Optional[list[float]]) -> str:
    return "" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/hh-jury")
    ap.add_argument("--data", default=str(HH))
    ap.add_argument("--fractions", default="0.05,0.1,0.2")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tie-margin", type=float, default=0.05)
    ap.add_argument("--eval-rows", type=int, default=500, help="rows 901.. of the data the reward model is scored on")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--l2", type=float, default=1e-2, help="the head's weight penalty (fixed before any run)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--no-reward-model", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    labels = work / "report" / "jury"
    records = jury_labels(work)
    fractions = [float(x) for x in args.fractions.split(",")]
    t0 = time.perf_counter()

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = feedback(AIFeedback(source="ai", ai=str(labels)))
        sets = {f: feedback_sets(records, labels, f, args.seeds, tmp) for f in fractions}
    a0 = agreement_with_people(base, records, args.tie_margin)
    lines = [
        f"Feedback on HH-RLHF harmless rows 501–900 ({len(records)} pairs the fitted jury labelled), agreement with "
        f"people on every pair (a tie counting ½). (0) AI only: {a0:.3f}.",
        "",
        "| share to people | pairs | (r) random, mean ± sd over "
        f"{args.seeds} seeds [min, max] | (u) by priority | gain (r) | gain (u) | gain(u) > gain(r) |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = {"pairs": len(records), "ai_only": a0, "fractions": {}}
    for f, s in sets.items():
        ar = np.array([agreement_with_people(fb, records, args.tie_margin) for _, fb in s["r"]])
        au = agreement_with_people(s["u"][0][1], records, args.tie_margin)
        n = len(s["u"][0][0])
        lines.append(
            f"| {f:.0%} | {n} | {ar.mean():.3f} ± {ar.std(ddof=1):.3f} [{ar.min():.3f}, {ar.max():.3f}] | {au:.3f} | "
            f"{ar.mean() - a0:+.3f} | {au - a0:+.3f} | {'yes' if au - a0 > ar.mean() - a0 else 'NO'} |"
        )
        # why: what the jury's own labels earned on the pairs each way sent to people (1 right, ½ a tie, 0 wrong)
        right = {r["id"]: credit(r, args.tie_margin) for r in records}
        summary["fractions"][f] = {
            "pairs": n,
            "random_mean": float(ar.mean()),
            "random_sd": float(ar.std(ddof=1)),
            "priority": au,
            "jury_right_on_priority_pairs": float(np.mean([right[i] for i in s["u"][0][0]])),
            "jury_right_on_random_pairs": float(np.mean([np.mean([right[i] for i in ids]) for ids, _ in s["r"]])),
        }
    lines.append("")
    lines.append(
        "What the jury's own labels earned (1 right, ½ a tie, 0 wrong) on the pairs sent to people: "
        + "; ".join(
            f"{v['jury_right_on_priority_pairs']:.3f} on the priority pairs and "
            f"{v['jury_right_on_random_pairs']:.3f} on the random ones at {f:.0%}"
            for f, v in summary["fractions"].items()
        )
        + f"; {a0:.3f} on all. A pair sent to people gains 1 minus that: the lower, the better the choice."
    )

    if not args.no_reward_model:
        lines += ["", *reward_models(args, work, records, base, sets)]
    lines.append(f"\nwall time {time.perf_counter() - t0:.0f} s")
    text = "\n".join(lines) + "\n"
    (work / "README-budget.md").write_text(text, encoding="utf-8")
    write_json_atomic(work / "budget.json", summary)
    print(text)


def reward_models(args, work: Path, records: list[dict], base: dict, sets: dict) -> list[str]:
    """Train the frozen-feature reward head on each feedback set and score it on rows 901+."""
    train = {r["id"]: r for r in records}
    evals = hh_rows(Path(args.data), EVAL_START, EVAL_START + args.eval_rows)
    cache = work / "features.pt"
    key = {"model": "judges/default.yaml", "max_length": args.max_length, "eval_rows": args.eval_rows}
    cached = torch.load(cache) if cache.exists() else None
    if cached is None or cached["key"] != key or any(f"{i}:a" not in cached["h"] for i in train):
        texts = {}
        for r in records:
            texts[f"{r['id']}:a"] = (messages(r["prompt"]), r["response_a"])
            texts[f"{r['id']}:b"] = (messages(r["prompt"]), r["response_b"])
        for p in evals:
            texts[f"{p.id}:a"] = (messages(p.prompt), p.response_a)
            texts[f"{p.id}:b"] = (messages(p.prompt), p.response_b)
        print(f"features: {len(texts)} responses through SmolLM2-135M (frozen), once")
        cached = {"key": key, "h": features(texts, args.max_length, args.threads)}
        torch.save(cached, cache)
    h = cached["h"]
    ids = list(train)
    fa = torch.stack([h[f"{i}:a"] for i in ids])
    fb = torch.stack([h[f"{i}:b"] for i in ids])
    mu, sd = torch.cat([fa, fb]).mean(0), torch.cat([fa, fb]).std(0) + 1e-6
    fa, fb = (fa - mu) / sd, (fb - mu) / sd
    ea = (torch.stack([h[f"{p.id}:a"] for p in evals]) - mu) / sd
    eb = (torch.stack([h[f"{p.id}:b"] for p in evals]) - mu) / sd
    chosen_a = torch.tensor([p.human_label == "a" for p in evals])

    def score(fb_: dict[str, float]) -> np.ndarray:
        head = train_head(fa, fb, torch.tensor([fb_[i] for i in ids], dtype=torch.float32), args.l2, args.steps)
        return accuracy(head, ea, eb, chosen_a)

    people = {r["id"]: {"a": 1.0, "b": 0.0, "tie": 0.5}[r["human_label"]] for r in records}
    acc0, acc_people = score(base), score(people)
    ci = lambda x: bootstrap_ci(np.mean, [x], args.resamples, 0)  # noqa: E731
    out = [
        f"Reward model: SmolLM2-135M frozen + a linear head (Bradley–Terry on soft labels, L-BFGS, l2 {args.l2:g}), "
        f"trained on the {len(ids)} pairs of rows 501–900 with each feedback set, pairwise accuracy against people on "
        f"rows 901–{EVAL_START + args.eval_rows} ({len(evals)} pairs); 95% bootstrap intervals over the eval pairs.",
        "",
        "| feedback | accuracy on rows 901+ |",
        "|---|---|",
        f"| (0) AI only (the fitted jury) | {acc0.mean():.3f}{_fmt(ci(acc0))} |",
    ]
    for f, s in sets.items():
        accs_r = np.array([score(fb_).mean() for _, fb_ in s["r"]])
        acc_u = score(s["u"][0][1])
        out.append(
            f"| {f:.0%} to people at random, mean ± sd over {len(accs_r)} seeds | "
            f"{accs_r.mean():.3f} ± {accs_r.std(ddof=1):.3f} |"
        )
        out.append(f"| {f:.0%} to people by priority | {acc_u.mean():.3f}{_fmt(ci(acc_u))} |")
    out.append(f"| people's labels on every pair | {acc_people.mean():.3f}{_fmt(ci(acc_people))} |")
    return out


if __name__ == "__main__":
    main()
