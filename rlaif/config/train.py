"""Typed training configs (the `examples/*/{reward,dpo}.yaml` files): one pydantic model per method, chosen by
`method:`, built from small shared sections (model, feedback, optimiser, run).

Slim on purpose: importing this module never imports torch or transformers. PPO and the loop add their own
`*TrainConfig` next to these and join the `TrainConfig` union.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .feedback import FeedbackConfig


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


# -- sampling ----------------------------------------------------------------------------------------------------
class SamplingConfig(_Strict):
    """How responses are sampled from a policy (`rlaif.train.sampling`)."""

    temperature: float = Field(1.0, ge=0, description="Softmax temperature; 0: greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest set of tokens whose "
                         "probability reaches top_p.")
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens; 0: no limit.")
    max_new_tokens: int = Field(64, ge=1, description="Longest response in tokens.")
    batch_size: int = Field(16, ge=1, description="Prompts per generate() call (transformers).")
    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="auto: vLLM when it is installed and a GPU is present, transformers otherwise. "
                            "Recipes push the policy's new weights to one vLLM engine before each rollout.")
    vllm_engine: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for vllm.LLM when vLLM samples, e.g. "
        "gpu_memory_utilization: 0.3 (leave room for training on the same GPU), enforce_eager: true, max_model_len.")


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


class _ScoreShaping(_Strict):
    whiten: bool = Field(False, description="Normalise each rollout batch's scores to mean 0, std 1 (over all "
                         "processes) before the KL penalty is added.")
    clip: Optional[float] = Field(None, gt=0, description="Clip scores to [-clip, clip] (after whitening); None: "
                                  "no clipping.")
    missing_eos_penalty: Optional[float] = Field(None, ge=0, description="Subtract this from the score of a "
                                                 "response cut at max_new_tokens (it never ended); None: no penalty.")


class ModelRewardConfig(_ScoreShaping):
    """A trained reward model scores each response: a directory loadable with AutoModelForSequenceClassification
    (one label), e.g. OUT/model of `rlaif train reward`. The response text is re-tokenised with the reward
    model's own tokenizer (and chat template), so it need not share the policy's vocabulary."""

    type: Literal["model"] = Field("model", description="Where the score comes from: a reward model.")
    path: str = Field(description="Directory (or hub id) of the reward model and its tokenizer.")
    batch_size: int = Field(16, ge=1, description="Responses per reward-model forward pass.")
    max_length: int = Field(2048, ge=8, description="Longest reward-model input in tokens; longer ones keep "
                            "their end (the head reads the last token).")


class JudgeRewardConfig(_ScoreShaping):
    """The judge itself is the reward (d-RLAIF, Lee et al. 2023, sec. 2.3) through `rlaif.rewards.JudgeReward`:
    each response is judged in both orders against something to beat, and scored 2·P(win) − 1 in [−1, 1]."""

    type: Literal["judge"] = Field("judge", description="Where the score comes from: the judge.")
    judge: str = Field(description="Judge YAML file (judges/*.yaml).")
    constitution: Optional[str] = Field(None, description="Constitution YAML file; None: one generic principle "
                                        "(which reply is better).")
    mode: Literal["reference", "group"] = Field(
        "reference", description="reference: each response against a response to the same prompt sampled from "
        "the frozen reference policy in the same rollout (one per prompt); group: against the other responses to "
        "its prompt (needs samples_per_prompt >= 2), a round-robin tournament.")


RewardSource = Annotated[Union[ModelRewardConfig, JudgeRewardConfig], Field(discriminator="type")]


class FixedKLConfig(_Strict):
    """A constant KL coefficient β."""

    type: Literal["fixed"] = Field("fixed", description="KL controller: constant β.")
    coef: float = Field(0.05, ge=0, description="β: weight of the per-token KL penalty to the reference.")


class AdaptiveKLConfig(_Strict):
    """β steered toward a target KL (Ziegler et al. 2019, sec. 2.2): β ← β·(1 + K·e), e = clip((KL − target) /
    target, ±0.2), K = responses in the rollout batch / horizon."""

    type: Literal["adaptive"] = Field("adaptive", description="KL controller: β follows a target KL.")
    coef: float = Field(0.05, gt=0, description="Initial β.")
    target: float = Field(6.0, gt=0, description="Target KL(π‖π_ref) per response, in nats.")
    horizon: int = Field(10000, ge=1, description="Responses over which the error is corrected (larger: slower).")


KLControl = Annotated[Union[FixedKLConfig, AdaptiveKLConfig], Field(discriminator="type")]


class PPOLossConfig(_Strict):
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), clipped value loss (Ziegler et al. 2019) and GAE
    (Schulman et al. 2016)."""

    clip_range: float = Field(0.2, gt=0, description="ε: the probability ratio is clipped to [1 − ε, 1 + ε].")
    value_clip_range: float = Field(0.2, gt=0, description="New values may move at most this far from the "
                                    "rollout's values before the clipped term takes over.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss in the total loss.")
    gamma: float = Field(1.0, gt=0, le=1, description="Discount γ per token.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ: 0 is one-step TD, 1 is Monte-Carlo returns.")
    whiten_advantages: bool = Field(True, description="Normalise the advantages of each rollout batch (on each "
                                    "process) to mean 0, std 1 over its response tokens.")


