"""Revising through any OpenAI-compatible chat-completions endpoint (a vLLM server, a hosted API), through the HTTP
client the openai judge uses too (rlaif/models/http.py): concurrency over several base URLs, retries with backoff on
429/5xx/timeouts/unreadable bodies, spending caps that hold per job, and the API key scrubbed from every error.
Generation settings come from the sampling config, not from the judge's verdict settings.
"""

from __future__ import annotations

from typing import Any, Optional

from ..config.judge import OpenAIJudgeConfig
from ..config.sampling import SamplingConfig
from ..models.http import HTTPBacked, HTTPClient, chat_text, usage_tokens
from .generators import Generator, Reply, Request


class OpenAIGenerator(HTTPBacked, Generator):
    config: OpenAIJudgeConfig

    def __init__(self, config: OpenAIJudgeConfig, sampling: SamplingConfig):
        super().__init__(config, sampling)
        if config.request == "completions":
            raise ValueError(
                "rlaif revise sends the conversation as chat messages: give the model config request: "
                "chat (the default), not completions"
            )
        self.client = HTTPClient(config, "/chat/completions", "openai reviser")
        self._stopped: Optional[str] = None

    def generate(self, requests: list[Request]) -> list[Optional[Reply]]:
        results, self._stopped = self.client.post([self._body(r) for r in requests], chat_text)
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


def _reply(data: Optional[dict], error: Optional[str], attempts: int) -> Reply:
    if error is not None:
        return Reply(None, error=error)
    finish = data["choices"][0].get("finish_reason")
    return Reply(chat_text(data).strip(), "length" if finish == "length" else "eos", None, *usage_tokens(data))
