"""The annotation app's store (over 400 lines because it is one idea: one SQLite file and its schema).

The pairs as annotators see them, their labels and every revision, in one SQLite
file that `rlaif annotate export` turns into label records; for `rlaif loop` with people in it, also which
iteration of which run trained on each answer, so that none is lost or used twice.

Each label is committed before the server acknowledges it, so a killed server loses no acknowledged label. A file
that is not an annotation database, or is damaged, is refused and left exactly as it was.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional, Union

from ..config.paths import output_file_problem, require
from ..files import write_jsonl
from ..records import Prompt, human_record, sha256_json
from . import utc_now

SCHEMA_VERSION = "1"
APPLICATION_ID = 0x726C6166  # "rlaf" in the file header: tells our databases from other SQLite files
_SQLITE_MAGIC = b"SQLite format 3\x00"

# An answer that a run's iteration trained on: one row per (run, pair, annotator), so each answer is used once per
# run; `label` as it was taken (a revision after that goes to `revisions`, and is not used again). Added after
# schema version 1 was released, so a database made before gets it when opened for writing.
_USES = """CREATE TABLE IF NOT EXISTS uses (
         run TEXT NOT NULL, pair_id TEXT NOT NULL, annotator TEXT NOT NULL, iteration INTEGER NOT NULL,
         label TEXT NOT NULL, used_at TEXT NOT NULL, PRIMARY KEY (run, pair_id, annotator))"""

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # seq is the load order: pairs are handed out in file order, so a queue sorted by priority stays sorted
    """CREATE TABLE pairs (
         seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, prompt TEXT NOT NULL, response_a TEXT NOT NULL,
         response_b TEXT NOT NULL, conversational INTEGER NOT NULL, principle_id TEXT, principle_text TEXT,
         principle_invert INTEGER NOT NULL, content_sha256 TEXT NOT NULL,
         n_labels INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX pairs_open ON pairs (n_labels, seq)",
    # label: in the pair's own order (what export writes); choice: as answered, in the order shown
    """CREATE TABLE labels (
         pair_id TEXT NOT NULL REFERENCES pairs (id), annotator TEXT NOT NULL,
         label TEXT NOT NULL CHECK (label IN ('a', 'b', 'tie', 'skip')),
         choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'skip')),
         shown_order TEXT NOT NULL CHECK (shown_order IN ('ab', 'ba')),
         created_at TEXT NOT NULL, updated_at TEXT NOT NULL, revision INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (pair_id, annotator))""",
    "CREATE INDEX labels_by_annotator ON labels (annotator, label)",
    """CREATE TABLE revisions (
         id INTEGER PRIMARY KEY AUTOINCREMENT, pair_id TEXT NOT NULL, annotator TEXT NOT NULL,
         old_label TEXT NOT NULL, new_label TEXT NOT NULL, old_choice TEXT NOT NULL, new_choice TEXT NOT NULL,
         shown_order TEXT NOT NULL, old_at TEXT NOT NULL, revised_at TEXT NOT NULL)""",
    _USES,
)


class AnnotationDBError(RuntimeError):
    """The database file cannot be used as it is (not ours, damaged, locked, or made with other settings)."""


class UnknownPair(KeyError):
    """A label for a pair id the database does not hold."""


@dataclass(frozen=True)
class ServedPair:
    """A pair as the app serves it: the pair's own order, and the principle annotators judge it by."""

    id: str
    prompt: Prompt
    response_a: str
    response_b: str
    conversational: bool = False
    principle_id: Optional[str] = None
    principle_text: Optional[str] = None
    principle_invert: bool = False  # the principle asks for the worse response: the pick is the rejected one

    def content_sha256(self) -> str:
        return sha256_json(
            [
                self.prompt,
                self.response_a,
                self.response_b,
                self.principle_id,
                self.principle_text,
                self.principle_invert,
            ]
        )


@dataclass(frozen=True)
class Recorded:
    status: Literal["created", "unchanged", "revised"]
    label: str
    revision: int


def error_kind(e: sqlite3.Error) -> Literal["locked", "damaged", "other"]:
    """Sort an SQLite error into what a user can act on: wait for a lock, or repair a file."""
    text = str(e).lower()
    if "locked" in text or "busy" in text:
        return "locked"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return "damaged"
    return "other"


