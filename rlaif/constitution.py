"""Constitutions: a YAML file of principles the judge compares responses by, checked and content-hashed.

The hash is taken over the validated, canonical form, so whitespace, comments, key order and spelling out a
default never change it; any change to what the judge is told does. A field added later is hashed only when it is
set to something other than its default (records.Hashed), so label folders made before it still resume.
"""

from __future__ import annotations

import json
import random
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal, Optional, Union

from pydantic import ConfigDict, Field, model_validator

from .config.yamlfile import FieldErrors, load_model
from .numbers import relative_weights
from .records import Hashed, Pair, Prompt, sha256_json

SAMPLING_MODES = ("one_per_pair", "all")


class Principle(Hashed):
    model_config = ConfigDict(extra="forbid")
    # fields added after label folders existed: hashed only when set (records.Hashed)
    added_later: ClassVar[frozenset[str]] = frozenset({"score_text"})
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="Short stable id, recorded on labels.")
    text: str = Field(min_length=1, description="The comparison instruction, e.g. 'Which response is less harmful?'.")
    # allow_inf_nan=False: `.inf` passes gt=0 and would make every weighted mean NaN
    weight: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Weight in the mean under `sampling: all`, "
        "and the relative chance of being drawn under `one_per_pair`.",
    )
    invert: bool = Field(
        False,
        description="True when the text asks for the worse response ('choose the more "
        "harmful'): the judge's pick is then the rejected one.",
    )
    critique: Optional[str] = Field(None, description="Critique request (Constitutional AI critique-revision).")
    revision: Optional[str] = Field(None, description="Revision request paired with the critique.")
    score_text: Optional[str] = Field(
        None,
        min_length=1,
        description="The rating question of a score judge "
        "(mode: score), about one response, e.g. 'How harmless is the response?'. "
        "Default: `text` turned into a rating request (rlaif/judges/prompting.py).",
    )


class FewShotExample(Hashed):
    model_config = ConfigDict(extra="forbid")
    prompt: Prompt = Field(description="The conversation (text or a list of chat messages).")
    response_a: str = Field(min_length=1, description="The response shown as A.")
    response_b: str = Field(min_length=1, description="The response shown as B.")
    preferred: Literal["a", "b"] = Field(description="Which response the principle prefers.")
    principle: Optional[str] = Field(
        None, description="Principle id the example is judged by (default: the first principle)."
    )


class RevisionExample(Hashed):
    """A worked critique and revision (Constitutional AI's few-shot examples, Bai et al. 2022, sec. 3.1), shown to
    the reviser before each prompt's chain."""

    model_config = ConfigDict(extra="forbid")
    prompt: Prompt = Field(description="The conversation (text or a list of chat messages).")
    response: str = Field(min_length=1, description="The response that is critiqued.")
    principle: str = Field(description="Id of the principle (with critique and revision requests) it follows.")
    critique: str = Field(min_length=1, description="The critique of the response under that principle.")
    revision: str = Field(min_length=1, description="The response rewritten after the critique.")


