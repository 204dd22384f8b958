"""`rlaif loop` config: iterative (online) DPO with self-feedback — the policy samples pairs, a judge labels them,
DPO trains on the labels, every iteration. Recipe: rlaif/recipes/loop.py."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .dpo import DPOLoss, SigmoidDPOLoss
from .feedback import AIFeedback, FeedbackConfig, HumanFeedback, MixedFeedback, source_classes
from .judge import JudgeBase
from .run import LoraConfig, ModelSource, Packing, PrefixSharing, RunConfig, packing_problems
from .sampling import SamplingConfig
from .yamlfile import FieldErrors

# The paths the loop gives each iteration's source itself (rlaif/recipes/loop_feedback.py): never a config's.
_SET_BY_THE_LOOP = {
    "ai": "each iteration's own labels, OUT/iter-K/labels/, or with a score judge the pairs binarised from its "
    "ratings, OUT/iter-K/preferences.jsonl",
    "queue": "each iteration's pairs for people, OUT/iter-K/human_queue.jsonl",
}


def _set_by_the_loop(name: str) -> Any:
    return Field(None, exclude=True, description=f"Set by the loop: {_SET_BY_THE_LOOP[name]}.")


class _InTheLoop(BaseModel):
    """A feedback source of rlaif/config/feedback.py applied to every iteration's labels: its fields mean what they
    mean there, but the labels it reads and the queue it writes are each iteration's own, set by the loop."""

    @classmethod
    def sources(cls) -> tuple:
        return source_classes(LoopFeedbackSource)

    @model_validator(mode="before")
    @classmethod
    def _paths_are_the_loops(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [name for name in _SET_BY_THE_LOOP if data.get(name) is not None]
            if given:
                raise FieldErrors([((n,), f"set by the loop ({_SET_BY_THE_LOOP[n]}); leave it out") for n in given])
        return data


class LoopAIFeedback(_InTheLoop, AIFeedback):
    """The judge's labels of each iteration's samples; a score judge's ratings become pairs by `pairs_from` (only
    this source fits a score judge: its rated samples are binarised, so there are no pairs to ask people about)."""

    ai: Optional[str] = _set_by_the_loop("ai")
    pairs_from: Literal["best-vs-worst", "best-vs-random", "all-above-margin"] = Field(
        "best-vs-worst",
        description="A score judge (mode: score): how each prompt's rated samples become DPO "
        "pairs, as `rlaif export --pairs-from`: the best against the worst, against one drawn among those rated "
        "lower, or every pair whose scores differ; p_a = sigmoid((s_chosen - s_rejected) / T).",
    )
    min_margin: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="A score judge: leave out pairs whose "
        "expected scores differ by less than this (score points), as `rlaif export "
        "--min-margin`; equal scores are always left out.",
    )


class LoopHumanFeedback(_InTheLoop, HumanFeedback):
    """People's labels only: every pair of an iteration is queued for them (OUT/iter-K/human_queue.jsonl), and
    their labels of those pairs, matched by id, train."""


