"""Human feedback: labels that people give, in the same LabelRecord form as the judge's, with `source: "human"`.

`importer.py` reads labels people already gave (label files, TRL and HH data, Label Studio exports; `rlaif human
import`); `db.py` is the annotation app's SQLite store and `server.py` the app itself (`rlaif annotate serve |
export`), on `http.py`: what it shares with `rlaif serve reward` (sockets, body cap, plain 4xx lines);
`label_studio.py` writes the pairs as Label Studio tasks and reads its export back; `presentation.py` is what both
the app and Label Studio show a person for a pair. Each builds its records with
`rlaif.records.human_record`, the one builder calibration uses too. Importing the package never
imports fastapi, uvicorn or torch.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import ValidationError


def utc_now() -> str:
    """The current time as ISO 8601 in UTC, to the millisecond: when a label was given or a store was made."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def validation_problems(e: ValidationError) -> str:
    """A pydantic error about one row as one line: `field.path: message; ...`."""
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'row'}: {err['msg']}" for err in e.errors())
