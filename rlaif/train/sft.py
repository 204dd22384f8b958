"""Supervised fine-tuning's components: chat examples read from files (a `messages` row's last assistant turn is
the response; `prompt` / `completion` rows say it outright), encoded as (prompt ids, response ids) by
rlaif.policy.chat exactly as sampling and the preference recipes encode, batched, and the loss terms of a batch:
the summed negative log-likelihood of its response tokens and how many there are (the recipe divides by the
tokens of the whole global batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.formats import DataError, RowError, read_rows, type_name
from ..data.pairs import parse_prompt
from ..policy.chat import encode
from .data import pad_rows
from .dpo import response_logits
from .losses import sft_loss


@dataclass
class SFTExample:
    prompt: Any  # text, or the chat messages before the response
    response: str


@dataclass
class EncodedExample:
    prompt_ids: list[int]
    response_ids: list[int]

    def response_tokens(self, max_length: int) -> int:
        """Response tokens left once the sequence is cut to max_length (the prompt is kept whole)."""
        return max(0, min(len(self.prompt_ids) + len(self.response_ids), max_length) - len(self.prompt_ids))


def _assistant_text(value: Any, field: str) -> str:
    """A response: text, or a one-message list holding the assistant's turn."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        if value[0].get("role") != "assistant":
            raise RowError(f"{field} must be the assistant's turn, not {value[0].get('role')!r}")
        value = value[0].get("content")
    if not isinstance(value, str):
        raise RowError(f"{field} must be the response text (or one assistant message), not {type_name(value)}")
    if not value.strip():
        raise RowError(f"{field} is empty: an example needs a response to train on")
    return value


def parse_example(row: Any) -> SFTExample:
    if not isinstance(row, dict):
        raise RowError(f"row must be a JSON object, not {type_name(row)}")
    if row.get("messages") is not None:
        messages = parse_prompt(row["messages"], "messages") if isinstance(row["messages"], list) else None
        if messages is None or len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise RowError(
                "messages must be a list of chat messages ending with the assistant's turn, after at "
                "least one turn before it"
            )
        return SFTExample(messages[:-1], _assistant_text(messages[-1]["content"], "messages[-1].content"))
    if row.get("prompt") is not None and row.get("completion") is not None:
        return SFTExample(parse_prompt(row["prompt"]), _assistant_text(row["completion"], "completion"))
    raise RowError(f"row needs `messages`, or `prompt` and `completion`; it has: {', '.join(sorted(row)) or 'nothing'}")


def read_examples(paths: list[str]) -> list[SFTExample]:
    """The examples of every file, in order; a row that is not one is an error naming FILE:LINE."""
    out = []
    for path in paths:
        for line, row in read_rows(Path(path)):
            try:
                if isinstance(row, RowError):
                    raise row
                out.append(parse_example(row))
            except RowError as e:
                raise DataError(path, line, str(e)) from None
    return out


def encode_examples(tokenizer, examples: list[SFTExample], max_length: int) -> tuple[list[EncodedExample], int]:
    """Encode the examples; returns them and how many were left out because the prompt alone fills max_length."""
    out, dropped = [], 0
    for ex in examples:
        prompt_ids, response_ids = encode(tokenizer, ex.prompt, ex.response)
        if len(prompt_ids) >= max_length:
            dropped += 1
            continue
        out.append(EncodedExample(prompt_ids, response_ids))
    return out, dropped


def example_batch(examples: list[EncodedExample], idx: list[int], pad_id: int, max_length: int, device) -> dict:
    rows = [(examples[i].prompt_ids, examples[i].response_ids) for i in idx]
    return {k: v.to(device) for k, v in pad_rows(rows, pad_id, max_length).items()}


def sft_terms(model, batch: dict) -> dict:
    """The summed negative log-likelihood of the batch's response tokens, their count, and the tokens encoded."""
    logits, targets, mask = response_logits(model, batch)
    return {
        "loss": sft_loss(logits, targets, mask, 1.0),
        "response_tokens": mask.sum().float(),
        "tokens": batch["attention_mask"].sum().float(),
    }
