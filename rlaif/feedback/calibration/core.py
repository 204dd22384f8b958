"""How far the AI judge agrees with people, and a monotone map that corrects its probabilities.

Three parts, all numpy and hand-checkable: reading labels and matching AI to human labels by pair `id`; the
metrics (agreement, Cohen's kappa, human–human agreement, position consistency, ECE and reliability bins, length
bias, percentile-bootstrap intervals); and calibration maps (temperature, Platt, isotonic) fitted on a split of
the matched pairs, saved as JSON and applied to label files with the raw `p_a` kept.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from ...labeling.preference import label_for
from ...data.labels import labels_file, read_labels, write_json_atomic, write_jsonl
from ...records import LabelRecord, sha256_json

HUMAN_P = {"a": 1.0, "b": 0.0, "tie": 0.5}
# The annotator of a human choice that came with the data (`human_label`): the name `rlaif human import` gives
# such choices, so the same choice read either way counts once.
DATASET_ANNOTATOR = "imported"
METHODS = ("isotonic", "platt", "temperature")
MAP_FORMAT = "rlaif-calibration-map"
_EPS = 1e-6


# ---------------------------------------------------------------------------------------------- reading


def human_record_from(r: dict) -> dict:
    """The human choice a record carries in `human_label` (data such as HH-RLHF) as a human label record."""
    label = r["human_label"]
    return LabelRecord(
        id=r["id"], key=sha256_json(["human", r["id"], DATASET_ANNOTATOR]), prompt=r["prompt"],
        response_a=r["response_a"], response_b=r["response_b"], p_a=HUMAN_P[label], label=label, status="ok",
        principle_id=r.get("principle_id"), source="human", annotator=DATASET_ANNOTATOR, shown_order=None,
        conversational=r.get("conversational", False)).to_json()


def human_labels(records: Iterable[dict]) -> dict[str, list[dict]]:
    """Human labels by pair id, one per annotator (a later label by the same annotator replaces the earlier).

    Records with `source: "human"` are used as they are; any other record that carries a `human_label` (AI labels
    of data with a known human choice) gives a human record from annotator "imported"."""
    by_id: dict[str, dict[str, dict]] = {}
    for r in records:
        if r.get("source") == "human":
            if r.get("status", "ok") == "ok" and r.get("label") in HUMAN_P:
                by_id.setdefault(r["id"], {})[r.get("annotator") or "anonymous"] = r
        elif r.get("human_label") in HUMAN_P:
            by_id.setdefault(r["id"], {}).setdefault(DATASET_ANNOTATOR, human_record_from(r))
    return {pid: list(ann.values()) for pid, ann in by_id.items()}


def majority(labels: Sequence[str]) -> str:
    """The label with strictly the most votes; 'tie' when no label has (e.g. one 'a' and one 'b')."""
    counts = {k: labels.count(k) for k in HUMAN_P}
    best = max(counts.values())
    winners = [k for k, c in counts.items() if c == best]
    return winners[0] if len(winners) == 1 else "tie"


def human_target(labels: Sequence[dict]) -> float:
    """P(people prefer response_a) for one pair: the mean of its annotators' p_a (a=1, b=0, tie=0.5)."""
    return float(np.mean([HUMAN_P[r["label"]] for r in labels]))


@dataclass
class Matched:
    """AI labels (status ok, source ai) that have human labels, as parallel arrays; one entry per pair."""

    ids: list[str]
    p_a: np.ndarray                  # the judge's p_a
    p_a_raw: Optional[np.ndarray]    # its raw p_a when the labels were calibrated
    ai_label: np.ndarray             # 'a' | 'b' | 'tie'
    human_label: np.ndarray          # majority of the human labels
    human_p: np.ndarray              # mean human p_a (the calibration target)
    human_votes: list[list[str]]     # every annotator's label
    consistent: np.ndarray           # position_consistent
    len_a: np.ndarray
    len_b: np.ndarray
    principle: list[Optional[str]]
    per_principle: list[Optional[dict]]
    counts: dict

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: np.ndarray) -> "Matched":
        idx = np.flatnonzero(mask)

        def pick(xs: list) -> list:
            return [xs[i] for i in idx]
        return Matched(pick(self.ids), self.p_a[idx], None if self.p_a_raw is None else self.p_a_raw[idx],
                       self.ai_label[idx], self.human_label[idx], self.human_p[idx], pick(self.human_votes),
                       self.consistent[idx], self.len_a[idx], self.len_b[idx], pick(self.principle),
                       pick(self.per_principle), {**self.counts, "matched": len(idx)})


