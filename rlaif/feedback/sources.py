"""One way in for preferences, whoever gave them: `load_feedback(config)` yields label records from the AI judge,
from people, or a mix (the judge where it is sure, people for the rest), each record keeping its `source`.

The training recipes and `rlaif export --feedback` read through here; AI and human labels meet by pair `id`. Each
source's config is a class in `rlaif.config.feedback`, and `load_feedback` is the one place that dispatches on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

from ..config.feedback import AIFeedback, FeedbackConfig, HumanFeedback, MixedFeedback
from ..data.labels import read_labels
from ..files import write_jsonl
from ..jobs.folder import refuse_running
from ..jobs.run import INVALID_INPUT
from ..records import sha256_json
from .calibration.maps import calibrate_records, load_map
from .calibration.match import human_labels, human_target
from .priority import priority, top

AnyFeedback = Union[FeedbackConfig, AIFeedback, HumanFeedback, MixedFeedback]


def load_feedback(config: AnyFeedback, stats: Optional[dict] = None, write_queue: bool = True) -> Iterator[dict]:
    """Label records (dicts in the labels.jsonl form) from the configured source: a FeedbackConfig or one
    source's config. `stats`, when given, is filled with counts as the records are read. The mixed source writes
    its human queue once it has been read through (unless `write_queue` is false: the other processes of a
    multi-process run leave it to the main one)."""
    source = config.root if isinstance(config, FeedbackConfig) else config
    stats = stats if stats is not None else {}
    if isinstance(source, AIFeedback):
        return _counted(_ai_labels(source.ai, source.calibration), stats, "ai_pairs")
    if isinstance(source, HumanFeedback):
        humans = _human_labels(source.human, source.human_combine, required=True)
        return _counted((r for hs in humans.values() for r in hs), stats, "human_pairs")
    if isinstance(source, MixedFeedback):
        return _mixed(source, stats, write_queue)
    raise TypeError(f"not a feedback source config: {type(source).__name__}")


def _counted(records: Iterable[dict], stats: dict, key: str) -> Iterator[dict]:
    stats.setdefault(key, 0)
    for r in records:
        stats[key] += 1
        yield r


def _ai_labels(path: str, calibration: Optional[str]) -> Iterator[dict]:
    refuse_running(Path(path), "train on")  # a folder still being labelled holds part of its labels
    records = read_labels(path)
    return calibrate_records(records, load_map(calibration)) if calibration else records


def combine_human(labels: list[dict]) -> dict:
    """Several annotators' labels of one pair as one record: p_a is the mean of theirs (a=1, b=0, tie=0.5), the
    label follows it (tie at exactly 0.5), `annotator` lists them all."""
    if len(labels) == 1:
        return labels[0]
    p = human_target(labels)
    names = sorted(r.get("annotator") or "anonymous" for r in labels)
    times = [r["created_at"] for r in labels if r.get("created_at")]
    out = {
        **labels[0],
        "p_a": p,
        "label": "a" if p > 0.5 else "b" if p < 0.5 else "tie",
        "annotator": ",".join(names),
        "key": sha256_json(["human", labels[0]["id"], names])[:32],
    }
    out.pop("shown_order", None)  # each annotator saw their own order
    out.pop("created_at", None)
    if times:
        out["created_at"] = max(times)
    return out


def _human_labels(path: Optional[str], combine: str, required: bool) -> dict[str, list[dict]]:
    if not path:
        return {}
    if not required and not Path(path).exists():
        return {}  # mixed: no human labels yet
    by_id = human_labels(read_labels(path))
    return by_id if combine == "each" else {pid: [combine_human(hs)] for pid, hs in by_id.items()}


# ---------------------------------------------------------------------------------------------- mixed


def queue_row(r: dict) -> dict:
    """A pair in `rlaif label` / `rlaif annotate serve` input format, keeping its id, order and principle."""
    row = {"id": r["id"], "prompt": r["prompt"], "response_a": r["response_a"], "response_b": r["response_b"]}
    if r.get("principle_id") and r["principle_id"] != "all":
        row["principle"] = r["principle_id"]
    return row


def invalid_input(r: dict) -> bool:
    """A pair that could not be read (e.g. an empty response): no one can label it, so it is never queued."""
    return r.get("status") != "ok" and (r.get("error") or "").startswith(INVALID_INPUT)


def route(r: dict, margin: float, require_consistent: bool) -> Optional[str]:
    """Why an AI label should go to people (failed, low_margin, inconsistent), or None to keep it."""
    if r.get("status") != "ok" or r.get("p_a") is None:
        return "failed"
    if abs(r["p_a"] - 0.5) < margin - 1e-12:  # 0.6 - 0.5 is 0.09999999999999998 in floats
        return "low_margin"
    if require_consistent and not r.get("position_consistent"):
        return "inconsistent"
    return None


def _mixed(config: MixedFeedback, stats: dict, write_queue: bool) -> Iterator[dict]:
    for k in (
        "ai_pairs",
        "human_pairs",
        "queued",
        "queued_failed",
        "queued_low_margin",
        "queued_inconsistent",
        "queued_priority",
        "pending_ai",
        "pending_dropped",
        "invalid_input",
    ):
        stats.setdefault(k, 0)
    stats["queue"] = str(config.queue_path())
    return _route_mixed(config, stats, write_queue)


def budgeted(config: MixedFeedback) -> Optional[dict[str, int]]:
    """On a budget, the pairs for people: {pair id: rank}, the `budget` of highest priority (rlaif/feedback/
    priority.py, as `rlaif annotate select` ranks them; ties by id) among the AI labels whose input could be read.
    A function of the AI labels alone, so the queue stays the same as people answer it. None: margin routing."""
    if config.budget is None and config.budget_fraction is None:
        return None
    ranked = [
        (priority(r)["score"], r["id"], None)
        for r in _ai_labels(config.ai, config.calibration)
        if r.get("source", "ai") == "ai" and not invalid_input(r)
    ]
    return {pid: rank for rank, (_, pid, _) in enumerate(top(config.budget_for(len(ranked)), ranked))}


def _route_mixed(config: MixedFeedback, stats: dict, write_queue: bool) -> Iterator[dict]:
    humans = _human_labels(config.human, config.human_combine, required=False)
    to_people = budgeted(config)
    if to_people is not None:
        stats["budget"] = len(to_people)
    queued: list[tuple[int, dict]] = []  # (place in the queue, row)
    for r in _ai_labels(config.ai, config.calibration):
        if r.get("source", "ai") != "ai":
            continue
        if invalid_input(r):
            stats["invalid_input"] += 1
            continue
        if to_people is None:
            reason = route(r, config.margin, config.require_consistent)
        else:
            reason = (route(r, 0.0, False) or "priority") if r["id"] in to_people else None
        if reason:
            queued.append((len(queued) if to_people is None else to_people[r["id"]], queue_row(r)))
            stats["queued"] += 1
            stats[f"queued_{reason}"] += 1
        if r["id"] in humans:  # a human label wins wherever there is one, queued pair or not
            stats["human_pairs"] += 1
            yield from humans[r["id"]]
        elif reason is None:
            stats["ai_pairs"] += 1
            yield r
        elif config.pending == "ai" and reason != "failed":
            stats["pending_ai"] += 1
            yield r
        else:
            stats["pending_dropped"] += 1
    if write_queue:
        # written whole once every AI label has been read (an abandoned read leaves the old queue); on a budget,
        # highest priority first, the order the annotation app hands pairs out in
        write_jsonl((row for _, row in sorted(queued, key=lambda x: x[0])), config.queue_path())
