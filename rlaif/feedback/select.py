"""`rlaif annotate select`: spend a human budget where the judge is least trustworthy.

Each AI label gets the priority of rlaif/feedback/priority.py (low confidence, order and principle disagreement; a
failed label first); a pair whose input could not be read is never picked. The top N pairs are written in `rlaif
label` input format for `rlaif annotate serve`. The mixed feedback source spends its `budget` by the same ranking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config.paths import output_file_problem, require
from ..data.labels import open_labels, read_labels
from ..files import write_jsonl
from .calibration.match import human_labels
from .priority import priority, top
from .sources import invalid_input, queue_row


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
                parts = priority(r)
                yield parts["score"], r["id"], (parts, r)

    picked = [entry for _, _, entry in top(budget, candidates())]
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