_SWAP = {"a": "b", "b": "a", "tie": "tie"}


def aligned_label(human: dict, ai: dict) -> str:
    """A human label in the AI label's response order. The same pair id can come in the other order (chosen/
    rejected data read with another seed); then a and b trade places. Different responses are an error."""
    ha, hb = human.get("response_a"), human.get("response_b")
    if ha is None or (ha, hb) == (ai["response_a"], ai["response_b"]):
        return human["label"]
    if (ha, hb) == (ai["response_b"], ai["response_a"]):
        return _SWAP[human["label"]]
    raise ValueError(f"pair {ai['id']}: the human label (annotator {human.get('annotator')}) is for different "
                     f"responses than the AI label; are they labels of the same data?")


def match(ai_records: Iterable[dict], humans: dict[str, list[dict]]) -> Matched:
    """Pair each usable AI label with the human labels of the same pair id, in the AI label's order."""
    rows = []
    counts = {"ai_records": 0, "ai_failed": 0, "ai_without_human": 0, "human_pairs": len(humans)}
    seen = set()
    for r in ai_records:
        if r.get("source", "ai") != "ai":
            continue
        counts["ai_records"] += 1
        if r.get("status") != "ok" or r.get("p_a") is None:
            counts["ai_failed"] += 1
            continue
        if r["id"] not in humans:
            counts["ai_without_human"] += 1
            continue
        if r["id"] in seen:
            raise ValueError(f"two AI labels for pair id {r['id']}: pass one label run at a time")
        seen.add(r["id"])
        rows.append((r, humans[r["id"]]))
    counts["matched"] = len(rows)
    votes = [[aligned_label(h, r) for h in hs] for r, hs in rows]
    raw = [r.get("p_a_raw") for r, _ in rows]
    return Matched(
        ids=[r["id"] for r, _ in rows],
        p_a=np.array([r["p_a"] for r, _ in rows], dtype=float),
        p_a_raw=np.array(raw, dtype=float) if rows and all(x is not None for x in raw) else None,
        ai_label=np.array([r["label"] for r, _ in rows], dtype=object),
        human_label=np.array([majority(v) for v in votes], dtype=object),
        human_p=np.array([np.mean([HUMAN_P[v] for v in vs]) for vs in votes], dtype=float),
        human_votes=votes,
        consistent=np.array([bool(r.get("position_consistent")) for r, _ in rows], dtype=bool),
        len_a=np.array([len(r["response_a"]) for r, _ in rows], dtype=float),
        len_b=np.array([len(r["response_b"]) for r, _ in rows], dtype=float),
        principle=[r.get("principle_id") for r, _ in rows],
        per_principle=[r.get("per_principle") for r, _ in rows],
        counts=counts)


def load_matched(ai: str | Path, human: str | Path) -> Matched:
    m = match(read_labels(ai), human_labels(read_labels(human)))
    if not len(m):
        raise ValueError(f"no pair id in {labels_file(ai)} has a human label in {labels_file(human)} "
                         f"({m.counts['ai_records']} AI labels, {m.counts['ai_failed']} failed; "
                         f"{m.counts['human_pairs']} pairs with human labels)")
    return m


# ---------------------------------------------------------------------------------------------- metrics
# Each metric is a function of per-pair arrays, so the bootstrap can recompute it on resampled pairs.
# Undefined values (nothing to count) are nan here and null in reports.


def _decided(ai: np.ndarray, human: np.ndarray) -> np.ndarray:
    return np.isin(ai, ("a", "b")) & np.isin(human, ("a", "b"))


def agreement(ai: np.ndarray, human: np.ndarray) -> float:
    """Share of pairs where the AI label equals the human majority, over pairs both decided (ties of either
    side are counted separately: see tie_rate)."""
    d = _decided(ai, human)
    return float(np.mean(ai[d] == human[d])) if d.any() else math.nan


def lean(p: np.ndarray) -> np.ndarray:
    """The side p_a leans to with no tie margin ('tie' only at exactly 0.5): what a soft label says."""
    return np.where(p > 0.5, "a", np.where(p < 0.5, "b", "tie")).astype(object)


