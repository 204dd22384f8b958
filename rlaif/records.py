"""The data that flows through a labelling job (over 400 lines because it is one idea: the records and hashes).

Pairs in, judge queries and verdicts inside, label records out; and
the content hashing (`sha256_json`, `Hashed`) that constitutions and judge configs use for the resume keys.

No heavy imports here: these types are shared by the readers, the judges, the store and the CLI.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Collection, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, PrivateAttr

Message = dict[str, str]
Prompt = Union[str, list[Message]]


def sha256_json(obj: Any) -> str:
    """sha256 of an object's canonical JSON form (sorted keys, no whitespace): key order never changes it."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_sha256(doc: dict) -> str:
    """What a jury's weights decide (weights.json, `rlaif calibrate fit --method jury`), hashed: sha256_json of
    {"members": [each member's judge_hash, in order], "weights": [...], "intercept": b}, over the numbers as
    weights.json stores them. The fit writes it; a `backend: jury` judge checks it and carries it in its hash."""
    return sha256_json(
        {"members": [m["judge_hash"] for m in doc["members"]], "weights": doc["weights"], "intercept": doc["intercept"]}
    )


def derived_seed(seed: int, *parts) -> int:
    """An independent seed for one purpose (e.g. `derived_seed(seed, "sample", iteration)`): a function of its
    parts only, so a resumed run or a later batch draws exactly what it drew the first time."""
    return int(hashlib.sha256(json.dumps([seed, *parts]).encode()).hexdigest()[:8], 16)


class Hashed(BaseModel):
    """A model whose content hash goes into every label's resume key: a constitution, a judge config, their parts.

    Hashes are data: changing one makes every existing label folder start over. So a field added to such a model
    after labels exist is named in `added_later` and hashed only while it holds a value other than its default;
    a folder labelled before the field existed then still resumes. tests/test_hashes.py pins the hashes of the
    shipped files, so a new field left out of `added_later` fails there.
    """

    # no infinity or NaN in any float field of a constitution or judge config (numbers.py's rule for config values)
    model_config = ConfigDict(allow_inf_nan=False)
    added_later: ClassVar[frozenset[str]] = frozenset()

    def hashed_form(self, exclude: Collection[str] = ()) -> dict:
        """The canonical JSON form that is hashed: every field but `exclude`, and but the `added_later` fields
        (of this model and of every model inside it) that hold their default."""
        data = self.model_dump(mode="json", exclude=set(exclude))
        _drop_defaults_added_later(self, data)
        return data


def _drop_defaults_added_later(value: Any, data: Any) -> None:
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        # a subclass's own `added_later` adds to its bases' (a field added later stays so in every subclass)
        later = set().union(*(vars(c).get("added_later", ()) for c in type(value).__mro__))
        for name in later:
            if name in data and getattr(value, name) == fields[name].get_default(call_default_factory=True):
                del data[name]
        for name, sub in data.items():
            _drop_defaults_added_later(getattr(value, name), sub)
    elif isinstance(value, (list, tuple)) and isinstance(data, list):
        for item, sub in zip(value, data):
            _drop_defaults_added_later(item, sub)
    elif isinstance(value, dict) and isinstance(data, dict):
        for key, sub in data.items():
            _drop_defaults_added_later(value.get(key), sub)


@dataclass
class Pair:
    """Two responses to one prompt. `human_label` is the known human choice ("a"/"b"), in this pair's own order."""

    prompt: Prompt
    response_a: str
    response_b: str
    id: str = ""
    human_label: Optional[Literal["a", "b", "tie"]] = None
    conversational: bool = False
    principle: Optional[str] = None  # a principle id named by the input row, overriding the constitution's sampling
    source_line: Optional[int] = None  # 1-based line/row in the input file, for error messages
    invalid: Optional[str] = None  # why this row could not be read (kept only with --skip-invalid)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = sha256_json([self.prompt, self.response_a, self.response_b])[:16]


@dataclass(frozen=True)
class Query:
    """One judge call: which of `first` and `second` better satisfies `principle_text`, shown in that order."""

    prompt: Prompt
    first: str
    second: str
    principle_id: str
    principle_text: str
    prefix_user: str = ""  # rendered instructions + few-shot + conversation (see judges/prompting.py)


