"""`rlaif calibrate` output: report.json (headline figures at the top level, intervals under `details`), the
reliability diagram with the histogram of p_a under it as reliability.png, a self-contained report.html with the
plot embedded, and the rows the command prints (for the report and for a fitted map).

matplotlib is imported only when a plot is drawn (extra `rlaif[calibration]`), through its Agg canvas.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Optional

from ...config.paths import output_dir_problem, require
from ...data.labels import open_labels
from ...files import write_json_atomic
from .match import load_matched
from .metrics import RESOLUTION_FLOOR, compare, resolution_near_zero

HEADLINES = [  # (report key, what it is)
    ("agreement", "agreement with the human majority (pairs both decided)"),
    ("agreement_lean", "agreement of the side p_a leans to, with no tie margin"),
    ("cohen_kappa", "Cohen's kappa (pairs both decided)"),
    ("ai_tie_rate", "judge said tie where people decided"),
    ("human_human_agreement", "human–human agreement (pairs with ≥ 2 human labels)"),
    ("position_consistency", "position consistency (both orders pick the same response)"),
    ("ece", "expected calibration error of p_a"),
    ("ece_raw", "expected calibration error of the raw p_a (before calibration)"),
    ("brier", "Brier score of p_a"),
    ("brier_reliability", "Brier reliability: p_a's distance from people's rate in its bin (lower is better)"),
    ("brier_resolution", "Brier resolution: how far the bins' rates differ from the base rate (higher is better)"),
    ("brier_uncertainty", "Brier uncertainty: the variance of people's preference"),
    ("auc", "AUC of p_a against the human choice (0.5: no discrimination)"),
    ("length_bias", "length bias: judge minus people, rate of preferring the longer response"),
]


def _need_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError("the calibration plots need matplotlib: pip install 'rlaif[calibration]'") from None


def plot_reliability(report: dict, path: Path) -> None:
    """Reliability diagram (mean p_a vs the people's rate of preferring a, per bin) above the histogram of p_a."""
    _need_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 7), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    curves = [("reliability", "judge p_a", "C0")]
    if "reliability_raw" in report:
        curves = [("reliability_raw", "raw p_a", "C1"), ("reliability", "calibrated p_a", "C0")]
    for key, name, color in curves:
        pts = [b for b in report[key] if b["n"]]
        if pts:
            total = sum(b["n"] for b in pts)
            top.plot(
                [b["mean_p_a"] for b in pts],
                [b["human_rate"] for b in pts],
                color=color,
                marker="o",
                label=name,
                zorder=3,
            )
            top.scatter(
                [b["mean_p_a"] for b in pts],
                [b["human_rate"] for b in pts],
                color=color,
                s=[20 + 400 * b["n"] / total for b in pts],
                alpha=0.3,
                zorder=2,
            )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("people prefer response a (rate)")
    title = f"Reliability of the judge's p_a (n={report['n_pairs']}, ECE={_fmt(report.get('ece'))}"
    title += f", resolution={_fmt(report.get('brier_resolution'))}, AUC={_fmt(report.get('auc'))})"
    top.set_title(title, fontsize=9)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    # the histogram of p_a under it, finer than the bins: a judge held near 0.5 shows as one spike there
    counts = report["p_a_histogram"]
    edges = [k / len(counts) for k in range(len(counts))]
    hist = [("p_a_histogram", curves[-1][1], curves[-1][2])]
    if "p_a_raw_histogram" in report:
        hist.insert(0, ("p_a_raw_histogram", "raw p_a", "C1"))
    for key, name, color in hist:
        bottom.bar(edges, report[key], width=1 / len(counts), align="edge", color=color, alpha=0.6, label=name)
    bottom.set_xlabel("judge p_a")
    bottom.set_ylabel("pairs")
    if len(hist) > 1:
        bottom.legend(loc="upper left", fontsize=8)
    if resolution_warning(report) is not None:
        bottom.set_title("resolution near 0: p_a does not tell people's choices apart", fontsize=8, color="C3")
    fig.tight_layout()
    fig.savefig(path, format="png")