class AnnotationDB:
    """One connection shared by the server's threads behind a lock: SQLite takes one writer at a time anyway,
    and each statement here is short."""

    def __init__(self, path: Union[str, Path], create: bool = True, busy_timeout_s: float = 2.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn = _open(self.path, create, busy_timeout_s)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails half way on a lock
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error is the one to report
                raise

    # -- loading ------------------------------------------------------------------------------------------------
    def load_pairs(self, pairs, settings: dict[str, Optional[str]]) -> tuple[int, int]:
        """Add the pairs not yet stored; returns (pairs stored, pairs added now). Idempotent on restart.

        `settings` (seed, constitution hash) decide which principle and order each pair gets, so a database
        only ever serves one set of them; a pair whose content changed under the same id is refused.
        """
        try:
            return self._load_pairs(pairs, settings)
        except sqlite3.Error as e:
            raise _file_error(self.path, e, self.busy_timeout_s) from e

    def _load_pairs(self, pairs, settings: dict[str, Optional[str]]) -> tuple[int, int]:
        with self._transaction() as c:
            stored = dict(c.execute("SELECT key, value FROM meta"))
            for key, value in settings.items():
                value = "" if value is None else str(value)
                if key in stored and stored[key] != value:
                    raise AnnotationDBError(
                        f"{self.path} was created with {key} = {stored[key] or 'none'}, this run "
                        f"has {value or 'none'}: use the same settings or a new --db file"
                    )
                c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            known = dict(c.execute("SELECT id, content_sha256 FROM pairs"))
            added = 0
            for p in pairs:
                sha = p.content_sha256()
                if p.id in known:
                    if known[p.id] != sha:
                        raise AnnotationDBError(
                            f"pair '{p.id}' differs from the pair with that id in {self.path}; "
                            f"labels there belong to the stored one: use a new --db file"
                        )
                    continue
                c.execute(
                    "INSERT INTO pairs (id, prompt, response_a, response_b, conversational, principle_id, "
                    "principle_text, principle_invert, content_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        p.id,
                        json.dumps(p.prompt, ensure_ascii=False),
                        p.response_a,
                        p.response_b,
                        int(p.conversational),
                        p.principle_id,
                        p.principle_text,
                        int(p.principle_invert),
                        sha,
                    ),
                )
                known[p.id] = sha
                added += 1
            return len(known), added

    # -- reading ------------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._conn.execute("SELECT key, value FROM meta"))

    def pair(self, pair_id: str) -> Optional[ServedPair]:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, prompt, response_a, response_b, conversational, principle_id, "
                "principle_text, principle_invert FROM pairs WHERE id = ?",
                (pair_id,),
            ).fetchone()
        if row is None:
            return None
        return ServedPair(row[0], json.loads(row[1]), row[2], row[3], bool(row[4]), row[5], row[6], bool(row[7]))

    def open_pairs(self, annotator: str, overlap: int, limit: int) -> list[tuple[str, int]]:
        """(pair id, labels so far) of the first `limit` pairs that still need labels and that `annotator` has not
        answered (a skip counts as answered), in load order."""
        with self._lock:
            return self._conn.execute(
                "SELECT p.id, p.n_labels FROM pairs p WHERE p.n_labels < ? AND NOT EXISTS (SELECT 1 FROM labels l "
                "WHERE l.pair_id = p.id AND l.annotator = ?) ORDER BY p.seq LIMIT ?",
                (overlap, annotator, limit),
            ).fetchall()

    def progress(self, annotator: str, overlap: int) -> dict:
        with self._lock:
            c = self._conn
            done, skipped = c.execute(
                "SELECT COALESCE(SUM(label != 'skip'), 0), COALESCE(SUM(label = 'skip'), 0) "
                "FROM labels WHERE annotator = ?",
                (annotator,),
            ).fetchone()
            remaining = c.execute(
                "SELECT COUNT(*) FROM pairs p WHERE p.n_labels < ? AND NOT EXISTS (SELECT 1 "
                "FROM labels l WHERE l.pair_id = p.id AND l.annotator = ?)",
                (overlap, annotator),
            ).fetchone()[0]
            pairs, complete, labels = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(n_labels >= ?), 0), COALESCE(SUM(n_labels), 0) FROM pairs", (overlap,)
            ).fetchone()
        return {
            "annotator": annotator,
            "done": done,
            "skipped": skipped,
            "remaining": remaining,
            "total": done + skipped + remaining,
            "overall": {"pairs": pairs, "overlap": overlap, "complete": complete, "labels": labels},
        }

    # -- writing ------------------------------------------------------------------------------------------------
    def record(self, pair_id: str, annotator: str, label: str, choice: str, shown_order: str) -> Recorded:
        """Store an annotator's answer, committed before this returns. The same answer again changes nothing;
        a different one replaces it and the old one goes to `revisions`."""
        now = utc_now()
        with self._transaction() as c:
            if c.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
                raise UnknownPair(pair_id)
            old = c.execute(
                "SELECT label, choice, updated_at, revision FROM labels WHERE pair_id = ? AND annotator = ?",
                (pair_id, annotator),
            ).fetchone()
            if old is None:
                c.execute(
                    "INSERT INTO labels (pair_id, annotator, label, choice, shown_order, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (pair_id, annotator, label, choice, shown_order, now, now),
                )
                result = Recorded("created", label, 0)
                counted = int(label != "skip")
            elif old[0] == label:
                return Recorded("unchanged", label, old[3])
            else:
                c.execute(
                    "INSERT INTO revisions (pair_id, annotator, old_label, new_label, old_choice, new_choice, "
                    "shown_order, old_at, revised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (pair_id, annotator, old[0], label, old[1], choice, shown_order, old[2], now),
                )
                c.execute(
                    "UPDATE labels SET label = ?, choice = ?, updated_at = ?, revision = revision + 1 "
                    "WHERE pair_id = ? AND annotator = ?",
                    (label, choice, now, pair_id, annotator),
                )
                result = Recorded("revised", label, old[3] + 1)
                counted = int(label != "skip") - int(old[0] != "skip")
            if counted:
                c.execute("UPDATE pairs SET n_labels = n_labels + ? WHERE id = ?", (counted, pair_id))
            return result

    # -- a loop's use of the answers -----------------------------------------------------------------------------
    def labelled(self, pair_ids: list[str]) -> int:
        """How many of `pair_ids` have a label (a skip is none)."""
        with self._lock, self._wanted(pair_ids) as c:
            sql = "SELECT COUNT(DISTINCT l.pair_id) FROM labels l JOIN temp.wanted w ON w.id = l.pair_id"
            return c.execute(sql + " WHERE l.label != 'skip'").fetchone()[0]

    def claim(self, run: str, iteration: int, pair_ids: list[str]) -> int:
        """Mark every answer to `pair_ids` (skips aside) that `run` has not used yet as used by `iteration`, in one
        transaction; returns how many were marked now."""
        try:
            with self._transaction() as c, self._wanted(pair_ids, c):
                return c.execute(
                    "INSERT INTO uses (run, pair_id, annotator, iteration, label, used_at) SELECT ?, l.pair_id, "
                    "l.annotator, ?, l.label, ? FROM labels l JOIN temp.wanted w ON w.id = l.pair_id WHERE "
                    "l.label != 'skip' AND NOT EXISTS (SELECT 1 FROM uses u WHERE u.run = ? AND u.pair_id = "
                    "l.pair_id AND u.annotator = l.annotator)",
                    (run, iteration, utc_now(), run),
                ).rowcount
        except sqlite3.Error as e:  # rolled back: nothing marked, every answer still there to take
            raise _file_error(self.path, e, self.busy_timeout_s) from e

    @contextmanager
    def _wanted(self, pair_ids: list[str], conn: Optional[sqlite3.Connection] = None):
        """The pair ids as a temporary table `wanted` (any number of them, where `IN (?, ...)` has a limit)."""
        c = conn or self._conn
        c.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (id TEXT PRIMARY KEY)")
        c.executemany("INSERT OR IGNORE INTO temp.wanted VALUES (?)", ((i,) for i in pair_ids))
        try:
            yield c
        finally:
            c.execute("DELETE FROM temp.wanted")

    # -- export -------------------------------------------------------------------------------------------------
    def label_records(self, used_by: Optional[tuple[str, int]] = None) -> Iterator[dict]:
        """Every label (skips left out) as a LabelRecord JSON object, in load order then by annotator; with
        `used_by` (run, iteration), the answers that iteration took, as it took them (`claim`)."""
        constitution_sha = self.meta().get("constitution_sha256") or None
        columns = (
            "l.pair_id, l.annotator, {label}, l.shown_order, l.updated_at, p.prompt, p.response_a, p.response_b, "
            "p.conversational, p.principle_id"
        )
        if used_by is None:
            sql = f"SELECT {columns.format(label='l.label')} FROM labels l JOIN pairs p ON p.id = l.pair_id "
            sql += "WHERE l.label != 'skip' ORDER BY p.seq, l.annotator"
        else:
            sql = (
                f"SELECT {columns.format(label='u.label')} FROM uses u JOIN labels l ON l.pair_id = u.pair_id AND "
                "l.annotator = u.annotator JOIN pairs p ON p.id = u.pair_id WHERE u.run = ? AND u.iteration = ? "
                "ORDER BY p.seq, l.annotator"
            )
        with self._lock:
            rows = self._conn.execute(sql, used_by or ()).fetchall()
        for pid, annotator, label, order, at, prompt, a, b, conversational, principle_id in rows:
            # created_at is when the answer held now was given: after a revision, the revision's time
            yield human_record(
                pair_id=pid,
                prompt=json.loads(prompt),
                response_a=a,
                response_b=b,
                label=label,
                annotator=annotator,
                created_at=at,
                shown_order=order,
                principle_id=principle_id,
                constitution_sha256=constitution_sha if principle_id else None,
                conversational=bool(conversational),
            ).to_json()


