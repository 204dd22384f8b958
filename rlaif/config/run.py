"""The sections every training config is built from (rlaif/config/{reward,dpo,ppo,loop}.py add each method's
own): where the model comes from, LoRA, the optimiser, the run itself (output directory, length, precision,
metrics), and, for the methods that train on labels, how label records become pairs.

Slim on purpose, like every module of rlaif/config: importing it never imports torch or transformers.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .feedback import FeedbackConfig
from .yamlfile import FieldErrors


class Strict(BaseModel):
    """A config section: unknown fields are errors (a misspelt key never passes silently)."""

    # allow_inf_nan=False: no infinity or NaN in any float field (`lr: .inf` would pass gt=0)
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


# -- models ------------------------------------------------------------------------------------------------------
class TinyModelConfig(Strict):
    """A small random Llama built in-process (no download), with a tokenizer made from the config."""

    type: Literal["tiny"] = Field("tiny", description="Where the model comes from: built here from this config.")
    hidden_size: int = Field(64, ge=8, description="Width of the residual stream.")
    intermediate_size: int = Field(128, ge=8, description="Width of the MLP.")
    num_layers: int = Field(2, ge=1, description="Transformer blocks.")
    num_heads: int = Field(4, ge=1, description="Attention heads.")
    num_kv_heads: int = Field(2, ge=1, description="Key/value heads (grouped-query attention).")
    max_positions: int = Field(1024, ge=16, description="Longest sequence the model accepts.")
    vocab: Optional[list[str]] = Field(
        None,
        description="Whole words the tokenizer knows (plus chat-template "
        "markers); any other word is <unk>. None: a byte-level tokenizer that "
        "reads any text, one token per byte.",
    )
    seed: int = Field(0, description="Seed of the random initial weights (the reference model is rebuilt from it).")

    @model_validator(mode="after")
    def _heads(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must be a multiple of num_heads, and num_heads of num_kv_heads")
        return self


class PretrainedModelConfig(Strict):
    """A model loaded with transformers from a hub id or a local directory (a checkpoint of ours included)."""

    type: Literal["pretrained"] = Field("pretrained", description="Where the model comes from: from_pretrained.")
    path: str = Field(description="Hub id or local directory of the model and its tokenizer.")
    revision: Optional[str] = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Allow model code shipped with the checkpoint.")
    attn_implementation: Optional[str] = Field(
        None, description="e.g. sdpa or flash_attention_2; None: transformers' default."
    )


ModelSource = Annotated[Union[TinyModelConfig, PretrainedModelConfig], Field(discriminator="type")]


class LoraConfig(Strict):
    """Low-rank adapters (Hu et al. 2021) through peft: only the adapters train; the base is the reference."""

    r: int = Field(16, ge=1, description="Rank of the adapters.")
    alpha: float = Field(32.0, gt=0, description="Scale numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: Union[list[str], Literal["all-linear"]] = Field(
        "all-linear", description="Module names that get adapters, or all-linear."
    )


# -- preferences -------------------------------------------------------------------------------------------------
PrefixSharing = Annotated[
    Literal["auto", True, False],
    Field(
        "auto",
        description="Encode each pair as one row, the prompt once, then response a and response b "
        "(rlaif/models/prefix.py): the same losses and gradients for fewer tokens. auto: on wherever it is "
        "exact (Llama, Mistral, Qwen2, Qwen3 with SDPA attention and no sliding window); true: refuse a model "
        "it cannot make exact; false: two rows per pair.",
    ),
]
Packing = Annotated[
    bool,
    Field(
        False,
        description="With prefix sharing on: put each micro-batch's pairs one after another in one row (each "
        "pair's positions start again at 0 and its tokens attend only within their pair), so that no position is "
        "padding: the same losses and gradients, faster where pairs differ in length. Refused when prefix "
        "sharing is off.",
    ),
]


def packing_problems(config) -> list[tuple[tuple, str]]:
    """(field, message) when a run that trains on pairs (reward, DPO, the loop) asks for packing with prefix
    sharing turned off; where auto turns sharing off for a model, the run refuses packing when it loads it
    (train/models.py)."""
    if config.packing and config.prefix_sharing is False:
        return [(("packing",), "true needs prefix sharing, which prefix_sharing: false turns off")]
    return []


class PairsConfig(Strict):
    """How the feedback's label records become training pairs, and which pairs are held out for evaluation."""

    soft: bool = Field(
        True,
        description="Train on the preference probability p_a (Lee et al. 2023); false: on "
        "the hard label (p_a rounded to 0 or 1).",
    )
    min_margin: Optional[float] = Field(
        None,
        ge=0,
        lt=0.5,
        description="Leave out pairs with |p_a - 0.5| <= "
        "min_margin. None: leave out the pairs their label file marks as ties.",
    )
    eval_paths: list[str] = Field(
        default_factory=list,
        description="Held-out label files for evaluation, of "
        "any source; known human choices there give the human-agreement accuracy.",
    )
    eval_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of the training pairs held out for evaluation when eval_paths is empty."
    )