class RolloutSamplingConfig(SamplingConfig):
    """How rollouts are sampled (`rlaif.train.sampling.PolicySampler`): transformers generate on the policy in
    memory, or vLLM with the updated weights pushed to its engine before each rollout (reference-policy samples
    for the judge's reference mode are drawn with transformers)."""

    temperature: float = Field(1.0, gt=0, description="Softmax temperature (PPO needs samples from π itself: keep "
                               "1 unless you know why).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling; below 1 the samples are no longer from π.")
    batch_size: int = Field(16, ge=1, description="Sequences per generate() call.")


class PromptsConfig(_Strict):
    """Where rollout prompts come from: JSONL records with a `prompt` field (text or chat messages). Label and
    pair files qualify; each distinct prompt is used once per epoch."""

    path: str = Field(description="JSONL file of records with a `prompt` field.")
    eval_path: Optional[str] = Field(None, description="Held-out prompts for evaluation (same format).")
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="Share of the prompts held out for evaluation when "
                                 "eval_path is None.")


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
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters (and the value head) only; the "
                                       "base is the reference.")
    # fields of RunConfig whose meaning is PPO's own here
    max_steps: Optional[int] = Field(None, ge=1, description="PPO iterations (rollout + its update epochs); None: "
                                     "num_epochs over the prompts.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the prompts (when max_steps is None).")
    batch_size: int = Field(8, ge=1, description="Prompts per rollout on each process (each sampled "
                            "samples_per_prompt times).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per mini-batch.")
    max_length: int = Field(1024, ge=8, description="Longest prompt + response in tokens; prompts longer than "
                            "max_length − max_new_tokens are left out.")
    eval_batch_size: int = Field(16, ge=1, description="Held-out prompts per evaluation rollout.")

    @model_validator(mode="after")
    def _shapes(self):
        from .yamlfile import FieldErrors

        errors = []
        if self.reward.type == "judge" and self.reward.mode == "group" and self.samples_per_prompt < 2:
            errors.append((("samples_per_prompt",), "reward mode group needs samples_per_prompt >= 2"))
        parts = self.num_mini_batches * self.grad_accum
        if (self.batch_size * self.samples_per_prompt) % parts:
            errors.append((("num_mini_batches",), f"batch_size x samples_per_prompt = "
                           f"{self.batch_size * self.samples_per_prompt} responses do not split into "
                           f"num_mini_batches x grad_accum = {parts} equal parts"))
        if self.sampling.max_new_tokens >= self.max_length:
            errors.append((("sampling", "max_new_tokens"), "must be below max_length"))
        if errors:
            raise FieldErrors(errors)
        return self


class LoopFeedbackConfig(_Strict):
    """Which of an iteration's labels train (the sources of `rlaif.feedback`, applied to each iteration's labels).
    For human and mixed the pairs for people are written to OUT/iter-K/human_queue.jsonl and the labels already in
    `human` are used, matched by pair id; an iteration left with no usable label stops the loop, which the same
    command continues once people have labelled that queue."""

    source: Literal["ai", "human", "mixed"] = Field(
        "ai", description="ai: the judge's labels; human: people's labels only (every pair is queued); mixed: the "
                          "judge's labels where it is confident and position-consistent, people's for the rest.")
    human: Optional[str] = Field(None, description="Human labels (`rlaif human import` / `rlaif annotate export`) "
                                 "of the queued pairs. Required for human; for mixed it may not exist yet.")
    margin: float = Field(0.1, ge=0.0, le=0.5, description="mixed: an AI label is kept only when "
                          "|p_a - 0.5| >= margin; closer calls go to people.")
    require_consistent: bool = Field(True, description="mixed: also send pairs whose two orders disagree to "
                                     "people.")
    pending: Literal["drop", "ai"] = Field("drop", description="mixed: a queued pair with no human label yet is "
                                           "left out (drop) or keeps its AI label (ai).")

    @model_validator(mode="after")
    def _human_path(self):
        if self.source == "human" and not self.human:
            raise ValueError("feedback.human is required when feedback.source is human")
        return self


