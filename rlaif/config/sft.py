"""`rlaif train sft` config: supervised fine-tuning on chat examples, the loss on the response tokens only — what
Constitutional AI's supervised stage trains on its final revisions (`rlaif export --revisions DIR --format sft`).
Recipe: rlaif/recipes/sft.py."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .run import LoraConfig, ModelSource, RunConfig, Strict


class SFTDataConfig(Strict):
    """The examples: the response trained on is each row's last assistant turn; what comes before it is the
    prompt, which is read but not trained on."""

    paths: list[str] = Field(
        min_length=1,
        description="JSONL files of `messages` rows (`rlaif export --revisions "
        "DIR --format sft`) or of `prompt` / `completion` rows (text or chat messages).",
    )
    eval_paths: list[str] = Field(
        default_factory=list, description="Held-out files of the same rows, for the evaluation loss."
    )
    eval_fraction: float = Field(
        0.0, ge=0, lt=1, description="Share of the training examples held out for evaluation when eval_paths is empty."
    )


class SFTTrainConfig(RunConfig):
    """`rlaif train sft`: supervised fine-tuning of a policy on chat examples."""

    method: Literal["sft"] = Field("sft", description="Training method.")
    model: ModelSource = Field(description="The model fine-tuning starts from.")
    data: SFTDataConfig = Field(description="The examples (and held-out ones).")
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters only.")
