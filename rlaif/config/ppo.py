"""`rlaif train ppo` config: PPO of a policy with a value head against a frozen reference. Its extension points
are discriminated unions: what scores a response (`reward.type`: a reward model or the judge) and how the KL
coefficient moves (`kl.type`: fixed or adaptive). Recipe: rlaif/recipes/ppo.py."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .run import LoraConfig, ModelSource, RunConfig, Strict
from .sampling import SamplingConfig
from .yamlfile import FieldErrors


class _ScoreShaping(Strict):
    """What is done to the raw scores before the KL penalty is added, whatever gives them."""

    whiten: bool = Field(
        False,
        description="Normalise each rollout batch's scores to mean 0, std 1 (over all "
        "processes) before the KL penalty is added.",
    )
    clip: Optional[float] = Field(
        None, gt=0, description="Clip scores to [-clip, clip] (after whitening); None: no clipping."
    )
    missing_eos_penalty: Optional[float] = Field(
        None,
        ge=0,
        description="Subtract this from the score of a "
        "response cut at max_new_tokens (it never ended); None: no penalty.",
    )


class ModelRewardConfig(_ScoreShaping):
    """A trained reward model scores each response: a directory loadable with AutoModelForSequenceClassification
    (one label), e.g. OUT/model of `rlaif train reward`. The response text is re-tokenised with the reward
    model's own tokenizer (and chat template), so it need not share the policy's vocabulary."""

    type: Literal["model"] = Field("model", description="Where the score comes from: a reward model.")
    path: str = Field(description="Directory (or hub id) of the reward model and its tokenizer.")
    batch_size: int = Field(16, ge=1, description="Responses per reward-model forward pass.")
    max_length: int = Field(
        2048,
        ge=8,
        description="Longest reward-model input in tokens; longer ones keep their end (the head reads the last token).",
    )


class JudgeRewardConfig(_ScoreShaping):
    """The judge itself is the reward (d-RLAIF, Lee et al. 2023, sec. 2.3) through `rlaif.rewards.JudgeReward`:
    each response is judged in both orders against something to beat; its reward is 2·P(win) − 1, in [−1, 1]."""

    type: Literal["judge"] = Field("judge", description="Where the score comes from: the judge.")
    judge: str = Field(description="Judge YAML file (judges/*.yaml).")
    constitution: Optional[str] = Field(
        None, description="Constitution YAML file; None: one generic principle (which reply is better)."
    )
    mode: Literal["reference", "group"] = Field(
        "reference",
        description="reference: each response against a response to the same prompt sampled from "
        "the frozen reference policy in the same rollout (one per prompt); group: against the other responses to "
        "its prompt (needs samples_per_prompt >= 2), a round-robin tournament.",
    )


class JudgeScoreRewardConfig(_ScoreShaping):
    """A score judge is the reward, d-RLAIF as Lee et al. (2023, sec. 2.3) define it: each response is rated alone
    on the judge's scale (`mode: score` in the judge YAML), and the reward is the expected score rescaled to
    [−1, 1]. One judge call per response, no reference sample."""

    type: Literal["judge_score"] = Field("judge_score", description="Where the score comes from: a score judge.")
    judge: str = Field(description="Judge YAML file with `mode: score`.")
    constitution: Optional[str] = Field(
        None,
        description="Constitution YAML file; None: one generic principle "
        "(which reply is better). One principle is drawn per prompt.",
    )


RewardSource = Annotated[
    Union[ModelRewardConfig, JudgeRewardConfig, JudgeScoreRewardConfig], Field(discriminator="type")
]


class FixedKLConfig(Strict):
    """A constant KL coefficient β."""

    type: Literal["fixed"] = Field("fixed", description="KL controller: constant β.")
    coef: float = Field(0.05, ge=0, description="β: weight of the per-token KL penalty to the reference.")


class AdaptiveKLConfig(Strict):
    """β steered toward a target KL (Ziegler et al. 2019, sec. 2.2): β ← β·(1 + K·e), e = clip((KL − target) /
    target, ±0.2), K = responses in the rollout batch / horizon."""

    type: Literal["adaptive"] = Field("adaptive", description="KL controller: β follows a target KL.")
    coef: float = Field(0.05, gt=0, description="Initial β.")
    target: float = Field(6.0, gt=0, description="Target KL(π‖π_ref) per response, in nats.")
    horizon: int = Field(10000, ge=1, description="Responses over which the error is corrected (larger: slower).")


KLControl = Annotated[Union[FixedKLConfig, AdaptiveKLConfig], Field(discriminator="type")]


class PPOLossConfig(Strict):
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), clipped value loss (Ziegler et al. 2019) and GAE
    (Schulman et al. 2016)."""

    clip_range: float = Field(0.2, gt=0, description="ε: the probability ratio is clipped to [1 − ε, 1 + ε].")
    value_clip_range: float = Field(
        0.2,
        gt=0,
        description="New values may move at most this far from the "
        "rollout's values before the clipped term takes over.",
    )
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss in the total loss.")
    gamma: float = Field(1.0, gt=0, le=1, description="Discount γ per token.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ: 0 is one-step TD, 1 is Monte-Carlo returns.")
    whiten_advantages: bool = Field(
        True,
        description="Normalise the advantages of each rollout batch (on each "
        "process) to mean 0, std 1 over its response tokens.",
    )


