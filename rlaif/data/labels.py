"""Reading what jobs wrote: label files (a label folder, a labels.jsonl, human labels), score folders (as their
scores, or the preferences derived from them) and any job's JSONL store, with their line numbers.

A reader never changes a file (a job may still be appending to it), and trusts nothing in it: every record is
checked by the numbers guard (rlaif/numbers.py) and one id may hold one record, so a folder someone edited is an
error naming FILE:LINE, never a wrong number passed on. A last line cut short (a write in flight) is left out.
Writing is rlaif/files.py's; the store a job grows is rlaif/jobs/store.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional

from ..numbers import label_problem, score_record_problem
from .formats import TOO_DEEP
from .scores import SCORES_FILE, derived_labels, scale_of

LABELS_FILE = "labels.jsonl"


@dataclass(frozen=True)
class LabelSource:
    """A label file or folder, resolved once (`open_labels`): which kind it is and, for a score folder, the scale, T
    and tie margin its preferences are derived with. Callers ask its `kind` instead of looking at the path."""

    file: Path  # the records' file: labels.jsonl (or any label file) or scores.jsonl
    kind: Literal["labels", "scores"]
    scale: Optional[tuple[int, int]] = None  # the score judge's scale, T and tie margin (score folders)
    temperature: Optional[float] = None
    tie_margin: Optional[float] = None

    def labels(self) -> Iterator[dict]:
        """Label records, read-only and checked (`read_records` with rlaif.numbers.label_problem); a score folder's
        are the preferences derived from its checked scores (rlaif/data/scores.py)."""
        if self.kind == "scores":
            yield from derived_labels(self.scores(), self.scale, self.temperature, self.tie_margin)
        else:
            yield from read_records(self.file, label_problem)

    def scores(self) -> Iterator[dict]:
        """A score folder's score records, read-only and checked on its scale."""
        if self.kind != "scores":
            raise ValueError(f"{self.file} holds labels, not scores (a folder written by rlaif score holds those)")
        yield from read_records(self.file, lambda r: score_record_problem(r, self.scale))


def open_labels(path: str | Path) -> LabelSource:
    """What `path` holds, resolved once: a labels file, a label folder (its labels.jsonl), or a score folder
    (`rlaif score`'s: its scores.jsonl, with no labels.jsonl beside it) or its scores.jsonl, whose manifest gives the
    scale, T and tie margin. A path that holds none of these is an error naming it."""
    path = Path(path)
    if path.is_dir():
        scores = path / SCORES_FILE if (path / SCORES_FILE).exists() and not (path / LABELS_FILE).exists() else None
    else:
        scores = path if path.name == SCORES_FILE else None
    if scores is not None:
        if not scores.exists():
            raise FileNotFoundError(f"no scores at {scores}")
        scale, temperature, tie_margin = scale_of(score_manifest(scores), scores.parent / "manifest.json")
        return LabelSource(scores, "scores", scale, temperature, tie_margin)
    f = path / LABELS_FILE if path.is_dir() else path
    if not f.exists():
        raise FileNotFoundError(f"no labels at {f}")
    return LabelSource(f, "labels")


def read_labels(path: str | Path) -> Iterator[dict]:
    """The label records of a label file or folder, or the preferences derived from a score folder's scores
    (`open_labels(path).labels()`)."""
    return open_labels(path).labels()


def read_scores(path: str | Path) -> Iterator[dict]:
    """The score records of a score folder or its scores.jsonl (`open_labels(path).scores()`)."""
    return open_labels(path).scores()


def read_records(f: Path, problem: Callable[[dict], Optional[str]]) -> Iterator[dict]:
    """The records of a JSONL store, read-only. A last line cut short (no newline and not JSON: a write in flight)
    is left out; any other unreadable line, a record `problem` finds fault with (rlaif/numbers.py), and a second
    record for one id (for human labels: one id and annotator) are errors naming FILE:LINE."""
    first: dict[Any, int] = {}
    for n, record in numbered(f):
        if (why := problem(record)) is not None:
            raise ValueError(f"{f}:{n}: {why}")
        identity = (record["id"], record.get("annotator")) if record.get("source") == "human" else record["id"]
        if identity in first:
            raise ValueError(
                f"{f}:{n}: a second record for id {record['id']!r} (the first is at line "
                f"{first[identity]}); a folder holds one record per id: remove one of the two lines"
            )
        first[identity] = n
        yield record


def score_manifest(f: Path) -> Optional[dict]:
    """The manifest beside a score folder's scores.jsonl (its judge config names the scale and T), or None."""
    manifest = f.parent / "manifest.json"
    if not manifest.exists():
        return None
    data = read_json_file(manifest)
    if not isinstance(data, dict):
        raise ValueError(f"{manifest} is not a JSON object (a score folder's manifest)")
    return data


def numbered(f: Path) -> Iterator[tuple[int, Any]]:
    """(1-based line, record) for each line of a JSONL file; see read_labels for the partial last line. A line that
    is not UTF-8, not JSON or not a JSON object is an error naming FILE:LINE."""
    with open(f, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            complete = raw.endswith(b"\n")
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                if complete:
                    raise ValueError(
                        f"{f}:{n}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                        f"is this a label file?"
                    ) from None
                continue
            except json.JSONDecodeError as e:
                if complete:
                    raise ValueError(f"{f}:{n}: corrupt label record: {e}") from None
                continue
            except RecursionError:
                raise ValueError(f"{f}:{n}: corrupt label record: {TOO_DEEP}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{f}:{n}: not a label record (a JSON object), but {type(record).__name__}")
            yield n, record


def read_json_file(path: str | Path) -> Any:
    """A JSON document a job wrote (a manifest, a sidecar): one that is empty or not JSON is one error naming
    the file, never a bare decoder message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        what = "is empty" if path.stat().st_size == 0 else f"is not valid JSON ({e})"
        raise ValueError(f"{path} {what}") from None
    except RecursionError:
        raise ValueError(f"{path}: {TOO_DEEP}") from None
