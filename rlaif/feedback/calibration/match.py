"""AI labels matched to human labels by pair id: the first step of every comparison of the judge with people.

Human labels are read by pair id, one per annotator; each usable AI label is paired with them in its own response
order, and `Matched` holds the result as parallel arrays for the metrics and the calibration maps. A jury's members
are matched together (`match_members`): the pairs every member and people labelled, in one response order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ...data.labels import open_labels, read_labels
from ...records import HUMAN_P, IMPORTED_ANNOTATOR, SWAPPED, human_record


def human_record_from(r: dict) -> dict:
    """The human choice a record carries in `human_label` (data such as HH-RLHF) as a human label record."""
    return human_record(
        pair_id=r["id"],
        prompt=r["prompt"],
        response_a=r["response_a"],
        response_b=r["response_b"],
        label=r["human_label"],
        annotator=IMPORTED_ANNOTATOR,
        principle_id=r.get("principle_id"),
        conversational=r.get("conversational", False),
    ).to_json()


def human_labels(records: Iterable[dict]) -> dict[str, list[dict]]:
    """Human labels by pair id, one per annotator (a later label by the same annotator replaces the earlier).

    Records with `source: "human"` are used as they are; any other record that carries a `human_label` (AI labels
    of data with a known human choice) gives a human record from annotator "imported"."""
    by_id: dict[str, dict[str, dict]] = {}
    for r in records:
        if r.get("source") == "human":
            if r.get("status", "ok") == "ok" and r.get("label") in HUMAN_P:
                by_id.setdefault(r["id"], {})[r.get("annotator") or "anonymous"] = r
        elif r.get("human_label") in HUMAN_P:
            by_id.setdefault(r["id"], {}).setdefault(IMPORTED_ANNOTATOR, human_record_from(r))
    return {pid: list(ann.values()) for pid, ann in by_id.items()}


def majority(labels: Sequence[str]) -> str:
    """The label with strictly the most votes; 'tie' when no label has (e.g. one 'a' and one 'b')."""
    counts = {k: labels.count(k) for k in HUMAN_P}
    best = max(counts.values())
    winners = [k for k, c in counts.items() if c == best]
    return winners[0] if len(winners) == 1 else "tie"


def human_target(labels: Sequence[dict]) -> float:
    """P(people prefer response_a) for one pair: the mean of its annotators' p_a (a=1, b=0, tie=0.5)."""
    return float(np.mean([HUMAN_P[r["label"]] for r in labels]))


@dataclass
class Matched:
    """AI labels (status ok, source ai) that have human labels, as parallel arrays; one entry per pair."""

    ids: list[str]
    p_a: np.ndarray  # the judge's p_a
    p_a_raw: Optional[np.ndarray]  # its raw p_a when the labels were calibrated
    ai_label: np.ndarray  # 'a' | 'b' | 'tie'
    human_label: np.ndarray  # majority of the human labels
    human_p: np.ndarray  # mean human p_a (the calibration target)
    human_votes: list[list[str]]  # every annotator's label
    consistent: np.ndarray  # position_consistent
    len_a: np.ndarray
    len_b: np.ndarray
    principle: list[Optional[str]]
    per_principle: list[Optional[dict]]
    counts: dict

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: np.ndarray) -> "Matched":
        idx = np.flatnonzero(mask)

        def pick(xs: list) -> list:
            return [xs[i] for i in idx]

        return Matched(
            pick(self.ids),
            self.p_a[idx],
            None if self.p_a_raw is None else self.p_a_raw[idx],
            self.ai_label[idx],
            self.human_label[idx],
            self.human_p[idx],
            pick(self.human_votes),
            self.consistent[idx],
            self.len_a[idx],
            self.len_b[idx],
            pick(self.principle),
            pick(self.per_principle),
            {**self.counts, "matched": len(idx)},
        )


def aligned_label(human: dict, ai: dict) -> str:
    """A human label in the AI label's response order. The same pair id can come in the other order (chosen/
    rejected data read with another seed); then a and b trade places. Different responses are an error."""
    ha, hb = human.get("response_a"), human.get("response_b")
    if ha is None or (ha, hb) == (ai["response_a"], ai["response_b"]):
        return human["label"]
    if (ha, hb) == (ai["response_b"], ai["response_a"]):
        return SWAPPED[human["label"]]
    raise ValueError(
        f"pair {ai['id']}: the human label (annotator {human.get('annotator')}) is for different "
        f"responses than the AI label; are they labels of the same data?"
    )


