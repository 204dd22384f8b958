"""Prompts for sampling (`rlaif generate`, PPO, the loop, win rates): the distinct prompts of any input file, and a
seeded held-out split of them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from ..records import Prompt, sha256_json
from .formats import DataError, RowError, read_rows
from .pairs import parse_prompt, parse_row

def read_prompts(path: str | Path, format: Optional[str] = None) -> list[Prompt]:
    """The distinct prompts of a file, in file order. A row gives its `prompt` field, or (rows without one:
    HH transcripts, chat-message pairs) the conversation its chosen/rejected share."""
    p = Path(path)
    if p.is_dir() and (p / "labels.jsonl").exists():
        p = p / "labels.jsonl"
    rows = read_rows(p, format)
    seen: set[str] = set()
    out: list[Prompt] = []
    for line, row in rows:
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("row must be a JSON object with a prompt")
            if row.get("prompt") is not None:
                prompt = parse_prompt(row["prompt"])
            elif row.get("chosen") is not None and row.get("rejected") is not None:
                prompt = parse_row(row).prompt  # HH transcripts, chat-message pairs: the shared conversation
            else:
                raise RowError(f"row has no prompt; it has: {', '.join(sorted(row)) or 'nothing'}")
        except RowError as e:
            raise DataError(p, line, str(e)) from None
        if not (prompt.strip() if isinstance(prompt, str) else prompt):
            raise DataError(p, line, "prompt is empty")
        key = sha256_json(prompt)
        if key not in seen:
            seen.add(key)
            out.append(prompt)
    if not out:
        raise DataError(p, None, "holds no prompts")
    return out


def split_prompts(prompts: list, n_eval: int, seed: int) -> tuple[list, list]:
    """(training prompts, held-out prompts): a seeded draw of `n_eval` held out; both keep the file order."""
    if n_eval >= len(prompts):
        raise ValueError(f"holding out {n_eval} prompts leaves none to train on (there are {len(prompts)})")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_eval])
    return ([p for i, p in enumerate(prompts) if i not in held_out],
            [p for i, p in enumerate(prompts) if i in held_out])