def _open(path: Path, create: bool, busy_timeout_s: float) -> sqlite3.Connection:
    if path.is_dir():
        raise AnnotationDBError(f"{path} is a directory, not a database file")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise AnnotationDBError(
                    f"{path} is not an SQLite database; it was left untouched (pass a new --db file)"
                )
    elif not create:
        raise AnnotationDBError(f"{path}: no such annotation database")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are begun and committed explicitly, nothing is deferred by the driver
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        _prepare(conn, path, create)
    except sqlite3.Error as e:
        conn.close()
        raise _file_error(path, e, busy_timeout_s) from e
    except BaseException:
        conn.close()
        raise
    return conn


def _file_error(path: Path, e: sqlite3.Error, busy_timeout_s: float) -> AnnotationDBError:
    kind = error_kind(e)
    if kind == "locked":
        return AnnotationDBError(
            f"{path} is locked by another process (waited {busy_timeout_s:g} s); nothing was changed"
        )
    if kind == "damaged":
        return AnnotationDBError(
            f"{path} is damaged ({e}); it was left untouched: copy it and try `sqlite3 {path} .recover`"
        )
    return AnnotationDBError(f"{path}: {e}")


def _prepare(conn: sqlite3.Connection, path: Path, create: bool) -> None:
    # Checked before anything is written: a damaged or foreign file must stay byte for byte as it was.
    check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    if check != ["ok"]:
        raise AnnotationDBError(
            f"{path} is damaged ({'; '.join(check[:3])}); it was left untouched: copy it and "
            f"try `sqlite3 {path} .recover`"
        )
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    ours = conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    if tables and not ours:
        raise AnnotationDBError(
            f"{path} is an SQLite database of something else (tables: {', '.join(tables[:5])}); it was left untouched"
        )
    if not tables and not create:
        raise AnnotationDBError(f"{path} holds no annotations")
    # WAL: readers (export, progress) never block the writer. synchronous=FULL fsyncs the WAL at every commit.
    # WAL with NORMAL would already survive a killed process (committed frames are in the OS cache once
    # write() returns), but not a power cut or kernel crash; a human label costs a person's time, and one fsync
    # per label at human pace is cheap, so an acknowledged label is made durable on disk.
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise AnnotationDBError(f"{path}: cannot use write-ahead logging on this file system")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if not tables:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created_at', ?)", (SCHEMA_VERSION, utc_now()))
        conn.execute("COMMIT")
        return
    version = dict(conn.execute("SELECT key, value FROM meta")).get("schema_version")
    if version != SCHEMA_VERSION:
        raise AnnotationDBError(f"{path} has schema version {version}; this rlaif reads version {SCHEMA_VERSION}")
    if create:  # opened for writing: a database from before the loop used answers gets their table
        conn.execute(_USES)


def export_labels(db_path: Union[str, Path], out: Union[str, Path]) -> dict:
    """Write the database's labels as LabelRecord JSON lines (through a temp file, so `out` is never half written).
    Safe while the server runs: WAL lets this read beside the writer."""
    require("--out", output_file_problem(out))
    db = AnnotationDB(db_path, create=False)
    counts = {"labels": 0, "pairs": 0, "annotators": 0}
    pairs, annotators = set(), set()

    def rows():
        for record in db.label_records():
            counts["labels"] += 1
            pairs.add(record["id"])
            annotators.add(record["annotator"])
            yield record

    try:
        write_jsonl(rows(), out)
    finally:
        db.close()
    counts.update(pairs=len(pairs), annotators=len(annotators))
    return counts
