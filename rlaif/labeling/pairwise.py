"""Judging pairs: each pair is planned (the principles it is judged by, its resume key), the judge is asked its
queries (both orders of every principle, prompt text from rlaif/judges/prompting.py), and the verdicts come back
as one debiased label record per pair (preference.py), with its provenance. A jury's members each judge the
pair so (or rate it, a score member: jury.py), and its record combines their p_a.

`judge_pairs` does this in-process (`rlaif.judge_pairs`); the labelling job (job.py) does it batch by batch into a label
folder, resuming by `record_key`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ..constitution import GENERIC, Constitution, Principle
from ..jobs.run import INVALID_INPUT, Planned, is_input_failure
from ..judges.base import PairwiseJudge, StoppedEarly, answer_items, verdict_flags
from ..judges.jury import JuryJudge
from ..numbers import label_problem, probability_problem, weighted_mean
from ..preference import label_for, order_probabilities, position_consistent
from ..records import LabelRecord, MemberLabel, Pair, Verdict, sha256_json
from .jury import MemberVerdict, member_verdicts

OUT_OF_RANGE = "numbers out of range"
# Probabilities summed from logprobs may pass 1 by rounding; beyond this the mass is flagged (a logprob above 0).
LABEL_MASS_TOLERANCE = 1e-4
LABEL_MASS_FLAG = "label_mass_out_of_range"


def record_key(pair: Pair, principles: Sequence[Principle], constitution_sha: str, judge_sha: str) -> str:
    """The resume key: a content hash of what decides a label (pair, principles, constitution, judge)."""
    return sha256_json(
        [
            pair.id,
            pair.prompt,
            pair.response_a,
            pair.response_b,
            [p.id for p in principles],
            constitution_sha,
            judge_sha,
        ]
    )[:32]


PlannedPair = Planned  # a pair before the judge sees it: the principles it is judged by (none for an invalid row)


def plan_pair(pair: Pair, constitution: Constitution, judge_sha: str, seed: int) -> PlannedPair:
    """The principles `pair` is judged by and its resume key; `judge_sha` is the judge's settings hash (no loaded
    judge needed: a driver on a cluster plans pairs its workers judge)."""
    principles = constitution.principles_for(pair, seed) if not pair.invalid else []
    return PlannedPair(pair, principles, record_key(pair, principles, constitution.sha256, judge_sha), seed)


def judge_planned(
    judge: PairwiseJudge, planned: Sequence[PlannedPair], constitution: Constitution, reuse=None
) -> list[LabelRecord]:
    """Judge a batch; raises StoppedEarly carrying the records of the pairs that were fully answered. A jury's
    members each judge the batch as they would alone (jury.py), or take their verdicts from their own runs
    (`reuse`: reuse.MemberRuns), and each pair's record combines them."""
    margin = constitution.tie_margin_or(judge.config.tie_margin)
    if isinstance(judge, JuryJudge):
        return _judged_by_jury(judge, planned, constitution, margin, reuse)
    queries, spans = [], []
    for pl in planned:
        if pl.item.invalid:
            spans.append(None)
            continue
        q = judge.queries(pl.item, pl.principles, constitution)  # grouped per pair: backends share its prefix
        spans.append((len(queries), len(queries) + len(q)))
        queries.extend(q)

    def build(k: int, verdicts: list[Verdict]) -> LabelRecord:
        pl = planned[k]
        if spans[k] is None:
            return _failed(pl, constitution, judge, f"{INVALID_INPUT}: {pl.item.invalid}")
        return _record(pl, verdicts, constitution, judge, margin)

    return answer_items(judge.judge, queries, spans, build)


def judge_pairs(
    judge: PairwiseJudge, pairs: Sequence[Pair], constitution: Optional[Constitution] = None, seed: int = 0
) -> list[LabelRecord]:
    """Judge pairs in-process (no files): both orders, the constitution's principles, debiased records."""
    constitution = constitution or GENERIC
    planned = [plan_pair(p, constitution, judge.info.settings_sha256, seed) for p in pairs]
    return judge_planned(judge, planned, constitution)


