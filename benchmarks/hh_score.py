"""What the embedded judge is worth in score mode (d-RLAIF): rate both responses of held-out HH-RLHF harmless pairs
one at a time, derive P(a preferred) = σ((s_a − s_b)/T) from the two expected scores, and compare with people.

Rows 1–500 of the shared file are the tuning split (nothing was tuned on them); this reports on rows after
--offset. The judge is --judge (default judges/default.yaml) with `mode: score` set, written into --out. It
prints the job's figures; then `python benchmarks/hh_calibration.py --labels OUT/scores --out OUT/calibration`
gives agreement and ECE with 95% intervals, as for the pairwise judge (a score folder reads as derived labels).

  python benchmarks/hh_score.py -n 400 --out runs/hh-score
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path

import yaml

from rlaif.data.labels import read_labels, read_scores
from rlaif.scoring.job import score

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"  # ../shared beside the repository


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HH))
    ap.add_argument("--judge", default=str(ROOT / "judges" / "default.yaml"))
    ap.add_argument("--constitution", default=str(ROOT / "constitutions" / "harmless.yaml"))
    ap.add_argument("--offset", type=int, default=500, help="skip the tuning rows")
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/hh-score")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subset = out / "heldout.jsonl"
    with gzip.open(args.data, "rt", encoding="utf-8") as f, open(subset, "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if args.offset <= i < args.offset + args.n:
                row = json.loads(line)
                if (
                    row["chosen"].rsplit("Assistant:", 1)[-1].strip()
                    and row["rejected"].rsplit("Assistant:", 1)[-1].strip()
                ):
                    g.write(line)  # a row with an empty response cannot be rated (file row 517)
    config = yaml.safe_load(Path(args.judge).read_text())
    config["mode"] = "score"
    judge = out / "judge-score.yaml"
    judge.write_text(yaml.safe_dump(config))
    result = score(subset, args.constitution, judge, out / "scores", seed=args.seed)
    s = result.stats
    labels = [r for r in read_labels(out / "scores") if r["status"] == "ok" and r.get("human_label") in ("a", "b")]
    lean = [("a" if r["p_a"] > 0.5 else "b" if r["p_a"] < 0.5 else "tie") == r["human_label"] for r in labels]
    decided = [r["label"] == r["human_label"] for r in labels if r["label"] != "tie"]
    records = [r for r in read_scores(out / "scores") if r["status"] == "ok"]
    gaps = [abs(a["score"] - b["score"]) for a, b in zip(records[::2], records[1::2])]
    rows = [
        ("responses rated (ok / failed)", f"{s['ok']} / {s['failed']}", f"{s['prompts']} prompts"),
        ("agreement, label (ties = disagree)", s["agreement_with_human"], f"n={s['human_pairs']}"),
        (
            "agreement, decided pairs only",
            round(sum(decided) / len(decided), 4) if decided else None,
            f"n={len(decided)}",
        ),
        ("agreement, whichever side p_a leans to", round(sum(lean) / len(lean), 4) if lean else None, f"n={len(lean)}"),
        ("mean expected score", round(statistics.mean(r["score"] for r in records), 3), f"n={len(records)}"),
        ("mean |s_a - s_b| of a pair", round(statistics.mean(gaps), 3) if gaps else None, f"n={len(gaps)}"),
        ("expected-score histogram", " ".join(f"{k}:{v}" for k, v in s["score_histogram"].items()), ""),
        ("responses/s", s.get("responses_per_s"), ""),
    ]
    for name, value, n in rows:
        print(f"| {name} | {value} | {n} |")


if __name__ == "__main__":
    main()
