"""Label files on disk: the one reader, the one atomic writer, and the store a labelling job grows.

`read_labels` never changes a file (a job may still be appending to it), and trusts nothing in it: every record is
checked by the numbers guard (rlaif/numbers.py) and one id may hold one record, so a folder someone edited is an
error naming FILE:LINE, never a wrong number passed on. `atomic_write` is the only way a whole
file is (re)written: through a temp file in the same folder, fsync, rename and an fsync of the folder, so a reader
sees the old file or the whole new one. `LabelStore` holds one record per pair id: records of new ids are appended
(fsync'd per batch); a new attempt for an id already stored waits in a side file until `fold()` swaps it in with
one atomic rewrite, so no reader ever sees two records for one id. `open()` cuts the partial line a SIGKILL can
leave, so a restarted job redoes at most the batch in flight.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Collection, Iterable, Iterator, Optional

from ..numbers import label_problem, score_record_problem
from .formats import TOO_DEEP
from .scores import SCORES_FILE, derived_labels, scale_of

LABELS_FILE = "labels.jsonl"
SUPERSEDING_FILE = "superseding.jsonl"  # new attempts for ids labels.jsonl holds, until the pass folds them in
SUPERSEDED_FILE = "superseded.jsonl"  # the records they replaced, kept for audit


def json_line(obj: Any) -> str:
    """One record as strict JSON: NaN and infinities are refused (most JSON readers cannot read them), so a number
    out of range fails loudly here instead of passing on as a label."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    # U+0085, U+2028 and U+2029 are legal inside JSON strings, but str.splitlines() and some JSONL readers break a
    # line at them; escaped, a record stays on one line for every reader (the value is unchanged)
    return text.replace("\u0085", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


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
    for n, record in _numbered(f):
        if (why := problem(record)) is not None:
            raise ValueError(f"{f}:{n}: {why}")
        identity = (record["id"], record.get("annotator")) if record.get("source") == "human" else record["id"]
        if identity in first:
            raise ValueError(f"{f}:{n}: a second record for id {record['id']!r} (the first is at line "
                             f"{first[identity]}); a folder holds one record per id: remove one of the two lines")
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


def _numbered(f: Path) -> Iterator[tuple[int, Any]]:
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
                    raise ValueError(f"{f}:{n}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                                     f"is this a label file?") from None
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


@dataclass
class Stored:
    """What the store holds for one pair id: enough to decide what a new attempt at that pair does."""

    line: int  # 1-based line in labels.jsonl
    key: str
    status: str
    error: Optional[str] = None


class LabelStore:
    """labels.jsonl of a labelling job, one record per pair id. Constructing one touches nothing; `open()`
    prepares the files for writing. The job that writes it holds the folder's lock (labeling/folder.py)."""

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
        return (r for _, r in _numbered(self.path)) if self.path.exists() else iter(())

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
            for _, r in _numbered(self.superseding):
                if r["id"] in waiting:
                    replaced.append(waiting[r["id"]])
                waiting[r["id"]] = r
        keep = self._keep_lines() if self.path.exists() else {}

        def kept() -> Iterator[dict]:
            written = set()
            for n, r in _numbered(self.path) if self.path.exists() else ():
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
            for n, r in _numbered(f) if f.exists() else ():
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
        for n, r in _numbered(self.path):
            ok = r["status"] == "ok"
            if r["id"] not in keep or ok or not keep[r["id"]][1]:
                keep[r["id"]] = (n, ok)
        return {i: n for i, (n, _) in keep.items()}

    def _archive(self, records: list[dict]) -> None:
        if not records:
            return
        have = set()
        if self.superseded.exists():
            have = {json_line(r) for _, r in _numbered(self.superseded)}
        append_jsonl(self.superseded, (r for r in records if json_line(r) not in have))