def _provenance(planned: PlannedPair, constitution: Constitution, judge: PairwiseJudge) -> dict:
    """What every record of this pair carries, whatever the verdict: the pair, its key, the constitution, the judge."""
    pair = planned.item
    return dict(
        id=pair.id,
        key=planned.key,
        prompt=pair.prompt,
        response_a=pair.response_a,
        response_b=pair.response_b,
        constitution_sha256=constitution.sha256,
        judge=judge.info,
        human_label=pair.human_label,
        conversational=pair.conversational,
    )


def _record(
    planned: PlannedPair,
    verdicts: Sequence[Verdict],
    constitution: Constitution,
    judge: PairwiseJudge,
    tie_margin: float,
) -> LabelRecord:
    principles = planned.principles
    base = dict(
        _provenance(planned, constitution, judge),
        principle_id="all" if len(principles) > 1 else principles[0].id,
        prompt_tokens=sum(v.prompt_tokens for v in verdicts),
        completion_tokens=sum(v.completion_tokens for v in verdicts),
        verdict_source=verdict_sources(verdicts),
        flags=verdict_flags(verdicts),
    )
    rationale = [v.rationale for v in verdicts] if any(v.rationale for v in verdicts) else None
    failed = [v for v in verdicts if v.p_first is None]
    if failed:
        return LabelRecord(
            **base,
            p_a=None,
            label=None,
            status="failed",
            rationale=rationale,
            error=failed[0].error or "the judge returned no verdict",
        )
    error = _out_of_range(
        {
            f"p_first of '{p.id}' ({order})": verdicts[2 * k + j].p_first
            for k, p in enumerate(principles)
            for j, order in enumerate(("a first", "b first"))
        }
    )
    if error is None:
        per_orders = []
        for k, p in enumerate(principles):
            ab, ba = verdicts[2 * k], verdicts[2 * k + 1]
            per_orders.append(order_probabilities(ab.p_first, ba.p_first, p.invert, judge.config.clamp))
        weights = [p.weight for p in principles]
        try:  # weights are checked where a constitution is loaded; one built in code may still hold anything
            orders = [
                weighted_mean([o[0] for o in per_orders], weights),
                weighted_mean([o[1] for o in per_orders], weights),
            ]
        except ValueError as e:
            error = f"{OUT_OF_RANGE}: principle {e} (check the constitution's weights)"
        else:
            p_a = (orders[0] + orders[1]) / 2
            per_principle = (
                {p.id: (o[0] + o[1]) / 2 for p, o in zip(principles, per_orders)} if len(principles) > 1 else None
            )
            error = _out_of_range(
                {
                    "p_a": p_a,
                    "p_a_orders[0]": orders[0],
                    "p_a_orders[1]": orders[1],
                    **{f"per_principle '{i}'": v for i, v in (per_principle or {}).items()},
                }
            )
    if error is not None:  # never an `ok` record with a number no reader can trust (or parse: NaN)
        return LabelRecord(**base, p_a=None, label=None, status="failed", rationale=rationale, error=error)
    masses = [v.label_mass for v in verdicts if v.label_mass is not None]
    if not all(0.0 <= m <= 1.0 + LABEL_MASS_TOLERANCE for m in masses):  # NaN fails both comparisons
        base["flags"] = sorted({*(base["flags"] or ()), LABEL_MASS_FLAG})
    return _ok_record(
        base,
        p_a,
        tie_margin,
        orders,
        rationale=rationale,
        per_principle=per_principle,
        label_mass=sum(masses) / len(masses) if masses and all(map(math.isfinite, masses)) else None,
    )


def _ok_record(base: dict, p_a: float, tie_margin: float, orders: list, **extra) -> LabelRecord:
    """The ok record of a pair (a judge's or a jury's), or a failed one when it is not what every reader will
    accept when it checks the record: what is stored as ok, a reader accepts."""
    record = LabelRecord(
        **base,
        p_a=p_a,
        label=label_for(p_a, tie_margin),
        status="ok",
        position_consistent=position_consistent(orders),
        p_a_orders=orders,
        **extra,
    )
    if (problem := label_problem(record.to_json())) is not None:
        rationale = extra.get("rationale")
        return LabelRecord(
            **base, p_a=None, label=None, status="failed", rationale=rationale, error=f"{OUT_OF_RANGE}: {problem}"
        )
    return record


