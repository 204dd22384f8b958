"""Preferences derived from score records (`rlaif score`, scores.jsonl): a pair's P(a preferred to b) from its two
scores, the pairwise view every label reader gets of a score folder, and the binarisation of scored samples into
preference pairs (UltraFeedback, Cui et al. 2023; Zephyr's DPO data). Pure functions over record dicts; the files
are read by labels.py.

P(a ≻ b) = σ((s_a − s_b) / T): s is the expected score oriented by the principle (an inverted principle's scale
read backwards), in score points, and T the judge config's `score.temperature`, applied here and never at scoring
time, so refitting it (`rlaif calibrate fit`) invalidates no job.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Iterable, Iterator, Optional, Sequence

from ..numbers import positive_problem, range_problem
from ..preference import label_for
from ..records import sha256_json

SCORES_FILE = "scores.jsonl"
PAIRS_FROM = ("best-vs-random", "best-vs-worst", "all-above-margin")


def points(record: dict, scale: tuple[int, int]) -> float:
    """The record's reward in [-1, 1] back on the score scale: its expected score, read backwards under an inverted
    principle (so higher is always preferred)."""
    low, high = scale
    return low + (record["reward"] + 1.0) / 2.0 * (high - low)


def p_preferred(s_a: float, s_b: float, temperature: float) -> float:
    """σ((s_a − s_b) / T), computed without overflow."""
    z = (s_a - s_b) / temperature
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def derived_pair(a: dict, b: dict, pair_id: str, scale: tuple[int, int], temperature: float, tie_margin: float) -> dict:
    """One label record (the labels.jsonl form) from the score records of its two responses: `source: ai`, the
    judge with `mode: score`, and both expected scores kept in `scores`."""
    ok = a.get("status") == "ok" and b.get("status") == "ok"
    record = {
        "id": pair_id,
        "key": sha256_json([a.get("key"), b.get("key"), temperature])[:32],
        "prompt": a["prompt"],
        "response_a": a["response"],
        "response_b": b["response"],
        "status": "ok" if ok else "failed",
        "principle_id": a.get("principle_id"),
        "constitution_sha256": a.get("constitution_sha256"),
        "judge": a.get("judge"),
        "source": "ai",
        "scores": [a.get("score"), b.get("score")],
        "conversational": bool(a.get("conversational")),
        "prompt_tokens": a.get("prompt_tokens", 0) + b.get("prompt_tokens", 0),
        "completion_tokens": a.get("completion_tokens", 0) + b.get("completion_tokens", 0),
    }
    if a.get("human_label") is not None:
        record["human_label"] = a["human_label"]
    if ok:
        p_a = p_preferred(points(a, scale), points(b, scale), temperature)
        # each response was rated alone: no order was shown, so position cannot sway the preference
        record.update(p_a=p_a, label=label_for(p_a, tie_margin), position_consistent=True)
    else:
        record.update(
            p_a=None, label=None, error=next(r.get("error") for r in (a, b) if r.get("status") != "ok") or "no score"
        )
    return record


def derived_labels(
    records: Iterable[dict], scale: tuple[int, int], temperature: float, tie_margin: float
) -> Iterator[dict]:
    """The pairwise view of score records: each input pair (its "a" and "b" records), and for samples of
    `rlaif generate` every pair i < j of a prompt's samples, with the pair id `rlaif generate` gives it."""
    sides: dict[str, dict[str, dict]] = defaultdict(dict)
    samples: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in records:
        if r.get("pair_id") is not None:
            sides[r["pair_id"]][r["side"]] = r
        elif r.get("sample") is not None:
            samples[r["prompt_id"]][r["sample"]] = r
    for pair_id, both in sides.items():
        if "a" in both and "b" in both:
            yield derived_pair(both["a"], both["b"], pair_id, scale, temperature, tie_margin)
    for group in samples.values():
        order = sorted(group)
        for x, i in enumerate(order):
            for j in order[x + 1 :]:
                a, b = group[i], group[j]
                pair_id = sha256_json([a["prompt"], a["response"], b["response"], i, j])[:16]
                yield derived_pair(a, b, pair_id, scale, temperature, tie_margin)


