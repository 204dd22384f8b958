"""How responses are sampled from a policy (`rlaif.policy.sampling`): `rlaif generate`, `rlaif eval winrate`, the
loop's `sampling:` section, and the base of PPO's rollout sampling. Slim: no torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SamplingConfig(BaseModel):
    """How responses are sampled from a policy."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    temperature: float = Field(1.0, ge=0, description="Softmax temperature; 0: greedy.")
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.",
    )
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens; 0: no limit.")
    max_new_tokens: int = Field(64, ge=1, description="Longest response in tokens.")
    batch_size: int = Field(16, ge=1, description="Prompts per generate() call (transformers).")
    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto",
        description="auto: vLLM when it is installed and a GPU is present, transformers otherwise. "
        "Recipes push the policy's new weights to one vLLM engine before each rollout.",
    )
    vllm_engine: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for vllm.LLM when vLLM samples, e.g. "
        "gpu_memory_utilization: 0.3 (leave room for training on the same GPU), enforce_eager: true, max_model_len.",
    )
