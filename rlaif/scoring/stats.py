"""Summary statistics of a score folder: responses rated and failed (and why), the histogram of expected scores,
the mean reward per principle, and, where the input pairs carry a human choice, how often the preference derived
from the two scores agrees with it. Computed by streaming the records, so they describe the whole folder.
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..jobs.run import count_reason, top_reasons
from ..data.scores import derived_labels
from ..judges.base import TOO_LONG


def compute_stats(records: Iterable[dict], scale: tuple[int, int], temperature: float, tie_margin: float,
                  run: Optional[dict] = None) -> dict:
    records = list(records)
    low, high = scale
    histogram = {str(s): 0 for s in range(low, high + 1)}  # expected scores, rounded to the nearest score
    principles: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    ok = failed_input = prompt_tokens = completion_tokens = 0
    score_sum = 0.0
    for r in records:
        prompt_tokens += r.get("prompt_tokens", 0)
        completion_tokens += r.get("completion_tokens", 0)
        if r["status"] != "ok":
            count_reason(errors, r.get("error"))
            failed_input += (r.get("error") or "").startswith(TOO_LONG)
            continue
        ok += 1
        score_sum += r["score"]
        histogram[str(min(high, max(low, round(r["score"]))))] += 1
        principles.setdefault(r.get("principle_id") or "?", []).append(r["reward"])
    agree = decided = 0
    # only pairs with a human choice count (both responses of such a pair carry it): samples never do
    labelled = [r for r in records if r.get("human_label") in ("a", "b")]
    for pair in derived_labels(labelled, scale, temperature, tie_margin):
        if pair["status"] == "ok" and pair.get("human_label") in ("a", "b"):
            decided += 1
            agree += pair["label"] == pair["human_label"]
    stats = {
        "responses": len(records), "ok": ok, "failed": len(records) - ok,
        "failed_input": failed_input, "failed_judge": len(records) - ok - failed_input,
        "prompts": len({r["prompt_id"] for r in records}), "scale": [low, high], "temperature": temperature,
        "tie_margin": tie_margin,
        "score_histogram": histogram, "mean_score": round(score_sum / ok, 4) if ok else None,
        "mean_reward_by_principle": {k: round(sum(v) / len(v), 4) for k, v in sorted(principles.items())},
        "human_pairs": decided,
        "agreement_with_human": round(agree / decided, 4) if decided else None,
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "failure_reasons": top_reasons(errors),
    }
    if run:
        stats.update(run)
    return stats
