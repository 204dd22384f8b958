"""`rlaif train reward` config: a reward model with a one-output score head, trained with the soft Bradley-Terry
loss on preference labels (recipe: rlaif/recipes/reward.py)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .run import LoraConfig, ModelSource, PreferenceRunConfig, Strict


class RewardLossConfig(Strict):
    """Bradley-Terry with soft targets: BCE-with-logits between r_a - r_b and p_a."""

    margin: float = Field(
        0.0,
        ge=0,
        description="The preferred response must win by this much (Touvron et al. "
        "2023, eq. 2), applied in the label's direction.",
    )
    center_coef: float = Field(
        0.0, ge=0, description="Weight of mean((r_a + r_b)^2), keeping rewards near 0 (Eisenstein et al. 2023)."
    )


class RewardTrainConfig(PreferenceRunConfig):
    """`rlaif train reward`: a scalar-head reward model on preference labels."""

    method: Literal["reward"] = Field("reward", description="Training method.")
    model: ModelSource = Field(description="The base model; a one-output score head is put on top.")
    loss: RewardLossConfig = Field(default_factory=RewardLossConfig, description="Reward-model loss.")
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters (and the head) only.")