def tie_rate(ai: np.ndarray, human: np.ndarray) -> float:
    """Share of pairs people decided on where the judge said tie."""
    h = np.isin(human, ("a", "b"))
    return float(np.mean(ai[h] == "tie")) if h.any() else math.nan


def cohen_kappa(x: np.ndarray, y: np.ndarray) -> float:
    """Cohen's kappa, (p_o - p_e) / (1 - p_e), with p_e from each rater's label frequencies (Cohen 1960).
    Computed on the pairs both decided, like `agreement`."""
    d = _decided(x, y)
    x, y = x[d], y[d]
    if not len(x):
        return math.nan
    p_o = float(np.mean(x == y))
    p_e = sum(float(np.mean(x == k)) * float(np.mean(y == k)) for k in ("a", "b"))
    return math.nan if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def pairwise_agreement(votes: Sequence[Sequence[str]]) -> np.ndarray:
    """Per pair with >= 2 human labels: the share of annotator pairs that gave the same label (tie = tie)."""
    out = []
    for v in votes:
        if len(v) < 2:
            continue
        same = sum(v[i] == v[j] for i in range(len(v)) for j in range(i + 1, len(v)))
        out.append(same / (len(v) * (len(v) - 1) / 2))
    return np.array(out, dtype=float)


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.asarray(p) * bins).astype(int), bins - 1)


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of P(a) (Naeini et al. 2015; Guo et al. 2017): the n-weighted mean over
    equal-width bins of |mean p - mean y|, with y the people's preference for a (1, 0, or a share)."""
    if not len(p):
        return math.nan
    b = _bin_index(p, bins)
    n = np.bincount(b, minlength=bins)
    gap = np.abs(np.bincount(b, p, bins) - np.bincount(b, y, bins))  # per bin: n * |mean p - mean y|
    return float(gap.sum() / n.sum())


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """The reliability diagram: per bin its range, count, mean p_a and the people's rate of preferring a."""
    b = _bin_index(p, bins)
    out = []
    for k in range(bins):
        m = b == k
        out.append({"lo": k / bins, "hi": (k + 1) / bins, "n": int(m.sum()),
                    "mean_p_a": float(p[m].mean()) if m.any() else None,
                    "human_rate": float(y[m].mean()) if m.any() else None})
    return out


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2)) if len(p) else math.nan


def longer_choice_rates(ai: np.ndarray, human: np.ndarray, len_a: np.ndarray, len_b: np.ndarray):
    """(judge, people) rates of preferring the longer response, over pairs both decided whose lengths differ."""
    m = _decided(ai, human) & (len_a != len_b)
    if not m.any():
        return math.nan, math.nan
    longer = np.where(len_a[m] > len_b[m], "a", "b")
    return float(np.mean(ai[m] == longer)), float(np.mean(human[m] == longer))


def length_bias(ai, human, len_a, len_b) -> float:
    """How much more often the judge than people prefers the longer response (a difference of rates)."""
    j, h = longer_choice_rates(ai, human, len_a, len_b)
    return j - h


def bootstrap_ci(stat: Callable[..., float], arrays: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> Optional[list[float]]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993): resample pairs with replacement `n_boot` times
    with a seeded generator and take the middle `level` of the statistic. None with no data; resamples where the
    statistic is undefined are dropped."""
    n = len(arrays[0]) if arrays else 0
    if n == 0 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = stat(*(a[idx] for a in arrays))
        if not math.isnan(v):
            values.append(v)
    if not values:
        return None
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _num(x: float, digits: int = 4) -> Optional[float]:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def _figure(value: float, n: int, ci: Optional[list[float]], **extra) -> dict:
    return {"value": _num(value), "n": int(n), "ci95": None if ci is None else [_num(c) for c in ci], **extra}


def principle_labels(m: Matched, tie_margin: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(AI labels, human labels) per principle. Under `sampling: all` each principle's own p_a gives its label
    (with `tie_margin`); otherwise a pair counts for the one principle it was judged under."""
    groups: dict[str, tuple[list, list]] = {}
    for i, pid in enumerate(m.principle):
        per = m.per_principle[i]
        items = ([(k, label_for(v, tie_margin)) for k, v in per.items() if v is not None] if per
                 else [(pid or "(none)", m.ai_label[i])])
        for k, lab in items:
            g = groups.setdefault(k, ([], []))
            g[0].append(lab)
            g[1].append(m.human_label[i])
    return {k: (np.array(a, dtype=object), np.array(h, dtype=object)) for k, (a, h) in sorted(groups.items())}


