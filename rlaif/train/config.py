"""Typed training configs (the `examples/*/{reward,dpo}.yaml` files): one pydantic model per method, chosen by
`method:`, built from small shared sections (model, feedback, optimiser, run).

Slim on purpose: importing this module never imports torch or transformers. PPO and the loop add their own
`*TrainConfig` next to these and join the `TrainConfig` union.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..feedback_config import FeedbackConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# -- models ------------------------------------------------------------------------------------------------------
class TinyModelConfig(_Strict):
    """A small random Llama built in-process (no download), with a tokenizer made from the config."""

    type: Literal["tiny"] = Field("tiny", description="Where the model comes from: built here from this config.")
    hidden_size: int = Field(64, ge=8, description="Width of the residual stream.")
    intermediate_size: int = Field(128, ge=8, description="Width of the MLP.")
    num_layers: int = Field(2, ge=1, description="Transformer blocks.")
    num_heads: int = Field(4, ge=1, description="Attention heads.")
    num_kv_heads: int = Field(2, ge=1, description="Key/value heads (grouped-query attention).")
    max_positions: int = Field(1024, ge=16, description="Longest sequence the model accepts.")
    vocab: Optional[list[str]] = Field(None, description="Whole words the tokenizer knows (plus chat-template "
                                       "markers); any other word is <unk>. None: a byte-level tokenizer that "
                                       "reads any text, one token per byte.")
    seed: int = Field(0, description="Seed of the random initial weights (the reference model is rebuilt from it).")

    @model_validator(mode="after")
    def _heads(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must be a multiple of num_heads, and num_heads of num_kv_heads")
        return self


class PretrainedModelConfig(_Strict):
    """A model loaded with transformers from a hub id or a local directory (a checkpoint of ours included)."""

    type: Literal["pretrained"] = Field("pretrained", description="Where the model comes from: from_pretrained.")
    path: str = Field(description="Hub id or local directory of the model and its tokenizer.")
    revision: Optional[str] = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Allow model code shipped with the checkpoint.")
    attn_implementation: Optional[str] = Field(None, description="e.g. sdpa or flash_attention_2; None: "
                                               "transformers' default.")


ModelSource = Annotated[Union[TinyModelConfig, PretrainedModelConfig], Field(discriminator="type")]


class LoraConfig(_Strict):
    """Low-rank adapters (Hu et al. 2021) through peft: only the adapters train; the base is the reference."""

    r: int = Field(16, ge=1, description="Rank of the adapters.")
    alpha: float = Field(32.0, gt=0, description="Scale numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: Union[list[str], Literal["all-linear"]] = Field(
        "all-linear", description="Module names that get adapters, or all-linear.")


# -- preferences -------------------------------------------------------------------------------------------------
class PairsConfig(_Strict):
    """How the feedback's label records become training pairs, and which pairs are held out for evaluation."""

    soft: bool = Field(True, description="Train on the preference probability p_a (Lee et al. 2023); false: on "
                       "the hard label (p_a rounded to 0 or 1).")
    min_margin: Optional[float] = Field(None, ge=0, lt=0.5, description="Leave out pairs with |p_a - 0.5| <= "
                                        "min_margin. None: leave out the pairs their label file marks as ties.")
    eval_paths: list[str] = Field(default_factory=list, description="Held-out label files for evaluation, of "
                                  "any source; known human choices there give the human-agreement accuracy.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the training pairs held out for "
                                 "evaluation when eval_paths is empty.")


# -- optimisation and the run -------------------------------------------------------------------------------------
class OptimConfig(_Strict):
    """AdamW with warm-up and a learning-rate schedule."""

    lr: float = Field(1e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    scheduler: Literal["constant", "linear", "cosine"] = Field("linear", description="Decay after warm-up.")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, description="Clip the gradient norm; None: no clipping.")


class RunConfig(_Strict):
    """Fields every training method shares: where the run writes, how long it runs, and how it computes."""

    output_dir: str = Field(description="Run directory: metrics.jsonl, config.yaml, checkpoint-STEP/, model/.")
    seed: int = Field(0, description="Seed of data order and dropout.")
    max_steps: Optional[int] = Field(None, ge=1, description="Optimizer steps; None: num_epochs over the data.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training pairs (when max_steps is None).")
    batch_size: int = Field(8, ge=1, description="Pairs per micro-batch on each process.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(1024, ge=8, description="Longest prompt+response in tokens; longer ones are cut at "
                            "the end, pairs whose prompt alone fills it are left out.")
    save_steps: int = Field(100, ge=1, description="Write checkpoint-STEP/ every this many steps (and at the end).")
    save_total_limit: Optional[int] = Field(None, ge=1, description="Keep only the newest N checkpoints.")
    eval_steps: Optional[int] = Field(None, ge=1, description="Evaluate every this many steps (and at the end); "
                                      "None: at the end only.")
    eval_batch_size: int = Field(16, ge=1, description="Pairs per evaluation batch.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 mixed precision on a GPU that supports it, fp32 otherwise.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass.")
    cpu_threads: Optional[int] = Field(None, ge=1, description="torch threads for CPU work; None: torch's "
                                       "default (one per core). Tiny models run fastest on 1, above all on a "
                                       "busy machine.")
    report_to: list[Literal["tensorboard", "trackio", "wandb"]] = Field(
        default_factory=list, description="Also send metrics there (OUT/metrics.jsonl is always written).")
    project: str = Field("rlaif", description="Project name for trackio / wandb.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and schedule.")


