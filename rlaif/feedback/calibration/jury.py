"""Fitting a jury of judges against people (`rlaif calibrate fit --method jury`): the members' label runs matched
with human labels by pair id, an L2-regularised logistic regression of the human choice on the members' log-odds,
bootstrap intervals for the weights, and each member beside the jury on a held-out split. It writes weights.json,
which a `backend: jury` judge reads, and report.json.

The jury's P(a ≻ b) = σ(b + Σ_i w_i · logit(p_i)), p_i member i's p_a clipped to [1e-6, 1 − 1e-6] (maps.EPS).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...config.paths import output_dir_problem, require
from ...data.labels import LABELS_FILE, open_labels, read_labels
from ...data.scores import SCORES_FILE
from ...files import write_json_atomic
from ...intervals import bootstrap_ci, bootstrap_intervals
from ...numbers import range_problem
from ...preference import label_for
from ...records import weights_sha256
from .maps import check_holdout, fit_logistic, logit, sigmoid, split_mask
from .match import Matched, human_labels, match_members
from .metrics import check_tie_margin, judged_figures

JURY = "jury"
JURY_FORMAT = "rlaif-jury-weights"
# The fewest fit pairs per fitted number (a weight per member, and the intercept when it is fitted): the usual rule
# of thumb for logistic regression (Peduzzi et al. 1996 ask for 10 events per variable). Fewer, and the bootstrap
# intervals are too wide to tell a member's signal from none.
PAIRS_PER_WEIGHT = 10
JURY_ROW = "jury"  # the jury's row among its members' in the side-by-side figures


def member_name(path: str | Path) -> str:
    """A member's name from its label run: the folder's name (for DIR/labels.jsonl or DIR/scores.jsonl too), else
    the file's stem."""
    path = Path(path)
    return path.parent.name if path.name in (LABELS_FILE, SCORES_FILE) else path.name if path.is_dir() else path.stem


def member_p(m: Matched) -> np.ndarray:
    """The p_a a member gives the jury: its raw p_a where its labels were calibrated, since a jury runs its members'
    judges as they are."""
    return m.p_a if m.p_a_raw is None else m.p_a_raw