def compare(m: Matched, bins: int = 10, n_boot: int = 1000, seed: int = 0, tie_margin: float = 0.05) -> dict:
    """Every headline figure as a plain number, and a `details` map with each one's n and 95% interval."""
    ci = lambda stat, *arrays: bootstrap_ci(stat, arrays, n_boot, seed)  # noqa: E731
    ai, hu = m.ai_label, m.human_label
    decided = int(_decided(ai, hu).sum())
    hh = pairwise_agreement(m.human_votes)
    # length bias reads the judge's preference as the side p_a leans to, so a judge whose p_a stays within the
    # tie margin still shows its bias
    leans = lean(m.p_a)
    j_long, h_long = longer_choice_rates(leans, hu, m.len_a, m.len_b)
    n_len = int((_decided(leans, hu) & (m.len_a != m.len_b)).sum())
    details = {
        "agreement": _figure(agreement(ai, hu), decided, ci(agreement, ai, hu),
                             definition="AI label = human majority, over pairs both decided"),
        "agreement_lean": _figure(agreement(leans, hu), int(_decided(leans, hu).sum()), ci(agreement, leans, hu),
                                  definition="the side p_a leans to (no tie margin) = human majority"),
        "cohen_kappa": _figure(cohen_kappa(ai, hu), decided, ci(cohen_kappa, ai, hu)),
        "ai_tie_rate": _figure(tie_rate(ai, hu), int(np.isin(hu, ("a", "b")).sum()), ci(tie_rate, ai, hu),
                               definition="judge said tie, over pairs people decided"),
        "human_human_agreement": _figure(float(hh.mean()) if len(hh) else math.nan, len(hh),
                                         ci(lambda x: float(x.mean()), hh) if len(hh) else None,
                                         definition="pairwise, over pairs with >= 2 human labels"),
        "position_consistency": _figure(float(m.consistent.mean()), len(m),
                                        ci(lambda x: float(x.mean()), m.consistent)),
        "ece": _figure(ece(m.p_a, m.human_p, bins), len(m), ci(lambda p, y: ece(p, y, bins), m.p_a, m.human_p),
                       bins=bins),
        "brier": _figure(brier(m.p_a, m.human_p), len(m), ci(brier, m.p_a, m.human_p)),
        "length_bias": _figure(j_long - h_long, n_len, ci(length_bias, leans, hu, m.len_a, m.len_b),
                               judge_prefers_longer=_num(j_long), humans_prefer_longer=_num(h_long),
                               definition="rate the judge (side p_a leans to) minus rate people prefer the "
                                          "longer response, over pairs both decided whose lengths differ"),
    }
    per = {}
    for pid, (a, h) in principle_labels(m, tie_margin).items():
        per[pid] = _figure(agreement(a, h), int(_decided(a, h).sum()), ci(agreement, a, h))
    report = {name: d["value"] for name, d in details.items()}
    report["per_principle_agreement"] = {pid: d["value"] for pid, d in per.items()}
    report["n_pairs"] = len(m)
    details["per_principle_agreement"] = per
    report["details"] = details
    report["reliability"] = reliability(m.p_a, m.human_p, bins)
    if m.p_a_raw is not None:  # calibrated labels: show what the judge said before the map
        report["ece_raw"] = _num(ece(m.p_a_raw, m.human_p, bins))
        details["ece_raw"] = _figure(ece(m.p_a_raw, m.human_p, bins), len(m),
                                     ci(lambda p, y: ece(p, y, bins), m.p_a_raw, m.human_p), bins=bins)
        report["reliability_raw"] = reliability(m.p_a_raw, m.human_p, bins)
    report["counts"] = m.counts
    report["bootstrap"] = {"resamples": n_boot, "seed": seed, "level": 0.95, "method": "percentile"}
    return report


