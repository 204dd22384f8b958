"""Summary statistics of a label file: counts, position consistency, agreement with known human choices, cost;
and the plain advice a run's summary gives when its judge could not tell the responses apart.

Computed by streaming the records, so they describe the whole file (all runs of a resumed job), not one run.
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..jobs.run import count_reason, top_reasons
from .pairwise import is_input_failure

CAPABLE_JUDGES = "judges/vllm.yaml (a GPU) or judges/openai.yaml (an OpenAI-compatible server)"


def _rate(num: int, den: int) -> Optional[float]:
    return round(num / den, 4) if den else None


def compute_stats(records: Iterable[dict], judge_config=None, run: Optional[dict] = None) -> dict:
    n = ok = failed = failed_input = consistent = 0
    labels = {"a": 0, "b": 0, "tie": 0}
    human_n = agree = agree_decided = decided = first_only_agree = 0
    prompt_tokens = completion_tokens = 0
    errors: dict[str, int] = {}
    flags: dict[str, int] = {}
    sources = {"logprobs": 0, "text": 0}  # verdicts of ok labels, one per order
    for r in records:
        n += 1
        prompt_tokens += r.get("prompt_tokens", 0)
        completion_tokens += r.get("completion_tokens", 0)
        for flag in r.get("flags") or ():
            flags[flag] = flags.get(flag, 0) + 1
        if r["status"] != "ok":
            failed += 1
            failed_input += is_input_failure(r.get("error"))
            count_reason(errors, r.get("error"))
            continue
        ok += 1
        labels[r["label"]] += 1
        for source in r.get("verdict_source") or ():
            if source in sources:
                sources[source] += 1
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
        "pairs": n, "ok": ok, "failed": failed,
        # judge errors (the exit code 4, --retry-failed) apart from input that could not be judged
        "failed_judge": failed - failed_input, "failed_input": failed_input,
        "labels": labels, "flags": flags,
        "position_consistency": _rate(consistent, ok),
        "human_labelled": human_n,
        # ties count as disagreement here: a judge that cannot tell does not get credit
        "agreement_with_human": _rate(agree, human_n),
        "agreement_with_human_decided": _rate(agree_decided, decided), "decided_with_human": decided,
        "agreement_single_order": _rate(first_only_agree, human_n),
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "failure_reasons": top_reasons(errors),
        # text verdicts are 0 or 1 (a server that returned no logprobs): they carry no soft probability
        "verdict_sources": sources,
    }
    if judge_config is not None:
        cost = (prompt_tokens * judge_config.price_per_1k_prompt_tokens +
                completion_tokens * judge_config.price_per_1k_completion_tokens) / 1000
        stats["estimated_cost"] = round(cost, 6) if cost else None
    if run:
        stats.update(run)
    return stats


def judge_advice(stats: dict) -> Optional[str]:
    """One plain line when this run's judge could not tell the responses apart (more than half of its labels
    ties, or more than half of its pairs judged differently once the order was swapped), saying what to do."""
    labels = stats.get("run_labels") or {}
    n = sum(labels.values())
    if not n:
        return None
    problems = []
    if labels.get("tie", 0) * 2 > n:
        problems.append(f"{labels['tie']} of this run's {n} labels are ties")
    inconsistent = stats.get("run_inconsistent", 0)
    if inconsistent * 2 > n:
        problems.append(f"in {inconsistent} of {n} pairs the judge picked a different response once the order "
                        f"was swapped")
    if not problems:
        return None
    return (f"Note: {' and '.join(problems)}: this judge cannot tell these responses apart, so these labels "
            f"will not teach a preference. Use a more capable judge: {CAPABLE_JUDGES}.")
