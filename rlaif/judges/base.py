"""The judge interface: a batch of queries in, one verdict per query out, from a judge of one of two kinds.

A pairwise judge (`PairwiseJudge`, mode: pairwise) answers the queries of a pair (text from prompting.py) — which of
two responses, shown in a given order, better satisfies one principle — with P(first preferred); a score judge
(`ScoreJudge`, mode: score) rates one response on its scale (the distribution read by reading.py). The config's mode
says which kind a judge is (`kind_of`, the one place that reads it) and callers ask for the kind they need
(registry.py); a backend (one per file, built by registry.py, its heavy packages imported lazily, free to group
queries that share a prompt prefix) subclasses `Judge` and answers one kind or both, while debiasing over both
orders and combining principles happen above it (rlaif/labeling/).
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, Sequence

from ..config.judge import JudgeBase
from ..constitution import Constitution, Principle
from ..records import JudgeInfo, Pair, Prompt, Query, ScoreQuery, ScoreVerdict, Spend, Verdict  # Spend: here too
from ..text import TEXT_REPAIRED
from .prompting import pair_queries, score_queries

TOO_LONG = "pair too long for the judge"


def too_long(n_tokens: int, limit: int, setting: str = "max_length") -> Verdict:
    """The verdict for a prompt over the model's limit: a failure the job reports as bad input."""
    return Verdict(
        None, error=f"{TOO_LONG}: the judge prompt is {n_tokens} tokens, over {setting}={limit}", prompt_tokens=n_tokens
    )


def flag_repaired(verdict: Verdict | ScoreVerdict, repaired: bool) -> None:
    """Note on `verdict` that the model text it was read from had to be made valid (rlaif/text.py); the record
    built from it carries the flag (`verdict_flags`)."""
    if repaired:
        verdict.extra.setdefault("flags", []).append(TEXT_REPAIRED)


def verdict_flags(verdicts: Sequence[Verdict | ScoreVerdict]) -> Optional[list[str]]:
    """The flags a record's verdicts carry, once each and sorted; None when they carry none."""
    flags = {f for v in verdicts for f in v.extra.get("flags", ())}
    return sorted(flags) or None


NOT_ATTACHED = (
    "the policy judge (backend: policy) judges with the policy being trained and has no model of its "
    "own: it works inside `rlaif loop`, which attaches the policy each iteration "
    "(judge.attach(model, tokenizer)). To judge with a saved model, use backend: transformers with "
    "model: DIR."
)


def not_ready(config: JudgeBase, judge: Optional["Judge"] = None) -> Optional[str]:
    """Why this judge cannot judge on its own, or None; asked before a job writes anything. `judge` is the built
    judge, when there is one yet. The policy judge has no model of its own: it judges only once `rlaif loop`
    attaches the policy to it."""
    if config.backend == "policy" and getattr(judge, "model", None) is None:
        return NOT_ATTACHED
    return None


class StoppedEarly(RuntimeError):
    """A job's batch stopped at a spending cap; `records` holds those of the items fully answered before it."""

    def __init__(self, message: str, records: list):
        super().__init__(message)
        self.records = records


def until_cap(work: Callable[[], list]) -> tuple[list, Optional[str]]:
    """A batch's records, and why it stopped early ("budget: …"), or None when it ran to its end."""
    try:
        return work(), None
    except StoppedEarly as e:
        return e.records, f"budget: {e}"


class BudgetExhausted(RuntimeError):
    """Raised by a backend when its spending cap is reached. `verdicts` holds what was answered before the cap
    (None where a query was not answered); the job keeps those and stops cleanly."""

    def __init__(self, message: str, verdicts: list[Optional[Verdict]]):
        super().__init__(message)
        self.verdicts = verdicts


def answer_items(answer: Callable[[list], list], queries: list, spans: Sequence, build: Callable) -> list:
    """A batch's records: `queries` answered in one call (`answer`: a judge's judge or score), then one record per
    item, `build(k, verdicts)` over item k's queries (`spans[k]`: their (start, end), or None for an item with
    none). An item a spending cap left partly unanswered gets no record (a resumed run answers it; never a
    placeholder), and the records made are carried by StoppedEarly when the cap struck."""
    try:
        verdicts, exhausted = (list(answer(queries)) if queries else []), None
    except BudgetExhausted as e:
        verdicts, exhausted = e.verdicts, e
    records = []
    for k, span in enumerate(spans):
        answered = [] if span is None else verdicts[span[0] : span[1]]
        if all(v is not None for v in answered):
            records.append(build(k, answered))
    if exhausted is not None:
        raise StoppedEarly(str(exhausted), records)
    return records


