"""Revising through any OpenAI-compatible chat-completions endpoint (a vLLM server, a hosted API), with the openai
judge's plumbing (rlaif/judges/openai.py): the same concurrency over several base URLs, retries with backoff on
429/5xx/timeouts/unreadable bodies, spending caps that hold per job, and the API key scrubbed from every error.
Generation settings come from the sampling config, not from the judge's verdict settings.
"""

from __future__ import annotations

from typing import Any, Optional

from ..config.judge import OpenAIJudgeConfig
from ..config.sampling import SamplingConfig
from ..judges.openai import OpenAIJudge
from ..records import Spend
from .generators import Generator, Reply, Request


class OpenAIGenerator(Generator):
    config: OpenAIJudgeConfig

    def __init__(self, config: OpenAIJudgeConfig, sampling: SamplingConfig):
        super().__init__(config, sampling)
        if config.request == "completions":
            raise ValueError(
                "rlaif revise sends the conversation as chat messages: give the model config request: "
                "chat (the default), not completions"
            )
        self.client = OpenAIJudge(config)  # its HTTP plumbing (and its API key) only: no verdict is read here
        self._stopped: Optional[str] = None

    def generate(self, requests: list[Request]) -> list[Optional[Reply]]:
        results, self._stopped = self.client.post([self._body(r) for r in requests])
        replies = [None if r is None else _reply(*r) for r in results]
        for reply in replies:  # a server that echoes the key does not get it into a record either
            if reply is not None and reply.text:
                reply.text = self.client.scrub(reply.text)
        return replies

    def _body(self, request: Request) -> dict[str, Any]:
        s = self.sampling
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": request.messages,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
            "seed": request.seed,
        }
        if s.top_k:  # not in OpenAI's API; vLLM's server takes it
            body["top_k"] = s.top_k
        return body

    def stopped(self) -> Optional[str]:
        return self._stopped

    def carry_spend(self, before: Spend) -> None:
        self.client.carry_spend(before)

    def spent(self) -> Spend:
        return self.client.spent()

    def close(self) -> None:
        self.client.close()


def _reply(data: Optional[dict], error: Optional[str], attempts: int) -> Reply:
    if error is not None:
        return Reply(None, error=error)
    choice = data["choices"][0]  # the judge's plumbing checked it holds a text message
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = [
        int(usage.get(k) or 0) if isinstance(usage.get(k), int) else 0 for k in ("prompt_tokens", "completion_tokens")
    ]
    return Reply(
        (choice["message"].get("content") or "").strip(),
        "length" if choice.get("finish_reason") == "length" else "eos",
        None,
        *tokens,
    )
