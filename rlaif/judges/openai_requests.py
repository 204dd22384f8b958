"""What the openai backend (openai.py) sends for one query, and where the verdict is in the reply, for each
`request:` of its config:

  chat          the judge prompt as one user message; the server wraps it in its chat template and the verdict is
                the first token it generates (after whatever the template or the model puts first);
  chat_prefill  the same plus the local backends' answer cue ("Better response:") as an assistant message that
                the server continues (`continue_final_message`, a vLLM/SGLang extension of the chat API);
  completions   /completions with the local backends' prompt itself: the same chat-template text, tokenised
                segment by segment as the transformers and vLLM backends do (judges/prompting.py), sent as
                token ids, so a served model reads exactly what the local one reads.

Replies of both APIs are read into one shape: the text, and per generated token the chat API's logprobs entry
({"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}), which replies.py reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

from ..config.judge import OpenAIJudgeConfig
from ..models.http import chat_text
from ..models.loading import quiet_loading
from ..records import Query, ScoreQuery
from ..text import valid_text
from .prompting import ANSWER_PREFILL, SCORE_PREFILL, ChatLayout, chat_messages, score_messages


@dataclass
class Reply:
    """The first choice of a reply: its text (valid Unicode: `repaired` says whether it had to be mended, see
    rlaif/text.py), its tokens' logprobs entries (chat form) and why it stopped."""

    text: str
    positions: list
    finish_reason: Optional[str]
    repaired: bool = False


def load_prompt_tokenizer(config: OpenAIJudgeConfig):
    """The tokenizer whose chat template renders a completions request: `tokenizer`, else `model`."""
    from transformers import AutoTokenizer

    name = config.tokenizer or config.model
    try:
        with quiet_loading():
            return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"request: completions renders the judge prompt here with the tokenizer of {name!r}, "
            f"which cannot be loaded ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            f"set `tokenizer:` to the served model's folder or hub id, or use request: "
            f"chat_prefill"
        ) from None


class RequestShape:
    """Request bodies and reply reading for one judge config (see the module docstring)."""

    def __init__(self, config: OpenAIJudgeConfig, tokenizer: Any = None):
        self.config = config
        self.path = "/completions" if config.request == "completions" else "/chat/completions"
        self.layout: Optional[ChatLayout] = None
        if config.request == "completions":
            tokenizer = tokenizer if tokenizer is not None else load_prompt_tokenizer(config)
            self.layout = ChatLayout(tokenizer)
            # prefixes and principle tails repeat across queries
            self._ids = lru_cache(maxsize=4096)(lambda text: tuple(tokenizer(text, add_special_tokens=False).input_ids))

    def prompt_ids(self, q: Query) -> list[int]:
        """The local backends' prompt for `q`: prefix, body and tail tokenised separately, as they do."""
        seg = self.layout.segments(q.prefix_user, q.first, q.second, q.principle_text, cot=self.config.cot.enabled)
        return [*self._ids(seg.prefix), *self._ids(seg.body), *self._ids(seg.tail)]

    def body(self, q: Query) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {
            "model": c.model,
            "temperature": c.temperature,
            "max_tokens": c.cot.max_new_tokens if c.cot.enabled else c.max_tokens,
        }
        if c.request == "completions":
            body["prompt"] = self.prompt_ids(q)
            if c.logprobs:
                body["logprobs"] = c.top_logprobs  # the completions API's count of alternatives per token
            return body
        body["messages"] = chat_messages(q.prefix_user, q.first, q.second, q.principle_text, cot=c.cot.enabled)
        if c.request == "chat_prefill" and not c.cot.enabled:  # a CoT prompt ends with no cue, as locally
            body["messages"].append({"role": "assistant", "content": ANSWER_PREFILL})
            body.update(continue_final_message=True, add_generation_prompt=False)
        if c.logprobs:
            body.update(logprobs=True, top_logprobs=c.top_logprobs)
        return body

    def score_body(self, q: ScoreQuery) -> dict[str, Any]:
        """The request of a score query (mode: score): the rating prompt, room for the longest score (and a space
        before it), and the cue "Rating:" as a prefill or in the completions prompt."""
        c, scale = self.config, self.config.score
        body: dict[str, Any] = {
            "model": c.model,
            "temperature": c.temperature,
            "max_tokens": max(c.max_tokens, len(str(scale.high)) + 1),
        }
        if c.request == "completions":
            seg = self.layout.score_segments(q.prefix_user, q.response)
            body["prompt"] = [*self._ids(seg.prefix), *self._ids(seg.body), *self._ids(seg.tail)]
            if c.logprobs:
                body["logprobs"] = c.top_logprobs
            return body
        body["messages"] = score_messages(q.prefix_user, q.response)
        if c.request == "chat_prefill":
            body["messages"].append({"role": "assistant", "content": SCORE_PREFILL})
            body.update(continue_final_message=True, add_generation_prompt=False)
        if c.logprobs:
            body.update(logprobs=True, top_logprobs=c.top_logprobs)
        return body

    def reply(self, data: Any) -> Reply:
        """The first choice of a reply body; KeyError, IndexError, TypeError or ValueError when it has none."""
        choice = data["choices"][0]
        if self.config.request == "completions":
            text = choice["text"]
            if not isinstance(text, str):
                raise TypeError("no text in the first choice")
            positions = _completion_positions(choice.get("logprobs"))
        else:
            text = chat_text(data)
            logprobs = choice.get("logprobs")
            positions = logprobs.get("content") if isinstance(logprobs, dict) else None
        text, repaired = valid_text(text)
        return Reply(text, positions if isinstance(positions, list) else [], choice.get("finish_reason"), repaired)


def _completion_positions(logprobs: Any) -> list:
    """The completions API's logprobs ({"tokens", "token_logprobs", "top_logprobs": [{token: logprob}]}) as the
    chat API's per-token entries; [] when there are none or they are not in that shape."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("tokens"), list):
        return []
    tokens, values = logprobs["tokens"], logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    positions = []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        positions.append(
            {
                "token": token,
                "logprob": values[i] if i < len(values) else None,
                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()],
            }
        )
    return positions
