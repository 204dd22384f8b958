"""A jury against people on HH-RLHF harmless: fitted on the tuning rows, each member beside the jury on held-out rows.

The members are the embedded judge in pairwise mode, the embedded score judge, and the length rule in both
directions (judges/rule-length.yaml prefers the shorter response, rule-length-longer.yaml the longer): fitting decides
which direction carries signal. Every member labels rows 1–--fit-rows (the tuning split, default 500) and rows
501–900 (the report split) of ../shared/data/hh-rlhf-harmless-test.jsonl.gz; rows that are no valid pair (an empty
response) are left out of both. The jury's weights are fitted on the tuning split alone (`rlaif calibrate fit
--method jury`'s fit, nothing held out there); the report split is used for nothing but the figures.

Then the fitted jury itself (`backend: jury`, `aggregate: fitted`, written to WORK/jury.yaml) labels the report split
through `rlaif label`, the path a user takes, its members' verdicts taken from their runs (`--member-labels`;
--rejudge judges every pair again): its p_a must equal the combination of the members' runs (printed as the largest
difference). `benchmarks/bench_budget.py` reads those labels.

  python benchmarks/hh_jury.py --work runs/hh-jury

Every label run resumes, so a stopped run goes on where it was. The embedded members take most of the time: about
0.4 pairs/s pairwise and 1 response/s scored on one core of this machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

from rlaif.config.judge import load_judge_config
from rlaif.data.labels import read_labels
from rlaif.data.pairs import read_pairs
from rlaif.feedback.calibration.jury import JURY_ROW, fit_jury, jury_p, member_p, read_members, side_by_side, write_fit
from rlaif.feedback.calibration.match import human_labels, match_members
from rlaif.files import write_json_atomic
from rlaif.labeling.job import label
from rlaif.scoring.job import score

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"
MEMBERS = {
    "pairwise": "judges/default.yaml",
    "score": "judges/default-score.yaml",
    "shorter": "judges/rule-length.yaml",
    "longer": "judges/rule-length-longer.yaml",
}
REPORT = (500, 900)  # rows 501–900, 0-based [500, 900)
FIGURES = [  # (key in the figures, column title)
    ("agreement_ties_half", "agreement, ties ½"),
    ("agreement", "agreement, decided"),
    ("cohen_kappa", "κ"),
    ("ece", "ECE"),
    ("brier_resolution", "resolution"),
    ("auc", "AUC"),
]


def write_split(data: Path, dst: Path, start: int, stop: int) -> tuple[int, int]:
    """Rows [start, stop) of the HH file that read as a pair, as JSONL at `dst` (rewritten only if they changed,
    so that resumed runs read the same file); returns (rows written, rows left out as no valid pair)."""
    with gzip.open(data, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for i, line in enumerate(f) if start <= i < stop]
    dst.parent.mkdir(parents=True, exist_ok=True)
    raw = dst.with_suffix(".all.jsonl")
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pairs = list(read_pairs(raw, skip_invalid=True))
    raw.unlink()
    keep = "".join(line + "\n" for line, p in zip(lines, pairs) if not p.invalid)
    if not dst.exists() or dst.read_text(encoding="utf-8") != keep:
        dst.write_text(keep, encoding="utf-8")
    return keep.count("\n"), len(lines) - keep.count("\n")


def run_member(judge: str, pairs: Path, constitution: str, out: Path) -> None:
    """One member's labels of one split (resumed): `rlaif score` for a score judge, `rlaif label` otherwise."""
    job = score if load_judge_config(judge).mode == "score" else label
    job(pairs, constitution, judge, out, skip_invalid=True)


def figure(details: dict, key: str) -> str:
    d = details[key]
    if d["value"] is None:
        return "–"
    ci = d.get("ci95")
    text = f"{d['value']:.3f}"
    if ci:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text + (f" (n={d['n']})" if key == "agreement" else "")


