"""The judge against people on HH-RLHF harmless: the `rlaif calibrate` report and calibration maps, as README tables.

The human choice comes with the data (`human_label` on the labels of `benchmarks/hh_agreement.py`, rows 501+ of
the shared file), so one label directory serves as both --ai and --human. A calibration map needs pairs to fit
on: with --fit-ai (labels of rows 1–500, the tuning split, by the same judge) it is fitted there and measured on
all report rows; without it, the report rows are split in two by a seeded hash of the pair id, the map is fitted
on one half and measured on the other.

  python benchmarks/hh_calibration.py --labels runs/hh-default/labels --out runs/hh-default/calibration
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlaif.feedback.calibration.maps import METHODS, evaluate, fit_map, predict
from rlaif.feedback.calibration.match import load_matched
from rlaif.feedback.calibration.report import run_report, summary_rows
from rlaif.files import write_json_atomic


def _f(x) -> str:
    return "–" if x is None else str(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default="runs/hh-default/labels", help="AI labels of the report rows")
    ap.add_argument("--fit-ai", default=None, help="AI labels of tuning rows to fit the maps on (optional)")
    ap.add_argument("--out", default="runs/hh-default/calibration")
    ap.add_argument("--holdout", type=float, default=0.5, help="without --fit-ai: share of report rows held out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--tie-margin", type=float, default=0.05)
    args = ap.parse_args()
    out = Path(args.out)

    report = run_report(
        args.labels, args.labels, out, n_boot=args.resamples, seed=args.seed, tie_margin=args.tie_margin
    )
    lines = [
        f"Judge vs people: {report['n_pairs']} HH-RLHF harmless pairs ({args.labels}); 95% percentile "
        f"bootstrap intervals, {args.resamples} resamples.",
        "",
        "| figure | value | 95% interval | n |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {value} | {ci} | {n} |"
        for name, value, ci, n in summary_rows(report)
        if not name.startswith("agreement[")
    ]

    report_rows = load_matched(args.labels, args.labels)
    maps = {}
    for method in METHODS:
        if args.fit_ai:
            cmap = fit_map(
                load_matched(args.fit_ai, args.fit_ai),
                method=method,
                holdout=0.0,
                seed=args.seed,
                tie_margin=args.tie_margin,
            )
            cmap["evaluation"]["heldout"] = evaluate(report_rows, predict(cmap, report_rows.p_a), args.tie_margin)
            where = f"fitted on {args.fit_ai}, measured on the report rows"
        else:
            cmap = fit_map(report_rows, method=method, holdout=args.holdout, seed=args.seed, tie_margin=args.tie_margin)
            where = (
                f"fitted on {cmap['fit']['pairs']} report rows, measured on the other "
                f"{cmap['evaluation']['heldout']['n']} (split by sha256(seed:id))"
            )
        write_json_atomic(out / f"map-{method}.json", cmap)
        maps[method] = cmap
    lines += [
        "",
        f"Calibration maps, {where}; before = the judge's own p_a and labels, after = through the map "
        f"(tie when |p_a - 0.5| <= {args.tie_margin}).",
        "",
        "| map | ECE before | ECE after | Brier before | Brier after | agreement before (n) | "
        "agreement after (n) | judge ties before | after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, cmap in maps.items():
        ev = cmap["evaluation"]["heldout"]
        b, a = ev["before"], ev["after"]
        lines.append(
            f"| {method} | {_f(b['ece'])} | {_f(a['ece'])} | {_f(b['brier'])} | {_f(a['brier'])} | "
            f"{_f(b['agreement'])} ({b['agreement_n']}) | {_f(a['agreement'])} ({a['agreement_n']}) | "
            f"{_f(b['ai_tie_rate'])} | {_f(a['ai_tie_rate'])} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "README-table.md").write_text(text, encoding="utf-8")
    print(text)
    print(json.dumps({"report": str(out / "report.json"), "html": str(out / "report.html")}))


if __name__ == "__main__":
    main()