class LoopAnnotate(BaseModel):
    """People inside the loop: each iteration's queue goes to the annotation app (or to Label Studio, through its
    tasks and exports), the loop waits for answers, trains on those that arrived, and carries later ones into the
    next iteration. The annotation database is the record of every answer and of the iteration that trained on it
    (once per run)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    serve: bool = Field(
        True,
        description="Serve the queues on the annotation app (`rlaif annotate serve`'s, on 127.0.0.1) from the loop "
        "for the whole run. false: a running `rlaif annotate serve --db DB` serves them (started with the loop's "
        "--seed and --constitution); the loop adds each queue to its database. Default: false with "
        "label_studio_export, true otherwise.",
    )
    label_studio_export: Optional[str] = Field(
        None,
        description="Instead of the app: people label in Label Studio. Each iteration writes its queue as Label "
        "Studio tasks, OUT/iter-K/label_studio_tasks.json (labeling config: OUT/label_studio_config.xml), and while "
        "it waits re-reads this file, the project's JSON export, whenever it changes, adding its annotations to the "
        "annotation database (one label per task and Label Studio user; a changed answer is a revision). A file or "
        "annotation that cannot be read is reported in one line and left out; the rest are taken.",
    )
    wait_s: float = Field(
        ge=0,
        description="Seconds each iteration waits for people to label its queue (less once every pair of it is "
        "labelled); answers that come later train in the next iteration.",
    )
    db: Optional[str] = Field(
        None,
        description="The annotation SQLite file. Default: OUT/annotations.sqlite (with serve: false and no "
        "label_studio_export, the running server's --db: required).",
    )
    port: int = Field(0, ge=0, le=65535, description="serve: the loopback port; 0: a free one (printed).")
    tokens: Optional[str] = Field(
        None,
        description="serve: the annotators' `name:token` lines, as `rlaif annotate serve --tokens`; default: one "
        "annotator, whose token is printed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_place_to_label(cls, data: Any) -> Any:
        """Label Studio replaces the app: serve defaults to false with it, and serve: true beside it is refused
        (the same pairs in two tools would be labelled twice over, and the wait would end on either)."""
        if not isinstance(data, dict) or data.get("label_studio_export") is None:
            return data
        if data.get("serve") not in (None, False):
            why = "give serve: true (the loop's app) or label_studio_export (Label Studio), not both"
            raise FieldErrors([(("label_studio_export",), why)])
        return {**data, "serve": False}

    @model_validator(mode="after")
    def _db_of_the_running_server(self):
        if not self.serve and self.db is None and self.label_studio_export is None:
            raise FieldErrors([(("db",), "required with serve: false (the running `rlaif annotate serve`'s --db)")])
        if not self.serve and self.tokens is not None:
            where = "Label Studio has its own users" if self.label_studio_export else "the running server has its own"
            raise FieldErrors([(("tokens",), f"applies to serve: true ({where})")])
        return self


class LoopMixedFeedback(_InTheLoop, MixedFeedback):
    """The judge's labels of each iteration where it is sure (or off its budget); the rest are queued for people
    (OUT/iter-K/human_queue.jsonl), and their labels, matched by id, replace the judge's."""

    ai: Optional[str] = _set_by_the_loop("ai")
    queue: Optional[str] = _set_by_the_loop("queue")
    annotate: Optional[LoopAnnotate] = Field(
        None,
        description="People inside the loop, live: {serve: true, wait_s: S}. Each iteration serves its queue "
        "(or writes it as Label Studio tasks and reads the project's export: {label_studio_export: PATH, wait_s: S}), "
        "waits up to S seconds, trains on the answers that arrived and carries later ones into the next "
        "iteration (people's labels then come from the annotation database, not `human`).",
    )
    _left_out_unset: ClassVar[tuple[str, ...]] = (*MixedFeedback._left_out_unset, "annotate")

    @model_validator(mode="after")
    def _people_from_one_place(self):
        if self.annotate is not None and self.human is not None:
            raise FieldErrors([(("human",), "leave it out with annotate: people's labels come from annotate.db")])
        return self


LoopFeedbackSource = Annotated[
    Union[LoopAIFeedback, LoopHumanFeedback, LoopMixedFeedback], Field(discriminator="source")
]


class LoopFeedbackConfig(FeedbackConfig):
    """Which of an iteration's labels train: one feedback source (`.root`), chosen by `source:`. For human and
    mixed, an iteration left with no usable label stops the loop, which the same command continues once people
    have labelled that iteration's queue."""

    root: LoopFeedbackSource


def judge_mode_problems(config: "LoopConfig", judge: JudgeBase) -> list[tuple[tuple, str]]:
    """(field, message) for loop settings that do not fit the judge's mode: a score judge's samples are
    binarised (feedback.pairs_from), so only the judge's own labels can train; pairs_from and the score margin
    mean nothing to a pairwise judge."""
    fb = config.feedback.root
    if judge.mode == "score":
        if isinstance(fb, LoopAIFeedback):
            return []
        return [
            (
                ("feedback", "source"),
                (
                    f"{config.judge} is a score judge (mode: score): its rated samples "
                    "are binarised into pairs (feedback.pairs_from), so only source ai "
                    "applies; human and mixed feedback need a pairwise judge"
                ),
            )
        ]
    defaults = {name: field.default for name, field in LoopAIFeedback.model_fields.items()}
    return [
        (("feedback", name), f"applies to a score judge (mode: score); {config.judge} is pairwise")
        for name in ("pairs_from", "min_margin")
        if getattr(fb, name, defaults[name]) != defaults[name]
    ]


