"""The responses a score job rates, read from any file `rlaif label` reads: pairs (each response's id is the pair
id plus its side, "PAIR:a") or `rlaif generate`'s samples (the prompt id plus the sample index, "PROMPT#3"; a
sample repeated across that file's pairs is rated once). Every response carries its prompt id: the responses to
one prompt are drawn the same principle, compared with each other, and kept in one shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from ..data.formats import DataError, RowError, read_rows
from ..data.pairs import parse_row
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


def prompt_id_of(prompt: Prompt) -> str:
    """The id `rlaif generate` gives a prompt (its rows' `prompt_id`)."""
    return sha256_json(prompt)[:16]


def read_responses(
    path: str | Path, format: Optional[str] = None, seed: int = 0, max_chars: int = 100_000
) -> Iterator[ScoreItem]:
    """Stream the responses to rate, in file order; a bad row is a DataError naming the file and line."""
    path = Path(path)
    pair_lines: dict[str, int] = {}
    samples: dict[tuple[str, int], tuple[int, str]] = {}  # (prompt id, sample) -> (line, text)
    for line, row in read_rows(path, format):
        try:
            if isinstance(row, RowError):
                raise row
            pair = parse_row(row, seed=seed, max_chars=max_chars)
        except RowError as e:
            raise DataError(path, line, str(e)) from None
        base = dict(
            prompt=pair.prompt,
            human_label=pair.human_label,
            conversational=pair.conversational,
            principle=pair.principle,
            source_line=line,
        )
        indices = (row.get("sample_a"), row.get("sample_b"))
        if all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            prompt_id = str(row.get("prompt_id") or prompt_id_of(pair.prompt))
            for index, text in zip(indices, (pair.response_a, pair.response_b)):
                seen = samples.get((prompt_id, index))
                if seen is None:
                    samples[(prompt_id, index)] = (line, text)
                    yield ScoreItem(
                        id=f"{prompt_id}#{index}",
                        prompt_id=prompt_id,
                        response=text,
                        sample=index,
                        **{**base, "human_label": None},
                    )
                elif seen[1] != text:
                    raise DataError(
                        path, line, f"sample {index} of prompt '{prompt_id}' differs from the one on line {seen[0]}"
                    )
            continue
        if pair.id in pair_lines:
            raise DataError(path, line, f"duplicate id '{pair.id}' (first on line {pair_lines[pair.id]})")
        pair_lines[pair.id] = line
        yield from pair_items(pair, line)


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
        )
        for side, text in (("a", pair.response_a), ("b", pair.response_b))
    )