# ---------------------------------------------------------------------------------------------- fitting
# A map f: p_a -> P(people prefer a). Which response is "a" is arbitrary (pairs come in random order), so by
# default each pair also enters the fit swapped, (1 - p, 1 - y): the map then satisfies f(1 - p) ≈ 1 - f(p).


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_platt(p: np.ndarray, y: np.ndarray, temperature: bool = False, l2: float = 1e-4) -> dict:
    """Platt scaling (Platt 1999) on the judge's logit: f(p) = σ(a·logit(p) + b), fitted by Newton's method on
    the cross-entropy with soft targets y. `temperature` fixes b = 0 (Guo et al. 2017; T = 1/a). The slope is
    kept >= 0 so the map never reverses the judge's ranking; a small L2 keeps it finite on separable data."""
    z = _logit(np.asarray(p, float))
    y = np.asarray(y, float)
    X = np.stack([z, np.ones_like(z)], 1)[:, :1 if temperature else 2]
    w = np.zeros(X.shape[1])
    if not temperature:
        w[1] = float(_logit(np.array([y.mean()]))[0])

    def loss(w):
        s = np.clip(_sigmoid(X @ w), 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)) + l2 * float(w @ w)

    for _ in range(100):
        s = _sigmoid(X @ w)
        g = X.T @ (s - y) / len(y) + 2 * l2 * w
        H = (X * (s * (1 - s))[:, None]).T @ X / len(y) + 2 * l2 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        t, before = 1.0, loss(w)
        while loss(w - t * step) > before and t > 1e-8:
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() < 1e-10:
            break
    if w[0] < 0:  # anti-correlated judge: the best non-decreasing map of this family is a constant
        w[0] = 0.0
        if not temperature:
            w[1] = float(_logit(np.array([y.mean()]))[0])
    return {"a": float(w[0]), "b": 0.0 if temperature else float(w[1])}


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> dict:
    """Isotonic regression by pool-adjacent-violators (Zadrozny & Elkan 2002): the non-decreasing step function
    closest to y in squared error; between blocks the map is interpolated linearly, beyond them held flat."""
    order = np.argsort(p, kind="stable")
    p, y = np.asarray(p, float)[order], np.asarray(y, float)[order]
    xs, uniq_start = np.unique(p, return_index=True)
    counts = np.diff(np.append(uniq_start, len(p)))
    sums = np.add.reduceat(y, uniq_start)
    # blocks: [x_lo, x_hi, sum_y, n]; merge while the previous block's mean exceeds the next one's
    blocks: list[list[float]] = []
    for x, s, n in zip(xs, sums, counts):
        blocks.append([x, x, float(s), float(n)])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][3] >= blocks[-1][2] / blocks[-1][3]:
            last = blocks.pop()
            blocks[-1][1], blocks[-1][2], blocks[-1][3] = last[1], blocks[-1][2] + last[2], blocks[-1][3] + last[3]
    kx, ky = [], []
    for lo, hi, s, n in blocks:
        for x in ((lo,) if lo == hi else (lo, hi)):
            kx.append(float(x))
            ky.append(s / n)
    return {"x": kx, "y": ky}


def predict(cmap: dict, p) -> np.ndarray:
    """Apply a calibration map (from `fit_map` or a MAP.json) to p_a values."""
    p = np.asarray(p, float)
    params = cmap["params"]
    if cmap["method"] == "isotonic":
        return np.interp(p, params["x"], params["y"])
    return _sigmoid(params["a"] * _logit(p) + params["b"])


def map_sha256(cmap: dict) -> str:
    """What calibrated labels record as `calibration_sha256`: the hash of what decides the map's output."""
    return sha256_json({k: cmap[k] for k in ("method", "params", "tie_margin")})


def split_mask(ids: Sequence[str], holdout: float, seed: int) -> np.ndarray:
    """True for held-out pairs: a seeded hash of each id, so the split does not depend on file order."""
    def u(pid: str) -> float:
        return int(hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()[:15], 16) / 16 ** 15
    return np.array([u(pid) < holdout for pid in ids], dtype=bool)


def evaluate(m: Matched, p_after: np.ndarray, tie_margin: float, bins: int = 10) -> dict:
    """Before/after figures for one set of pairs: before = the labels as the judge gave them."""
    after = np.array([label_for(float(x), tie_margin) for x in p_after], dtype=object)
    hu = m.human_label
    out = {"n": len(m)}
    for name, p, lab in (("before", m.p_a, m.ai_label), ("after", p_after, after)):
        out[name] = {"ece": _num(ece(p, m.human_p, bins)), "brier": _num(brier(p, m.human_p)),
                     "agreement": _num(agreement(lab, hu)), "agreement_n": int(_decided(lab, hu).sum()),
                     "ai_tie_rate": _num(tie_rate(lab, hu))}
    return out