def table(evaluation: dict, doc: dict) -> list[str]:
    intervals = doc["intervals"] or [None] * len(doc["weights"])
    weights = {m["name"]: (w, iv) for m, w, iv in zip(doc["members"], doc["weights"], intervals)}
    lines = [
        "| | " + " | ".join(title for _, title in FIGURES) + " | fitted weight [95%] |",
        "|---" * (len(FIGURES) + 2) + "|",
    ]
    for row in evaluation["rows"]:
        w = weights.get(row["name"])
        weight = "–" if w is None else f"{w[0]:+.3f}" + ("" if w[1] is None else f" [{w[1][0]:+.3f}, {w[1][1]:+.3f}]")
        name = f"**{row['name']}** (fitted)" if row["name"] == JURY_ROW else row["name"]
        lines.append(f"| {name} | " + " | ".join(figure(row["details"], k) for k, _ in FIGURES) + f" | {weight} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HH))
    ap.add_argument("--work", default="runs/hh-jury")
    ap.add_argument("--constitution", default="constitutions/harmless.yaml")
    ap.add_argument("--fit-rows", type=int, default=500, help="fit on rows 1..N (N <= 500: the tuning split)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--tie-margin", type=float, default=0.05)
    ap.add_argument(
        "--members",
        default=",".join(f"{k}={v}" for k, v in MEMBERS.items()),
        help="NAME=JUDGE_YAML,... (default: the four above)",
    )
    ap.add_argument("--no-jury-run", action="store_true", help="skip labelling the report split with the jury")
    ap.add_argument(
        "--rejudge",
        action="store_true",
        help="the jury judges the report split again (default: its members' verdicts from their runs, --member-labels)",
    )
    args = ap.parse_args()
    if not 0 < args.fit_rows <= REPORT[0]:
        ap.error(f"--fit-rows must be in 1..{REPORT[0]}: rows after {REPORT[0]} are the report split")
    members_given = dict(item.split("=", 1) for item in args.members.split(","))
    work = Path(args.work)
    t0 = time.perf_counter()

    splits = {"fit": (0, args.fit_rows), "report": REPORT}
    runs: dict[str, list[Path]] = {}
    for split, (start, stop) in splits.items():
        pairs = work / f"{split}.jsonl"
        kept, invalid = write_split(Path(args.data), pairs, start, stop)
        print(f"{split}: rows {start + 1}–{stop}, {kept} pairs ({invalid} rows with an empty response left out)")
        runs[split] = [work / split / name for name in members_given]
        for name, judge in members_given.items():
            print(f"  {name} ({judge})")
            run_member(judge, pairs, args.constitution, work / split / name)

    fit_runs, members = read_members(runs["fit"])
    for m, name in zip(members, members_given):
        m["name"] = name
    fit_ms = match_members(fit_runs, human_labels(r for run in fit_runs for r in run))
    doc = fit_jury(
        fit_ms, members, holdout=0.0, seed=args.seed, l2=args.l2, n_boot=args.resamples, tie_margin=args.tie_margin
    )
    report_runs, report_members = read_members(runs["report"])
    if [m["judge_hash"] for m in report_members] != [m["judge_hash"] for m in members]:
        raise SystemExit("the report split's members are other judges than the fit split's (judge hashes differ)")
    report_ms = match_members(report_runs, human_labels(r for run in report_runs for r in run))
    names = list(members_given)
    doc["evaluation"]["report"] = side_by_side(
        report_ms, names, doc["weights"], doc["intercept"], args.tie_margin, 10, args.resamples, args.seed
    )
    doc["fit"]["rows"] = {split: [a + 1, b] for split, (a, b) in splits.items()}
    write_fit(doc, work)

    # the jury as a judge: its members beside this file, its weights the ones just fitted
    jury_yaml = work / "jury.yaml"
    rel = [os.path.relpath(ROOT / judge, work.resolve()) for judge in members_given.values()]
    jury_yaml.write_text(
        "# written by benchmarks/hh_jury.py: the jury fitted on HH-RLHF harmless rows "
        f"1–{args.fit_rows}\nbackend: jury\nmembers: [{', '.join(rel)}]\naggregate: fitted\nweights: weights.json\n"
        f"tie_margin: {args.tie_margin}\n",
        encoding="utf-8",
    )
    offline = dict(
        zip(report_ms[0].ids, jury_p(np.stack([member_p(m) for m in report_ms], 1), doc["weights"], doc["intercept"]))
    )
    check = None
    if not args.no_jury_run:
        print(f"the fitted jury ({jury_yaml}) labels the report split")
        reuse = () if args.rejudge else tuple(runs["report"])  # the members' verdicts from their runs
        label(
            work / "report.jsonl",
            args.constitution,
            jury_yaml,
            work / "report" / "jury",
            skip_invalid=True,
            member_labels=reuse,
        )
        got = {r["id"]: r["p_a"] for r in read_labels(work / "report" / "jury") if r.get("status") == "ok"}
        both = [pid for pid in offline if pid in got]
        check = {
            "pairs": len(both),
            "max_abs_diff": max((abs(got[pid] - offline[pid]) for pid in both), default=None),
        }

    ev = doc["evaluation"]["report"]
    key = "agreement_ties_half"
    best = max((r for r in ev["rows"] if r["name"] != JURY_ROW), key=lambda r: r[key] or 0.0)
    jury = next(r for r in ev["rows"] if r["name"] == JURY_ROW)
    lines = [
        f"HH-RLHF harmless, fitted on rows 1–{args.fit_rows} ({len(fit_ms[0])} pairs every member labelled), "
        f"reported on rows {REPORT[0] + 1}–{REPORT[1]} ({ev['n']} pairs); 95% percentile bootstrap intervals, "
        f'{args.resamples} resamples. "Ties ½" is over all pairs people decided, a tie of the row counting half '
        f'(a tie is |p_a − 0.5| ≤ {args.tie_margin}); "decided" is over the pairs both decided (n).',
        "",
        *table(ev, doc),
        "",
        f"members with no signal (weight interval contains 0): {', '.join(doc['no_signal'] or []) or 'none'}",
        f"jury agreement (ties ½) {jury[key]} vs the best member's, {best['name']} {best[key]}: "
        + ("at least the best member's" if (jury[key] or 0) >= (best[key] or 0) else "BELOW it"),
    ]
    if check:
        lines.append(
            f"`backend: jury` labels vs the members' runs combined, {check['pairs']} pairs: max |Δp_a| = "
            f"{check['max_abs_diff']:.2e}"
        )
    lines.append(f"wall time {time.perf_counter() - t0:.0f} s")
    text = "\n".join(lines) + "\n"
    (work / "README-table.md").write_text(text, encoding="utf-8")
    write_json_atomic(work / "summary.json", {"check": check, "report": ev, "weights": doc["weights"]})
    print(text)
    print(json.dumps({"weights": str(work / "weights.json"), "report": str(work / "report.json")}))


if __name__ == "__main__":
    main()
