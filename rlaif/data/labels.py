"""Durable, append-only label files: one JSON object per line, fsync'd per batch, resumable after a crash.

A SIGKILL can only cut the last line short; opening the store truncates that partial line, so a restarted job
redoes at most the batch in flight and never sees a duplicate or a corrupt record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator


class LabelStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.recovered_bytes = self._recover()

    def _recover(self) -> int:
        """Cut a trailing partial line (a write interrupted by a kill). Returns the bytes removed."""
        if not self.path.exists():
            return 0
        size = self.path.stat().st_size
        if size == 0:
            return 0
        with open(self.path, "rb+") as f:
            # find the last newline, reading backwards in blocks
            pos, block = size, 1 << 16
            end = None
            while pos > 0 and end is None:
                start = max(0, pos - block)
                f.seek(start)
                chunk = f.read(pos - start)
                i = chunk.rfind(b"\n")
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
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{self.path}:{n}: corrupt label record: {e}") from e

    def keys(self) -> set[str]:
        return {r["key"] for r in self}

    def append(self, records: Iterable[dict]) -> int:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not text:
            return 0
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return text.count("\n")


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON through a temp file and rename, so a reader never sees half a manifest."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl(rows: Iterable[dict], path: str | Path) -> int:
    """Write rows as JSON Lines through a temp file, fsync and a rename (readers see the old file or the whole new
    one, never half); returns how many rows. A failure part-way leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
