"""Rating responses: each response is planned (the principles its prompt is rated by, its resume key), the score
judge is asked one query per principle (prompt text from rlaif/judges/prompting.py), and its distributions come
back as one score record per response (rlaif.records.ScoreRecord) with the expected score, the d-RLAIF reward
and their provenance.

A record is `ok` only when every distribution is finite, within [0, 1] and sums to 1, and the expected score lies
on the scale; otherwise it is `failed` with the reason, never a placeholder score (as is a response of a row that
could not be read, kept by --skip-invalid).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from ..constitution import Constitution, Principle
from ..jobs.run import INVALID_INPUT, Planned
from ..judges.base import ScoreJudge, answer_items, verdict_flags
from ..judges.reading import expected_score, rescaled
from ..numbers import distribution_problem, relative_weights, score_record_problem
from ..records import Pair, ScoreRecord, ScoreVerdict, sha256_json
from .responses import ScoreItem, prompt_id_of

OUT_OF_RANGE = "numbers out of range"


PlannedResponse = Planned  # a response before the judge sees it: the principles its prompt is rated by


def principles_for(item: ScoreItem, constitution: Constitution, seed: int) -> list[Principle]:
    """The principles of the response's prompt: the row's own, the fixed one, all, or one drawn per prompt (seeded
    by (seed, prompt id)), so every response to a prompt is rated under the same principle."""
    return constitution.principles_for(Pair(item.prompt, "", "", id=item.prompt_id, principle=item.principle), seed)


def record_key(item: ScoreItem, principles: Sequence[Principle], constitution_sha: str, judge_sha: str) -> str:
    """The resume key: a content hash of what decides a score (response, prompt, principles, constitution, judge)."""
    return sha256_json([item.id, item.prompt, item.response, [p.id for p in principles], constitution_sha, judge_sha])[
        :32
    ]


def plan_response(item: ScoreItem, constitution: Constitution, judge_sha: str, seed: int) -> PlannedResponse:
    """The principles a response is rated under (none for one of an unreadable row) and its resume key; `judge_sha`
    is the judge's settings hash."""
    principles = principles_for(item, constitution, seed) if not item.invalid else []
    return PlannedResponse(item, principles, record_key(item, principles, constitution.sha256, judge_sha))


def rate_planned(
    judge: ScoreJudge, planned: Sequence[PlannedResponse], constitution: Constitution
) -> list[ScoreRecord]:
    """Rate a batch (queries of one prompt next to each other: backends share its prefix); raises StoppedEarly
    carrying the records of the responses that were fully answered."""
    queries, spans = [], []
    for pl in planned:
        start = len(queries)
        for p in pl.principles:
            queries.extend(judge.score_queries(pl.item.prompt, [pl.item.response], p))
        spans.append((start, len(queries)) if not pl.item.invalid else None)
    return answer_items(
        judge.score, queries, spans, lambda k, verdicts: score_record(planned[k], verdicts, constitution, judge)
    )