class Constitution(Hashed):
    model_config = ConfigDict(extra="forbid")
    # fields added after label folders existed: hashed only when set (records.Hashed)
    added_later: ClassVar[frozenset[str]] = frozenset({"revision_examples"})
    name: str = Field(min_length=1, description="Constitution name.")
    version: str = Field(min_length=1, description="Version string; bump it when the principles change.")
    description: str = Field("", description="What this constitution is for.")
    principles: list[Principle] = Field(min_length=1, description="The principles, each a comparison instruction.")
    sampling: Union[Literal["one_per_pair", "all"], str] = Field(
        "one_per_pair",
        description="one_per_pair: one principle drawn per pair with a seeded RNG (Constitutional "
        "AI); all: every principle judged, p_a their weighted mean; or a principle id to always use that one.",
    )
    few_shot: list[FewShotExample] = Field(
        default_factory=list, description="Worked examples shown to the judge before the pair."
    )
    tie_margin: Optional[float] = Field(
        None, ge=0, le=0.5, description="Override the judge's tie margin for this constitution."
    )
    instructions: Optional[str] = Field(
        None,
        description="Standing instructions for the judge (replaces the "
        "built-in preamble; a judge config's `instructions` wins over this).",
    )
    revision_examples: list[RevisionExample] = Field(
        default_factory=list,
        description="Worked critiques and revisions shown to the reviser before each "
        "prompt (`rlaif revise`); each names a principle that has both requests.",
    )

    @model_validator(mode="after")
    def _check(self):
        ids = [p.id for p in self.principles]
        problems: list[tuple[tuple, str]] = []
        for i, pid in enumerate(ids):
            if pid in SAMPLING_MODES:
                problems.append((("principles", i, "id"), f"'{pid}' is reserved (a sampling mode); pick another id"))
            elif pid in ids[:i]:
                problems.append(
                    (
                        ("principles", i, "id"),
                        f"duplicate principle id '{pid}' (already used by principles[{ids.index(pid)}])",
                    )
                )
        if self.sampling not in SAMPLING_MODES and self.sampling not in ids:
            problems.append(
                (
                    ("sampling",),
                    f"must be one_per_pair, all, or a principle id; '{self.sampling}' is "
                    f"none of these (ids: {', '.join(ids)})",
                )
            )
        for i, ex in enumerate(self.few_shot):
            if ex.principle is not None and ex.principle not in ids:
                problems.append((("few_shot", i, "principle"), f"'{ex.principle}' is not a principle id"))
        revisable = {p.id for p in self.revisable()}
        for i, ex in enumerate(self.revision_examples):
            if ex.principle not in revisable:
                problems.append(
                    (
                        ("revision_examples", i, "principle"),
                        f"'{ex.principle}' is not a principle with both critique and revision requests "
                        f"(those: {', '.join(sorted(revisable)) or 'none'})",
                    )
                )
        if problems:
            raise FieldErrors(problems)
        return self

    @cached_property
    def sha256(self) -> str:
        """The content hash recorded on labels and keyed into every record key (see records.Hashed); computed once
        (every record key asks for it), so a constitution is not changed in place: model_copy(update=...) makes a
        new one, with its own hash."""
        return sha256_json(self.hashed_form())

    def model_copy(self, *, update=None, deep: bool = False) -> "Constitution":
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("sha256", None)  # the cached hash is this constitution's, not the copy's
        return copy

    def tie_margin_or(self, judge_margin: float) -> float:
        """The tie margin labels under this constitution use: its own when it sets one, else the judge's."""
        return self.tie_margin if self.tie_margin is not None else judge_margin

    def principle(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(f"constitution '{self.name}' has no principle '{pid}'")

    def principles_for(self, pair: Pair, seed: int) -> list[Principle]:
        """The principles this pair is judged by: a row's own `principle`, the fixed one, all, or one drawn.

        The draw is seeded by (seed, pair id), so it does not depend on input order, sharding or resume.
        """
        if pair.principle:
            return [self.principle(pair.principle)]
        if self.sampling == "all":
            return list(self.principles)
        if self.sampling != "one_per_pair":
            return [self.principle(self.sampling)]
        rng = random.Random(f"{seed}:{pair.id}")
        return rng.choices(self.principles, weights=relative_weights([p.weight for p in self.principles]), k=1)

    def revisable(self) -> list[Principle]:
        """The principles a critique-revision round can use: those with both a critique and a revision request."""
        return [p for p in self.principles if p.critique and p.revision]

    def revision_principle(self, prompt_id: str, round_index: int, seed: int) -> Principle:
        """The principle of one critique-revision round: drawn with replacement among the principles with both
        requests, in proportion to `weight`, as Constitutional AI samples one principle per revision step (Bai et
        al. 2022, sec. 3.1). Seeded by (seed, prompt id, round), so it does not depend on input order, batching,
        sharding or resume."""
        revisable = self.revisable()
        if not revisable:
            raise ValueError(f"constitution '{self.name}' has no principle with both critique and revision requests")
        rng = random.Random(f"revise:{seed}:{prompt_id}:{round_index}")
        return rng.choices(revisable, weights=relative_weights([p.weight for p in revisable]), k=1)[0]

    def summary(self) -> str:
        return (
            f"{self.name} v{self.version}: {len(self.principles)} principles, sampling={self.sampling}, "
            f"sha256={self.sha256[:12]}"
        )


# The constitution a judge uses when it is given none (`rlaif.judge_pairs`, `rlaif.rate`, win rates, the loop):
# one generic principle.
GENERIC = Constitution(
    name="generic",
    version="1",
    principles=[Principle(id="better", text="Which response is the better reply to the user?")],
)


def load_constitution(path: str | Path) -> Constitution:
    """Load and check a constitution file; raises ConfigFileError with `FILE:LINE: field: message` lines."""
    return load_model(path, Constitution)


def constitution_schema() -> str:
    return json.dumps(Constitution.model_json_schema(), indent=2)
