"""Reading what jobs wrote: label files (a label folder, a labels.jsonl, human labels), score folders (as their
scores, or the preferences derived from them) and any job's JSONL store, with their line numbers.

A reader never changes a file (a job may still be appending to it), and trusts nothing in it: every record is
checked by the numbers guard (rlaif/numbers.py) and one id may hold one record, so a folder someone edited is an
error naming FILE:LINE, never a wrong number passed on. A last line cut short (a write in flight) is left out.
Writing is rlaif/files.py's; the store a job grows is rlaif/jobs/store.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..numbers import label_problem, score_record_problem
from .formats import TOO_DEEP
from .scores import SCORES_FILE, derived_labels, scale_of

LABELS_FILE = "labels.jsonl"


def labels_file(path: str | Path) -> Path:
    """A labels JSONL file, or the labels.jsonl inside a label directory (the scores.jsonl inside a score folder,
    `rlaif score`'s, which holds no labels.jsonl)."""
    path = Path(path)
    if path.is_dir():
        return path / SCORES_FILE if is_score_folder(path) else path / LABELS_FILE
    return path


def is_score_folder(path: str | Path) -> bool:
    path = Path(path)
    if not path.is_dir():
        return path.name == SCORES_FILE
    return (path / SCORES_FILE).exists() and not (path / LABELS_FILE).exists()


def read_labels(path: str | Path) -> Iterator[dict]:
    """Label records from a file or a label directory, read-only and checked (`read_records` with
    rlaif.numbers.label_problem). A score folder (`rlaif score`) reads as the preferences derived from its checked
    scores (rlaif/data/scores.py)."""
    f = labels_file(path)
    if not f.exists():
        raise FileNotFoundError(f"no labels at {f}")
    if is_score_folder(path):
        scale, temperature, tie_margin = score_scale(f)
        yield from derived_labels(read_scores(f), scale, temperature, tie_margin)
        return
    yield from read_records(f, label_problem)


def read_scores(path: str | Path) -> Iterator[dict]:
    """Score records (`rlaif score`) from a score folder or its scores.jsonl, read-only and checked on the scale
    its manifest names (1..10 without one), as read_labels reads."""
    f = Path(path) / SCORES_FILE if Path(path).is_dir() else Path(path)
    if not f.exists():
        raise FileNotFoundError(f"no scores at {f}")
    scale = score_scale(f)[0]
    yield from read_records(f, lambda r: score_record_problem(r, scale))


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


def score_scale(path: str | Path) -> tuple[tuple[int, int], float, float]:
    """The scale, T and tie margin of a score folder (or its scores.jsonl), from its manifest (data/scores.py
    `scale_of`)."""
    f = Path(path) / SCORES_FILE if Path(path).is_dir() else Path(path)
    return scale_of(score_manifest(f), f.parent / "manifest.json")


def score_manifest(path: str | Path) -> Optional[dict]:
    """The manifest beside a score folder's scores.jsonl (its judge config names the scale and T), or None."""
    f = Path(path) / SCORES_FILE if Path(path).is_dir() else Path(path)
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
