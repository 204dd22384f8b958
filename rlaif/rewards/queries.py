"""How an RL engine's query text becomes a prompt and a response for `rlaif serve reward` (server.py): OpenRLHF
sends each query as the prompt and the response decoded together, special tokens included, so the text is cut after
its prompt or at the chat template's last assistant marker, and end-of-turn markers are trimmed off the response.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

# End-of-turn and padding tokens a decoded query may end with (OpenRLHF decodes with skip_special_tokens=False).
END_MARKERS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
    "<eos>",
    "<pad>",
    "<|pad|>",
)
# Where the assistant's turn starts in common chat templates (ChatML, Llama 3, Gemma, Phi-3/Zephyr, Mistral).
ASSISTANT_MARKERS = (
    "<|im_start|>assistant\n",
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<start_of_turn>model\n",
    "<|assistant|>\n",
    "[/INST]",
)
_CHATML_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n?", re.S)
_SPECIAL_ONLY = re.compile(r"^(\s|<\|?[^<>\s]{1,40}\|?>)*$")  # e.g. a BOS token the prompt text lacks


class RequestError(ValueError):
    """A request that cannot be rewarded; answered with 422 and this message."""


def chatml_messages(text: str) -> Optional[list[dict[str, str]]]:
    """A ChatML-rendered conversation as messages (a trailing `<|im_start|>assistant` is dropped); None when the
    text is not one, so the judge sees the conversation rather than template markup."""
    messages, pos = [], 0
    for m in _CHATML_TURN.finditer(text):
        if not _SPECIAL_ONLY.match(text[pos : m.start()]):
            return None
        messages.append({"role": m.group(1), "content": m.group(2)})
        pos = m.end()
    if not messages or text[pos:].strip() not in ("", "<|im_start|>assistant"):
        return None
    return messages


def assistant_marker(tokenizer) -> Optional[str]:
    """What the tokenizer's chat template appends to open the assistant's turn, e.g. '<|im_start|>assistant\\n'."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "x"}]
    closed = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    opened = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return opened[len(closed) :] if opened.startswith(closed) and len(opened) > len(closed) else None


@dataclass
class Splitter:
    """Cuts a query into (prompt, response): after its `prompts` item when one is sent, otherwise at the last
    assistant marker, trying `separators` in order. End-of-turn markers are trimmed off the response."""

    separators: Sequence[str] = ASSISTANT_MARKERS
    end_markers: Sequence[str] = END_MARKERS

    @classmethod
    def create(cls, separator: Optional[str] = None, tokenizer=None) -> "Splitter":
        if separator is not None:
            if not separator:
                raise ValueError("--separator must not be empty")
            separators: tuple[str, ...] = (separator,)
        else:
            marker = assistant_marker(tokenizer)
            separators = ((marker,) if marker else ()) + tuple(s for s in ASSISTANT_MARKERS if s != marker)
        ends = tuple(t for t in (getattr(tokenizer, "eos_token", None), getattr(tokenizer, "pad_token", None)) if t)
        return cls(separators, tuple(dict.fromkeys(ends + END_MARKERS)))

    def response(self, text: str) -> str:
        text = text.strip()
        trimmed = True
        while trimmed:
            trimmed = False
            for m in self.end_markers:
                if text.endswith(m):
                    text, trimmed = text[: -len(m)].rstrip(), True
        return text

    def split(self, index: int, query: str, prompt=None) -> tuple[Union[str, list], str]:
        if isinstance(prompt, str):
            at = query.find(prompt) if prompt else -1
            if at < 0 or not _SPECIAL_ONLY.match(query[:at]):
                raise RequestError(
                    f"query {index} does not start with its prompt (prompts[{index}]); send the "
                    f"exact prompt text the query was made from, or `responses` instead of `query`"
                )
            return chatml_messages(prompt) or prompt, self.response(query[at + len(prompt) :])
        for sep in self.separators:
            at = query.rfind(sep)
            if at >= 0:
                head = query[: at + len(sep)]
                found = prompt if prompt is not None else (chatml_messages(head) or query[:at].strip())
                return found, self.response(query[at + len(sep) :])
        raise RequestError(
            f"query {index} cannot be split into prompt and response: send `prompts`, or start "
            f"the server with --separator (tried {', '.join(json.dumps(s) for s in self.separators)})"
        )
