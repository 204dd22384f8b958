"""Label files on disk: the one reader, the one atomic writer, and the append-only store a labelling job grows.

`read_labels` never changes a file (a job may still be appending to it). `atomic_write` is the only way a whole
file is (re)written: through a temp file in the same folder, fsync, rename and an fsync of the folder, so a reader
sees the old file or the whole new one. `LabelStore` is the append side: one JSON object per line, fsync'd per
batch; `open()` cuts the partial line a SIGKILL can leave, so a restarted job redoes at most the batch in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

LABELS_FILE = "labels.jsonl"


def json_line(obj: Any) -> str:
    """One record as strict JSON: NaN and infinities are refused (most JSON readers cannot read them), so a number
    out of range fails loudly here instead of passing on as a label."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def labels_file(path: str | Path) -> Path:
    """A labels JSONL file, or the labels.jsonl inside a label directory."""
    path = Path(path)
    return path / LABELS_FILE if path.is_dir() else path


def read_labels(path: str | Path) -> Iterator[dict]:
    """Label records from a file or a label directory, read-only. A last line cut short (no newline and not JSON:
    a write in flight) is left out; any other unreadable line is an error naming FILE:LINE."""
    f = labels_file(path)
    if not f.exists():
        raise FileNotFoundError(f"no labels at {f}")
    with open(f, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                if line.endswith("\n"):
                    raise ValueError(f"{f}:{n}: corrupt label record: {e}") from e


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a new file in `path` durable (the folder entry itself is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a folder; the rename is then as durable as they make it
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside `path` for writing; on a clean exit it replaces `path` (fsync, rename, fsync of the
    folder). On an error the temp file is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_jsonl(rows: Iterable[dict], path: str | Path) -> int:
    """Write rows as JSON Lines atomically (see `atomic_write`); returns how many. `rows` may be a generator that
    counts as it goes: nothing is visible at `path` until it is exhausted."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json_line(row) + "\n")
            n += 1
    return n


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write one JSON document (a manifest, stats, a report, a calibration map) atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")


class LabelStore:
    """The append-only labels.jsonl of a labelling job. Constructing one touches nothing; `open()` prepares the
    file for appending."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def open(self) -> int:
        """Create the folder and cut a trailing partial line (a write interrupted by a kill); returns the bytes
        removed. Call it once before appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0
        size = self.path.stat().st_size
        with open(self.path, "rb+") as f:
            pos, end, block = size, None, 1 << 16
            while pos > 0 and end is None:  # the last newline, reading backwards in blocks
                start = max(0, pos - block)
                f.seek(start)
                i = f.read(pos - start).rfind(b"\n")
                if i >= 0:
                    end = start + i + 1
                pos = start
            end = end or 0
            if end < size:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        return size - end

    def __iter__(self) -> Iterator[dict]:
        return read_labels(self.path) if self.path.exists() else iter(())

    def keys(self) -> set[str]:
        return {r["key"] for r in self}

    def append(self, records: Iterable[dict]) -> int:
        text = "".join(json_line(r) + "\n" for r in records)
        if not text:
            return 0
        new = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(self.path.parent)
        return text.count("\n")