def fit_map(m: Matched, method: str = "isotonic", holdout: float = 0.5, seed: int = 0, tie_margin: float = 0.05,
            symmetric: bool = True, bins: int = 10) -> dict:
    """Fit a calibration map on the non-held-out pairs and report ECE and agreement before/after on both parts."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method '{method}' (choose from {', '.join(METHODS)})")
    if not 0.0 <= holdout < 1.0:
        raise ValueError("holdout must be in [0, 1)")
    held = split_mask(m.ids, holdout, seed)
    fit_part = m.subset(~held)
    if len(fit_part) < 2:
        raise ValueError(f"only {len(fit_part)} pairs to fit on; lower --holdout or label more pairs")
    p, y = fit_part.p_a, fit_part.human_p
    if symmetric:
        p, y = np.concatenate([p, 1 - p]), np.concatenate([y, 1 - y])
    params = fit_isotonic(p, y) if method == "isotonic" else fit_platt(p, y, temperature=method == "temperature")
    cmap = {"format": MAP_FORMAT, "version": 1, "method": method, "params": params, "tie_margin": tie_margin,
            "symmetric": symmetric}
    cmap["sha256"] = map_sha256(cmap)
    cmap["fit"] = {"pairs": len(fit_part), "holdout": holdout, "seed": seed, "split": "sha256(seed:id) < holdout",
                   "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    cmap["evaluation"] = {"fit": evaluate(fit_part, predict(cmap, fit_part.p_a), tie_margin, bins)}
    if held.any():
        test = m.subset(held)
        cmap["evaluation"]["heldout"] = evaluate(test, predict(cmap, test.p_a), tie_margin, bins)
    return cmap


def load_map(path: str | Path) -> dict:
    try:
        cmap = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise FileNotFoundError(f"cannot read calibration map {path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON: {e.msg}") from e
    if not isinstance(cmap, dict) or cmap.get("format") != MAP_FORMAT or cmap.get("method") not in METHODS:
        raise ValueError(f"{path}: not a calibration map from `rlaif calibrate fit`")
    if cmap.get("sha256") != map_sha256(cmap):
        raise ValueError(f"{path}: the map's params do not match its sha256 (edited by hand?); fit it again")
    return cmap


# ---------------------------------------------------------------------------------------------- applying


def calibrate_records(records: Iterable[dict], cmap: dict) -> Iterator[dict]:
    """AI labels with p_a through the map (raw value in p_a_raw, the map's hash in calibration_sha256) and the
    label re-read from it with the map's tie margin; human and failed records pass through unchanged."""
    sha = cmap["sha256"]
    for r in records:
        if r.get("source", "ai") != "ai" or r.get("status") != "ok" or r.get("p_a") is None:
            yield r
            continue
        if r.get("calibration_sha256"):
            raise ValueError(f"pair {r['id']} is already calibrated (map {r['calibration_sha256'][:12]}); "
                             f"apply maps to the judge's raw labels")
        p = float(predict(cmap, [r["p_a"]])[0])
        yield LabelRecord.model_validate({**r, "p_a": p, "label": label_for(p, cmap["tie_margin"]),
                                          "p_a_raw": r["p_a"], "calibration_sha256": sha}).to_json()


def apply_map(map_path: str | Path, labels: str | Path, out_dir: str | Path) -> dict:
    """Write OUT_DIR/labels.jsonl (calibrated) and OUT_DIR/calibration.json (the map used)."""
    cmap = load_map(map_path)
    src, out_dir = labels_file(labels), Path(out_dir)
    dst = out_dir / "labels.jsonl"
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError("--out must differ from the input labels: calibrated labels never overwrite raw ones")
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"calibrated": 0, "passed_through": 0}

    def rows():
        for r in calibrate_records(read_labels(src), cmap):
            counts["calibrated" if r.get("calibration_sha256") == cmap["sha256"] else "passed_through"] += 1
            yield r
    write_jsonl(rows(), dst)
    write_json_atomic(out_dir / "calibration.json", cmap)
    return {**counts, "map": cmap["method"], "calibration_sha256": cmap["sha256"], "out": str(dst)}


def fit_map_file(ai: str | Path, human: str | Path, out: str | Path, **fit_options) -> dict:
    """`rlaif calibrate fit`: match AI and human labels, fit a map (see `fit_map`), record the inputs in it and
    write it to `out` as JSON."""
    cmap = fit_map(load_matched(ai, human), **fit_options)
    cmap["fit"].update(ai=str(ai), human=str(human))
    write_json_atomic(out, cmap)
    return cmap
