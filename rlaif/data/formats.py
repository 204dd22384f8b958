"""Input files `rlaif label` reads, as raw rows: JSON Lines (plain or gzip'd), a JSON list, Parquet and a `datasets`
save_to_disk directory, detected by name and content and streamed one row at a time. A row that cannot even be
parsed still keeps its line, so `--skip-invalid` can report it and go on; the row shapes are rlaif/data/pairs.py's.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

FORMATS = ("jsonl", "json", "parquet", "hf_dataset")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
# files `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk` always write
_HF_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")
_PARQUET_BATCH = 1024

PathLike = Union[str, Path]
# What a JSON document nested past Python's recursion limit is called where it is refused (json raises a
# RecursionError that names no file): rows are a few levels deep, so this is never data.
TOO_DEEP = "JSON nested too deeply to read (about a thousand levels or more)"


class DataError(ValueError):
    """A problem with an input file. `line` is the 1-based line (JSONL) or row (other formats); None when the
    problem is with the file as a whole."""

    def __init__(self, path: PathLike, line: Optional[int], message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


class RowError(Exception):
    """A problem with one row; the reader adds the path and line to make it a DataError."""


# ---------------------------------------------------------------------------------------------- formats


def detect_format(path: PathLike) -> str:
    """The format of `path`, one of FORMATS: by its name first, then by its first bytes.

    ".json"/".json.gz" files are looked into because many of them are really JSON Lines.
    """
    p = Path(path)
    if p.is_dir():
        if any((p / m).exists() for m in _HF_MARKERS):
            return "hf_dataset"
        raise DataError(p, None, "is a directory but not one written by datasets' save_to_disk")
    if not p.exists():
        raise DataError(p, None, "no such file")
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    with open(p, "rb") as f:
        if f.read(4) == _PARQUET_MAGIC:
            return "parquet"
    first = _first_char(p)
    if first == "[":
        return "json"
    if first == "{" or first == "":
        return "jsonl"
    raise DataError(
        p, None, "cannot tell the format from the name or the content; pass format= one of " + ", ".join(FORMATS)
    )


def _first_char(path: Path) -> str:
    """The first non-whitespace character of a (possibly gzip'd) text file, '' if none or unreadable."""
    try:
        with _open_binary(path) as f:
            while True:
                chunk = f.read(4096)
                if not chunk:
                    return ""
                text = chunk.lstrip().lstrip(b"\xef\xbb\xbf").lstrip()  # a UTF-8 BOM is not content
                if text:
                    return chr(text[0])
    except (OSError, EOFError):
        return ""


def _open_binary(path: Path):
    """Open a file for reading bytes, decompressing when it is gzip'd (judged by content, not name)."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def resolve_format(path: PathLike, format: Optional[str]) -> str:
    if format is None:
        return detect_format(path)
    if format not in FORMATS:
        raise DataError(path, None, f"unknown format '{format}' (choose from {', '.join(FORMATS)})")
    if not Path(path).exists():
        raise DataError(path, None, "no such file")
    return format


# ---------------------------------------------------------------------------------------------- raw rows
# Each reader gives (line, row-or-RowError) pairs: a row that could not even be parsed still has a line
# number, so skip_invalid can report it and carry on. Parquet and datasets readers open the file at once, so a
# file that cannot be read fails at the call; JSONL and JSON readers open it only when the first row is asked for.


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    line = 0
    with _open_binary(path) as f:
        try:
            for line, raw in enumerate(f, 1):
                if not raw.strip():
                    continue  # blank lines (a trailing newline, hand-edited files) are not rows
                yield line, _parse_json_line(raw, first=line == 1)
        except (EOFError, OSError) as e:  # a truncated or corrupt gzip stream
            raise DataError(path, line + 1, f"cannot read on past this point: {e}") from e


def _parse_json_line(raw: bytes, first: bool) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return RowError(f"not valid UTF-8 ({e.reason} at byte {e.start})")
    if first:
        text = text.lstrip("\ufeff")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        return RowError(f"malformed JSON: {e.msg} (column {e.colno})")
    except RecursionError:
        return RowError(TOO_DEEP)
    return _encodable(row) if "\\u" in text else row


def _encodable(row: Any) -> Any:
    """The row, or a RowError when a JSON escape in it spelt a lone surrogate ("\\udc80"): text no UTF-8 encodes,
    which no record holding it could be written as."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        return RowError(
            f"holds text no UTF-8 encodes (a lone surrogate, {e.object[e.start]!r}, from a JSON escape such as \\udc80)"
        )
    return row


def _json_list_rows(path: Path) -> Iterator[tuple[int, Any]]:
    # A JSON list cannot be read a row at a time with the standard library; such files are small in practice
    # (large data comes as JSONL or parquet), so it is loaded whole.
    try:
        with _open_binary(path) as f:
            data = json.loads(f.read().decode("utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"malformed JSON: {e.msg} (column {e.colno})") from e
    except RecursionError:
        raise DataError(path, None, TOO_DEEP) from None
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(path, None, f"cannot read: {e}") from e
    if not isinstance(data, list):
        raise DataError(path, 1, f"a JSON file must hold a list of rows, not {type_name(data)}")
    for n, row in enumerate(data, 1):
        yield n, _encodable(row)


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise DataError(path, None, f"not a readable parquet file: {e}") from e
    return _parquet_batches(path, pf)


def _parquet_batches(path: Path, pf) -> Iterator[tuple[int, Any]]:
    n = 0
    batches = pf.iter_batches(batch_size=_PARQUET_BATCH)
    while True:
        try:
            batch = next(batches, None)
        except Exception as e:  # a corrupt page: nothing after it can be read
            raise DataError(path, n + 1, f"cannot read on past this point: {e}") from e
        if batch is None:
            return
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _load_hf_dataset(path: Path):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(path, None, f"not a readable datasets directory: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise DataError(
                path,
                None,
                f"holds the splits {', '.join(ds)}; pass the directory of one of them "
                f"(e.g. {Path(path) / next(iter(ds))})",
            )
        ds = next(iter(ds.values()))
    return ds


def _hf_rows(path: Path) -> Iterator[tuple[int, Any]]:
    # load_from_disk memory-maps the arrow files, so iterating does not load the dataset into memory
    return enumerate(_load_hf_dataset(path), 1)


READERS = {"jsonl": _jsonl_rows, "json": _json_list_rows, "parquet": _parquet_rows, "hf_dataset": _hf_rows}


def count_pairs(path: PathLike, format: Optional[str] = None) -> int:
    """The number of rows in `path` (valid or not), for a progress bar: no row is parsed. A gzip stream that is cut
    short counts the rows before the cut; reading the rows then reports it at its line, after the rows before it."""
    p = Path(path)
    fmt = resolve_format(p, format)
    if fmt == "jsonl":
        n = 0
        with _open_binary(p) as f:
            try:
                for raw in f:
                    n += bool(raw.strip())
            except (EOFError, OSError):
                pass
        return n
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(p).metadata.num_rows
        except Exception as e:
            raise DataError(p, None, f"not a readable parquet file: {e}") from e
    if fmt == "hf_dataset":
        return _load_hf_dataset(p).num_rows
    return sum(1 for _ in _json_list_rows(p))


def read_rows(path: PathLike, format: Optional[str] = None) -> Iterator[tuple[int, Any]]:
    """(line or row number, row) for every row of `path`; a row that could not be parsed is a RowError. The format
    is checked at the call (a missing file fails now); rows are read as they are consumed."""
    p = Path(path)
    return READERS[resolve_format(p, format)](p)


def type_name(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
