"""The store a job grows in its folder: one record per id. Records of new ids are appended (fsync'd per batch); a new
attempt for an id already stored waits in a side file until `fold()` swaps it in with one atomic rewrite, so no
reader ever sees two records for one id. `open()` cuts the partial line a SIGKILL can leave, so a restarted job
redoes at most the batch in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Optional

from ..data.labels import numbered
from ..files import append_jsonl, atomic_write, cut_partial_line, fsync_dir, json_line

SUPERSEDING_FILE = "superseding.jsonl"  # new attempts for ids the store holds, until the pass folds them in
SUPERSEDED_FILE = "superseded.jsonl"  # the records they replaced, kept for audit


@dataclass
class Stored:
    """What the store holds for one pair id: enough to decide what a new attempt at that pair does."""

    line: int  # 1-based line in labels.jsonl
    key: str
    status: str
    error: Optional[str] = None


class LabelStore:
    """labels.jsonl of a labelling job, one record per pair id. Constructing one touches nothing; `open()`
    prepares the files for writing. The job that writes it holds the folder's lock (rlaif/jobs/folder.py)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.superseding = self.path.with_name(SUPERSEDING_FILE)
        self.superseded = self.path.with_name(SUPERSEDED_FILE)

    def open(self) -> int:
        """Create the folder and cut the partial last lines a kill can leave; returns the bytes removed. Call it
        once before writing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sum(cut_partial_line(f) for f in (self.path, self.superseding, self.superseded))

    def __iter__(self) -> Iterator[dict]:
        """The stored records as written (a score store's too, not the preferences derived from them)."""
        return (r for _, r in numbered(self.path)) if self.path.exists() else iter(())

    def index(self, check: Optional[Callable[[dict, str], None]] = None) -> dict[str, Stored]:
        """The records by pair id, after folding in what a killed pass left waiting (and ids an older rlaif wrote
        twice). `check(record, "FILE:LINE")` sees every stored record first and may refuse it by raising."""
        ids, due = self._scan(check)
        if due:
            self.fold()
            ids, _ = self._scan(None)
        return ids

    def append(self, records: Iterable[dict]) -> int:
        """Records of ids the store does not hold yet."""
        return append_jsonl(self.path, records)

    def supersede(self, records: Iterable[dict]) -> int:
        """New records for ids the store holds: kept aside until `fold()`, so readers still see one per id."""
        return append_jsonl(self.superseding, records)

    def fold(self, retire: Collection[str] = ()) -> int:
        """Swap the waiting records in: each replaces its id's record, and an id stored twice (by an older rlaif)
        keeps its last ok record, else its last; the records of the ids in `retire` (ones no input row maps to any
        more) leave. Replaced records go to superseded.jsonl first, then labels.jsonl is rewritten atomically,
        then the waiting file is removed: a kill at any step leaves the old or the new store, and the next open
        folds again without repeating a line of superseded.jsonl. Returns how many records were replaced."""
        waiting: dict[str, dict] = {}
        replaced: list[dict] = []
        if self.superseding.exists():
            for _, r in numbered(self.superseding):
                if r["id"] in waiting:
                    replaced.append(waiting[r["id"]])
                waiting[r["id"]] = r
        keep = self._keep_lines() if self.path.exists() else {}

        def kept() -> Iterator[dict]:
            written = set()
            for n, r in numbered(self.path) if self.path.exists() else ():
                if r["id"] in retire and r["id"] not in waiting:
                    replaced.append(r)
                    continue
                new = waiting.get(r["id"])
                if new is None and keep[r["id"]] == n:
                    yield r
                    continue
                if new is not None and r["id"] not in written:
                    written.add(r["id"])
                    yield new
                if r != new:  # the new record itself, when a kill came after the rename
                    replaced.append(r)
            yield from (r for i, r in waiting.items() if i not in written)

        with atomic_write(self.path) as f:
            for r in kept():
                f.write(json_line(r) + "\n")
            self._archive(replaced)  # before the rename: a kill then loses nothing
        self.superseding.unlink(missing_ok=True)
        fsync_dir(self.path.parent)
        return len(replaced)

    def _scan(self, check: Optional[Callable[[dict, str], None]]) -> tuple[dict[str, Stored], bool]:
        ids: dict[str, Stored] = {}
        due = False
        for f in (self.path, self.superseding):
            for n, r in numbered(f) if f.exists() else ():
                where = f"{f}:{n}"
                if not (isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("id", "key", "status"))):
                    raise ValueError(f"{where}: not a label record (it needs string id, key and status)")
                if check is not None:
                    check(r, where)
                if f == self.superseding or r["id"] in ids:
                    due = True
                ids[r["id"]] = Stored(n, r["key"], r["status"], r.get("error"))
        return ids, due

    def _keep_lines(self) -> dict[str, int]:
        """For each id in labels.jsonl, the line of the record to keep: its last ok record, else its last."""
        keep: dict[str, tuple[int, bool]] = {}
        for n, r in numbered(self.path):
            ok = r["status"] == "ok"
            if r["id"] not in keep or ok or not keep[r["id"]][1]:
                keep[r["id"]] = (n, ok)
        return {i: n for i, (n, _) in keep.items()}

    def _archive(self, records: list[dict]) -> None:
        if not records:
            return
        have = set()
        if self.superseded.exists():
            have = {json_line(r) for _, r in numbered(self.superseded)}
        append_jsonl(self.superseded, (r for r in records if json_line(r) not in have))
