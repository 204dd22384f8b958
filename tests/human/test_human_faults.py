"""Tier 4 faults for the annotation app: a server SIGKILLed mid-load and restarted, a database locked by another
process, and files that are damaged or not ours. Each gets a clear error, and no acknowledged label is lost."""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import threading
import time

import pytest

# test_human_server skips the module when the human extra is missing, before rlaif.human is imported
from .test_human_server import AnnotateServer, free_port, httpx, write_pairs  # isort: skip
from rlaif.data.pairs import read_pairs  # noqa: E402
from rlaif.human.db import AnnotationDB, AnnotationDBError, ServedPair  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

ANNOTATORS = {f"ann{i}": f"token-of-annotator-{i}" for i in range(6)}


class Worker(threading.Thread):
    """One annotator labelling as fast as the server answers; keeps every acknowledged label."""

    def __init__(self, url: str, name: str, own: dict, acked: list, lock: threading.Lock):
        super().__init__(daemon=True)
        self.url, self.name, self.own, self.acked, self.lock = url, name, own, acked, lock
        self.rng = random.Random(name)
        self.finished = False  # the server said nothing is left (rather than the connection dying)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {ANNOTATORS[self.name]}"}
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=10) as c:
                while True:
                    r = c.get("/api/pairs/next")
                    if r.status_code == 204:
                        self.finished = True
                        return
                    shown = r.json()
                    choice = self.rng.choice(["a", "b", "tie"])
                    ack = c.post("/api/labels", json={"pair_id": shown["pair_id"], "choice": choice})
                    if ack.status_code in (200, 201):
                        pair = self.own[shown["pair_id"]]
                        flipped = shown["response_a"] != pair.response_a
                        label = {"a": "b", "b": "a"}.get(choice, choice) if flipped else choice
                        with self.lock:
                            self.acked.append((shown["pair_id"], self.name, label))
        except httpx.TransportError:
            return  # the server was killed under us


def test_sigkill_mid_load_loses_no_acknowledged_label(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, 240)
    own = {p.id: p for p in read_pairs(pairs)}
    server = AnnotateServer(tmp_path, pairs, tokens=ANNOTATORS)
    acked: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    kills = 0
    for target in (40, 110, None):  # kill twice mid-load, then let the last run finish the job
        server.start()
        workers = [Worker(server.url, name, own, acked, lock) for name in ANNOTATORS]
        for w in workers:
            w.start()
        if target is not None:
            deadline = time.monotonic() + 60
            while len(acked) < target and time.monotonic() < deadline:
                time.sleep(0.002)
            server.stop(signal.SIGKILL)
            assert server.proc.returncode == -signal.SIGKILL
            kills += 1
        for w in workers:
            w.join(timeout=60)
        if target is None:
            assert all(w.finished for w in workers)
            records = server.export()  # while the server still runs: WAL lets export read beside it
            server.stop()
    assert kills == 2 and len(acked) >= 110
    by_key: dict[tuple[str, str], list[str]] = {}
    for r in records:
        by_key.setdefault((r["id"], r["annotator"]), []).append(r["label"])
    for pair_id, name, label in acked:
        assert by_key.get((pair_id, name)) == [label], (pair_id, name)  # there, once, as acknowledged
    # overlap 1: every pair ended with exactly one label; none was handed out again once labelled
    assert sorted(pid for pid, _ in by_key) == sorted(own)