def score_record(
    planned: PlannedResponse, verdicts: Sequence[ScoreVerdict], constitution: Constitution, judge: ScoreJudge
) -> ScoreRecord:
    """The record of one response from its verdicts (one per principle): under several principles the
    distribution is their weighted mixture, the score and reward their weighted means."""
    item, principles = planned.item, planned.principles
    scale = judge.config.score
    base = dict(
        id=item.id,
        key=planned.key,
        prompt_id=item.prompt_id,
        prompt=item.prompt,
        response=item.response,
        pair_id=item.pair_id,
        side=item.side,
        sample=item.sample,
        human_label=item.human_label,
        conversational=item.conversational,
        constitution_sha256=constitution.sha256,
        judge=judge.info,
        principle_id="all" if len(principles) > 1 else principles[0].id if principles else None,
        invert=len(principles) == 1 and principles[0].invert,
        prompt_tokens=sum(v.prompt_tokens for v in verdicts),
        completion_tokens=sum(v.completion_tokens for v in verdicts),
        raw=next((v.raw for v in verdicts if v.raw is not None), None),
        flags=verdict_flags(verdicts),
    )
    error = f"{INVALID_INPUT}: {item.invalid}" if item.invalid else None  # its row could not be read: no verdicts
    error = error or next((v.error or "the judge returned no score" for v in verdicts if v.probs is None), None)
    if error is None:
        error = next(
            (
                f"{OUT_OF_RANGE}: principle '{p.id}': {problem}"
                for p, v in zip(principles, verdicts)
                if (problem := _problem(v.probs, scale.values))
            ),
            None,
        )
    if error is not None:
        return ScoreRecord(**base, status="failed", score=None, reward=None, error=error)
    relative = relative_weights([p.weight for p in principles])
    weights = [w / sum(relative) for w in relative]
    scores = [expected_score(v.probs, scale.values) for v in verdicts]
    rewards = [rescaled(s, scale.low, scale.high, p.invert) for s, p in zip(scores, principles)]
    mixture = [sum(w * v.probs[k] for w, v in zip(weights, verdicts)) for k in range(len(scale.values))]
    score = sum(w * s for w, s in zip(weights, scores))
    reward = max(-1.0, min(1.0, sum(w * r for w, r in zip(weights, rewards))))  # rounding only: checked above
    masses = [v.mass for v in verdicts if v.mass is not None and math.isfinite(v.mass)]
    sources = {v.source for v in verdicts} - {None}
    record = ScoreRecord(
        **base,
        status="ok",
        score=score,
        reward=reward,
        distribution={str(s): p for s, p in zip(scale.values, mixture)},
        per_principle={p.id: r for p, r in zip(principles, rewards)} if len(principles) > 1 else None,
        score_mass=sum(masses) / len(masses) if masses else None,
        score_source="text" if "text" in sources else "logprobs" if sources else None,
    )
    # the record as every reader will check it: what is stored as ok, a reader accepts
    if (problem := score_record_problem(record.to_json(), (scale.low, scale.high))) is not None:
        return ScoreRecord(**base, status="failed", score=None, reward=None, error=f"{OUT_OF_RANGE}: {problem}")
    return record


def _problem(probs: Sequence[float], values: Sequence[int]) -> Optional[str]:
    if len(probs) != len(values):
        return f"{len(probs)} probabilities for a scale of {len(values)} scores"
    problem = distribution_problem(probs, "score distribution")
    if problem is None:
        s = expected_score(probs, values)
        if not (values[0] - 1e-9 <= s <= values[-1] + 1e-9):
            problem = f"expected score {s!r} is off the scale {values[0]}..{values[-1]}"
    return problem


def rate_responses(
    judge: ScoreJudge, prompt, responses: Sequence[str], constitution: Constitution, seed: int = 0
) -> list[ScoreRecord]:
    """Rate the responses to one prompt in-process (no files), under one principle drawn for the prompt."""
    return rate_groups(judge, [prompt], [responses], constitution, seed)[0]


def rate_groups(
    judge: ScoreJudge, prompts: Sequence, groups: Sequence[Sequence[str]], constitution: Constitution, seed: int = 0
) -> list[list[ScoreRecord]]:
    """Rate the responses of many prompts in-process (no files), in one batch: `groups[i]` holds responses to
    `prompts[i]`, all rated under the principle drawn for that prompt. Returns the records in the same shape; the
    id of a record is PROMPT_ID#j, its response's place in its group."""
    items = [
        ScoreItem(
            id=f"{pid}#{j}", prompt_id=pid, prompt=prompt, response=r, sample=j, conversational=isinstance(prompt, list)
        )
        for prompt, group in zip(prompts, groups)
        for pid in [prompt_id_of(prompt)]
        for j, r in enumerate(group)
    ]
    planned = [plan_response(it, constitution, judge.info.settings_sha256, seed) for it in items]
    records = iter(rate_planned(judge, planned, constitution) if items else [])
    return [[next(records) for _ in group] for group in groups]