@dataclass
class Verdict:
    """A judge's answer to one Query. `p_first` is None when the verdict could not be read; `error` then says why."""

    p_first: Optional[float]
    error: Optional[str] = None
    raw: Optional[str] = None  # generated text, when the backend generated any
    rationale: Optional[str] = None  # chain-of-thought text, when asked for
    label_mass: Optional[float] = None  # probability the model put on any label token at all
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreQuery:
    """One call of a score judge (mode: score): how well `response` satisfies `principle_text`, on the judge's
    scale. The responses to one prompt share `prefix_user`, so a backend encodes it once for all of them."""

    prompt: Prompt
    response: str
    principle_id: str
    principle_text: str  # the rating question (the principle's score_text, or its text as a rating request)
    prefix_user: str = ""


@dataclass
class ScoreVerdict:
    """A score judge's answer: `probs[k]` is P(score = the scale's k-th value), normalised over the scale; None
    when no score could be read (`error` says why). `mass` is the probability the model put on any score at all."""

    probs: Optional[list[float]]
    error: Optional[str] = None
    raw: Optional[str] = None
    mass: Optional[float] = None
    source: Optional[Literal["logprobs", "text"]] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Spend:
    """What a job has spent towards its spending caps: requests sent (retries included) and estimated cost. A
    jury's spend also keeps each member's share (`members`: (name, Spend) pairs), since each member's caps hold
    for that member alone; the totals are their sums."""

    requests: int = 0
    cost: float = 0.0
    members: tuple[tuple[str, "Spend"], ...] = ()

    def member(self, name: str) -> "Spend":
        """One member's share (nothing spent when it has none yet)."""
        return dict(self.members).get(name, Spend())

    def __add__(self, other: "Spend") -> "Spend":
        return self._combine(other, 1)

    def __sub__(self, other: "Spend") -> "Spend":
        return self._combine(other, -1)

    def _combine(self, other: "Spend", sign: int) -> "Spend":
        names = list(dict.fromkeys(n for n, _ in (*self.members, *other.members)))
        return Spend(
            self.requests + sign * other.requests,
            self.cost + sign * other.cost,
            tuple((n, self.member(n)._combine(other.member(n), sign)) for n in names),
        )


class JudgeInfo(BaseModel):
    """What produced a label: backend, model and a hash of every setting that can change a verdict."""

    model_config = ConfigDict(extra="forbid")
    backend: str
    model: str
    settings_sha256: str
    mode: Optional[Literal["score"]] = None  # set on score records and the preferences derived from them


class MemberLabel(BaseModel):
    """A jury member's verdict on one pair, kept on the jury's record (`per_member`): its name, its p_a (debiased
    over both orders, or derived from its two scores) and whether it answered (a failed member has no p_a, and says
    why)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    p_a: Optional[float]
    status: Literal["ok", "failed"]
    error: Optional[str] = None


class LabelRecord(BaseModel):
    """One line of `labels.jsonl`: the debiased preference for one pair, and where it came from."""

    model_config = ConfigDict(extra="forbid")
    id: str
    key: str  # content hash of (pair, principle, constitution, judge settings): the resume key
    prompt: Prompt
    response_a: str
    response_b: str
    p_a: Optional[float]
    label: Optional[Literal["a", "b", "tie"]]
    status: Literal["ok", "failed"]
    position_consistent: Optional[bool] = None
    p_a_orders: Optional[list[Optional[float]]] = None  # [P(a | a shown first), P(a | a shown second)]
    # per order as p_a_orders: where the judge's verdict was read, "logprobs" (label-token probabilities) or "text"
    # (a verdict parsed from the reply, p 0 or 1); "text" when any principle's verdict in that order was
    verdict_source: Optional[list[Optional[Literal["logprobs", "text"]]]] = None
    principle_id: Optional[str] = None
    per_principle: Optional[dict[str, Optional[float]]] = None
    constitution_sha256: Optional[str] = None  # always set on AI labels; on human labels when a constitution was shown
    judge: Optional[JudgeInfo] = None  # always set on AI labels
    source: Literal["ai", "human"] = "ai"
    rationale: Optional[list[Optional[str]]] = None  # CoT text for the two orders
    error: Optional[str] = None
    human_label: Optional[Literal["a", "b", "tie"]] = None
    conversational: bool = False
    label_mass: Optional[float] = None
    # warnings that leave the label usable, e.g. "label_mass_out_of_range" (the judge's label tokens took a
    # probability mass outside [0, 1]: logprobs above 0)
    flags: Optional[list[str]] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # human labels (source "human")
    annotator: Optional[str] = None
    shown_order: Optional[Literal["ab", "ba"]] = None  # the order the annotator saw: "ba" = response_b on the left
    created_at: Optional[str] = None  # ISO 8601, UTC
    # preferences derived from a score judge's records (rlaif score): the expected scores of response_a and response_b
    scores: Optional[list[Optional[float]]] = None
    # calibrated labels keep what the judge said
    p_a_raw: Optional[float] = None
    calibration_sha256: Optional[str] = None
    # a jury's labels (backend: jury): each member's verdict, and the sha256 of the fitted weights that combined them
    per_member: Optional[list[MemberLabel]] = None
    jury_weights_sha256: Optional[str] = None
    # not written: the jury members whose verdicts came from their own runs (--member-labels), for the job's counts
    _reused: tuple[str, ...] = PrivateAttr(())

    def to_json(self) -> dict:
        """The JSONL form: unset optional fields left out, but `p_a` and `label` always present (null on failure),
        a jury member's `p_a` too."""
        data = {**self.model_dump(mode="json", exclude_none=True), "p_a": self.p_a, "label": self.label}
        if self.per_member is not None:
            data["per_member"] = [{**m, "p_a": m.get("p_a")} for m in data["per_member"]]
        return data