def _judged_by_jury(
    jury: JuryJudge, planned: Sequence[PlannedPair], constitution: Constitution, tie_margin: float, reuse=None
) -> list[LabelRecord]:
    """A jury's batch: the members' verdicts (jury.py, each member's batch being `judge_planned`'s as for a judge
    alone), then one record per pair whose members all answered or failed. Each record notes (unwritten) the
    members whose verdicts came from their own runs, for the job's counts."""
    valid = [pl for pl in planned if not pl.item.invalid]
    verdicts, stopped = member_verdicts(jury, valid, constitution, judge_planned, reuse)
    of_valid = iter(verdicts)
    records = []
    for pl in planned:
        if pl.item.invalid:
            records.append(_failed(pl, constitution, jury, f"{INVALID_INPUT}: {pl.item.invalid}"))
        elif (members := next(of_valid)) is not None:
            records.append(_jury_record(pl, members, constitution, jury, tie_margin))
            records[-1]._reused = tuple(m.name for m in members if m.reused)
    if stopped is not None:
        raise StoppedEarly(stopped, records)
    return records


def _jury_record(
    planned: PlannedPair, members: Sequence[MemberVerdict], constitution: Constitution, jury: JuryJudge, margin: float
) -> LabelRecord:
    """A pair's record from its members' verdicts: p_a the jury's combination of the members that answered (so a
    failed member is left out of this pair's), each order's likewise, and every member's verdict in `per_member`;
    failed when every member failed."""
    principles = planned.principles
    base = dict(
        _provenance(planned, constitution, jury),
        principle_id="all" if len(principles) > 1 else principles[0].id,
        prompt_tokens=sum(m.prompt_tokens for m in members),
        completion_tokens=sum(m.completion_tokens for m in members),
        flags=sorted({f for m in members for f in m.flags}) or None,
        per_member=[
            MemberLabel(name=m.name, p_a=m.p_a, status="failed" if m.p_a is None else "ok", error=m.error)
            for m in members
        ],
        jury_weights_sha256=jury.weights_sha256,
    )
    p_a = jury.combine([m.p_a for m in members])
    if p_a is None:
        said = "; ".join(f"{m.name}: {m.error or 'no verdict'}" for m in members)
        error = f"every member of the jury failed ({said})"
        if all(is_input_failure(m.error) for m in members):  # bad input for all of them: bad input for the jury
            error = f"{members[0].error} ({error})"
        return LabelRecord(**base, p_a=None, label=None, status="failed", error=error)
    orders = [jury.combine([m.orders[j] if m.p_a is not None else None for m in members]) for j in (0, 1)]
    return _ok_record(base, p_a, margin, orders)  # as for a judge alone: never an untrusted ok


def verdict_sources(verdicts: Sequence[Verdict]) -> Optional[list[Optional[str]]]:
    """Per order (a first, b first), where its verdicts were read: "text" when any of them was parsed from a
    reply's text, else "logprobs"; None for an order none of whose verdicts says (None: no backend said)."""
    orders = []
    for j in (0, 1):  # queries run principle by principle, (a, b) then (b, a)
        said = {v.extra.get("verdict_source") for v in verdicts[j::2]} - {None}
        orders.append("text" if "text" in said else "logprobs" if said else None)
    return orders if any(orders) else None


def _out_of_range(values: dict[str, float]) -> Optional[str]:
    """The error for the first value that is not a probability (rlaif.numbers), or None."""
    for name, v in values.items():
        if (problem := probability_problem(v, name)) is not None:
            return f"{OUT_OF_RANGE}: {problem} (check the judge's logprobs and the constitution's weights)"
    return None


def _failed(planned: PlannedPair, constitution: Constitution, judge: PairwiseJudge, error: str) -> LabelRecord:
    return LabelRecord(**_provenance(planned, constitution, judge), p_a=None, label=None, status="failed", error=error)