class LoopConfig(RunConfig):
    """`rlaif loop`: iterative (online) DPO with self-feedback. Each iteration the current policy samples
    responses to each prompt, the judge labels them under the constitution (a score judge rates each one), and
    DPO trains on those labels for `steps_per_iteration` optimizer steps (Yuan et al. 2024; Xu et al. 2023; Guo
    et al. 2024). The run is iterations x steps_per_iteration optimizer steps, so max_steps, num_epochs and
    eval_steps do not apply."""

    method: Literal["loop"] = Field("loop", description="Training method.")
    model: ModelSource = Field(description="The starting policy (the baseline of the reported win rates).")
    prompts: str = Field(
        description="Prompts: JSONL rows with `prompt`, or any pair or label file (each distinct prompt once)."
    )
    eval_prompts: int = Field(
        32,
        ge=1,
        description="Prompts held out of training (a seeded draw from `prompts`); "
        "every iteration's win rate, KL and keyword share are measured on them.",
    )
    prompts_per_iteration: Optional[int] = Field(
        None,
        ge=1,
        description="Training prompts drawn (seeded by seed and iteration) for each iteration; None: all of them.",
    )
    iterations: int = Field(3, ge=1, description="Rounds of sample → label → DPO update.")
    samples_per_prompt: int = Field(
        2,
        ge=2,
        description="Responses the policy samples per training prompt. A "
        "pairwise judge labels every pair of them in both orders (n(n-1) calls per "
        "prompt); a score judge rates each once (n calls) and feedback.pairs_from "
        "picks the pairs.",
    )
    steps_per_iteration: int = Field(20, ge=1, description="DPO optimizer steps on each iteration's labels.")
    judge: str = Field(
        description="Judge YAML that labels the pairs (judges/*.yaml); `backend: policy` makes the "
        "current policy its own judge (Yuan et al. 2024); a score judge (mode: score) rates each "
        "sample instead (d-RLAIF), and the pairs come from feedback.pairs_from."
    )
    eval_judge: Optional[str] = Field(
        None,
        description="A fixed judge YAML that also measures each iteration's "
        "win rate; with a policy judge it keeps self-preference out of the figure.",
    )
    constitution: Optional[str] = Field(
        None, description="Constitution YAML the judges follow; None: one generic principle (which reply is better)."
    )
    feedback: LoopFeedbackConfig = Field(
        default_factory=lambda: LoopFeedbackConfig(source="ai"),
        description="Which labels train: the judge's (`source: ai`, the default), people's (human) or a mix "
        "(mixed); the sources of reward and dpo, applied to each iteration's labels.",
    )
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig,
        description="How the policy samples, for "
        "training pairs and evaluation alike (transformers on the policy in memory, or "
        "vLLM with the policy's weights pushed to its engine when they change).",
    )
    reference: Literal["initial", "previous"] = Field(
        "previous",
        description="DPO reference of an iteration: the policy that iteration started from "
        "(previous, as in Yuan et al. 2024) or the starting policy (initial; the only choice under LoRA).",
    )
    loss: DPOLoss = Field(default_factory=SigmoidDPOLoss, description="DPO loss and its settings.")
    soft: bool = Field(True, description="Train on the preference probability p_a; false: on the hard label.")
    min_margin: Optional[float] = Field(
        None,
        ge=0,
        lt=0.5,
        description="Leave out pairs with |p_a - 0.5| <= min_margin. None: leave out the pairs labelled as ties.",
    )
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters only; the base is the reference.")
    prefix_sharing: PrefixSharing
    packing: Packing
    track_keyword: Optional[str] = Field(
        None,
        description="Also log the share of samples containing this text "
        "(case-insensitive), e.g. the word a rule judge prefers.",
    )

    @field_validator("feedback", mode="before")
    @classmethod
    def _ai_by_default(cls, value: Any) -> Any:
        """`source:` may be left out of the loop's feedback: ai, as before the sources had their own classes."""
        return {"source": "ai", **value} if isinstance(value, dict) and "source" not in value else value

    @model_validator(mode="after")
    def _loop_fields(self):
        errors = [
            (
                (name,),
                "does not apply to the loop (it runs iterations x steps_per_iteration steps and "
                "evaluates after every iteration)",
            )
            for name, unset in (("max_steps", None), ("num_epochs", 1.0), ("eval_steps", None))
            if getattr(self, name) != unset
        ]
        if self.lora is not None and self.reference == "previous":
            errors.append((("reference",), "under LoRA the reference is the base model: use reference: initial"))
        errors += packing_problems(self)
        if errors:
            raise FieldErrors(errors)
        return self