def test_locked_database_gives_503_and_keeps_committed_labels(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, 4)
    with AnnotateServer(tmp_path, pairs) as server, server.client("alice") as alice:
        first = alice.post("/api/labels", json={"pair_id": "p0", "choice": "a"})
        assert first.status_code == 201
        other = sqlite3.connect(server.db, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            assert alice.get("/api/pairs/next").status_code == 200  # reading still works beside it
            r = alice.post("/api/labels", json={"pair_id": "p1", "choice": "b"})
            assert r.status_code == 503 and "locked" in r.json()["detail"] and r.headers["retry-after"] == "1"
            other.execute("ROLLBACK")
            assert alice.post("/api/labels", json={"pair_id": "p1", "choice": "b"}).status_code == 201
        finally:
            other.close()
        assert alice.post("/api/labels", json={"pair_id": "p2", "choice": "a"}).status_code == 201
        labels = {r["id"]: r["label"] for r in server.export()}
    assert set(labels) == {"p0", "p1", "p2"} and labels["p0"] == first.json()["label"]
    # a write lock held at start: serving (which loads pairs) is refused and says why; export only reads, so
    # it works beside the lock
    other = sqlite3.connect(server.db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        p = run_cli("annotate", "serve", "--pairs", pairs, "--db", server.db, "--port", free_port())
        assert p.returncode == 2 and "is locked by another process" in p.stderr and "nothing was changed" in p.stderr
        assert "Traceback" not in p.stderr
        assert {r["id"]: r["label"] for r in server.export()} == labels
    finally:
        other.close()


def _served(n: int) -> list[ServedPair]:
    return [ServedPair(f"p{i}", f"question {i}", f"first {i}", f"second {i}") for i in range(n)]


def test_damaged_or_foreign_files_are_refused_and_left_untouched(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, 3)
    not_sqlite = tmp_path / "notes.sqlite"
    not_sqlite.write_bytes(b"these are my notes, not a database\n" * 200)
    foreign = tmp_path / "app.sqlite"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE users (name TEXT)")
    damaged = tmp_path / "damaged.sqlite"
    db = AnnotationDB(damaged)
    db.load_pairs(_served(50), {"seed": "0"})
    for i in range(50):
        db.record(f"p{i}", "alice", "a", "a", "ab")
    db.close()
    with sqlite3.connect(damaged) as c:
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'labels'").fetchone()[0]
    data = bytearray(damaged.read_bytes())
    data[(root - 1) * page_size : root * page_size] = b"\xab" * page_size  # the labels table's root page
    damaged.write_bytes(bytes(data))

    expected = {
        not_sqlite: "is not an SQLite database; it was left untouched",
        foreign: "is an SQLite database of something else (tables: users); it was left untouched",
        damaged: "is damaged",
    }
    for path, message in expected.items():
        before = path.read_bytes()
        serve = run_cli("annotate", "serve", "--pairs", pairs, "--db", path, "--port", free_port())
        export = run_cli("annotate", "export", "--db", path, "--out", tmp_path / "out.jsonl")
        for p in (serve, export):
            assert p.returncode == 2 and message in p.stderr, p.stderr
            assert "Traceback" not in p.stderr
        assert path.read_bytes() == before
        with pytest.raises(AnnotationDBError, match=re.escape(message.split(";")[0])):
            AnnotationDB(path)
    assert "sqlite3" in run_cli("annotate", "export", "--db", damaged, "--out", tmp_path / "o.jsonl").stderr


def test_export_of_a_missing_database_is_a_clear_error(tmp_path):
    p = run_cli("annotate", "export", "--db", tmp_path / "nope.sqlite", "--out", tmp_path / "out.jsonl")
    assert p.returncode == 2 and "no such annotation database" in p.stderr
    assert not (tmp_path / "nope.sqlite").exists()


def test_store_counts_labels_per_pair_through_revisions_and_skips(tmp_path):
    """The per-pair label count that assignment relies on stays equal to the labels actually stored."""
    db = AnnotationDB(tmp_path / "db.sqlite")
    db.load_pairs(_served(3), {"seed": "0"})
    rng = random.Random(0)
    for _ in range(200):
        db.record(f"p{rng.randrange(3)}", f"ann{rng.randrange(4)}", rng.choice(["a", "b", "tie", "skip"]), "a", "ab")
    counted = dict(db._conn.execute("SELECT id, n_labels FROM pairs"))
    actual = dict(db._conn.execute("SELECT pair_id, COUNT(*) FROM labels WHERE label != 'skip' GROUP BY pair_id"))
    assert counted == {pid: actual.get(pid, 0) for pid in counted}
    assert len(list(db.label_records())) == sum(actual.values())
    db.close()
