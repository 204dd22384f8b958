"""What a person is shown for a pair, and how their answer is read back: the principle drawn from the constitution
exactly as in labelling, a seeded left/right order, and the choice turned into the preferred response in the
pair's own order. Shared by the annotation app (`rlaif annotate serve`) and the Label Studio bridge, and free of
fastapi so that the bridge and `rlaif human import` never need the app's extra.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Literal, Optional, Union

from ..constitution import Constitution
from ..data.pairs import DataError, read_pairs
from ..records import SWAPPED
from .db import ServedPair

FLIP = {**SWAPPED, "skip": "skip"}  # an answer read with the left and right responses trading places


def served_pairs(
    path: Union[str, Path], constitution: Optional[Constitution], seed: int, invalid: Optional[list[str]] = None
) -> Iterator[ServedPair]:
    """The pairs of an input file with the principle each is judged by: drawn from the constitution as in
    labelling (same seed, same draw), or a row's own `principle`. With an `invalid` list, rows that cannot be
    read go there (as FILE:LINE: reason) and are left out; without one, the first stops the load."""
    for pair in read_pairs(path, seed=seed, skip_invalid=invalid is not None):
        if pair.invalid:
            invalid.append(str(DataError(path, pair.source_line, pair.invalid)))
            continue
        pid = text = None
        invert = False
        if constitution is not None:
            try:
                principles = constitution.principles_for(pair, seed)
            except KeyError:
                raise DataError(
                    path, pair.source_line, f"principle '{pair.principle}' is not in constitution '{constitution.name}'"
                ) from None
            if len(principles) == 1:
                pid, text, invert = principles[0].id, principles[0].text, principles[0].invert
            else:  # sampling: all; people judge overall, by the whole list
                pid = "all"
                text = "Which response is better overall, by all of these?\n" + "\n".join(
                    f"- {p.text}" for p in principles
                )
        elif pair.principle:
            pid = text = pair.principle
        yield ServedPair(pair.id, pair.prompt, pair.response_a, pair.response_b, pair.conversational, pid, text, invert)


def shown_order(seed: int, annotator: str, pair_id: str) -> Literal["ab", "ba"]:
    """Left/right order for this annotator and pair: seeded, so a reload shows the same, and recomputable."""
    return "ba" if random.Random(f"{seed}:{annotator}:{pair_id}").random() < 0.5 else "ab"


def pair_order_label(choice: str, order: str, invert: bool) -> str:
    """The answer in the shown order → the preferred response in the pair's own order."""
    label = choice if order == "ab" else FLIP[choice]
    # an inverted principle asks for the worse response, so the one picked is the rejected one
    return FLIP[label] if invert else label
