"""Writing files so that a reader never sees half of one: the one atomic writer (`atomic_write`: a temp file in the
same folder, fsync, rename, an fsync of the folder), appends that are fsync'd and taken back whole on a full disk,
strict JSON lines, and the cut of the partial last line a SIGKILL can leave. Every file rlaif writes goes through
here; the readers are rlaif/data/labels.py's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


def json_line(obj: Any) -> str:
    """One record as strict JSON: NaN and infinities are refused (most JSON readers cannot read them), so a number
    out of range fails loudly here instead of passing on as a label."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    # U+0085, U+2028 and U+2029 are legal inside JSON strings, but str.splitlines() and some JSONL readers break a
    # line at them; escaped, a record stays on one line for every reader (the value is unchanged)
    return text.replace("\u0085", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


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
        with _naming(path), open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A failed write (disk full) names the file it was writing: the error a user sees says where."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_jsonl(rows: Iterable[dict], path: str | Path) -> int:
    """Write rows as JSON Lines atomically (see `atomic_write`); returns how many. `rows` may be a generator that
    counts as it goes: nothing is visible at `path` until it is exhausted."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json_line(row) + "\n")
            n += 1
    return n


def write_json_atomic(path: str | Path, obj: Any, in_place_if_full: bool = False) -> None:
    """Write one JSON document (a manifest, stats, a report, a calibration map) atomically.

    `in_place_if_full`: on a full disk, where even a temp file cannot be made, rewrite the file in its own
    blocks instead. That is not atomic (a kill mid-write leaves a file its reader refuses, naming it), so it is
    only for a job's last word about how it ended."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        with atomic_write(path) as f:
            f.write(text)
    except OSError as e:
        if not (in_place_if_full and e.errno in (errno.ENOSPC, errno.EDQUOT) and Path(path).exists()):
            raise
        with _naming(Path(path)), open(path, "r+", encoding="utf-8") as f:
            f.write(text)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())


def cut_partial_line(path: Path) -> int:
    """Cut a trailing partial line (a write interrupted by a kill) off a JSONL file; returns the bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    size = path.stat().st_size
    with open(path, "rb+") as f:
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


def append_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Append records and fsync them (and the folder, when this creates the file); returns how many."""
    text = "".join(json_line(r) + "\n" for r in records)
    if not text:
        return 0
    new = not path.exists()
    size = 0 if new else path.stat().st_size
    try:
        with _naming(path), open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        # Take the half-written batch back (disk full): the file stays whole lines, and the space it took is
        # free again for the job to record how it ended.
        with contextlib.suppress(OSError):
            os.truncate(path, size)
        raise
    if new:
        fsync_dir(path.parent)
    return text.count("\n")
