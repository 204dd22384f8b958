"""`rlaif loop` config: iterative (online) DPO with self-feedback — the policy samples pairs, a judge labels them,
DPO trains on the labels, every iteration. Recipe: rlaif/recipes/loop.py."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from .dpo import DPOLoss, SigmoidDPOLoss
from .judge import JudgeBase
from .run import LoraConfig, ModelSource, RunConfig, Strict
from .sampling import SamplingConfig
from .yamlfile import FieldErrors


class LoopFeedbackConfig(Strict):
    """Which of an iteration's labels train (the sources of `rlaif.feedback`, applied to each iteration's labels).
    For human and mixed the pairs for people are written to OUT/iter-K/human_queue.jsonl and the labels already in
    `human` are used, matched by pair id; an iteration left with no usable label stops the loop, which the same
    command continues once people have labelled that queue."""

    source: Literal["ai", "human", "mixed"] = Field(
        "ai",
        description="ai: the judge's labels; human: people's labels only (every pair is queued); mixed: the "
        "judge's labels where it is confident and position-consistent, people's for the rest.",
    )
    human: Optional[str] = Field(
        None,
        description="Human labels (`rlaif human import` / `rlaif annotate export`) "
        "of the queued pairs. Required for human; for mixed it may not exist yet.",
    )
    margin: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="mixed: an AI label is kept only when |p_a - 0.5| >= margin; closer calls go to people.",
    )
    require_consistent: bool = Field(True, description="mixed: also send pairs whose two orders disagree to people.")
    pending: Literal["drop", "ai"] = Field(
        "drop",
        description="mixed: a queued pair with no human label yet is left out (drop) or keeps its AI label (ai).",
    )
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

    @model_validator(mode="after")
    def _human_path(self):
        if self.source == "human" and not self.human:
            raise ValueError("feedback.human is required when feedback.source is human")
        return self


def judge_mode_problems(config: "LoopConfig", judge: JudgeBase) -> list[tuple[tuple, str]]:
    """(field, message) for loop settings that do not fit the judge's mode: a score judge's samples are
    binarised (feedback.pairs_from), so only the judge's own labels can train; pairs_from and the score margin
    mean nothing to a pairwise judge."""
    fb = config.feedback
    if judge.mode == "score":
        if fb.source != "ai":
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
        return []
    defaults = LoopFeedbackConfig.model_fields
    return [
        (("feedback", name), f"applies to a score judge (mode: score); {config.judge} is pairwise")
        for name in ("pairs_from", "min_margin")
        if getattr(fb, name) != defaults[name].default
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
        default_factory=LoopFeedbackConfig, description="Which labels train: the judge's, people's, or a mix."
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
    track_keyword: Optional[str] = Field(
        None,
        description="Also log the share of samples containing this text "
        "(case-insensitive), e.g. the word a rule judge prefers.",
    )

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
        if errors:
            raise FieldErrors(errors)
        return self
