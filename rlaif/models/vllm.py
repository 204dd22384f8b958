"""One vLLM offline engine (`vllm.LLM`) for all its users: the vLLM judge, the vLLM reviser and the policy sampler
open it here, hand it token ids, and close it here. Besides `generate`, it offers the two primitives that verdicts
are read over: the next token's top log-probabilities at given prompts, and greedy generation.

vllm is imported only when an engine is built. The engine starts worker processes: build it under an
`if __name__ == "__main__":` guard (or in a function called from one) in scripts.
"""

from __future__ import annotations

import gc
from typing import Any, Optional, Sequence

from ..config.judge import VLLMJudgeConfig
from .loading import quiet_loading, resolve_model_dir


def default_dtype() -> str:
    """What dtype "auto" means: float32 on vLLM's CPU platform (the numbers the transformers backend reads on a CPU),
    bfloat16 on an accelerator."""
    try:
        from vllm.platforms import current_platform

        return "float32" if current_platform.is_cpu() else "bfloat16"
    except Exception:  # pragma: no cover - platform detection is vLLM-version dependent
        import torch

        return "bfloat16" if torch.cuda.is_available() else "float32"


class VLLMEngine:
    """An open `vllm.LLM` and the tokenizer its users encode with. `model` is the weights it holds (a local folder
    or hub id), `dtype` the one resolved from "auto", `max_model_len` the context the engine allows. Keyword
    arguments beyond the named ones go to `vllm.LLM` as given (None values dropped: the engine's default)."""

    def __init__(
        self,
        model: str,
        tokenizer: Optional[str] = None,
        *,
        dtype: str = "auto",
        seed: Optional[int] = None,
        max_logprobs: int = 20,
        **engine_kwargs: Any,
    ):
        from transformers import AutoTokenizer
        from vllm import LLM

        self.model = str(model)
        source = str(tokenizer) if tokenizer else self.model
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.dtype = default_dtype() if dtype == "auto" else dtype
        kwargs = {k: v for k, v in engine_kwargs.items() if v is not None}
        if seed is not None:
            kwargs["seed"] = seed
        self.llm = LLM(model=self.model, tokenizer=source, dtype=self.dtype, max_logprobs=max_logprobs, **kwargs)
        self.max_model_len: int = int(self.llm.llm_engine.model_config.max_model_len)

    @classmethod
    def from_config(cls, config: VLLMJudgeConfig, **engine_kwargs: Any) -> VLLMEngine:
        """The engine a vLLM judge config names (the embedded GGUF converted once); `engine_kwargs` (e.g. seed,
        enforce_eager) override its settings."""
        with quiet_loading():
            model = resolve_model_dir(config.model, config.model_package, config.gguf_file)
        settings: dict[str, Any] = dict(
            dtype=config.dtype,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enable_prefix_caching=config.enable_prefix_caching,
            max_model_len=config.max_model_len,
            # vLLM refuses a request for more log-probabilities than the engine was started with
            max_logprobs=max(config.top_logprobs, 20),
        )
        return cls(model, config.tokenizer, **{**settings, **engine_kwargs})

    def _open(self):
        if self.llm is None:
            raise RuntimeError(f"this vLLM engine ({self.model}) is closed")
        return self.llm

    def generate(self, prompts: Sequence[Sequence[int]], params) -> list:
        """vLLM's RequestOutputs for token-id prompts, in order; `params` is one SamplingParams or one per prompt."""
        llm = self._open()
        if not prompts:
            return []
        from vllm.inputs import TokensPrompt

        return llm.generate([TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts], params, use_tqdm=False)

    def next_token(self, prompts: Sequence[Sequence[int]], k: int) -> list[tuple[dict[int, float], str]]:
        """For each prompt, the top-k log-probabilities of the next token ({token id: logprob}, unchecked: the
        caller reads and checks them; {} when vLLM returned none) and the text of the token generated there
        (greedy, special tokens kept)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=k, skip_special_tokens=False)
        out = []
        for r in self.generate(prompts, params):
            gen = r.outputs[0]
            top = gen.logprobs[0] if gen.logprobs else {}
            out.append(({tid: getattr(lp, "logprob", lp) for tid, lp in top.items()}, gen.text))
        return out

    def greedy(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        """Greedy generation (temperature 0) of up to max_new_tokens[i] tokens after prompts[i]: the new token ids
        per prompt (ending with EOS where the model stopped); [] where the budget is 0."""
        from vllm import SamplingParams

        if len(prompts) != len(max_new_tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(max_new_tokens)} token budgets")
        self._open()
        out: list[list[int]] = [[] for _ in prompts]
        rows = [i for i, n in enumerate(max_new_tokens) if n > 0]  # vLLM refuses max_tokens=0
        params = [SamplingParams(max_tokens=max_new_tokens[i], temperature=0.0) for i in rows]
        for i, r in zip(rows, self.generate([prompts[i] for i in rows], params)):
            out[i] = list(r.outputs[0].token_ids)
        return out

    def load(self, path: str) -> None:
        """Replace the engine's weights with those saved (Hugging Face format) in `path`, in place: the workers'
        `reload_weights`, then the prefix cache reset (its KV entries belong to the old weights)."""
        llm = self._open()
        llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
        llm.reset_prefix_cache()
        self.model = str(path)

    def close(self) -> None:
        """Shut the engine's workers down and give its memory back; closing twice does nothing."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        for obj in (core, engine):
            shutdown = getattr(obj, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:  # a worker that already died: there is nothing left to shut down
                    pass
                break
        del llm, engine, core
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