# -- methods -----------------------------------------------------------------------------------------------------
class RewardLossConfig(_Strict):
    """Bradley-Terry with soft targets: BCE-with-logits between r_a - r_b and p_a."""

    margin: float = Field(0.0, ge=0, description="The preferred response must win by this much (Touvron et al. "
                          "2023, eq. 2), applied in the label's direction.")
    center_coef: float = Field(0.0, ge=0, description="Weight of mean((r_a + r_b)^2), keeping rewards near 0 "
                               "(Eisenstein et al. 2023).")


class RewardTrainConfig(RunConfig):
    """`rlaif train reward`: a scalar-head reward model on preference labels."""

    method: Literal["reward"] = Field("reward", description="Training method.")
    model: ModelSource = Field(description="The base model; a one-output score head is put on top.")
    feedback: FeedbackConfig = Field(description="Where the preference labels come from (AI, human or mixed).")
    pairs: PairsConfig = Field(default_factory=PairsConfig, description="Labels → training and held-out pairs.")
    loss: RewardLossConfig = Field(default_factory=RewardLossConfig, description="Reward-model loss.")
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters (and the head) only.")


class SigmoidDPOLoss(_Strict):
    """DPO (Rafailov et al. 2023, eq. 7) with soft labels, and cDPO label smoothing (Mitchell 2023)."""

    type: Literal["sigmoid"] = Field("sigmoid", description="Which DPO loss.")
    beta: float = Field(0.1, gt=0, description="Strength of the KL penalty to the reference (the temperature).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="cDPO: assume labels are flipped with this "
                                   "probability, i.e. move the target toward 1/2.")
    length_normalize: bool = Field(False, description="Use per-token mean log-ratios instead of sums.")


class IPOLoss(_Strict):
    """IPO (Azar et al. 2023, eq. 17): regress the log-ratio margin onto (p_a - 1/2) / beta."""

    type: Literal["ipo"] = Field("ipo", description="Which DPO loss.")
    beta: float = Field(0.1, gt=0, description="IPO's regularisation tau.")
    length_normalize: bool = Field(True, description="Use per-token mean log-ratios (as the IPO authors do).")


DPOLoss = Annotated[Union[SigmoidDPOLoss, IPOLoss], Field(discriminator="type")]


class DPOTrainConfig(RunConfig):
    """`rlaif train dpo`: direct preference optimisation of a policy against a frozen reference."""

    method: Literal["dpo"] = Field("dpo", description="Training method.")
    model: ModelSource = Field(description="The starting policy; also the reference.")
    feedback: FeedbackConfig = Field(description="Where the preference labels come from (AI, human or mixed).")
    pairs: PairsConfig = Field(default_factory=PairsConfig, description="Labels → training and held-out pairs.")
    loss: DPOLoss = Field(default_factory=SigmoidDPOLoss, description="DPO loss and its settings.")
    precompute_reference: bool = Field(True, description="Compute the reference log-probs once before training "
                                       "(and drop the reference model); false: on the fly each step.")
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters only; the base is the reference.")


TrainConfig = Annotated[Union[RewardTrainConfig, DPOTrainConfig], Field(discriminator="method")]
METHODS: dict[str, type[RunConfig]] = {"reward": RewardTrainConfig, "dpo": DPOTrainConfig}


# -- loading -----------------------------------------------------------------------------------------------------
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (dotted keys for nested fields) into a nested dict; values are read as YAML."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override '{item}' is not key=value (e.g. optim.lr=1e-5)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{item}': '{part}' is set as a value and as a section")
        node[leaf] = yaml.safe_load(text) if text != "" else ""
    return out


def _deep_merge(base: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` merged into `base`; a section whose `type:` changes is replaced, not merged (its fields differ)."""
    if not isinstance(base, dict) or ("type" in extra and extra["type"] != base.get("type")):
        base = {}
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _deep_merge(merged.get(k), v) if isinstance(v, dict) else v
    return merged


def load_train_config(path: str | Path, method: str, overrides: list[str] | None = None) -> RunConfig:
    """Read a training YAML for `method`, apply `key=value` overrides, validate (FILE:LINE errors)."""
    from ..yamlfile import ConfigFileError, load_model, read_yaml

    model = METHODS[method]
    data, _ = read_yaml(path)
    extra = parse_overrides(overrides or [])
    if isinstance(data, dict):
        found = data.get("method", method)
        if found != method:
            raise ConfigFileError([f"{path}:1: method: this is a '{found}' config; use `rlaif train {found}`"])
        # load_model merges top-level keys only: hand it whole merged sections so dotted keys deep-merge
        extra = {k: _deep_merge(data.get(k), v) if isinstance(v, dict) else v for k, v in extra.items()}
    return load_model(path, model, overrides=extra)