class _Shared(Protocol):
    """What both kinds of judge have (`Judge` provides it)."""

    config: JudgeBase

    @property
    def info(self) -> JudgeInfo: ...

    def carry_spend(self, before: Spend) -> None: ...

    def spent(self) -> Spend: ...

    def close(self) -> None: ...


class PairwiseJudge(_Shared, Protocol):
    """A judge of pairs (mode: pairwise; `rlaif label`, `rlaif.judge_pairs`, a pairwise reward)."""

    def queries(self, pair: Pair, principles: Sequence[Principle], constitution: Constitution) -> list[Query]:
        """The queries of `pair`: both orders under each of `principles`."""
        ...

    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        """P(first preferred) for each query, in order. A query that cannot be answered gets a Verdict with
        p_first=None and an error; it never gets a made-up probability."""
        ...


class ScoreJudge(_Shared, Protocol):
    """A judge that rates one response at a time (mode: score, d-RLAIF; `rlaif score`, `rlaif.rate`, a score
    reward)."""

    def score_queries(self, prompt: Prompt, responses: Sequence[str], principle: Principle) -> list[ScoreQuery]:
        """The score queries of one prompt's responses under `principle`."""
        ...

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreVerdict]:
        """The distribution over the score scale for each query, in order. A query that cannot be answered gets a
        ScoreVerdict with probs=None and an error."""
        ...


KINDS = {"pairwise": PairwiseJudge, "score": ScoreJudge}  # each judge config `mode` and the kind it makes
ANSWERS = {PairwiseJudge: "judge", ScoreJudge: "score"}  # the method that answers a kind's queries


def kind_of(config: JudgeBase) -> type:
    """The kind of judge `config` makes, PairwiseJudge or ScoreJudge: its `mode`, read here and nowhere else
    outside the config."""
    return KINDS[config.mode]


class Judge:
    """What every judge has, whichever kind it is: its config, its info, what it spent (caps), close; and the
    queries of either kind, built from its config. A backend subclasses it and answers pairwise queries (`judge`),
    score queries (`score`) or both; `rlaif.judge_pairs` adds both orders and principles on top."""

    config: JudgeBase
    _spent_before = Spend()  # a class default: subclasses that skip __init__ still have it

    def __init__(self, config: JudgeBase):
        self.config = config

    def carry_spend(self, before: Spend) -> None:
        """Count on from what a job spent in its earlier runs, so a cap holds per job, not per process. The job
        keeps the running total in its folder; a backend that spends (one with caps) overrides this pair."""
        self._spent_before = before

    def spent(self) -> Spend:
        """Everything spent so far, `carry_spend`'s share included. Local models spend nothing a cap counts."""
        return self._spent_before

    def score_queries(self, prompt: Prompt, responses: Sequence[str], principle: Principle) -> list[ScoreQuery]:
        """The score queries of one prompt's responses under `principle` (rlaif/judges/prompting.py), with this
        judge's `instructions`."""
        scale = self.config.score
        return score_queries(prompt, responses, principle, scale.low, scale.high, self.config.instructions)

    def queries(self, pair: Pair, principles: Sequence[Principle], constitution: Constitution) -> list[Query]:
        """The queries that judge `pair` by `principles` under `constitution`, prompt text included: both orders per
        principle (rlaif/judges/prompting.py), with this judge's `instructions` over the constitution's."""
        return pair_queries(pair, principles, constitution, self.config.instructions)

    @property
    def info(self) -> JudgeInfo:
        return JudgeInfo(
            backend=self.config.backend,
            model=self.config.model,
            settings_sha256=self.config.settings_sha256(),
            mode="score" if kind_of(self.config) is ScoreJudge else None,
        )

    def close(self) -> None:
        """Free the model or connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
