"""`rlaif annotate select`: spend a human budget where the judge is least trustworthy.

Each AI label gets a priority, the sum of three parts in [0, 1]: low confidence (1 - 2|p_a - 0.5|), order
disagreement (|P(a | a first) - P(a | a second)| when the two orders pick different responses) and principle
disagreement (max - min of the per-principle p_a under `sampling: all`). A failed label (no preference at all)
gets the maximum, 3; a pair whose input could not be read is never picked. The top N pairs are written in
`rlaif label` input format for `rlaif annotate serve`.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Optional

from ..config.paths import output_file_problem, require
from ..data.labels import open_labels, read_labels
from ..files import write_jsonl
from .calibration.match import human_labels
from .sources import invalid_input, queue_row

MAX_PRIORITY = 3.0


def priority(r: dict) -> dict:
    """The parts of one AI label's priority and their sum (`score`)."""
    if r.get("status") != "ok" or r.get("p_a") is None:
        return {"score": MAX_PRIORITY, "low_confidence": 1.0, "order_disagreement": 1.0, "principle_disagreement": 1.0}
    low = 1.0 - 2.0 * abs(r["p_a"] - 0.5)
    orders = r.get("p_a_orders") or []
    order = 0.0
    if len(orders) == 2 and None not in orders and (orders[0] - 0.5) * (orders[1] - 0.5) <= 0:
        order = abs(orders[0] - orders[1])
    per = [v for v in (r.get("per_principle") or {}).values() if v is not None]
    spread = max(per) - min(per) if len(per) >= 2 else 0.0
    return {
        "score": low + order + spread,
        "low_confidence": low,
        "order_disagreement": order,
        "principle_disagreement": spread,
    }


def select_pairs(labels: str | Path, budget: int, out: str | Path, human: Optional[str | Path] = None) -> dict:
    """Write the `budget` AI-labelled pairs of highest priority to `out` (highest first; ties by id), leaving
    out pairs that already have a human label in `human`."""
    if budget < 1:
        raise ValueError("--budget must be at least 1")
    require("--out", output_file_problem(out))
    have_human = set(human_labels(read_labels(human))) if human else set()
    seen = {"candidates": 0, "skipped_human_labelled": 0, "skipped_invalid_input": 0}

    def candidates():
        for r in read_labels(labels):
            if r.get("source", "ai") != "ai":
                continue
            if invalid_input(r):
                seen["skipped_invalid_input"] += 1
            elif r["id"] in have_human:
                seen["skipped_human_labelled"] += 1
            else:
                seen["candidates"] += 1
                yield priority(r), r

    # only the best `budget` are kept in memory; scores rounded so that 0.55 and 0.45 count as equally close
    picked = heapq.nsmallest(budget, candidates(), key=lambda x: (-round(x[0]["score"], 9), x[1]["id"]))
    if not any(seen.values()):
        raise ValueError(f"no AI labels in {open_labels(labels).file}")
    write_jsonl((queue_row(r) for _, r in picked), out)
    reasons = {"failed": 0, "order_disagreement": 0, "principle_disagreement": 0, "low_confidence_only": 0}
    for parts, r in picked:
        if r.get("status") != "ok":
            reasons["failed"] += 1
        elif parts["order_disagreement"] > 0:
            reasons["order_disagreement"] += 1
        elif parts["principle_disagreement"] > 0:
            reasons["principle_disagreement"] += 1
        else:
            reasons["low_confidence_only"] += 1
    return {
        "selected": len(picked),
        **seen,
        "score_range": [round(picked[-1][0]["score"], 4), round(picked[0][0]["score"], 4)] if picked else None,
        **reasons,
        "out": str(out),
    }
