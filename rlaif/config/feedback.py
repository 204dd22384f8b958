"""Which preferences train a model: the `feedback:` section of a training config, or the file given to
`rlaif export --feedback`. One config class per source, chosen by `source:` (ai: the judge's labels; human:
people's; mixed: the judge's where it is sure, people's for the rest); `rlaif.feedback.sources.load_feedback`
reads each. A new source is one class here, added to `FeedbackSource`, and one branch there. `rlaif loop` takes
the same sources, applied to each iteration's own labels (rlaif/config/loop.py).

Slim on purpose (pydantic and the YAML reader only), so training configs can embed `FeedbackConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_serializer, model_validator

from .yamlfile import ConfigFileError, FieldErrors, read_yaml, validation_messages

# Paths are relative to the working directory; a labels path is a labels JSONL file or a directory holding
# `labels.jsonl`. Fields that two sources share are described once, here.
_HUMAN = (
    'Human labels (from `rlaif human import` / `rlaif annotate export`, source "human"), or label files '
    "whose records carry a known `human_label`."
)
AILabels = Annotated[
    str,
    Field(
        description="AI labels (from `rlaif label`), or a score folder (from `rlaif score`): "
        "the preferences derived from its scores."
    ),
]
CalibrationMap = Annotated[
    Optional[str],
    Field(
        description="A map from `rlaif calibrate fit`: applied to the AI labels' p_a before anything else (the raw "
        "value is kept in p_a_raw)."
    ),
]
HumanCombine = Annotated[
    Literal["mean", "each"],
    Field(
        description="Several annotators on one pair: one record whose p_a is the mean of theirs (mean), or one record "
        "per annotator (each)."
    ),
]


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @classmethod
    def sources(cls) -> tuple[type[_Source], ...]:
        """The sources this one is chosen among: their fields are the ones told apart below."""
        return source_classes()

    @model_validator(mode="before")
    @classmethod
    def _fields_of_this_source(cls, data: Any) -> Any:
        """A missing labels path is named with the source that needs it. A field of another source is refused,
        except at its default: a training run's config.yaml written before the sources had their own classes
        holds every source's fields, and those must still load."""
        if not isinstance(data, dict):
            return data
        source, errors, kept = data.get("source"), [], dict(data)
        for name, field in cls.model_fields.items():
            if field.is_required() and name != "source" and not data.get(name):
                errors.append(((name,), f"required when source is {source}"))
        for name, value in data.items():
            users = [s for s in cls.sources() if name in s.model_fields and name not in cls.model_fields]
            if users and (value is None or any(value == s.model_fields[name].default for s in users)):
                del kept[name]
            elif users:
                errors.append(
                    (
                        (name,),
                        f"not used by source {source} (only by source {' and '.join(source_name(s) for s in users)})",
                    )
                )
        if errors:
            raise FieldErrors(errors)
        return kept


class AIFeedback(_Source):
    """The judge's labels, optionally through a calibration map."""

    source: Literal["ai"] = Field(description="ai: the judge's labels.")
    ai: AILabels
    calibration: CalibrationMap = None


class HumanFeedback(_Source):
    """People's labels only."""

    source: Literal["human"] = Field(description="human: people's labels only.")
    human: str = Field(description=_HUMAN)
    human_combine: HumanCombine = "mean"


# The mixed source's three ways of choosing the pairs for people: at most one is given (margin 0.1 when none is).
ROUTING = ("margin", "budget", "budget_fraction")


