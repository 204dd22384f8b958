"""A person's label as a label record (`source: "human"`), built in one place: `rlaif human import`, the annotation
app's export and calibration (for the human choice that some data carries) all use `human_record`, so a human
label reads the same whichever way it came in. It sits in feedback/, below human/, because the feedback sources
and calibration read human labels too.
"""

from __future__ import annotations

from typing import Literal, Optional

from ..records import LabelRecord, Prompt, sha256_json

HumanLabel = Literal["a", "b", "tie"]
# A person's choice is a hard preference: all of the probability on the response they picked (a tie splits it).
HUMAN_P = {"a": 1.0, "b": 0.0, "tie": 0.5}
# The annotator of a choice that came with the data (`human_label`) or of an imported row that names none: one
# name for both, so the same choice read either way counts once.
IMPORTED_ANNOTATOR = "imported"
# A label read with the two responses trading places.
SWAPPED = {"a": "b", "b": "a", "tie": "tie"}


def human_key(pair_id: str, annotator: str) -> str:
    """A human label is identified by (pair id, annotator): several people may label one pair."""
    return sha256_json(["human", pair_id, annotator])


def human_record(
    *,
    pair_id: str,
    prompt: Prompt,
    response_a: str,
    response_b: str,
    label: HumanLabel,
    annotator: str,
    created_at: Optional[str] = None,
    p_a: Optional[float] = None,
    shown_order: Optional[str] = None,
    principle_id: Optional[str] = None,
    constitution_sha256: Optional[str] = None,
    conversational: bool = False,
) -> LabelRecord:
    """One human label as a LabelRecord, `label` and `p_a` in the pair's own order."""
    return LabelRecord(
        id=pair_id,
        key=human_key(pair_id, annotator),
        prompt=prompt,
        response_a=response_a,
        response_b=response_b,
        p_a=HUMAN_P[label] if p_a is None else p_a,
        label=label,
        status="ok",
        source="human",
        annotator=annotator,
        shown_order=shown_order,
        created_at=created_at,
        principle_id=principle_id,
        constitution_sha256=constitution_sha256,
        conversational=conversational,
    )
