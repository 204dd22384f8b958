"""The vLLM backend: the offline engine (`vllm.LLM`, opened and closed by models/vllm.py) gives the two primitives
of a local judge, and reading.py reads the verdicts from them as it does for the transformers backend.

The prompt is the one the transformers backend builds, token for token: the chat-template text of
`ChatLayout.segments()`, tokenised segment by segment (prefix, body, tail; no special tokens added) and handed to
the engine as token ids, so both backends score identical inputs. Every query of a pair shares the prefix, and
vLLM's automatic prefix caching reuses its KV cache across the two orders and the principles (and, for a score
judge, across the reads after each score prefix).

The engine shows the `top_logprobs` most likely tokens of a position: a label or score token outside them counts
as zero, and a verdict with none among them fails; it never gets a made-up probability.

vllm is imported only when a VLLMJudge is built. Its engine starts worker processes: build the judge under an
`if __name__ == "__main__":` guard (or in a function called from one) in scripts.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ..config.judge import VLLMJudgeConfig
from ..models.vllm import VLLMEngine
from .reading import LocalJudge, Segments


class VLLMJudge(LocalJudge):
    """Judge with the offline vLLM engine; see the module docstring.

    `engine_kwargs` are passed on to `vllm.LLM` as they are (e.g. enforce_eager=True, seed); they are not
    part of the config, so they must never change a verdict.
    """

    config: VLLMJudgeConfig
    limit_name = "max_model_len"
    read_reserve = 1

    def __init__(self, config: VLLMJudgeConfig, **engine_kwargs: Any):
        super().__init__(config)
        self._engine = VLLMEngine.from_config(config, **engine_kwargs)
        self.dtype = self._engine.dtype
        self.max_model_len: int = self._engine.max_model_len
        self.top_k = config.top_logprobs
        self.use_tokenizer(self._engine.tokenizer)

    @property
    def limit(self) -> int:
        return self.max_model_len

    def next_token(self, prompts: Sequence[Segments], read_ids: Sequence[int]) -> list[tuple[dict, Optional[str]]]:
        """The engine's top `top_logprobs` of the next token after each prompt, `batch_size` prompts per call."""
        flat, size = [[t for seg in segments for t in seg] for segments in prompts], self.config.batch_size
        chunks = (flat[at : at + size] for at in range(0, len(flat), size))
        return [r for chunk in chunks for r in self._engine.next_token(chunk, self.top_k)]

    def greedy(self, prompts: Sequence[list[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        size = self.config.batch_size
        return [
            r
            for at in range(0, len(prompts), size)
            for r in self._engine.greedy(list(prompts[at : at + size]), list(max_new_tokens[at : at + size]))
        ]

    def close(self) -> None:
        engine = getattr(self, "_engine", None)  # None when __init__ failed before the engine opened
        if engine is not None:
            engine.close()
