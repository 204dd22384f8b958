"""The critique-revision chain of Constitutional AI's supervised stage (Bai et al. 2022, sec. 3.1), as chat turns:

    [few-shot examples]  user: prompt  →  assistant: first answer (or the input's `response`)
    per round k, with principle p_k:  user: p_k.critique  →  assistant: critique
                                      user: p_k.revision  →  assistant: revision (the response the next round
                                                                          critiques; the last one is `final`)

Each round's principle is drawn with replacement among the principles with both requests, seeded by (seed, prompt
id, round) (Constitution.revision_principle). The constitution's `revision_examples` come first, each as the same
six turns. A batch of chains advances step by step through one generator session, so its conversations can keep
their KV caches; a step that fails ends its chain as `failed`, and nothing it produced is passed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..constitution import Constitution, Principle, RevisionExample
from ..data.prompts import PromptRow
from ..policy.chat import chat_turns
from ..records import JudgeInfo, Message, RevisionRecord, RevisionRound, derived_seed, sha256_json
from ..text import TEXT_REPAIRED
from .generators import Reply, Request, Session


def example_turns(example: RevisionExample, constitution: Constitution) -> list[Message]:
    """One worked example as the turns a chain takes: prompt, response, critique request and critique, revision
    request and revision."""
    p = constitution.principle(example.principle)
    return [
        *chat_turns(example.prompt),
        {"role": "assistant", "content": example.response},
        {"role": "user", "content": p.critique},
        {"role": "assistant", "content": example.critique},
        {"role": "user", "content": p.revision},
        {"role": "assistant", "content": example.revision},
    ]


def chain_key(
    row: PromptRow, constitution_sha: str, model_sha: str, generation_sha: str, rounds: int, seed: int
) -> str:
    """The resume key: a content hash of what decides a chain (prompt, starting response, constitution, model
    settings, generation settings, rounds, seed)."""
    return sha256_json([row.id, row.prompt, row.response, constitution_sha, model_sha, generation_sha, rounds, seed])[
        :32
    ]


@dataclass
class PlannedChain:
    """A prompt before the model sees it: its principles, one per round, and its resume key."""

    row: PromptRow
    principles: list[Principle]
    key: str
    id = property(lambda self: self.row.id)  # what a job pass plans by (rlaif.jobs.run.Planned)
    line = property(lambda self: self.row.line)


def plan_chain(
    row: PromptRow, constitution: Constitution, rounds: int, seed: int, model_sha: str, generation_sha: str
) -> PlannedChain:
    principles = [constitution.revision_principle(row.id, k, seed) for k in range(rounds)]
    return PlannedChain(row, principles, chain_key(row, constitution.sha256, model_sha, generation_sha, rounds, seed))


@dataclass
class _Chain:
    """A chain under way: its conversation so far and what it has produced."""

    planned: PlannedChain
    messages: list[Message]
    initial: Optional[str] = None  # the first answer: generated, or the input's response
    current: Optional[str] = None  # the response the next round critiques
    initial_finish: Optional[str] = None
    rounds: list[RevisionRound] = field(default_factory=list)
    critique: Optional[tuple[str, str]] = None  # (text, finish) of this round's critique, until its revision
    error: Optional[str] = None
    unanswered: bool = False  # a spending cap stopped it: no record, a resumed run does it again
    flags: set[str] = field(default_factory=set)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def alive(self) -> bool:
        return self.error is None and not self.unanswered


@dataclass
class ChainSettings:
    """What every chain of a job shares: the constitution, the number of rounds, the seed and the provenance that
    goes on each record."""

    constitution: Constitution
    rounds: int
    seed: int
    model: JudgeInfo
    generation: dict
    generation_sha256: str


def revise_batch(generator, planned: list[PlannedChain], settings: ChainSettings):
    """A revise job's batch, in this process or on a Ray worker: (records, why it stopped early or None)."""
    records = run_chains(generator.session(), planned, settings)
    stopped = generator.stopped()
    return records, f"budget: {stopped}" if stopped else None


def run_chains(session: Session, planned: list[PlannedChain], settings: ChainSettings) -> list[RevisionRecord]:
    """Run a batch of chains to their end through `session`; one record per chain, except those a spending cap
    left unanswered (a resumed run does them)."""
    few_shot = [t for ex in settings.constitution.revision_examples for t in example_turns(ex, settings.constitution)]
    chains = [
        _Chain(pl, few_shot + chat_turns(pl.row.prompt), initial=pl.row.response, current=pl.row.response)
        for pl in planned
    ]
    _ask(session, {i: c for i, c in enumerate(chains) if c.current is None}, "initial", None, settings.seed)
    for k in range(settings.rounds):
        for step in ("critique", "revision"):
            _ask(session, {i: c for i, c in enumerate(chains) if c.alive}, step, k, settings.seed)
    return [_record(c, settings) for c in chains if not c.unanswered]


def _ask(session: Session, asking: dict[int, _Chain], step: str, k: Optional[int], seed: int) -> None:
    """One step for the chains `asking`: extend each conversation with the step's request, ask, take the reply."""
    if not asking:
        return
    requests = {}
    for i, c in asking.items():
        principle = c.planned.principles[k] if k is not None else None
        if step == "critique":
            c.messages += [{"role": "assistant", "content": c.current}, {"role": "user", "content": principle.critique}]
        elif step == "revision":
            c.messages += [
                {"role": "assistant", "content": c.critique[0]},
                {"role": "user", "content": principle.revision},
            ]
        requests[i] = Request(
            list(c.messages), step, principle.id if principle else None, derived_seed(seed, c.planned.row.id, step, k)
        )
    for i, reply in session.step(requests).items():
        _take(asking[i], reply, step, k)


def _take(c: _Chain, reply: Optional[Reply], step: str, k: Optional[int]) -> None:
    if reply is None:
        c.unanswered = True
        return
    c.prompt_tokens += reply.prompt_tokens
    c.completion_tokens += reply.completion_tokens
    if reply.repaired:
        c.flags.add(TEXT_REPAIRED)
    where = "the first answer" if k is None else f"round {k + 1} {step}"
    if reply.text is None or not reply.text.strip():
        c.error = f"{where}: {reply.error or 'the reply was empty'}"
        return
    if step == "initial":
        c.initial = c.current = reply.text
        c.initial_finish = reply.finish
    elif step == "critique":
        c.critique = (reply.text, reply.finish)
    else:
        c.rounds.append(
            RevisionRound(
                principle_id=c.planned.principles[k].id,
                critique=c.critique[0],
                revision=reply.text,
                critique_finish=c.critique[1],
                revision_finish=reply.finish,
            )
        )
        c.current, c.critique = reply.text, None


def _record(c: _Chain, settings: ChainSettings) -> RevisionRecord:
    row = c.planned.row
    return RevisionRecord(
        id=row.id,
        key=c.planned.key,
        prompt=row.prompt,
        initial=c.initial,
        initial_source="input" if row.response is not None else "model",
        initial_finish=c.initial_finish,
        rounds=c.rounds,
        final=c.current if c.error is None else None,
        status="ok" if c.error is None else "failed",
        error=c.error,
        flags=sorted(c.flags) or None,
        constitution_sha256=settings.constitution.sha256,
        model=settings.model,
        generation=settings.generation,
        generation_sha256=settings.generation_sha256,
        seed=settings.seed,
        prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens,
    )
