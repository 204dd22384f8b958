"""What the judge is worth: label held-out HH-RLHF harmless pairs and compare with the human choice.

Rows 1–500 of the shared file are the tuning split (we did not tune on them either); this script reports on
rows after --offset. It prints agreement with the human choice for the debiased both-orders label (ties count
as disagreement, and separately over decided pairs only), for the naive single-order verdict, and the
position-consistency rate, each with its n.

  python benchmarks/hh_agreement.py --judge judges/default.yaml -n 400 --out runs/hh-default
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from rlaif.labeling.job import label

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HH))
    ap.add_argument("--judge", default="judges/default.yaml")
    ap.add_argument("--constitution", default="constitutions/harmless.yaml")
    ap.add_argument("--offset", type=int, default=500, help="skip the tuning rows")
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/hh-default")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subset = out / "heldout.jsonl"
    with gzip.open(args.data, "rt", encoding="utf-8") as f, open(subset, "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if args.offset <= i < args.offset + args.n:
                g.write(line)
    result = label(subset, args.constitution, args.judge, out / "labels", seed=args.seed, skip_invalid=True)
    s = result.stats
    rows = [
        ("pairs labelled (ok / failed)", f"{s['ok']} / {s['failed']}", ""),
        ("agreement, both orders, ties = disagree", s["agreement_with_human"], f"n={s['human_labelled']}"),
        (
            "agreement, both orders, decided pairs only",
            s["agreement_with_human_decided"],
            f"n={s['decided_with_human']}",
        ),
        ("agreement, single order (naive)", s["agreement_single_order"], f"n={s['human_labelled']}"),
        ("position consistency", s["position_consistency"], f"n={s['ok']}"),
        ("labels a / b / tie", " / ".join(str(s["labels"][k]) for k in ("a", "b", "tie")), ""),
        ("pairs/s", s["pairs_per_s"], ""),
    ]
    print(
        f"\nHH-RLHF harmless-base test rows {args.offset + 1}–{args.offset + args.n}, judge {args.judge}, "
        f"constitution {args.constitution}"
    )
    for name, value, n in rows:
        print(f"  {name:45s} {value!s:>12} {n}")
    (out / "report.json").write_text(json.dumps({"rows": [args.offset + 1, args.offset + args.n], **s}, indent=2))


if __name__ == "__main__":
    main()
