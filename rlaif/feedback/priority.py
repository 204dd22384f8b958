"""How much a human label of a pair is worth: the priority `rlaif annotate select` ranks AI labels by, and the
order in which the mixed source's human budget (`budget`, `budget_fraction`) is spent. One place for both, so
the pairs a budget sends to people are exactly the ones `rlaif annotate select` would pick.

A priority is the sum of three parts in [0, 1]: low confidence (1 - 2|p_a - 0.5|), order disagreement (|P(a | a
first) - P(a | a second)| when the two orders pick different responses) and principle disagreement (max - min of
the per-principle p_a under `sampling: all`). A failed label (no preference at all) gets the maximum, 3, so it
comes first.
"""

from __future__ import annotations

import heapq
from typing import Any, Iterable

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


def rank_key(score: float, pair_id: str) -> tuple[float, str]:
    """The sort key of the ranking, highest priority first and ties by pair id. Scores are rounded so that p_a
    0.55 and 0.45 count as equally close (their float distances to 0.5 differ in the last bits)."""
    return -round(score, 9), pair_id


def top(n: int, ranked: Iterable[tuple[float, str, Any]]) -> list[tuple[float, str, Any]]:
    """The `n` entries (score, pair id, anything) of highest priority, highest first, ties by id; only `n` are
    kept in memory."""
    return heapq.nsmallest(n, ranked, key=lambda x: rank_key(x[0], x[1]))
