"""The responses a score job rates, read from any file `rlaif label` reads: pairs (each response's id is the pair
id plus its side, "PAIR:a") or `rlaif generate`'s samples (the prompt id plus the sample index, "PROMPT#3"; a
sample repeated across that file's pairs is rated once). Every response carries its prompt id: the responses to
one prompt are drawn the same principle, compared with each other, and kept in one shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from ..data.formats import DataError, RowError
from ..data.pairs import pairs_with_rows
from ..records import Pair, Prompt, sha256_json


@dataclass
class ScoreItem:
    """One response to rate, and where it came from."""

    id: str
    prompt_id: str
    prompt: Prompt
    response: str
    pair_id: Optional[str] = None
    side: Optional[Literal["a", "b"]] = None
    sample: Optional[int] = None
    human_label: Optional[str] = None
    conversational: bool = False
    principle: Optional[str] = None  # a principle id named by the input row
    source_line: Optional[int] = None
    invalid: Optional[str] = None  # why its row could not be read (kept only with --skip-invalid)


def prompt_id_of(prompt: Prompt) -> str:
    """The id `rlaif generate` gives a prompt (its rows' `prompt_id`)."""
    return sha256_json(prompt)[:16]


def read_responses(
    path: str | Path, format: Optional[str] = None, seed: int = 0, max_chars: int = 100_000, skip_invalid: bool = False
) -> Iterator[ScoreItem]:
    """Stream the responses to rate, in file order, read as `rlaif label` reads pairs (rlaif/data/pairs.py): a bad
    row is a DataError naming the file and line, or, with `skip_invalid`, its two responses marked `invalid`."""
    path = Path(path)
    seen: dict[tuple[str, int], tuple[int, str]] = {}  # (prompt id, sample) -> (line, text)
    for row, pair in pairs_with_rows(path, format, seed=seed, skip_invalid=skip_invalid, max_chars=max_chars):
        try:
            samples = None if pair.invalid else _new_samples(row, pair, seen)
        except RowError as e:
            if not skip_invalid:
                raise DataError(path, pair.source_line, str(e)) from None
            pair.invalid, samples = str(e), None
        yield from pair_items(pair, pair.source_line) if samples is None else samples


def _new_samples(row: dict, pair: Pair, seen: dict[tuple[str, int], tuple[int, str]]) -> Optional[list[ScoreItem]]:
    """The samples of a row of `rlaif generate`'s not read before (None: a row of pairs); a sample whose text
    differs from the one read before under its index is a RowError."""
    indices = (row.get("sample_a"), row.get("sample_b"))
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        return None
    prompt_id = str(row.get("prompt_id") or prompt_id_of(pair.prompt))
    new: dict[int, str] = {}
    for index, text in zip(indices, (pair.response_a, pair.response_b)):
        line, before = seen.get((prompt_id, index), (pair.source_line, new.get(index, text)))
        if before != text:
            raise RowError(f"sample {index} of prompt '{prompt_id}' differs from the one on line {line}")
        if (prompt_id, index) not in seen:
            new[index] = text
    seen.update({(prompt_id, index): (pair.source_line, text) for index, text in new.items()})
    return [
        ScoreItem(
            id=f"{prompt_id}#{index}",
            prompt_id=prompt_id,
            prompt=pair.prompt,
            response=text,
            sample=index,
            conversational=pair.conversational,
            principle=pair.principle,
            source_line=pair.source_line,
        )
        for index, text in new.items()
    ]


def pair_items(pair: Pair, line: Optional[int] = None) -> tuple[ScoreItem, ScoreItem]:
    """The two responses of a pair to rate, "PAIR:a" and "PAIR:b" (what a jury's score member rates, too)."""
    return tuple(
        ScoreItem(
            id=f"{pair.id}:{side}",
            prompt_id=prompt_id_of(pair.prompt),
            prompt=pair.prompt,
            response=text,
            pair_id=pair.id,
            side=side,
            human_label=pair.human_label,
            conversational=pair.conversational,
            principle=pair.principle,
            source_line=line,
            invalid=pair.invalid,
        )
        for side, text in (("a", pair.response_a), ("b", pair.response_b))
    )