class LoopConfig(RunConfig):
    """`rlaif loop`: iterative (online) DPO with self-feedback. Each iteration the current policy samples two
    responses per prompt, the judge labels them under the constitution, and DPO trains on those labels for
    `steps_per_iteration` optimizer steps (Yuan et al. 2024; Xu et al. 2023; Guo et al. 2024). The run is
    iterations x steps_per_iteration optimizer steps, so max_steps, num_epochs and eval_steps do not apply."""

    method: Literal["loop"] = Field("loop", description="Training method.")
    model: ModelSource = Field(description="The starting policy (the baseline of the reported win rates).")
    prompts: str = Field(description="Prompts: JSONL rows with `prompt`, or any pair or label file (each "
                         "distinct prompt once).")
    eval_prompts: int = Field(32, ge=1, description="Prompts held out of training (a seeded draw from `prompts`); "
                              "every iteration's win rate, KL and keyword share are measured on them.")
    prompts_per_iteration: Optional[int] = Field(None, ge=1, description="Training prompts drawn (seeded by seed "
                                                 "and iteration) for each iteration; None: all of them.")
    iterations: int = Field(3, ge=1, description="Rounds of sample → label → DPO update.")
    steps_per_iteration: int = Field(20, ge=1, description="DPO optimizer steps on each iteration's labels.")
    judge: str = Field(description="Judge YAML that labels the pairs (judges/*.yaml); `backend: policy` makes the "
                       "current policy its own judge (Yuan et al. 2024).")
    eval_judge: Optional[str] = Field(None, description="A fixed judge YAML that also measures each iteration's "
                                      "win rate; with a policy judge it keeps self-preference out of the figure.")
    constitution: Optional[str] = Field(None, description="Constitution YAML the judges follow; None: one generic "
                                        "principle (which reply is better).")
    feedback: LoopFeedbackConfig = Field(default_factory=LoopFeedbackConfig, description="Which labels train: "
                                         "the judge's, people's, or a mix.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="How the policy samples, for "
                                     "training pairs and evaluation alike (transformers on the policy in memory, or "
                                     "vLLM with the policy's weights pushed to its engine when they change).")
    reference: Literal["initial", "previous"] = Field(
        "previous", description="DPO reference of an iteration: the policy that iteration started from "
        "(previous, as in Yuan et al. 2024) or the starting policy (initial; the only choice under LoRA).")
    loss: DPOLoss = Field(default_factory=SigmoidDPOLoss, description="DPO loss and its settings.")
    soft: bool = Field(True, description="Train on the preference probability p_a; false: on the hard label.")
    min_margin: Optional[float] = Field(None, ge=0, lt=0.5, description="Leave out pairs with |p_a - 0.5| <= "
                                        "min_margin. None: leave out the pairs labelled as ties.")
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters only; the base is the reference.")
    track_keyword: Optional[str] = Field(None, description="Also log the share of samples containing this text "
                                         "(case-insensitive), e.g. the word a rule judge prefers.")

    @model_validator(mode="after")
    def _loop_fields(self):
        from .yamlfile import FieldErrors

        errors = [((name,), "does not apply to the loop (it runs iterations x steps_per_iteration steps and "
                   "evaluates after every iteration)") for name, unset in (("max_steps", None), ("num_epochs", 1.0),
                                                                          ("eval_steps", None))
                  if getattr(self, name) != unset]
        if self.lora is not None and self.reference == "previous":
            errors.append((("reference",), "under LoRA the reference is the base model: use reference: initial"))
        if errors:
            raise FieldErrors(errors)
        return self


TrainConfig = Annotated[Union[RewardTrainConfig, DPOTrainConfig, PPOTrainConfig, LoopConfig],
                        Field(discriminator="method")]
METHODS: dict[str, type[RunConfig]] = {"reward": RewardTrainConfig, "dpo": DPOTrainConfig, "ppo": PPOTrainConfig,
                                       "loop": LoopConfig}


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
    from .yamlfile import ConfigFileError, load_model, read_yaml

    model = METHODS[method]
    data, _ = read_yaml(path)
    extra = parse_overrides(overrides or [])
    if isinstance(data, dict):
        found = data.get("method", method)
        if found != method:
            command = "rlaif loop" if found == "loop" else f"rlaif train {found}"
            raise ConfigFileError([f"{path}:1: method: this is a '{found}' config; use `{command}`"])
        # load_model merges top-level keys only: hand it whole merged sections so dotted keys deep-merge
        extra = {k: _deep_merge(data.get(k), v) if isinstance(v, dict) else v for k, v in extra.items()}
    return load_model(path, model, overrides=extra)