class RolloutSamplingConfig(SamplingConfig):
    """How rollouts are sampled (`rlaif.policy.sampling.PolicySampler`): transformers generate on the policy in
    memory, or vLLM with the updated weights pushed to its engine before each rollout (reference-policy samples
    for the judge's reference mode are drawn with transformers)."""

    temperature: float = Field(
        1.0, gt=0, description="Softmax temperature (PPO needs samples from π itself: keep 1 unless you know why)."
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling; below 1 the samples are no longer from π.")
    batch_size: int = Field(16, ge=1, description="Sequences per generate() call.")


class PromptsConfig(Strict):
    """Where rollout prompts come from: JSONL records with a `prompt` field (text or chat messages). Label and
    pair files qualify; each distinct prompt is used once per epoch."""

    path: str = Field(description="JSONL file of records with a `prompt` field.")
    eval_path: Optional[str] = Field(None, description="Held-out prompts for evaluation (same format).")
    eval_fraction: float = Field(
        0.0, ge=0, lt=1, description="Share of the prompts held out for evaluation when eval_path is None."
    )


class PPOTrainConfig(RunConfig):
    """`rlaif train ppo`: PPO of a policy with a value head against a frozen reference (Ziegler et al. 2019;
    Ouyang et al. 2022); the reward is a reward model or the judge itself. One step is one PPO iteration."""

    method: Literal["ppo"] = Field("ppo", description="Training method.")
    model: ModelSource = Field(description="The starting policy; also the reference.")
    reward: RewardSource = Field(description="What scores a response: a reward model or the judge.")
    prompts: PromptsConfig = Field(description="Rollout prompts and held-out prompts.")
    sampling: RolloutSamplingConfig = Field(default_factory=RolloutSamplingConfig, description="Rollout sampling.")
    samples_per_prompt: int = Field(1, ge=1, description="Responses sampled per prompt in a rollout.")
    kl: KLControl = Field(default_factory=FixedKLConfig, description="KL coefficient β: fixed or adaptive.")
    loss: PPOLossConfig = Field(default_factory=PPOLossConfig, description="PPO loss and advantage settings.")
    ppo_epochs: int = Field(4, ge=1, description="Passes over each rollout batch.")
    num_mini_batches: int = Field(1, ge=1, description="Mini-batches (one optimizer step each) per pass.")
    lora: Optional[LoraConfig] = Field(
        None, description="Train low-rank adapters (and the value head) only; the base is the reference."
    )
    # fields of RunConfig whose meaning is PPO's own here
    max_steps: Optional[int] = Field(
        None, ge=1, description="PPO iterations (rollout + its update epochs); None: num_epochs over the prompts."
    )
    num_epochs: float = Field(1.0, gt=0, description="Passes over the prompts (when max_steps is None).")
    batch_size: int = Field(
        8, ge=1, description="Prompts per rollout on each process (each sampled samples_per_prompt times)."
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches per mini-batch.")
    max_length: int = Field(
        1024,
        ge=8,
        description="Longest prompt + response in tokens; prompts longer than "
        "max_length − max_new_tokens are left out.",
    )
    eval_batch_size: int = Field(16, ge=1, description="Held-out prompts per evaluation rollout.")

    @model_validator(mode="after")
    def _shapes(self):
        errors = []
        if isinstance(self.reward, JudgeRewardConfig) and self.reward.mode == "group" and self.samples_per_prompt < 2:
            errors.append((("samples_per_prompt",), "reward mode group needs samples_per_prompt >= 2"))
        parts = self.num_mini_batches * self.grad_accum
        if (self.batch_size * self.samples_per_prompt) % parts:
            errors.append(
                (
                    ("num_mini_batches",),
                    f"batch_size x samples_per_prompt = "
                    f"{self.batch_size * self.samples_per_prompt} responses do not split into "
                    f"num_mini_batches x grad_accum = {parts} equal parts",
                )
            )
        if self.sampling.max_new_tokens >= self.max_length:
            errors.append((("sampling", "max_new_tokens"), "must be below max_length"))
        if errors:
            raise FieldErrors(errors)
        return self