class ScoreRecord(BaseModel):
    """One line of `scores.jsonl` (`rlaif score`): one response rated on the judge's scale, with the distribution
    the judge put on the scores, the expected score and the d-RLAIF reward (Lee et al. 2023, sec. 2.3). Its id is
    the pair id plus the side ("PAIR:a") or the prompt id plus the sample index ("PROMPT#3")."""

    model_config = ConfigDict(extra="forbid")
    id: str
    key: str  # content hash of (prompt, response, principle, constitution, judge settings): the resume key
    prompt_id: str  # responses with the same prompt id are compared (and drawn the same principle)
    prompt: Prompt
    response: str
    pair_id: Optional[str] = None  # input of pairs: the pair and the side this response was on
    side: Optional[Literal["a", "b"]] = None
    sample: Optional[int] = None  # input of `rlaif generate`: the sample index within its prompt
    status: Literal["ok", "failed"]
    score: Optional[float]  # expected score, sum of s * P(s) over the scale
    reward: Optional[float]  # the expected score rescaled to [-1, 1] (negated for an inverted principle)
    distribution: Optional[dict[str, float]] = None  # P(s) for each score s of the scale, normalised
    score_mass: Optional[float] = None  # probability the judge put on any score token at all
    score_source: Optional[Literal["logprobs", "text"]] = None
    principle_id: Optional[str] = None  # "all" under `sampling: all`, with each principle's reward in per_principle
    per_principle: Optional[dict[str, float]] = None
    invert: bool = False
    constitution_sha256: str
    judge: JudgeInfo
    source: Literal["ai"] = "ai"
    human_label: Optional[Literal["a", "b", "tie"]] = None  # the pair's human choice, on both of its sides
    conversational: bool = False
    error: Optional[str] = None
    raw: Optional[str] = None
    flags: Optional[list[str]] = None  # warnings that leave the record usable, e.g. "text_repaired" (rlaif/text.py)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict:
        """The JSONL form: unset optional fields left out, but `score` and `reward` always present."""
        return {**self.model_dump(mode="json", exclude_none=True), "score": self.score, "reward": self.reward}


class RevisionRound(BaseModel):
    """One critique-revision round of Constitutional AI's supervised stage (Bai et al. 2022, sec. 3.1): the
    principle drawn for it, the model's critique of the response so far, and its revision of that response."""

    model_config = ConfigDict(extra="forbid")
    principle_id: str
    critique: str
    revision: str
    # where each generation stopped: "eos" (an end-of-turn token, or a complete reply from the backend) or
    # "length" (cut at max_new_tokens)
    critique_finish: Literal["eos", "length"]
    revision_finish: Literal["eos", "length"]


