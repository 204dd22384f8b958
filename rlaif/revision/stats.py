"""Summary statistics of a revisions file: chains done and failed, tokens, how long the first answers and the final
revisions are, how often a revision changed the answer, where generation stopped, and the principles drawn.

Computed by streaming the records, so they describe the whole folder (all runs of a resumed job), not one run.
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..jobs.run import count_reason, top_reasons


def _mean(total: float, n: int) -> Optional[float]:
    return round(total / n, 2) if n else None


def compute_stats(records: Iterable[dict], rounds: int, run: Optional[dict] = None) -> dict:
    n = ok = 0
    prompt_tokens = completion_tokens = from_input = changed = 0
    chars = {"initial": 0, "final": 0}
    words = {"initial": 0, "final": 0}
    cut = {"initial": 0, "critique": 0, "revision": 0}  # generations that stopped at max_new_tokens
    principles: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in records:
        n += 1
        prompt_tokens += r.get("prompt_tokens", 0)
        completion_tokens += r.get("completion_tokens", 0)
        cut["initial"] += r.get("initial_finish") == "length"
        for rnd in r.get("rounds") or ():
            principles[rnd["principle_id"]] = principles.get(rnd["principle_id"], 0) + 1
            cut["critique"] += rnd.get("critique_finish") == "length"
            cut["revision"] += rnd.get("revision_finish") == "length"
        if r["status"] != "ok":
            count_reason(errors, r.get("error"))
            continue
        ok += 1
        from_input += r.get("initial_source") == "input"
        changed += r["final"] != r["initial"]
        for k in chars:
            chars[k] += len(r[k])
            words[k] += len(r[k].split())
    stats = {
        "prompts": n, "ok": ok, "failed": n - ok, "rounds": rounds,
        "initial_from_input": from_input,
        "final_differs_from_initial": round(changed / ok, 4) if ok else None,
        "mean_initial_chars": _mean(chars["initial"], ok), "mean_final_chars": _mean(chars["final"], ok),
        "mean_initial_words": _mean(words["initial"], ok), "mean_final_words": _mean(words["final"], ok),
        "cut_at_max_new_tokens": cut, "principles": dict(sorted(principles.items())),
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "failure_reasons": top_reasons(errors),
    }
    if run:
        stats.update(run)
    return stats