def _fmt(x) -> str:
    return "–" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def _ci(d: Optional[dict]) -> str:
    if not d or not d.get("ci95"):
        return "–"
    return f"[{_fmt(d['ci95'][0])}, {_fmt(d['ci95'][1])}]"


def render_html(report: dict, png: bytes) -> str:
    e = html.escape
    rows = []
    for key, what in HEADLINES:
        if key not in report:
            continue
        d = report["details"].get(key, {})
        rows.append(
            f"<tr><td><code>{e(key)}</code></td><td>{e(what)}</td><td>{_fmt(report[key])}</td>"
            f"<td>{_ci(d)}</td><td>{d.get('n', '–')}</td></tr>"
        )
    lb = report["details"]["length_bias"]
    per = [
        f"<tr><td>{e(pid)}</td><td>{_fmt(d['value'])}</td><td>{_ci(d)}</td><td>{d['n']}</td></tr>"
        for pid, d in report["details"]["per_principle_agreement"].items()
    ]
    rel = [
        f"<tr><td>{b['lo']:.1f}–{b['hi']:.1f}</td><td>{b['n']}</td><td>{_fmt(b['mean_p_a'])}</td>"
        f"<td>{_fmt(b['human_rate'])}</td></tr>"
        for b in report["reliability"]
    ]
    hist = report.get("score_histogram") or {}
    most = max(hist.values(), default=0) or 1
    bars = [
        f'<tr><td>{e(k)}</td><td>{v}</td><td><div style="background:#4a7;height:.9em;'
        f'width:{20 * v / most:.2f}em"></div></td></tr>'
        for k, v in hist.items()
    ]
    scores = (
        (
            "<h2>Expected scores (score judge)</h2><p>Each response's expected score, rounded to the nearest score "
            "of the scale; the pairs above are derived from two of them.</p><table><tr><th>score</th><th>responses"
            f"</th><th></th></tr>{''.join(bars)}</table>"
        )
        if hist
        else ""
    )
    warning = resolution_warning(report)
    warning = f'<p style="color:#b00">{e(warning)}</p>' if warning else ""
    inputs = report.get("inputs", {})
    counts = ", ".join(f"{e(k)}={v}" for k, v in report.get("counts", {}).items())
    b = report["bootstrap"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rlaif calibration report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
th{{background:#f3f3f3}}</style></head><body>
<h1>AI judge vs people</h1>
<p>AI labels <code>{e(str(inputs.get("ai", "")))}</code>, human labels <code>{e(str(inputs.get("human", "")))}</code>;
{report["n_pairs"]} pairs matched by id ({counts}). Intervals: {b["level"]:.0%} {e(b["method"])} bootstrap,
{b["resamples"]} resamples, seed {b["seed"]}.</p>
<h2>Headline figures</h2>
<table><tr><th>name</th><th>figure</th><th>value</th><th>95% interval</th><th>n</th></tr>
{"".join(rows)}</table>
{warning}
<p>Longer response preferred: judge {_fmt(lb.get("judge_prefers_longer"))},
people {_fmt(lb.get("humans_prefer_longer"))} (n={lb["n"]}).</p>
<h2>Reliability</h2>
<img alt="reliability diagram" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">
<table><tr><th>p_a bin</th><th>pairs</th><th>mean p_a</th><th>people prefer a</th></tr>{"".join(rel)}</table>
<h2>Agreement per principle</h2>
<table><tr><th>principle</th><th>agreement</th><th>95% interval</th><th>n</th></tr>{"".join(per)}</table>
{scores}
</body></html>
"""


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, reliability.png and report.html into `out_dir`."""
    _need_matplotlib()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "png": out_dir / "reliability.png", "html": out_dir / "report.html"}
    write_json_atomic(paths["json"], report)
    plot_reliability(report, paths["png"])
    paths["html"].write_text(render_html(report, paths["png"].read_bytes()), encoding="utf-8")
    return paths


def run_report(
    ai: str | Path,
    human: str | Path,
    out_dir: str | Path,
    bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    tie_margin: float = 0.05,
) -> dict:
    """Match AI and human labels by pair id, compute every figure and write the report files."""
    _need_matplotlib()  # fail before the work, not after it
    require("--out", output_dir_problem(out_dir))
    report = compare(load_matched(ai, human), bins=bins, n_boot=n_boot, seed=seed, tie_margin=tie_margin)
    source = open_labels(ai)
    report["inputs"] = {"ai": str(source.file), "human": str(open_labels(human).file)}
    if source.kind == "scores":  # a score judge: how its expected scores spread
        low, high = source.scale
        hist = {str(v): 0 for v in range(low, high + 1)}
        for r in source.scores():
            if r.get("status") == "ok":
                hist[str(min(high, max(low, round(r["score"]))))] += 1
        report["score_histogram"] = hist
    write_report(report, out_dir)
    return report


def summary_rows(report: dict) -> list[tuple[str, str, str, str]]:
    """(name, value, 95% interval, n) for printing."""
    out = []
    for key, _ in HEADLINES:
        if key in report:
            d = report["details"].get(key, {})
            out.append((key, _fmt(report[key]), _ci(d), str(d.get("n", ""))))
    for pid, d in report["details"]["per_principle_agreement"].items():
        out.append((f"agreement[{pid}]", _fmt(d["value"]), _ci(d), str(d["n"])))
    return out


def resolution_warning(report: dict) -> Optional[str]:
    """The one line the summary adds when p_a has no resolution (RESOLUTION_FLOOR): calibrated and useless."""
    res, unc = report.get("brier_resolution"), report.get("brier_uncertainty")
    if not resolution_near_zero(res, unc):
        return None
    return (
        f"warning: resolution {res:.4f} is under {RESOLUTION_FLOOR:.0%} of the uncertainty {unc:.4f}: p_a does not "
        f"tell people's choices apart, however low its ECE (a constant 0.5 is calibrated and useless); see the AUC"
    )


def fit_rows(cmap: dict) -> list[tuple[str, object, object, int]]:
    """(figure, before, after, pairs) for each part of a fitted map's evaluation (fit, heldout), for printing."""
    return [
        (f"{part}: {figure}", ev["before"][figure], ev["after"][figure], ev["n"])
        for part, ev in cmap["evaluation"].items()
        for figure in ("ece", "brier", "agreement", "ai_tie_rate")
    ]


# the side-by-side columns of a jury fit: (figure, header)
JURY_COLUMNS = (
    ("agreement", "agreement"),
    ("cohen_kappa", "kappa"),
    ("ece", "ECE"),
    ("brier_resolution", "resolution"),
)
JURY_COLUMNS += (("auc", "AUC"),)


def jury_weight_rows(doc: dict) -> list[tuple[str, str, str, str]]:
    """(member, weight, 95% interval, judge hash) for each member of a fitted jury, then the intercept."""
    intervals = doc["intervals"] or [None] * len(doc["weights"])
    rows = [
        (m["name"], _fmt(w), _ci({"ci95": ci}), m["judge_hash"][:12])
        for m, w, ci in zip(doc["members"], doc["weights"], intervals)
    ]
    rows.append(
        (
            "intercept",
            _fmt(doc["intercept"]),
            _ci({"ci95": doc["intercept_interval"]}),
            "0 by symmetry" if doc["symmetric"] else "",
        )
    )
    return rows


def jury_figure_rows(doc: dict, part: str) -> list[tuple]:
    """(name, figure..., pairs both decided) for each member and the jury on one part of the split."""
    return [
        (row["name"], *(_fmt(row[key]) for key, _ in JURY_COLUMNS), str(row["details"]["agreement"]["n"]))
        for row in doc["evaluation"][part]["rows"]
    ]


def no_signal_line(doc: dict) -> str:
    """The one line naming the members whose weight's interval contains 0."""
    if doc["no_signal"] is None:
        return "no signal: not tested (no bootstrap intervals: --resamples 0)"
    if not doc["no_signal"]:
        return "no signal: none; every member's weight interval excludes 0"
    return f"no signal (weight interval contains 0): {', '.join(doc['no_signal'])}"