class RevisionRecord(BaseModel):
    """One line of `revisions.jsonl`: a prompt's whole chain (the first answer, every round, the final revision)
    and what made it. A failed chain keeps the rounds that finished, `final` is null and `error` says which step
    failed and why: no placeholder text ever stands in for a revision."""

    model_config = ConfigDict(extra="forbid")
    id: str
    key: str  # content hash of (prompt, starting response, constitution, model settings, generation, rounds, seed)
    prompt: Prompt
    initial: Optional[str]  # the first answer, before any critique (null when generating it failed)
    initial_source: Literal["model", "input"]  # generated, or the input row's `response` (red-teaming data)
    initial_finish: Optional[Literal["eos", "length"]] = None  # where the generated first answer stopped
    rounds: list[RevisionRound]
    final: Optional[str]  # the last round's revision; null unless status is ok
    status: Literal["ok", "failed"]
    error: Optional[str] = None
    flags: Optional[list[str]] = None  # warnings that leave the chain usable, e.g. "text_repaired" (rlaif/text.py)
    constitution_sha256: str
    model: JudgeInfo  # the model that answered, critiqued and revised, with the hash of its settings
    generation: dict[str, Any]  # temperature, top_p, top_k, max_new_tokens
    generation_sha256: str
    seed: int
    source: Literal["ai"] = "ai"
    prompt_tokens: int = 0  # tokens the model read, summed over the chain's steps
    completion_tokens: int = 0  # tokens it generated

    def to_json(self) -> dict:
        """The JSONL form: unset optional fields left out, but `final` always present (null on failure)."""
        return {**self.model_dump(mode="json", exclude_none=True), "final": self.final}


class SampleRecord(BaseModel):
    """One line of samples.jsonl in `rlaif generate`'s job folder: the n samples a policy drew for one prompt, in
    order, and what drew them. The pairs file the job writes (every pair i < j of a prompt's samples) is made from
    these records."""

    model_config = ConfigDict(extra="forbid")
    id: str  # the prompt id: a hash of the prompt (the pair rows' `prompt_id`)
    key: str  # content hash of (prompt, policy, sampling settings, n, seed): the resume key
    prompt: Prompt
    samples: list[str]  # the responses, decoded without special tokens
    finished: list[bool]  # per sample: ended with EOS (False: cut at max_new_tokens)
    status: Literal["ok", "failed"] = "ok"
    error: Optional[str] = None
    policy: str
    sampling_sha256: str
    seed: int
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


# -- a person's label ---------------------------------------------------------------------------------------------
# A person's label as a label record (`source: "human"`), built in one place: `rlaif human import`, the annotation
# app's export and calibration (for the human choice that some data carries) all use `human_record`, so a human
# label reads the same whichever way it came in.
HumanLabel = Literal["a", "b", "tie"]
# A person's choice is a hard preference: all of the probability on the response they picked (a tie splits it).
HUMAN_P = {"a": 1.0, "b": 0.0, "tie": 0.5}
# The annotator of a choice that came with the data (`human_label`) or of an imported row that names none: one
# name for both, so the same choice read either way counts once.
IMPORTED_ANNOTATOR = "imported"
# A label read with the two responses trading places.
SWAPPED = {"a": "b", "b": "a", "tie": "tie"}


def human_key(pair_id: str, annotator: str) -> str:
    """A human label is identified by (pair id, annotator): several people may label one pair."""
    return sha256_json(["human", pair_id, annotator])


def human_record(
    *,
    pair_id: str,
    prompt: Prompt,
    response_a: str,
    response_b: str,
    label: HumanLabel,
    annotator: str,
    created_at: Optional[str] = None,
    p_a: Optional[float] = None,
    shown_order: Optional[str] = None,
    principle_id: Optional[str] = None,
    constitution_sha256: Optional[str] = None,
    conversational: bool = False,
) -> LabelRecord:
    """One human label as a LabelRecord, `label` and `p_a` in the pair's own order."""
    return LabelRecord(
        id=pair_id,
        key=human_key(pair_id, annotator),
        prompt=prompt,
        response_a=response_a,
        response_b=response_b,
        p_a=HUMAN_P[label] if p_a is None else p_a,
        label=label,
        status="ok",
        source="human",
        annotator=annotator,
        shown_order=shown_order,
        created_at=created_at,
        principle_id=principle_id,
        constitution_sha256=constitution_sha256,
        conversational=conversational,
    )