def fit_weights(z: np.ndarray, y: np.ndarray, symmetric: bool = True, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """(weights, intercept) of the logistic regression of people's preference y on the members' log-odds z (one row
    per pair), maximising Σ_pairs log-likelihood − l2·|w|² (a Gaussian prior of variance 1/(2·l2) on each weight;
    the intercept is not penalised). `symmetric`: each pair also enters swapped, (−z, 1 − y), both at half weight
    (which response is "a" is arbitrary); the intercept is then 0 by symmetry and is not fitted."""
    n, k = z.shape
    if symmetric:
        return fit_logistic(np.vstack([z, -z]), np.concatenate([y, 1 - y]), l2 / n), 0.0
    X = np.hstack([z, np.ones((n, 1))])
    w0 = np.zeros(k + 1)
    w0[k] = float(logit(np.array([y.mean()]))[0])
    w = fit_logistic(X, y, [l2 / n] * k + [0.0], w0)
    return w[:k], float(w[k])


def jury_p(p: np.ndarray, weights: Sequence[float], intercept: float) -> np.ndarray:
    """The jury's p_a from its members' (one column each): σ(b + Σ_i w_i · logit(p_i))."""
    return sigmoid(intercept + logit(np.asarray(p, float)) @ np.asarray(weights, float))


def side_by_side(
    ms: list[Matched], names: list[str], weights, intercept: float, tie_margin: float, bins: int, n_boot: int, seed: int
) -> dict:
    """Each member's figures and the jury's on one set of pairs: agreement, kappa, ECE, Brier (Murphy) and AUC, all
    labels read from p_a with one tie margin so the rows compare."""
    ci = lambda stat, *arrays: bootstrap_ci(stat, arrays, n_boot, seed)  # noqa: E731
    ps = [member_p(m) for m in ms]
    hu, y = ms[0].human_label, ms[0].human_p
    rows = []
    for name, p in zip([*names, JURY_ROW], [*ps, jury_p(np.stack(ps, 1), weights, intercept)]):
        labels = np.array([label_for(float(x), tie_margin) for x in p], dtype=object)
        details = judged_figures(p, labels, hu, y, bins, ci)
        rows.append({"name": name, **{k: d["value"] for k, d in details.items()}, "details": details})
    return {"n": len(hu), "rows": rows}


def fit_jury(
    ms: list[Matched],
    members: list[dict],
    holdout: float = 0.5,
    seed: int = 0,
    symmetric: bool = True,
    l2: float = 1.0,
    n_boot: int = 1000,
    tie_margin: float = 0.05,
    bins: int = 10,
) -> dict:
    """Fit a jury's weights on the matched pairs outside the held-out split (`ms` from `match_members`, one per
    member; `members` their name and judge_hash), with bootstrap intervals (pairs resampled), and put its members
    and the jury side by side on both parts. Refused when the fit pairs are too few (PAIRS_PER_WEIGHT)."""
    check_tie_margin(tie_margin)
    check_holdout(holdout)
    if (problem := range_problem(l2, "--l2", 0.0, math.inf)) is not None:
        raise ValueError(problem)
    held = split_mask(ms[0].ids, holdout, seed)
    fit_part = [m.subset(~held) for m in ms]
    n, k = len(fit_part[0]), len(ms)
    need = PAIRS_PER_WEIGHT * (k + (0 if symmetric else 1))
    if n < need:
        raise ValueError(
            f"{n} pairs to fit a jury of {k} on ({len(ms[0])} with a label from every member and from people, "
            f"{int(held.sum())} held out): it needs at least {PAIRS_PER_WEIGHT} per weight, {need}; label more "
            f"pairs, drop a member or lower --holdout"
        )
    z = logit(np.stack([member_p(m) for m in fit_part], 1))
    y = fit_part[0].human_p
    weights, intercept = fit_weights(z, y, symmetric, l2)
    intervals = bootstrap_intervals(lambda z, y: np.append(*fit_weights(z, y, symmetric, l2)), [z, y], n_boot, seed)
    doc = {
        "format": JURY_FORMAT,
        "version": 1,
        "members": members,
        "weights": [float(w) for w in weights],
        "intercept": intercept,
        "intervals": None if intervals is None else intervals[:k],
        "intercept_interval": None if intervals is None else intervals[k],
        "n_pairs": n,
        "symmetric": symmetric,
        "l2": l2,
    }
    doc["sha256"] = weights_sha256(doc)
    doc["no_signal"] = (
        None if intervals is None else [m["name"] for m, (lo, hi) in zip(members, doc["intervals"]) if lo <= 0 <= hi]
    )
    doc["fit"] = {
        "holdout": holdout,
        "seed": seed,
        "split": "sha256(seed:id) < holdout",
        "resamples": n_boot,
        "pairs_per_weight": PAIRS_PER_WEIGHT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {m["name"]: ms[i].counts for i, m in enumerate(members)},
    }
    names = [m["name"] for m in members]
    # intervals on the held-out figures only: those are the ones to compare
    doc["evaluation"] = {"fit": side_by_side(fit_part, names, weights, intercept, tie_margin, bins, 0, seed)}
    if held.any():
        test = [m.subset(held) for m in ms]
        doc["evaluation"]["heldout"] = side_by_side(test, names, weights, intercept, tie_margin, bins, n_boot, seed)
    return doc


def _member(path: Path, records: list[dict], kind: str, temperature: Optional[float]) -> dict:
    """A member's entry in weights.json: its name and the judge hash its labels carry (one judge per member)."""
    hashes = {(r.get("judge") or {}).get("settings_sha256") for r in records if r.get("source", "ai") == "ai"}
    if len(hashes) != 1 or None in hashes:
        raise ValueError(
            f"{path}: a jury member's labels must come from one judge (judge.settings_sha256), found "
            f"{len(hashes - {None})} judge hash(es){' and labels without one' if None in hashes else ''}"
        )
    member = {"name": member_name(path), "judge_hash": hashes.pop(), "labels": str(path)}
    if kind == "scores":  # a score judge's p_a = σ(Δs / T): its weights hold for this T
        member["score_temperature"] = temperature
    return member


def read_members(ai: Sequence[str | Path]) -> tuple[list[list[dict]], list[dict]]:
    """Each member's label run (a label or score folder or file, one per member) and its entry in weights.json;
    ValueError in one line when two runs are labels of one judge."""
    sources = [open_labels(path) for path in ai]
    runs = [list(source.labels()) for source in sources]
    members = [_member(Path(p), r, s.kind, s.temperature) for p, r, s in zip(ai, runs, sources)]
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            if a["judge_hash"] == b["judge_hash"]:
                raise ValueError(
                    f"{a['labels']} and {b['labels']} are labels of the same judge (hash {a['judge_hash'][:12]}); "
                    f"a jury lists each member once"
                )
    if len({m["name"] for m in members}) < len(members):  # two runs in folders of one name: their paths tell them apart
        for m in members:
            m["name"] = m["labels"]
    return runs, members


def write_fit(doc: dict, out_dir: str | Path) -> None:
    """OUT/report.json (the fit with every figure's interval) and OUT/weights.json (the same without them), which a
    `backend: jury` judge with `aggregate: fitted` reads."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "report.json", doc)
    summary = {**doc, "evaluation": {part: _values(ev) for part, ev in doc["evaluation"].items()}}
    write_json_atomic(out_dir / "weights.json", summary)


def fit_jury_files(ai: Sequence[str | Path], human: str | Path, out_dir: str | Path, **fit_options) -> dict:
    """`rlaif calibrate fit --method jury`: read each member's label run (one --ai each) and the human labels,
    match them by pair id (`match_members`), fit (`fit_jury`), and write OUT/weights.json and OUT/report.json
    (`write_fit`)."""
    require("--out", output_dir_problem(out_dir))
    runs, members = read_members(ai)
    doc = fit_jury(match_members(runs, human_labels(read_labels(human))), members, **fit_options)
    doc["fit"]["human"] = str(human)
    write_fit(doc, out_dir)
    return doc


def _values(evaluation: dict) -> dict:
    """The side-by-side figures without their intervals (weights.json keeps these; report.json the whole)."""
    return {
        "n": evaluation["n"],
        "rows": [{k: v for k, v in row.items() if k != "details"} for row in evaluation["rows"]],
    }