def usable_labels(ai_records: Iterable[dict], humans: dict[str, list[dict]]) -> tuple[dict[str, dict], dict]:
    """The AI labels (source ai, status ok, with p_a) that have human labels, by pair id in file order, and the
    counts of what was left out on the way."""
    rows: dict[str, dict] = {}
    counts = {"ai_records": 0, "ai_failed": 0, "ai_without_human": 0, "human_pairs": len(humans)}
    for r in ai_records:
        if r.get("source", "ai") != "ai":
            continue
        counts["ai_records"] += 1
        if r.get("status") != "ok" or r.get("p_a") is None:
            counts["ai_failed"] += 1
            continue
        if r["id"] not in humans:
            counts["ai_without_human"] += 1
            continue
        if r["id"] in rows:
            raise ValueError(f"two AI labels for pair id {r['id']}: pass one label run at a time")
        rows[r["id"]] = r
    counts["matched"] = len(rows)
    return rows, counts


def matched(rows: Sequence[dict], humans: dict[str, list[dict]], counts: dict) -> Matched:
    """Usable AI labels (`usable_labels`) and their human labels as parallel arrays, in the AI labels' order."""
    votes = [[aligned_label(h, r) for h in humans[r["id"]]] for r in rows]
    raw = [r.get("p_a_raw") for r in rows]
    return Matched(
        ids=[r["id"] for r in rows],
        p_a=np.array([r["p_a"] for r in rows], dtype=float),
        p_a_raw=np.array(raw, dtype=float) if rows and all(x is not None for x in raw) else None,
        ai_label=np.array([r["label"] for r in rows], dtype=object),
        human_label=np.array([majority(v) for v in votes], dtype=object),
        human_p=np.array([np.mean([HUMAN_P[v] for v in vs]) for vs in votes], dtype=float),
        human_votes=votes,
        consistent=np.array([bool(r.get("position_consistent")) for r in rows], dtype=bool),
        len_a=np.array([len(r["response_a"]) for r in rows], dtype=float),
        len_b=np.array([len(r["response_b"]) for r in rows], dtype=float),
        principle=[r.get("principle_id") for r in rows],
        per_principle=[r.get("per_principle") for r in rows],
        counts=counts,
    )


def match(ai_records: Iterable[dict], humans: dict[str, list[dict]]) -> Matched:
    """Pair each usable AI label with the human labels of the same pair id, in the AI label's order."""
    rows, counts = usable_labels(ai_records, humans)
    return matched(list(rows.values()), humans, counts)


def oriented(r: dict, ref: dict, member: int) -> dict:
    """AI label `r` in the response order of `ref`, another judge's label of the same pair: the same pair id can
    come in the other order (data read with another seed); then a and b trade places and each p_a becomes 1 - p_a.
    Different responses are an error."""
    if (r["response_a"], r["response_b"]) == (ref["response_a"], ref["response_b"]):
        return r
    if (r["response_a"], r["response_b"]) != (ref["response_b"], ref["response_a"]):
        raise ValueError(
            f"pair {r['id']}: member {member + 1}'s label is for different responses than member 1's; are they "
            f"labels of the same data?"
        )
    flip = lambda p: None if p is None else 1.0 - p  # noqa: E731
    per = r.get("per_principle")
    return {
        **r,
        "response_a": r["response_b"],
        "response_b": r["response_a"],
        "p_a": flip(r["p_a"]),
        "p_a_raw": flip(r.get("p_a_raw")),
        "label": SWAPPED[r["label"]],
        "p_a_orders": None,
        "per_principle": None if per is None else {k: flip(v) for k, v in per.items()},
    }


def match_members(members: Sequence[Iterable[dict]], humans: dict[str, list[dict]]) -> list[Matched]:
    """Several judges' labels of the same pairs (a jury's members) matched with people's: one Matched per member,
    all over the same pairs in the same order and response order (member 1's), so row i is one pair throughout.
    A pair is kept when every member labelled it (status ok) and people did; each member's counts say how many of
    its usable labels were left out because another member failed or lacked the pair."""
    found = [usable_labels(records, humans) for records in members]
    first = found[0][0]
    common = [pid for pid in first if all(pid in rows for rows, _ in found[1:])]
    return [
        matched(
            [oriented(rows[pid], first[pid], k) for pid in common],
            humans,
            {**counts, "left_out_by_other_members": counts["matched"] - len(common), "matched": len(common)},
        )
        for k, (rows, counts) in enumerate(found)
    ]


def load_matched(ai: str | Path, human: str | Path) -> Matched:
    """Read AI and human label files (or label directories) and match them; no match at all is an error."""
    m = match(read_labels(ai), human_labels(read_labels(human)))
    if not len(m):
        raise ValueError(
            f"no pair id in {open_labels(ai).file} has a human label in {open_labels(human).file} "
            f"({m.counts['ai_records']} AI labels, {m.counts['ai_failed']} failed; "
            f"{m.counts['human_pairs']} pairs with human labels)"
        )
    return m
