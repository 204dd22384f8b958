"""Summary statistics of a label file: counts, position consistency, agreement with known human choices, cost.

Computed by streaming the records, so they describe the whole file (all runs of a resumed job), not one run.
"""

from __future__ import annotations

from typing import Iterable, Optional


def _rate(num: int, den: int) -> Optional[float]:
    return round(num / den, 4) if den else None


def compute_stats(records: Iterable[dict], judge_config=None, run: Optional[dict] = None) -> dict:
    n = ok = failed = consistent = 0
    labels = {"a": 0, "b": 0, "tie": 0}
    human_n = agree = agree_decided = decided = first_only_agree = 0
    prompt_tokens = completion_tokens = 0
    errors: dict[str, int] = {}
    for r in records:
        n += 1
        prompt_tokens += r.get("prompt_tokens", 0)
        completion_tokens += r.get("completion_tokens", 0)
        if r["status"] != "ok":
            failed += 1
            err = (r.get("error") or "unknown").split(":")[0][:80]
            errors[err] = errors.get(err, 0) + 1
            continue
        ok += 1
        labels[r["label"]] += 1
        consistent += bool(r.get("position_consistent"))
        human = r.get("human_label")
        if human in ("a", "b"):
            human_n += 1
            agree += r["label"] == human
            if r["label"] != "tie":
                decided += 1
                agree_decided += r["label"] == human
            # the naive single-order verdict: response_a shown first (pair order is already randomised)
            first = r["p_a_orders"][0]
            first_only_agree += ("a" if first > 0.5 else "b") == human
    stats = {
        "pairs": n, "ok": ok, "failed": failed, "labels": labels,
        "position_consistency": _rate(consistent, ok),
        "human_labelled": human_n,
        # ties count as disagreement here: a judge that cannot tell does not get credit
        "agreement_with_human": _rate(agree, human_n),
        "agreement_with_human_decided": _rate(agree_decided, decided), "decided_with_human": decided,
        "agreement_single_order": _rate(first_only_agree, human_n),
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "failure_reasons": errors,
    }
    if judge_config is not None:
        cost = (prompt_tokens * judge_config.price_per_1k_prompt_tokens +
                completion_tokens * judge_config.price_per_1k_completion_tokens) / 1000
        stats["estimated_cost"] = round(cost, 6) if cost else None
    if run:
        stats.update(run)
    return stats