# -- optimisation and the run -------------------------------------------------------------------------------------
class OptimConfig(Strict):
    """AdamW with warm-up and a learning-rate schedule."""

    lr: float = Field(1e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas (β1, β2), each in [0, 1).")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    scheduler: Literal["constant", "linear", "cosine"] = Field("linear", description="Decay after warm-up.")
    max_grad_norm: Optional[float] = Field(
        1.0, gt=0, description="Clip the gradient norm; None: no clipping (the norm is measured and logged either way)."
    )

    @model_validator(mode="after")
    def _betas(self):
        # at β = 1 Adam's bias correction 1 − βᵗ is 0, and every update is NaN
        bad = [
            (("betas", i), f"{beta!r} is outside [0, 1): each beta is a decay rate below 1")
            for i, beta in enumerate(self.betas)
            if not 0 <= beta < 1
        ]
        if bad:
            raise FieldErrors(bad)
        return self


class RunConfig(Strict):
    """Fields every training method shares: where the run writes, how long it runs, and how it computes."""

    output_dir: str = Field(description="Run directory: metrics.jsonl, config.yaml, checkpoint-STEP/, model/.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of data order and dropout.")
    max_steps: Optional[int] = Field(None, ge=1, description="Optimizer steps; None: num_epochs over the data.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training pairs (when max_steps is None).")
    batch_size: int = Field(8, ge=1, description="Pairs per micro-batch on each process.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(
        1024,
        ge=8,
        description="Longest prompt+response in tokens; longer ones are cut at "
        "the end, pairs whose prompt alone fills it are left out.",
    )
    save_steps: int = Field(100, ge=1, description="Write checkpoint-STEP/ every this many steps (and at the end).")
    save_total_limit: Optional[int] = Field(None, ge=1, description="Keep only the newest N checkpoints.")
    eval_steps: Optional[int] = Field(
        None, ge=1, description="Evaluate every this many steps (and at the end); None: at the end only."
    )
    eval_batch_size: int = Field(16, ge=1, description="Pairs per evaluation batch.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 mixed precision on a GPU that supports it, fp32 otherwise."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass.")
    cpu_threads: Optional[int] = Field(
        None,
        ge=1,
        description="torch threads for CPU work; None: torch's "
        "default (one per core). Tiny models run fastest on 1, above all on a "
        "busy machine.",
    )
    report_to: list[Literal["tensorboard", "trackio", "wandb"]] = Field(
        default_factory=list, description="Also send metrics there (OUT/metrics.jsonl is always written)."
    )
    project: str = Field("rlaif", description="Project name for trackio / wandb.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and schedule.")


class PreferenceRunConfig(RunConfig):
    """A run that trains on preference labels (reward, DPO): the labels and how they become pairs. Each method
    narrows `method` and describes `model` in its own words."""

    method: Literal["reward", "dpo"] = Field(description="Training method.")
    model: ModelSource = Field(description="The model training starts from.")
    feedback: FeedbackConfig = Field(description="Where the preference labels come from (AI, human or mixed).")
    pairs: PairsConfig = Field(default_factory=PairsConfig, description="Labels → training and held-out pairs.")
    prefix_sharing: PrefixSharing
    packing: Packing

    @model_validator(mode="after")
    def _packing_needs_sharing(self):
        if problems := packing_problems(self):
            raise FieldErrors(problems)
        return self
