"""Human feedback: labels that people give, in the same LabelRecord form as the judge's, with `source: "human"`.

`importer.py` reads labels people already gave (files, TRL and HH data); `db.py` is the annotation app's SQLite
store and `server.py` the app itself. This module holds only the record builder they share, so importing the
package never imports fastapi, uvicorn or torch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal, Optional

from ..records import LabelRecord, Prompt, sha256_json

HumanLabel = Literal["a", "b", "tie"]
# A person's choice is a hard preference: all of the probability on the response they picked.
P_A = {"a": 1.0, "b": 0.0, "tie": 0.5}
DEFAULT_ANNOTATOR = "imported"


def utc_now() -> str:
    """The current time as ISO 8601 in UTC, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def human_key(pair_id: str, annotator: str) -> str:
    """A human label is identified by (pair id, annotator): several people may label one pair."""
    return sha256_json(["human", pair_id, annotator])


def human_record(*, pair_id: str, prompt: Prompt, response_a: str, response_b: str, label: HumanLabel,
                 annotator: str, created_at: str, p_a: Optional[float] = None, shown_order: Optional[str] = None,
                 principle_id: Optional[str] = None, constitution_sha256: Optional[str] = None,
                 conversational: bool = False) -> LabelRecord:
    """One human label as a LabelRecord, `label` and `p_a` in the pair's own order."""
    return LabelRecord(id=pair_id, key=human_key(pair_id, annotator), prompt=prompt, response_a=response_a,
                       response_b=response_b, p_a=P_A[label] if p_a is None else p_a, label=label, status="ok",
                       source="human", annotator=annotator, shown_order=shown_order, created_at=created_at,
                       principle_id=principle_id, constitution_sha256=constitution_sha256,
                       conversational=conversational)
