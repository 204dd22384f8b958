"""Prompts for sampling (`rlaif generate`, PPO, the loop, win rates) and for `rlaif revise`: the prompt rows of any
input file (with their lines and ids), its distinct prompts, and a seeded held-out split of them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..records import Prompt, sha256_json
from .formats import DataError, RowError, read_rows
from .pairs import parse_prompt, parse_row, row_id


@dataclass
class PromptRow:
    """One prompt of an input file: its line, its id (the row's `id`, else a hash of the prompt and response) and,
    for red-teaming data that already holds one, the response to start from."""

    line: int
    id: str
    prompt: Prompt
    response: Optional[str] = None


def read_prompt_rows(path: str | Path, format: Optional[str] = None) -> Iterator[PromptRow]:
    """Every prompt row of a file, in file order, repeats included. A row gives its `prompt` field (with an optional
    `response` to start from), or (rows without one: HH transcripts, chat-message pairs) the conversation its
    chosen/rejected share. A row without a prompt, or with an empty one, is an error naming FILE:LINE."""
    p = Path(path)
    if p.is_dir() and (p / "labels.jsonl").exists():
        p = p / "labels.jsonl"
    found = False
    for line, row in read_rows(p, format):
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("row must be a JSON object with a prompt")
            response = None
            if row.get("prompt") is not None:
                prompt = parse_prompt(row["prompt"])
                response = _response(row)
            elif row.get("chosen") is not None and row.get("rejected") is not None:
                prompt = parse_row(row).prompt  # HH transcripts, chat-message pairs: the shared conversation
            else:
                raise RowError(f"row has no prompt; it has: {', '.join(sorted(row)) or 'nothing'}")
            if not (prompt.strip() if isinstance(prompt, str) else prompt):
                raise RowError("prompt is empty")
            found = True
            yield PromptRow(line, row_id(row, prompt, *([response] if response is not None else [])), prompt, response)
        except RowError as e:
            raise DataError(p, line, str(e)) from None
    if not found:
        raise DataError(p, None, "holds no prompts")


def _response(row: dict) -> Optional[str]:
    """The `response` a prompt row starts from, when it has one (a pair row's responses are not one)."""
    value = row.get("response")
    if value is None or "response_a" in row:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RowError("response must be a non-empty string (or left out: the model then answers first)")
    return value


def read_prompts(path: str | Path, format: Optional[str] = None) -> list[Prompt]:
    """The distinct prompts of a file, in file order (see read_prompt_rows)."""
    seen: set[str] = set()
    out: list[Prompt] = []
    for row in read_prompt_rows(path, format):
        key = sha256_json(row.prompt)
        if key not in seen:
            seen.add(key)
            out.append(row.prompt)
    return out


def split_prompts(prompts: list, n_eval: int, seed: int) -> tuple[list, list]:
    """(training prompts, held-out prompts): a seeded draw of `n_eval` held out; both keep the file order."""
    if n_eval >= len(prompts):
        raise ValueError(f"holding out {n_eval} prompts leaves none to train on (there are {len(prompts)})")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_eval])
    return (
        [p for i, p in enumerate(prompts) if i not in held_out],
        [p for i, p in enumerate(prompts) if i in held_out],
    )
