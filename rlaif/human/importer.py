"""`rlaif human import`: labels people already gave, as LabelRecords with `source: "human"`.

Three kinds of input: label files (JSONL, JSON or CSV rows with `prompt`, `response_a`, `response_b`, `label` and
optionally `id`, `annotator`, `p_a`); Label Studio's JSON export of a project made from `rlaif annotate
export-tasks` (read by `label_studio.py`); and data that carries a human choice (TRL chosen/rejected, Anthropic HH
transcripts, rows with `human_label`), read by `rlaif.data.pairs.read_pairs` so pair ids and orders match `rlaif label`
run with the same seed. `rlaif loop` with people in Label Studio adds each new export of the project to its
annotation database through `add_label_studio_export`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config.paths import output_file_problem, require
from ..data.formats import TOO_DEEP, RowError, detect_format, read_rows
from ..data.pairs import DataError, read_pairs
from ..files import write_jsonl
from ..records import IMPORTED_ANNOTATOR, HumanLabel, LabelRecord, Pair, Prompt, human_record
from . import label_studio, utc_now, validation_problems
from .db import AnnotationDB
from .presentation import pair_order_label

PathLike = Union[str, Path]


class HumanLabelRow(BaseModel):
    """One row of a label file; other fields (e.g. those of an exported label record) are ignored."""

    model_config = ConfigDict(extra="ignore")
    id: Optional[Union[str, int]] = Field(None, description="Pair id (default: the content hash `rlaif label` uses).")
    prompt: Prompt
    response_a: str = Field(min_length=1)
    response_b: str = Field(min_length=1)
    label: HumanLabel = Field(description="The preferred response in this row's order, or tie.")
    annotator: Optional[str] = Field(None, min_length=1)
    p_a: Optional[float] = Field(None, ge=0.0, le=1.0, description="The annotator's probability that a is better.")
    shown_order: Optional[str] = Field(None, pattern="^(ab|ba)$")
    created_at: Optional[str] = None
    principle_id: Optional[str] = None

    @model_validator(mode="after")
    def _check(self):
        if isinstance(self.prompt, list):
            for i, m in enumerate(self.prompt):
                if not (isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                    raise ValueError(f"prompt[{i}] must be a message with string 'role' and 'content'")
        p = self.p_a
        if p is not None and ((self.label == "a" and p <= 0.5) or (self.label == "b" and p >= 0.5)):
            raise ValueError(f"p_a = {self.p_a} contradicts label '{self.label}'")
        return self


def import_labels(
    path: PathLike, out: PathLike, seed: int = 0, annotator: Optional[str] = None, skip_invalid: bool = False
) -> dict:
    """Write the human labels in `path` to `out` (JSONL, through a temp file). Returns counts per label, and with
    `skip_invalid` the rows left out (`invalid`: their FILE:LINE: reason)."""
    require("--out", output_file_problem(out))
    counts: dict = {"labels": 0, "a": 0, "b": 0, "tie": 0}
    invalid: Optional[list[DataError]] = [] if skip_invalid else None

    def rows():
        for record in iter_human_labels(path, seed=seed, annotator=annotator, invalid=invalid):
            counts["labels"] += 1
            counts[record.label] += 1
            yield record.to_json()

    write_jsonl(rows(), out)
    if invalid is not None:
        counts["skipped_invalid"] = len(invalid)
        counts["invalid"] = [str(e) for e in invalid]
    return counts


def iter_human_labels(
    path: PathLike, seed: int = 0, annotator: Optional[str] = None, invalid: Optional[list[DataError]] = None
) -> Iterator[LabelRecord]:
    """The labels in `path`, one LabelRecord per row. A row that cannot be used is a DataError naming its line;
    when an `invalid` list is given, such rows are put there instead and left out."""
    path = Path(path)
    kind, rows = _label_file_rows(path)
    now = utc_now()  # one import, one time: the rows carry no time of their own
    if kind == "label-studio":
        records = label_studio.export_records(path, rows, now)
    elif kind == "labels":
        records = _from_label_rows(path, rows, annotator, now)
    else:
        records = _from_choice_data(path, seed, annotator, now)
    for _, record in _once_each(path, records, kind, invalid):
        yield record


def add_label_studio_export(db: AnnotationDB, path: PathLike, invalid: list[DataError]) -> dict[str, int]:
    """Add the annotations of a Label Studio JSON export of tasks made from `db`'s pairs to `db`, checked as
    `rlaif human import` checks them: one label per pair and Label Studio user, so reading the same export again
    adds nothing and a changed answer is a revision (`AnnotationDB.record`). Annotations that cannot be used
    (unreadable, or to a pair `db` does not hold as the task shows it) go to `invalid` and are left out; a file
    that is no such export is a DataError. Returns how many labels were created, revised and unchanged."""
    path = Path(path)
    counts = {"created": 0, "revised": 0, "unchanged": 0}
    kind, rows = _label_file_rows(path)
    if kind != "label-studio":
        if path.is_file() and detect_format(path) in ("json", "jsonl") and next(_json_rows(path), None) is None:
            return counts  # a project with no tasks yet, or a file only just created
        raise DataError(path, None, "not a Label Studio JSON export (in Label Studio: Export → JSON)")
    for line, record in _once_each(path, label_studio.export_records(path, rows, utc_now()), kind, invalid):
        stored = db.pair(record.id)
        shown = (record.to_json()["prompt"], record.response_a, record.response_b, record.principle_id)
        if stored is None or (stored.prompt, stored.response_a, stored.response_b, stored.principle_id) != shown:
            why = "is not in" if stored is None else "differs from the pair with that id in"
            invalid.append(DataError(path, line, f"pair '{record.id}' {why} {db.path} (a task of another run?)"))
            continue
        # the answer as shown: reading a label back into the pair's order is its own inverse
        choice = pair_order_label(record.label, record.shown_order, stored.principle_invert)
        counts[db.record(record.id, record.annotator, record.label, choice, record.shown_order).status] += 1
    return counts


def _once_each(path: Path, records, kind: Optional[str], invalid: Optional[list[DataError]]):
    """(line, record) for the records, a second label by one annotator to one pair refused at its line (or, with
    an `invalid` list, put there and left out), as every other unreadable row."""
    seen: dict[tuple[str, str], int] = {}
    if kind == "label-studio":
        fix = "delete the extra annotation in Label Studio, or import each project once"
    else:
        fix = "give each annotator their own name"
    for line, record in records:
        if isinstance(record, DataError) or (record.id, record.annotator) in seen:
            error = (
                record
                if isinstance(record, DataError)
                else DataError(
                    path,
                    line,
                    f"a second label for pair '{record.id}' by '{record.annotator}' (first on line "
                    f"{seen[(record.id, record.annotator)]}); {fix}",
                )
            )
            if invalid is None:
                raise error
            invalid.append(error)
            continue
        seen[(record.id, record.annotator)] = line
        yield line, record


def _from_label_rows(path: Path, rows, annotator: Optional[str], now: str):
    for line, row in rows:
        if not isinstance(row, dict):
            yield line, DataError(path, line, "row must be an object")
            continue
        try:
            r = HumanLabelRow.model_validate(row)
        except ValidationError as e:
            yield line, DataError(path, line, validation_problems(e))
            continue
        prompt = (
            [{"role": m["role"], "content": m["content"]} for m in r.prompt] if isinstance(r.prompt, list) else r.prompt
        )
        # without an id, the pair gets the content hash `rlaif label` gives the same row
        pair_id = str(r.id) if r.id not in (None, "") else Pair(prompt, r.response_a, r.response_b).id
        yield (
            line,
            human_record(
                pair_id=pair_id,
                prompt=prompt,
                response_a=r.response_a,
                response_b=r.response_b,
                label=r.label,
                annotator=r.annotator or annotator or IMPORTED_ANNOTATOR,
                created_at=r.created_at or now,
                p_a=r.p_a,
                shown_order=r.shown_order,
                principle_id=r.principle_id,
                conversational=isinstance(prompt, list),
            ),
        )


def _from_choice_data(path: Path, seed: int, annotator: Optional[str], now: str):
    for pair in read_pairs(path, seed=seed, skip_invalid=True):
        if pair.invalid or pair.human_label is None:
            yield (
                pair.source_line,
                DataError(
                    path,
                    pair.source_line,
                    pair.invalid or "row carries no human choice (a `label` field, chosen/rejected, or human_label)",
                ),
            )
            continue
        yield (
            pair.source_line,
            human_record(
                pair_id=pair.id,
                prompt=pair.prompt,
                response_a=pair.response_a,
                response_b=pair.response_b,
                label=pair.human_label,
                annotator=annotator or IMPORTED_ANNOTATOR,
                created_at=now,
                principle_id=pair.principle,
                conversational=pair.conversational,
            ),
        )


# ---------------------------------------------------------------------------------------------- label files


def _label_file_rows(path: Path) -> tuple[Optional[str], Optional[Iterator[tuple[int, Any]]]]:
    """The kind of file and its (line, row)s: "labels" for CSV, or JSONL/JSON whose first row has a `label`
    field; "label-studio" for a Label Studio JSON export; (None, None) for anything else, which is read as data
    carrying a human choice."""
    if not path.is_file():
        return None, None  # a datasets directory or a missing file: read_pairs says what is wrong
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        return "labels", _csv_rows(path, "\t" if name.endswith(".tsv") else ",")
    if detect_format(path) not in ("json", "jsonl"):
        return None, None  # parquet
    first = next(_json_rows(path), None)
    if first is not None and label_studio.is_export(first[1]):
        return "label-studio", _json_rows(path)
    problem = label_studio.near_miss(first[1]) if first is not None else None
    if problem:
        raise DataError(path, None, problem)
    if first is None or not isinstance(first[1], dict) or "label" not in first[1]:
        return None, None
    return "labels", _json_rows(path)


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """The rows of a JSONL or JSON file, read by `rlaif.data`'s readers. A line that is not JSON stops the import
    (unlike a row that is JSON but not a label, it cannot be named by its fields)."""
    for line, row in read_rows(path):
        if isinstance(row, RowError):
            raise DataError(path, line, str(row))
        yield line, row


def _text(path: Path) -> str:
    """A CSV file's text (gzip'd or not; a UTF-8 byte order mark is not content)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, None, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _csv_records(path: Path, reader: csv.DictReader) -> Iterator[dict]:
    """The reader's rows; what the csv module cannot read (a field past its size limit) is FILE:LINE."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(path, reader.reader.line_num, f"cannot read this CSV row: {e}") from None


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=delimiter)
    missing = {"prompt", "response_a", "response_b", "label"} - set(reader.fieldnames or [])
    if missing:
        raise DataError(
            path,
            1,
            f"CSV header lacks {', '.join(sorted(missing))} (needs prompt, response_a, "
            f"response_b, label; optional id, annotator, p_a)",
        )
    for row in _csv_records(path, reader):
        # empty cells are absent values; a prompt cell holding a JSON list is a chat conversation
        values = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        prompt = values.get("prompt", "")
        if prompt.startswith("[") and prompt.rstrip().endswith("]"):
            try:
                values["prompt"] = json.loads(prompt)
            except json.JSONDecodeError:
                pass  # text that merely looks like a list
            except RecursionError:
                raise DataError(path, reader.line_num, f"prompt: {TOO_DEEP}") from None
        yield reader.line_num, values
