"""`rlaif train dpo` config: direct preference optimisation against a frozen reference, with the DPO loss chosen
by `loss.type` (sigmoid DPO or IPO; the loop uses the same union). Recipe: rlaif/recipes/dpo.py."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .run import LoraConfig, ModelSource, PreferenceRunConfig, Strict


class SigmoidDPOLoss(Strict):
    """DPO (Rafailov et al. 2023, eq. 7) with soft labels, and cDPO label smoothing (Mitchell 2023)."""

    type: Literal["sigmoid"] = Field("sigmoid", description="Which DPO loss.")
    beta: float = Field(0.1, gt=0, description="Strength of the KL penalty to the reference (the temperature).")
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="cDPO: assume labels are flipped with this probability, i.e. move the target toward 1/2.",
    )
    length_normalize: bool = Field(False, description="Use per-token mean log-ratios instead of sums.")


class IPOLoss(Strict):
    """IPO (Azar et al. 2023, eq. 17): regress the log-ratio margin onto (p_a - 1/2) / beta."""

    type: Literal["ipo"] = Field("ipo", description="Which DPO loss.")
    beta: float = Field(0.1, gt=0, description="IPO's regularisation tau.")
    length_normalize: bool = Field(True, description="Use per-token mean log-ratios (as the IPO authors do).")


DPOLoss = Annotated[Union[SigmoidDPOLoss, IPOLoss], Field(discriminator="type")]


class DPOTrainConfig(PreferenceRunConfig):
    """`rlaif train dpo`: direct preference optimisation of a policy against a frozen reference."""

    method: Literal["dpo"] = Field("dpo", description="Training method.")
    model: ModelSource = Field(description="The starting policy; also the reference.")
    loss: DPOLoss = Field(default_factory=SigmoidDPOLoss, description="DPO loss and its settings.")
    precompute_reference: bool = Field(
        True,
        description="Compute the reference log-probs once before training "
        "(and drop the reference model); false: on the fly each step.",
    )
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters only; the base is the reference.")