class MixedFeedback(_Source):
    """The judge's labels where it is confident and position-consistent (`margin`), or everywhere but on a budget
    of pairs of highest priority (`budget`, `budget_fraction`); the pairs left go to people, and a human label
    replaces the judge's wherever there is one."""

    source: Literal["mixed"] = Field(
        description="mixed: the judge's labels where it is confident and "
        "position-consistent, people's labels for the rest."
    )
    ai: AILabels
    human: Optional[str] = Field(
        None, description=_HUMAN + " May be left out or not exist yet (no human labels so far)."
    )
    calibration: CalibrationMap = None
    margin: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="An AI label is kept only when |p_a - 0.5| >= margin; closer calls go to people. One of "
        "margin, budget and budget_fraction (margin 0.1 when none is given).",
    )
    budget: Optional[int] = Field(
        None,
        ge=0,
        description="Instead of margin: send exactly this many pairs to people, those of highest `rlaif annotate "
        "select` priority (failed labels first, then low confidence and orders or principles disagreeing; ties by "
        "id), whether or not people have answered yet; every other pair keeps its AI label.",
    )
    budget_fraction: Optional[float] = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Instead of margin: as budget, this share of the pairs (those whose input could be read), "
        "rounded to the nearest pair.",
    )
    require_consistent: bool = Field(
        True,
        description="With margin: also send pairs whose two orders disagree (position_consistent false) to "
        "people. (A budget ranks order disagreement in its priority.)",
    )
    queue: Optional[str] = Field(
        None,
        description="Where to write the pairs sent to people, in `rlaif label` input format with their id "
        "(serve them with `rlaif annotate serve --pairs QUEUE`); on a budget, highest priority first. Default: "
        "human_queue.jsonl next to the AI labels.",
    )
    pending: Literal["drop", "ai"] = Field(
        "drop",
        description="A queued pair with no human label yet is left out (drop) or keeps its AI label until "
        "one arrives (ai).",
    )
    human_combine: HumanCombine = "mean"
    # fields newer than the first config.yaml files: written only when set, so an older run's stays as it was
    _left_out_unset: ClassVar[tuple[str, ...]] = ("budget", "budget_fraction")

    def queue_path(self) -> Path:
        """The file the pairs for people are written to."""
        if self.queue:
            return Path(self.queue)
        ai = Path(self.ai)
        return (ai if ai.is_dir() else ai.parent) / "human_queue.jsonl"

    def budget_for(self, pairs: int) -> Optional[int]:
        """How many of `pairs` go to people on a budget; None when the margin routes them."""
        if self.budget_fraction is not None:
            return min(pairs, int(self.budget_fraction * pairs + 0.5))
        return self.budget

    @model_validator(mode="after")
    def _one_way_to_route(self):
        given = [n for n in ROUTING if n in self.model_fields_set and getattr(self, n) is not None]
        if len(given) > 1:
            why = f"{given[0]} is given too: give one of margin, budget and budget_fraction"
            raise FieldErrors([((given[1],), why)])
        if given and given[0] != "margin" and "require_consistent" in self.model_fields_set:
            why = f"applies to margin routing, not to {given[0]} (its priority ranks order disagreement)"
            raise FieldErrors([(("require_consistent",), why)])
        return self

    @model_serializer(mode="wrap")
    def _written(self, handler) -> dict:
        """As saved in a run's config.yaml: the budget fields only when set (a run started before they existed
        keeps its config.yaml as it was), and the margin routing's fields only when it routes."""
        data = handler(self)
        for name in self._left_out_unset:
            if data.get(name) is None:
                data.pop(name, None)
        if self.budget is not None or self.budget_fraction is not None:
            data.pop("margin", None)
            data.pop("require_consistent", None)
        return data


FeedbackSource = Annotated[Union[AIFeedback, HumanFeedback, MixedFeedback], Field(discriminator="source")]


def source_classes(union: Any = FeedbackSource) -> tuple[type[_Source], ...]:
    """The source config classes, read from the union (so the union is the one list of sources)."""
    return get_args(get_args(union)[0] if get_origin(union) is Annotated else union)


def source_name(cls: type[_Source]) -> str:
    """The `source:` value that picks `cls`."""
    return get_args(cls.model_fields["source"].annotation)[0]


class FeedbackConfig(RootModel[FeedbackSource]):
    """Where preferences come from: one source's config (`.root`), chosen by `source:`. Built from a `feedback:`
    section or from fields, `FeedbackConfig(source="ai", ai="runs/x")`."""

    @model_validator(mode="wrap")
    @classmethod
    def _errors_at_the_fields(cls, data: Any, handler):
        try:
            return handler(data)
        except ValidationError as e:
            tag = data.get("source") if isinstance(data, dict) else None
            sources = source_classes(cls.model_fields["root"].annotation)
            raise ValidationError.from_exception_data(
                e.title, [_at_the_field(err, tag, sources) for err in e.errors()]
            ) from None

    @property
    def source(self) -> str:
        return self.root.source


def _at_the_field(err: dict, tag: Optional[str], sources: tuple[type[_Source], ...]) -> dict:
    """A union error located at the field the user wrote. pydantic puts the union's tag in front of every location
    ('mixed', 'margn'); here the tags are also field names ('ai', 'human'), so it is dropped. A missing or unknown
    `source:` reads as it did before the sources had their own classes."""
    loc, kind, ctx = err["loc"], err["type"], err.get("ctx") or {}
    if kind == "union_tag_not_found":
        return {"type": "missing", "loc": ("source",), "input": err["input"]}
    if kind == "union_tag_invalid":
        names = [repr(source_name(c)) for c in sources]
        expected = ", ".join(names[:-1]) + " or " + names[-1]
        return {"type": "literal_error", "loc": ("source",), "input": tag, "ctx": {"expected": expected}}
    if tag is not None and loc[:1] == (tag,):
        loc = loc[1:]
    return {"type": kind, "loc": loc, "input": err["input"], "ctx": ctx}


def load_feedback_config(path: str | Path) -> AIFeedback | HumanFeedback | MixedFeedback:
    """Read a feedback YAML file: the fields at the top level, or under a `feedback:` key (a training config).
    Returns the source's config. Errors come back as `FILE:LINE: field: message` (ConfigFileError)."""
    data, lines = read_yaml(path)
    prefix: tuple = ()
    if isinstance(data, dict) and "source" not in data and isinstance(data.get("feedback"), dict):
        data, prefix = data["feedback"], ("feedback",)
    if not isinstance(data, dict):
        raise ConfigFileError(
            [
                f"{path}:1: (top level): expected a mapping with `source:` (or a `feedback:` "
                f"section), got {type(data).__name__}"
            ]
        )
    try:
        return FeedbackConfig.model_validate(data).root
    except ValidationError as e:
        # error locations are relative to the section; look their lines up under it
        sub_lines = {k[len(prefix) :]: v for k, v in lines.items() if k[: len(prefix)] == prefix}
        raise ConfigFileError(validation_messages(path, e, sub_lines, config_type=FeedbackConfig, data=data)) from None