def prompt_groups(records: Iterable[dict]) -> dict[str, list[dict]]:
    """The scored responses of each prompt, in sample order (input order for pairs: a before b)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["prompt_id"]].append(r)
    for group in groups.values():
        group.sort(
            key=lambda r: (
                r.get("sample") if r.get("sample") is not None else 0,
                r.get("side") or "",
                r.get("pair_id") or "",
            )
        )
    return groups


def binarize(
    records: Iterable[dict],
    how: str,
    scale: tuple[int, int],
    temperature: float,
    seed: int = 0,
    min_margin: float = 0.0,
) -> Iterator[tuple[dict, dict]]:
    """(chosen, rejected) score records per prompt, from its responses scored ok:
    best-vs-random: the best against one of those scored lower, drawn by (seed, prompt id) — UltraFeedback's rule;
    best-vs-worst: the best against the worst; all-above-margin: every pair whose scores differ by more than
    `min_margin`. Ties on the best (or worst) score go to the earlier sample; a pair closer than `min_margin`
    (in score points), or with equal scores, is dropped."""
    check_pairs_from(how, min_margin)
    for prompt_id, group in prompt_groups(records).items():
        ok, seen = [], set()
        for r in group:  # a response that several pairs of a prompt share is one candidate, not several
            if r.get("status") == "ok" and r.get("reward") is not None and r.get("response") not in seen:
                seen.add(r.get("response"))
                ok.append(r)
        if len(ok) < 2:
            continue
        s = [points(r, scale) for r in ok]
        if how == "all-above-margin":
            pairs = [(i, j) if s[i] >= s[j] else (j, i) for i in range(len(ok)) for j in range(i + 1, len(ok))]
        else:
            best = max(range(len(ok)), key=lambda k: (s[k], -k))
            if how == "best-vs-worst":
                other = min(range(len(ok)), key=lambda k: (s[k], k))
                if other == best:
                    continue
            else:
                rest = [k for k in range(len(ok)) if s[k] < s[best]]
                if not rest:
                    continue
                other = random.Random(f"{seed}:{prompt_id}").choice(rest)
            pairs = [(best, other)]
        for i, j in pairs:
            if s[i] - s[j] > 0.0 and s[i] - s[j] >= min_margin:  # equal scores say nothing about which is better
                yield ok[i], ok[j]


def binarized_labels(
    records: Iterable[dict],
    how: str,
    scale: tuple[int, int],
    temperature: float,
    tie_margin: float,
    seed: int = 0,
    min_margin: float = 0.0,
) -> Iterator[dict]:
    """Scored samples binarised per prompt (`binarize`) as label records (the labels.jsonl form of
    `derived_pair`): response_a the chosen, p_a = σ((s_chosen − s_rejected) / T), `source: ai`, the judge with
    `mode: score`, both expected scores kept; the id is the one `trl_pair_row` gives the pair. What `rlaif loop`
    trains on with a score judge."""
    for chosen, rejected in binarize(records, how, scale, temperature, seed, min_margin):
        yield derived_pair(
            chosen, rejected, sha256_json([chosen["id"], rejected["id"]])[:16], scale, temperature, tie_margin
        )


def trl_pair_row(chosen: dict, rejected: dict, scale: tuple[int, int], temperature: float) -> dict:
    """One binarised pair in TRL's preference format (as rlaif export writes labels), both scores kept."""
    prompt, c, r = chosen["prompt"], chosen["response"], rejected["response"]
    if chosen.get("conversational") or isinstance(prompt, list):
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        c, r = [{"role": "assistant", "content": c}], [{"role": "assistant", "content": r}]
    return {
        "id": sha256_json([chosen["id"], rejected["id"]])[:16],
        "prompt": prompt,
        "chosen": c,
        "rejected": r,
        "p_chosen": p_preferred(points(chosen, scale), points(rejected, scale), temperature),
        "score_chosen": chosen["score"],
        "score_rejected": rejected["score"],
        "source": "ai",
        "principle_id": chosen.get("principle_id"),
        "constitution_sha256": chosen.get("constitution_sha256"),
    }


def scale_of(manifest: Optional[dict], where: object = "the manifest") -> tuple[tuple[int, int], float, float]:
    """The score scale, T and the tie margin of a score folder, from the judge config its manifest keeps (the
    defaults without one). The tie margin is the constitution's when it sets one (the manifest's `tie_margin`),
    else the judge's, as for pairwise labels and win rates. A manifest someone edited into numbers no score can
    have (a scale whose high is not above its low, T not above 0, a margin outside [0, 0.5]) is an error naming
    `where` and the field."""
    manifest = manifest or {}
    judge = manifest.get("judge") if isinstance(manifest.get("judge"), dict) else {}
    score = judge.get("score") if isinstance(judge.get("score"), dict) else {}
    margin = manifest.get("tie_margin")
    margin_field = "tie_margin" if margin is not None else "judge.tie_margin"
    low, high = score.get("low", 1), score.get("high", 10)
    temperature = score.get("temperature", 1.0)
    margin = margin if margin is not None else judge.get("tie_margin", 0.05)
    for name, problem in (
        (
            "judge.score",
            None
            if isinstance(low, int)
            and isinstance(high, int)
            and not isinstance(low, bool)
            and not isinstance(high, bool)
            and low < high
            else f"low {low!r} and high {high!r} are no scale (whole numbers, high above low)",
        ),
        ("judge.score.temperature", positive_problem(temperature, "T")),
        (margin_field, range_problem(margin, "the tie margin", 0.0, 0.5)),
    ):
        if problem is not None:
            raise ValueError(f"{where}: {name}: {problem}")
    return (low, high), float(temperature), float(margin)


def check_pairs_from(how: Optional[str], min_margin: float) -> None:
    if how is not None and how not in PAIRS_FROM:
        raise ValueError(f"--pairs-from must be one of {', '.join(PAIRS_FROM)}, got {how!r}")
    if not (math.isfinite(min_margin) and min_margin >= 0):
        raise ValueError(f"--min-margin must be a number >= 0, got {min_margin}")


__all__: Sequence[str] = (
    "SCORES_FILE",
    "PAIRS_FROM",
    "binarize",
    "binarized_labels",
    "derived_labels",
    "p_preferred",
    "scale_of",
    "trl_pair_row",
)
