"""Calibration maps: a monotone map f: p_a -> P(people prefer response_a), fitted on a split of the matched pairs
(temperature, Platt or isotonic), saved as JSON with a hash of what decides its output, and applied to label files
with the judge's raw p_a kept (`rlaif calibrate fit`, `rlaif calibrate apply`, the `calibration:` of a feedback
source).

Which response is "a" is arbitrary (pairs come in random order), so by default each pair also enters the fit
swapped, (1 - p, 1 - y): the map then satisfies f(1 - p) ≈ 1 - f(p).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from ...config.paths import output_dir_problem, output_file_problem, require
from ...data.labels import open_labels, read_labels
from ...files import write_json_atomic, write_jsonl
from ...numbers import probability_problem
from ...preference import JURY_EPS, label_for
from ...records import LabelRecord, sha256_json
from .match import Matched, load_matched
from .metrics import agreement, both_decided, brier, check_tie_margin, ece, json_number, tie_rate

METHODS = ("isotonic", "platt", "temperature")
MAP_FORMAT = "rlaif-calibration-map"
# p_a is clipped to [EPS, 1 - EPS] before its logit, as a jury clips its members (one value: rlaif.preference)
EPS = JURY_EPS


# ---------------------------------------------------------------------------------------------- fitting


def logit(p: np.ndarray) -> np.ndarray:
    """The log-odds of p_a, clipped to [EPS, 1 - EPS]."""
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2, w0: Optional[np.ndarray] = None) -> np.ndarray:
    """Logistic regression with soft targets y in [0, 1]: the w minimising the mean cross-entropy of σ(X·w) plus
    Σ l2_j·w_j² (`l2` one number, or one per column: 0 leaves that column free), by Newton's method with a
    halving line search. The penalty keeps w finite on separable data."""
    l2 = np.broadcast_to(np.asarray(l2, float), (X.shape[1],))
    w = np.zeros(X.shape[1]) if w0 is None else np.asarray(w0, float).copy()

    def loss(w):
        s = np.clip(sigmoid(X @ w), 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)) + float(l2 @ (w * w))

    for _ in range(100):
        s = sigmoid(X @ w)
        g = X.T @ (s - y) / len(y) + 2 * l2 * w
        H = (X * (s * (1 - s))[:, None]).T @ X / len(y) + 2 * np.diag(l2)
        step = np.linalg.lstsq(H, g, rcond=None)[0]  # singular only for collinear, unpenalised columns
        t, before = 1.0, loss(w)
        while loss(w - t * step) > before and t > 1e-8:
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() < 1e-10:
            break
    return w


def fit_platt(p: np.ndarray, y: np.ndarray, temperature: bool = False, l2: float = 1e-4) -> dict:
    """Platt scaling (Platt 1999) on the judge's logit: f(p) = σ(a·logit(p) + b), fitted by Newton's method on
    the cross-entropy with soft targets y (`fit_logistic`). `temperature` fixes b = 0 (Guo et al. 2017; T = 1/a).
    The slope is kept >= 0 so the map never reverses the judge's ranking; a small L2 keeps it finite on separable
    data."""
    z = logit(np.asarray(p, float))
    y = np.asarray(y, float)
    X = np.stack([z, np.ones_like(z)], 1)[:, : 1 if temperature else 2]
    w0 = np.zeros(X.shape[1])
    if not temperature:
        w0[1] = float(logit(np.array([y.mean()]))[0])
    w = fit_logistic(X, y, l2, w0)
    if w[0] < 0:  # anti-correlated judge: the best non-decreasing map of this family is a constant
        w[0] = 0.0
        if not temperature:
            w[1] = float(logit(np.array([y.mean()]))[0])
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
        for x in (lo,) if lo == hi else (lo, hi):
            kx.append(float(x))
            ky.append(s / n)
    return {"x": kx, "y": ky}


def predict(cmap: dict, p) -> np.ndarray:
    """Apply a calibration map (from `fit_map` or a MAP.json) to p_a values."""
    p = np.asarray(p, float)
    params = cmap["params"]
    if cmap["method"] == "isotonic":
        return np.interp(p, params["x"], params["y"])
    return sigmoid(params["a"] * logit(p) + params["b"])


def map_sha256(cmap: dict) -> str:
    """What calibrated labels record as `calibration_sha256`: the hash of what decides the map's output."""
    return sha256_json({k: cmap[k] for k in ("method", "params", "tie_margin")})


def split_mask(ids: Sequence[str], holdout: float, seed: int) -> np.ndarray:
    """True for held-out pairs: a seeded hash of each id, so the split does not depend on file order."""

    def u(pid: str) -> float:
        return int(hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()[:15], 16) / 16**15

    return np.array([u(pid) < holdout for pid in ids], dtype=bool)


