"""A jury's batch (`backend: jury`, rlaif/judges/jury.py): the members judge the batch's pairs one after another,
each exactly as it would alone — a pairwise member in both orders, debiased (pairwise.py, which hands its own batch
function in as `alone`), a score member by rating both responses under the principles `rlaif score` would draw and
deriving p_a = σ((s_a − s_b)/T) from the two scores (rlaif/scoring, rlaif/data/scores.py) — and each pair keeps
every member's verdict for the jury to combine (pairwise.py builds the record). A member with a run of its own
(`--member-labels`, reuse.py) takes its verdicts on the pairs that run holds from it instead of judging them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ..constitution import Constitution
from ..data.scores import derived_pair
from ..judges.base import ScoreJudge, StoppedEarly, kind_of
from ..judges.jury import JuryJudge
from ..scoring.rate import plan_response, rate_planned
from ..scoring.responses import pair_items


@dataclass
class MemberVerdict:
    """One member's verdict on one pair: its p_a (None: it failed, `error` says why) and the two orders' (a score
    member shows no order: its p_a twice), with what it spent in tokens and the flags its verdicts carried."""

    name: str
    p_a: Optional[float]
    orders: Optional[Sequence[Optional[float]]] = None
    error: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flags: list[str] = field(default_factory=list)
    reused: bool = False  # taken from the member's own run (reuse.py), not judged now


def member_verdicts(
    jury: JuryJudge, planned: Sequence, constitution: Constitution, alone: Callable, reuse=None
) -> tuple[list[Optional[list[MemberVerdict]]], Optional[str]]:
    """Every member's verdict on each planned pair, in member order, and why the batch stopped early (a member's
    spending cap; None when it did not). A pair a member left unanswered at its cap has None (it gets no record;
    a resumed job judges it again), and the members after it judge only the pairs still whole. `reuse`
    (reuse.MemberRuns) gives the verdicts members take from their own runs; they judge only the other pairs."""
    verdicts: list[Optional[list[MemberVerdict]]] = [[] for _ in planned]
    stopped = None
    for name, member in jury.members:
        live = [k for k, v in enumerate(verdicts) if v is not None]
        if not live:
            break
        kept = reuse.verdicts(name, member, [planned[k] for k in live], constitution) if reuse else [None] * len(live)
        todo = [k for k, v in zip(live, kept) if v is None]
        answered, why = [], None
        if todo:
            score = kind_of(member.config) is ScoreJudge
            judged = _scored if score else _judged
            answered, why = judged(name, member, [planned[k] for k in todo], constitution, alone)
        fresh = iter(answered)
        for k, verdict in zip(live, kept):
            verdict = verdict if verdict is not None else next(fresh)
            if verdict is None:
                verdicts[k] = None
            else:
                verdicts[k].append(verdict)
        if why is not None:
            stopped = stopped or f"member {name}: {why}"
    return verdicts, stopped


def _judged(name, member, batch, constitution, alone) -> tuple[list[Optional[MemberVerdict]], Optional[str]]:
    """A pairwise member's verdict on each pair of `batch` (None where its cap left the pair unanswered)."""
    try:
        records, stopped = alone(member, batch, constitution), None
    except StoppedEarly as e:
        records, stopped = e.records, str(e)
    out, made = [], iter(records)  # the records come in batch order, those of unanswered pairs left out
    record = next(made, None)
    for pl in batch:
        if record is None or record.id != pl.id:
            out.append(None)
            continue
        out.append(label_verdict(name, record.to_json()))
        record = next(made, None)
    return out, stopped


def label_verdict(name: str, record: dict, reused: bool = False) -> MemberVerdict:
    """A pairwise member's verdict from its label record (the labels.jsonl form)."""
    return MemberVerdict(
        name,
        record["p_a"],
        record.get("p_a_orders"),
        record.get("error"),
        record.get("prompt_tokens", 0),
        record.get("completion_tokens", 0),
        record.get("flags") or [],
        reused,
    )


def _scored(name, member, batch, constitution, alone) -> tuple[list[Optional[MemberVerdict]], Optional[str]]:
    """A score member's verdict on each pair of `batch`: both responses rated (one principle drawn per prompt, as
    `rlaif score` draws it) and p_a derived from the two scores with the member's T, as every label reader derives
    it from a score folder."""
    sha = member.info.settings_sha256
    items = [plan_response(item, constitution, sha, pl.seed) for pl in batch for item in pair_items(pl.item)]
    try:
        rated, stopped = rate_planned(member, items, constitution), None
    except StoppedEarly as e:
        rated, stopped = e.records, str(e)
    by_id = {r.id: r.to_json() for r in rated}
    out = []
    for pl in batch:
        a, b = by_id.get(f"{pl.id}:a"), by_id.get(f"{pl.id}:b")
        found = a is not None and b is not None
        out.append(score_verdict(name, member.config, constitution, pl.id, a, b) if found else None)
    return out, stopped


def score_verdict(name, cfg, constitution, pair_id: str, a: dict, b: dict, reused: bool = False) -> MemberVerdict:
    """A score member's verdict from the score records of the pair's two responses: p_a derived with the member's
    own scale, T and tie margin."""
    scale, margin = (cfg.score.low, cfg.score.high), constitution.tie_margin_or(cfg.tie_margin)
    derived = derived_pair(a, b, pair_id, scale, cfg.score.temperature, margin)
    p_a = derived["p_a"]
    return MemberVerdict(
        name,
        p_a,
        None if p_a is None else (p_a, p_a),
        derived.get("error"),
        derived["prompt_tokens"],
        derived["completion_tokens"],
        sorted({*(a.get("flags") or ()), *(b.get("flags") or ())}),
        reused,
    )
