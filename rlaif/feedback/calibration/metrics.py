"""How far the judge agrees with people, as plain numbers with percentile-bootstrap intervals: agreement, Cohen's
kappa, the judge's tie rate, human–human agreement, position consistency, ECE and the reliability diagram, the
Brier score with its Murphy decomposition, AUC and length bias. `compare` computes all of them on matched pairs for
`rlaif calibrate`; `judged_figures` the ones any p_a has (a jury member's, a jury's).

Each metric is a function of per-pair arrays, so the bootstrap can recompute it on resampled pairs. Undefined
values (nothing to count) are nan here and null in reports.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ...intervals import bootstrap_ci
from ...preference import label_for
from .match import Matched


def both_decided(ai: np.ndarray, human: np.ndarray) -> np.ndarray:
    """Pairs where neither side said tie."""
    return np.isin(ai, ("a", "b")) & np.isin(human, ("a", "b"))


def agreement(ai: np.ndarray, human: np.ndarray) -> float:
    """Share of pairs where the AI label equals the human majority, over pairs both decided (ties of either
    side are counted separately: see tie_rate)."""
    d = both_decided(ai, human)
    return float(np.mean(ai[d] == human[d])) if d.any() else math.nan


def agreement_ties_half(ai: np.ndarray, human: np.ndarray) -> float:
    """Share of the pairs people decided where the AI label equals theirs, an AI tie counting ½: one figure that
    compares judges which tie on different pairs (agreement alone is over each judge's own decided pairs)."""
    d = np.isin(human, ("a", "b"))
    return float(np.mean(np.where(ai[d] == "tie", 0.5, ai[d] == human[d]))) if d.any() else math.nan


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
    d = both_decided(x, y)
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
        out.append(
            {
                "lo": k / bins,
                "hi": (k + 1) / bins,
                "n": int(m.sum()),
                "mean_p_a": float(p[m].mean()) if m.any() else None,
                "human_rate": float(y[m].mean()) if m.any() else None,
            }
        )
    return out


# The histogram under the reliability diagram is finer than its bins: p_a held within a hair of 0.5 shows as one
# spike, which ten bins would spread over two bars.
HISTOGRAM_BINS = 50


def histogram(p: np.ndarray, bins: int = HISTOGRAM_BINS) -> list[int]:
    """How many pairs' p_a fall in each of `bins` equal-width bins of [0, 1] (the last one closed)."""
    return np.bincount(_bin_index(p, bins), minlength=bins).tolist()


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Brier score (Brier 1950): the mean squared difference between p_a and the people's preference for a."""
    return float(np.mean((p - y) ** 2)) if len(p) else math.nan


def murphy(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, float, float, float]:
    """The Murphy (1973) decomposition of the Brier score, binned as ECE is (the same equal-width p_a bins):
    (reliability, resolution, uncertainty, within_bin) with, over bins k of n_k pairs, mean p_a f_k and mean
    preference for a o_k, and o the mean over all pairs,

        reliability = Σ n_k (f_k − o_k)² / N   (p_a's distance from people's rate in its bin: lower is better)
        resolution  = Σ n_k (o_k − o)² / N     (how far the bins' rates differ from the base rate: higher is better)
        uncertainty = Σ (y_i − o)² / N         (the variance of people's preference; o(1 − o) for hard labels)

    brier = reliability − resolution + uncertainty + within_bin holds exactly: within_bin is the binning's remainder
    (Stephenson et al. 2008), Σ_k Σ_i∈k [(p_i − f_k)² − 2 (p_i − f_k)(y_i − o_k)] / N, zero when every pair in a
    bin has the same p_a (a constant judge; one that says few values) and small beside the others when bins are
    narrow. Resolution is what a constant judge lacks: a constant p_a puts every pair in one bin, so o_k = o."""
    if not len(p):
        return (math.nan,) * 4
    b = _bin_index(p, bins)
    n = np.bincount(b, minlength=bins)
    used = n > 0
    f_k = np.bincount(b, p, bins)[used] / n[used]
    o_k = np.bincount(b, y, bins)[used] / n[used]
    n_used, o = n[used], float(np.mean(y))
    total = len(p)
    rel = float(np.sum(n_used * (f_k - o_k) ** 2) / total)
    res = float(np.sum(n_used * (o_k - o) ** 2) / total)
    unc = float(np.mean((y - o) ** 2))
    return rel, res, unc, brier(p, y) - rel + res - unc


# Resolution counts as near 0 below this share of the uncertainty: the binned p_a then accounts for under 1% of the
# variance of people's preference. A judge that stays near 0.5 lands there whatever its ECE; one with spread-out p_a
# and no signal gains a little resolution from binning alone (about (bins used − 1)/N of the uncertainty), but then
# shows a poor ECE and an AUC near 0.5.
RESOLUTION_FLOOR = 0.01


def resolution_near_zero(resolution: Optional[float], uncertainty: Optional[float]) -> bool:
    """Whether p_a tells people's choices apart no better than a constant would (see RESOLUTION_FLOOR). With no
    uncertainty (people always chose the same side) there is nothing to resolve, and no warning."""
    if resolution is None or uncertainty is None or math.isnan(resolution) or math.isnan(uncertainty):
        return False
    return uncertainty > 0 and resolution < RESOLUTION_FLOOR * uncertainty


def auc(p: np.ndarray, human: np.ndarray) -> float:
    """Area under the ROC curve of p_a against the human choice (pairs people decided): the probability that a pair
    people chose 'a' on has a higher p_a than one they chose 'b' on, ties in p_a counted half (the Mann–Whitney U
    over average ranks). 0.5 is no discrimination, whatever the calibration."""
    pos, neg = p[human == "a"], p[human == "b"]
    if not len(pos) or not len(neg):
        return math.nan
    _, where, counts = np.unique(np.concatenate([pos, neg]), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[where]  # 1-based, tied values sharing their average rank
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def longer_choice_rates(ai: np.ndarray, human: np.ndarray, len_a: np.ndarray, len_b: np.ndarray):
    """(judge, people) rates of preferring the longer response, over pairs both decided whose lengths differ."""
    m = both_decided(ai, human) & (len_a != len_b)
    if not m.any():
        return math.nan, math.nan
    longer = np.where(len_a[m] > len_b[m], "a", "b")
    return float(np.mean(ai[m] == longer)), float(np.mean(human[m] == longer))


def length_bias(ai, human, len_a, len_b) -> float:
    """How much more often the judge than people prefers the longer response (a difference of rates)."""
    j, h = longer_choice_rates(ai, human, len_a, len_b)
    return j - h


def json_number(x: float, digits: int = 4) -> Optional[float]:
    """A figure as reports write it: rounded, and null where it is undefined (nan)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def _figure(value: float, n: int, ci: Optional[list[float]], **extra) -> dict:
    return {
        "value": json_number(value),
        "n": int(n),
        "ci95": None if ci is None else [json_number(c) for c in ci],
        **extra,
    }


def principle_labels(m: Matched, tie_margin: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(AI labels, human labels) per principle. Under `sampling: all` each principle's own p_a gives its label
    (with `tie_margin`); otherwise a pair counts for the one principle it was judged under."""
    groups: dict[str, tuple[list, list]] = {}
    for i, pid in enumerate(m.principle):
        per = m.per_principle[i]
        items = (
            [(k, label_for(v, tie_margin)) for k, v in per.items() if v is not None]
            if per
            else [(pid or "(none)", m.ai_label[i])]
        )
        for k, lab in items:
            g = groups.setdefault(k, ([], []))
            g[0].append(lab)
            g[1].append(m.human_label[i])
    return {k: (np.array(a, dtype=object), np.array(h, dtype=object)) for k, (a, h) in sorted(groups.items())}


def check_tie_margin(tie_margin: float) -> None:
    """A tie margin is a distance from 1/2 within [0, 0.5] (NaN is none: it would make no label a tie)."""
    if not 0.0 <= tie_margin <= 0.5:
        raise ValueError(f"--tie-margin must be in [0, 0.5], got {tie_margin}")


def judged_figures(p: np.ndarray, ai: np.ndarray, hu: np.ndarray, y: np.ndarray, bins: int, ci) -> dict:
    """The figures of any p_a and its labels against people (a judge's, a jury member's, a jury's): agreement,
    kappa, ECE, the Brier score with its Murphy decomposition, and AUC, each as a figure with its n and interval.
    `ci(stat, *arrays)` gives an interval (None without resamples)."""
    decided = int(both_decided(ai, hu).sum())
    rel, res, unc, within = murphy(p, y, bins)
    part = lambda k: lambda p, y: murphy(p, y, bins)[k]  # noqa: E731
    people_decided = np.isin(hu, ("a", "b"))
    return {
        "agreement": _figure(
            agreement(ai, hu),
            decided,
            ci(agreement, ai, hu),
            definition="AI label = human majority, over pairs both decided",
        ),
        "agreement_ties_half": _figure(
            agreement_ties_half(ai, hu),
            int(people_decided.sum()),
            ci(agreement_ties_half, ai, hu),
            definition="AI label = human majority over pairs people decided, an AI tie counting 1/2",
        ),
        "cohen_kappa": _figure(cohen_kappa(ai, hu), decided, ci(cohen_kappa, ai, hu)),
        "ece": _figure(ece(p, y, bins), len(p), ci(lambda p, y: ece(p, y, bins), p, y), bins=bins),
        "brier": _figure(
            brier(p, y),
            len(p),
            ci(brier, p, y),
            within_bin=json_number(within),
            definition="brier = brier_reliability - brier_resolution + brier_uncertainty + within_bin (exact)",
        ),
        "brier_reliability": _figure(rel, len(p), ci(part(0), p, y), bins=bins),
        "brier_resolution": _figure(
            res,
            len(p),
            ci(part(1), p, y),
            bins=bins,
            near_zero=resolution_near_zero(res, unc),
            definition=f"near zero below {RESOLUTION_FLOOR:g} x brier_uncertainty",
        ),
        "brier_uncertainty": _figure(unc, len(p), ci(part(2), p, y)),
        "auc": _figure(
            auc(p, hu),
            int(people_decided.sum()),
            ci(auc, p, hu),
            definition="P(p_a higher on a pair people chose a than on one they chose b), ties half",
        ),
    }


def compare(m: Matched, bins: int = 10, n_boot: int = 1000, seed: int = 0, tie_margin: float = 0.05) -> dict:
    """Every headline figure as a plain number, and a `details` map with each one's n and 95% interval."""
    check_tie_margin(tie_margin)
    ci = lambda stat, *arrays: bootstrap_ci(stat, arrays, n_boot, seed)  # noqa: E731
    ai, hu = m.ai_label, m.human_label
    hh = pairwise_agreement(m.human_votes)
    # length bias reads the judge's preference as the side p_a leans to, so a judge whose p_a stays within the
    # tie margin still shows its bias
    leans = lean(m.p_a)
    j_long, h_long = longer_choice_rates(leans, hu, m.len_a, m.len_b)
    n_len = int((both_decided(leans, hu) & (m.len_a != m.len_b)).sum())
    details = {
        **judged_figures(m.p_a, ai, hu, m.human_p, bins, ci),
        "agreement_lean": _figure(
            agreement(leans, hu),
            int(both_decided(leans, hu).sum()),
            ci(agreement, leans, hu),
            definition="the side p_a leans to (no tie margin) = human majority",
        ),
        "ai_tie_rate": _figure(
            tie_rate(ai, hu),
            int(np.isin(hu, ("a", "b")).sum()),
            ci(tie_rate, ai, hu),
            definition="judge said tie, over pairs people decided",
        ),
        "human_human_agreement": _figure(
            float(hh.mean()) if len(hh) else math.nan,
            len(hh),
            ci(lambda x: float(x.mean()), hh) if len(hh) else None,
            definition="pairwise, over pairs with >= 2 human labels",
        ),
        "position_consistency": _figure(
            float(m.consistent.mean()), len(m), ci(lambda x: float(x.mean()), m.consistent)
        ),
        "length_bias": _figure(
            j_long - h_long,
            n_len,
            ci(length_bias, leans, hu, m.len_a, m.len_b),
            judge_prefers_longer=json_number(j_long),
            humans_prefer_longer=json_number(h_long),
            definition="rate the judge (side p_a leans to) minus rate people prefer the "
            "longer response, over pairs both decided whose lengths differ",
        ),
    }
    per = {
        pid: _figure(agreement(a, h), int(both_decided(a, h).sum()), ci(agreement, a, h))
        for pid, (a, h) in principle_labels(m, tie_margin).items()
    }
    report = {name: d["value"] for name, d in details.items()}
    report["per_principle_agreement"] = {pid: d["value"] for pid, d in per.items()}
    report["n_pairs"] = len(m)
    details["per_principle_agreement"] = per
    report["details"] = details
    report["reliability"] = reliability(m.p_a, m.human_p, bins)
    report["p_a_histogram"] = histogram(m.p_a)
    if m.p_a_raw is not None:  # calibrated labels: show what the judge said before the map
        report["ece_raw"] = json_number(ece(m.p_a_raw, m.human_p, bins))
        details["ece_raw"] = _figure(
            ece(m.p_a_raw, m.human_p, bins), len(m), ci(lambda p, y: ece(p, y, bins), m.p_a_raw, m.human_p), bins=bins
        )
        report["reliability_raw"] = reliability(m.p_a_raw, m.human_p, bins)
        report["p_a_raw_histogram"] = histogram(m.p_a_raw)
    report["counts"] = m.counts
    report["bootstrap"] = {"resamples": n_boot, "seed": seed, "level": 0.95, "method": "percentile"}
    return report