def check_holdout(holdout: float) -> None:
    """The held-out share of a fit: in [0, 1), since some pairs must be left to fit on."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"--holdout must be in [0, 1), got {holdout}")


def evaluate(m: Matched, p_after: np.ndarray, tie_margin: float, bins: int = 10) -> dict:
    """Before/after figures for one set of pairs: before = the labels as the judge gave them."""
    after = np.array([label_for(float(x), tie_margin) for x in p_after], dtype=object)
    hu = m.human_label
    out = {"n": len(m)}
    for name, p, lab in (("before", m.p_a, m.ai_label), ("after", p_after, after)):
        out[name] = {
            "ece": json_number(ece(p, m.human_p, bins)),
            "brier": json_number(brier(p, m.human_p)),
            "agreement": json_number(agreement(lab, hu)),
            "agreement_n": int(both_decided(lab, hu).sum()),
            "ai_tie_rate": json_number(tie_rate(lab, hu)),
        }
    return out


def fit_map(
    m: Matched,
    method: str = "isotonic",
    holdout: float = 0.5,
    seed: int = 0,
    tie_margin: float = 0.05,
    symmetric: bool = True,
    bins: int = 10,
) -> dict:
    """Fit a calibration map on the non-held-out pairs and report ECE and agreement before/after on both parts."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method '{method}' (choose from {', '.join(METHODS)})")
    check_holdout(holdout)
    check_tie_margin(tie_margin)
    held = split_mask(m.ids, holdout, seed)
    fit_part = m.subset(~held)
    if len(fit_part) < 2:
        raise ValueError(f"only {len(fit_part)} pairs to fit on; lower --holdout or label more pairs")
    p, y = fit_part.p_a, fit_part.human_p
    if symmetric:
        p, y = np.concatenate([p, 1 - p]), np.concatenate([y, 1 - y])
    params = fit_isotonic(p, y) if method == "isotonic" else fit_platt(p, y, temperature=method == "temperature")
    cmap = {
        "format": MAP_FORMAT,
        "version": 1,
        "method": method,
        "params": params,
        "tie_margin": tie_margin,
        "symmetric": symmetric,
    }
    cmap["sha256"] = map_sha256(cmap)
    cmap["fit"] = {
        "pairs": len(fit_part),
        "holdout": holdout,
        "seed": seed,
        "split": "sha256(seed:id) < holdout",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    cmap["evaluation"] = {"fit": evaluate(fit_part, predict(cmap, fit_part.p_a), tie_margin, bins)}
    if held.any():
        test = m.subset(held)
        cmap["evaluation"]["heldout"] = evaluate(test, predict(cmap, test.p_a), tie_margin, bins)
    return cmap


def fit_map_file(ai: str | Path, human: str | Path, out: str | Path, **fit_options) -> dict:
    """`rlaif calibrate fit`: match AI and human labels, fit a map (see `fit_map`), record the inputs in it and
    write it to `out` as JSON."""
    require("--out", output_file_problem(out))
    cmap = fit_map(load_matched(ai, human), **fit_options)
    cmap["fit"].update(ai=str(ai), human=str(human))
    source = open_labels(ai)
    if cmap["method"] == "temperature" and source.kind == "scores":
        # p_a = σ(Δs / T0), so the map σ(a·logit p_a) is σ(Δs / (T0 / a)): the judge's fitted T, to set as its
        # score.temperature (a = 0, a judge whose scores say nothing, is T = ∞)
        t0 = source.temperature
        a = cmap["params"]["a"]
        cmap["fit"]["score_temperature"] = t0 / a if a > 0 else None
    write_json_atomic(out, cmap)
    return cmap


def load_map(path: str | Path) -> dict:
    """A map written by `rlaif calibrate fit`, refused when it is not one or was edited after the fit."""
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
            raise ValueError(
                f"pair {r['id']} is already calibrated (map {r['calibration_sha256'][:12]}); "
                f"apply maps to the judge's raw labels"
            )
        p = float(predict(cmap, [r["p_a"]])[0])
        if (problem := probability_problem(p, "the calibrated p_a")) is not None:
            raise ValueError(f"pair {r['id']}: the calibration map gives {problem}; fit the map again")
        yield LabelRecord.model_validate(
            {**r, "p_a": p, "label": label_for(p, cmap["tie_margin"]), "p_a_raw": r["p_a"], "calibration_sha256": sha}
        ).to_json()


def apply_map(map_path: str | Path, labels: str | Path, out_dir: str | Path) -> dict:
    """`rlaif calibrate apply`: write OUT_DIR/labels.jsonl (calibrated) and OUT_DIR/calibration.json (the map
    used)."""
    require("--out", output_dir_problem(out_dir))
    cmap = load_map(map_path)
    src, out_dir = open_labels(labels).file, Path(out_dir)
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
