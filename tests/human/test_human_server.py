"""Tier 4: the annotation app as annotators and scripts use it — a real `rlaif annotate serve` subprocess on a
loopback port, a real SQLite file, `rlaif annotate export` read back as label records.

`AnnotateServer` here is shared with the fault and browser tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the annotation app needs the human extra: pip install -e '.[human]'")
pytest.importorskip("uvicorn", reason="the annotation app needs the human extra: pip install -e '.[human]'")

from rlaif.constitution import load_constitution  # noqa: E402
from rlaif.data.pairs import read_pairs  # noqa: E402
from rlaif.records import LabelRecord  # noqa: E402
from tests.helpers import ROOT, rlaif_command, run_cli  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOKENS = {"alice": "alice-token-0001", "bob": "bob-token-0002", "carol": "carol-token-0003"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pairs(path: Path, n: int, chat_at: Optional[int] = 1) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"question {i}"}] if i == chat_at else f"question {i}"
        rows.append(
            {"id": f"p{i}", "prompt": prompt, "response_a": f"first answer {i}", "response_b": f"second answer {i}"}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


class AnnotateServer:
    """`rlaif annotate serve` as a subprocess on a free loopback port, with a tokens file."""

    def __init__(self, tmp: Path, pairs: Path, *extra: str, db: Optional[Path] = None, tokens: dict[str, str] = TOKENS):
        self.tmp, self.pairs, self.db, self.tokens = tmp, pairs, db or tmp / "labels.sqlite", tokens
        self.extra = list(extra)
        self.tokens_file = tmp / "tokens.txt"
        self.tokens_file.write_text("".join(f"{name}:{token}\n" for name, token in tokens.items()))
        self.proc: Optional[subprocess.Popen] = None
        self.log = tmp / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "AnnotateServer":
        self.port = free_port()
        cmd = rlaif_command(
            "annotate",
            "serve",
            "--pairs",
            self.pairs,
            "--db",
            self.db,
            "--tokens",
            self.tokens_file,
            "--port",
            self.port,
            *self.extra,
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, name: str) -> "httpx.Client":
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[name]}"}, timeout=10)

    def export(self) -> list[dict]:
        out = self.tmp / "export.jsonl"
        p = run_cli("annotate", "export", "--db", self.db, "--out", out)
        assert p.returncode == 0, p.stderr
        return [json.loads(line) for line in out.read_text().splitlines()]

    def __enter__(self) -> "AnnotateServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def label_all(client, choice: str = "a") -> list[dict]:
    """Fetch and answer pairs until the server says none are left; returns what was shown."""
    shown = []
    while True:
        r = client.get("/api/pairs/next")
        if r.status_code == 204:
            return shown
        assert r.status_code == 200, r.text
        pair = r.json()
        shown.append(pair)
        assert client.post("/api/labels", json={"pair_id": pair["pair_id"], "choice": choice}).status_code == 201
        assert len(shown) < 1000


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    write_pairs(tmp_path / "pairs.jsonl", 8)
    return tmp_path / "pairs.jsonl"


# ---------------------------------------------------------------------------------------------- tokens file


def test_tokens_file_errors_name_file_and_line(tmp_path):
    from rlaif.human.tokens import TokensFileError, load_tokens

    f = tmp_path / "tokens.txt"
    f.write_text("# team\nalice:alice-token-0001\n\n bob : bob-token-0002 \n")
    assert load_tokens(f) == {"alice-token-0001": "alice", "bob-token-0002": "bob"}
    f.write_text("# nobody\n")
    with pytest.raises(TokensFileError, match="no annotator_name:token"):
        load_tokens(f)
    # the command line reports it as one clean line, before anything is served
    f.write_text("alice:alice-token-0001\nbob\n")
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, 2)
    p = run_cli(
        "annotate", "serve", "--pairs", pairs, "--db", tmp_path / "x.sqlite", "--tokens", f, "--port", free_port()
    )
    assert p.returncode == 2 and p.stderr.strip() == f"error: {f}:2: expected annotator_name:token, found no ':'"


@pytest.mark.parametrize(
    "line, message",
    [
        ("carol\n", "no ':'"),
        ("carol:short\n", "at least 8"),
        ("ca rol:carol-token-0003\n", "annotator name"),
        ("alice:other-token-9\n", "already on line 2"),
        ("carol:alice-token-0001\n", "same token as 'alice'"),
        (":carol-token-0003\n", "annotator name"),
    ],
)
def test_a_bad_tokens_line_is_named_by_file_and_line(tmp_path, line, message):
    from rlaif.human.tokens import TokensFileError, load_tokens

    f = tmp_path / "tokens.txt"
    f.write_text("# team\nalice:alice-token-0001\n" + line)
    with pytest.raises(TokensFileError, match=message) as e:
        load_tokens(f)
    assert str(e.value).startswith(f"{f}:3: ")


# ---------------------------------------------------------------------------------------------- HTTP contract


def test_every_api_route_needs_a_known_bearer_token(tmp_path, pairs_file):
    with AnnotateServer(tmp_path, pairs_file) as server:
        routes = [
            ("GET", "/api/pairs/next", None),
            ("POST", "/api/labels", {"pair_id": "p0", "choice": "a"}),
            ("GET", "/api/progress", None),
        ]
        bad_headers = [
            {},
            {"Authorization": "Bearer wrong-token-000"},
            {"Authorization": "Bearer"},
            {"Authorization": f"Basic {TOKENS['alice']}"},
            {"Authorization": TOKENS["alice"]},
        ]
        with httpx.Client(base_url=server.url) as anonymous:
            for method, path, body in routes:
                for headers in bad_headers:
                    r = anonymous.request(method, path, headers=headers, json=body)
                    assert r.status_code == 401, (method, path, headers)
                    assert r.headers["www-authenticate"] == "Bearer"
            # the page itself is public (it asks for the token) and forbids inline scripts
            page = anonymous.get("/")
        assert page.status_code == 200 and "<title>rlaif annotate</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        with server.client("alice") as alice:
            assert alice.get("/api/progress").json()["done"] == 0  # the 401 POSTs stored nothing
            assert alice.get("/api/pairs/next").status_code == 200


def test_bad_requests_get_clear_errors_and_store_nothing(tmp_path, pairs_file):
    with AnnotateServer(tmp_path, pairs_file) as server, server.client("alice") as alice:
        r = alice.post("/api/labels", json={"pair_id": "no-such-pair", "choice": "a"})
        assert r.status_code == 404 and "no-such-pair" in r.json()["detail"]
        bodies = [
            {"pair_id": "p0", "choice": "A"},
            {"pair_id": "p0", "choice": "left"},
            {"choice": "a"},
            {"pair_id": "p0"},
            {"pair_id": "p0", "choice": "a", "extra": 1},
            {"pair_id": "", "choice": "a"},
            ["p0", "a"],
            "a",
        ]
        replies = [alice.post("/api/labels", json=body) for body in bodies]
        for raw in (b'{"pair_id": "p0", "choice": ', b"\xff\xfe", b""):
            replies.append(alice.post("/api/labels", content=raw, headers={"Content-Type": "application/json"}))
        for r in replies:  # each one plain line, not pydantic's list of loc, type and input
            assert r.status_code == 422 and set(r.json()) == {"detail"} and isinstance(r.json()["detail"], str)
        assert [r.json()["detail"] for r in replies[:3]] == ["choice: must be 'a', 'b', 'tie' or 'skip'"] * 2 + [
            "pair_id: is required"
        ]
        big = json.dumps({"pair_id": "p0", "choice": "a", "pad": "x" * 70_000})
        r = alice.post("/api/labels", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: the cap must hold on the bytes actually sent
            for _ in range(20):
                yield b"x" * 8192

        r = alice.post("/api/labels", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        progress = alice.get("/api/progress").json()
        assert progress["done"] == 0 and progress["overall"]["labels"] == 0
        # and the server is still fine
        assert alice.post("/api/labels", json={"pair_id": "p0", "choice": "tie"}).status_code == 201


def test_shown_order_is_randomised_per_annotator_and_the_label_stored_in_the_pairs_own_order(tmp_path, pairs_file):
    own = {p.id: p for p in read_pairs(pairs_file)}
    with AnnotateServer(tmp_path, pairs_file, "--overlap", "2") as server:
        orders: dict[str, dict[str, str]] = {}
        for name in ("alice", "bob"):
            with server.client(name) as c:
                while (r := c.get("/api/pairs/next")).status_code == 200:
                    shown = r.json()
                    pair = own[shown["pair_id"]]
                    assert shown["prompt"] == pair.prompt and shown["principle"] is None
                    assert {shown["response_a"], shown["response_b"]} == {pair.response_a, pair.response_b}
                    order = "ab" if shown["response_a"] == pair.response_a else "ba"
                    orders.setdefault(name, {})[pair.id] = order
                    # "a" picks the LEFT response, whichever of the pair's responses that is
                    ack = c.post("/api/labels", json={"pair_id": pair.id, "choice": "a"})
                    assert ack.status_code == 201
                    assert ack.json()["shown_order"] == order
                    assert ack.json()["label"] == ("a" if order == "ab" else "b")
                assert r.status_code == 204
        assert set(orders["alice"]) == set(orders["bob"]) == set(own)
        assert {"ab", "ba"} <= set(orders["alice"].values())  # both orders occur (seeded: not flaky)
        assert orders["alice"] != orders["bob"]  # randomised per annotator, not only per pair
        records = server.export()
    assert len(records) == 2 * len(own)
    for r in records:
        order = orders[r["annotator"]][r["id"]]
        assert r["shown_order"] == order
        assert (r["label"], r["p_a"]) == (("a", 1.0) if order == "ab" else ("b", 0.0))
        assert (r["response_a"], r["response_b"]) == (own[r["id"]].response_a, own[r["id"]].response_b)


def test_overlap_two_gives_each_pair_two_different_annotators_and_no_more_at_once(tmp_path, pairs_file):
    with AnnotateServer(tmp_path, pairs_file, "--overlap", "2") as server:
        clients = {name: server.client(name) for name in TOKENS}
        try:
            first = {name: clients[name].get("/api/pairs/next").json()["pair_id"] for name in TOKENS}
            # two people may hold p0 at once (it needs two labels), the third gets the next pair
            assert first == {"alice": "p0", "bob": "p0", "carol": "p1"}
            assert clients["alice"].get("/api/pairs/next").json()["pair_id"] == "p0"  # a reload: same pair
            done = {name: 0 for name in TOKENS}
            active = list(TOKENS)
            while active:  # take turns, like people working side by side
                for name in list(active):
                    r = clients[name].get("/api/pairs/next")
                    if r.status_code == 204:
                        active.remove(name)
                        continue
                    pid = r.json()["pair_id"]
                    assert clients[name].post("/api/labels", json={"pair_id": pid, "choice": "b"}).status_code == 201
                    done[name] += 1
            progress = clients["carol"].get("/api/progress").json()
        finally:
            for c in clients.values():
                c.close()
        records = server.export()
    n = len(read_pairs_list(pairs_file))
    assert sum(done.values()) == 2 * n and min(done.values()) > 0
    by_pair: dict[str, list[str]] = {}
    for r in records:
        by_pair.setdefault(r["id"], []).append(r["annotator"])
    assert len(by_pair) == n
    assert all(len(names) == 2 and len(set(names)) == 2 for names in by_pair.values()), by_pair
    assert progress["overall"] == {"pairs": n, "overlap": 2, "complete": n, "labels": 2 * n}


def read_pairs_list(path: Path) -> list:
    return list(read_pairs(path))


def test_repeat_is_idempotent_a_change_is_a_revision_and_skips_pass_a_pair_on(tmp_path, pairs_file):
    with AnnotateServer(tmp_path, pairs_file) as server, server.client("alice") as alice, server.client("bob") as bob:
        assert alice.get("/api/pairs/next").json()["pair_id"] == "p0"
        first = alice.post("/api/labels", json={"pair_id": "p0", "choice": "a"})
        again = alice.post("/api/labels", json={"pair_id": "p0", "choice": "a"})
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["status"] == "unchanged" and again.json()["label"] == first.json()["label"]
        changed = alice.post("/api/labels", json={"pair_id": "p0", "choice": "tie"})
        assert changed.status_code == 200 and changed.json()["status"] == "revised"
        assert changed.json()["revision"] == 1
        # a skip is not a label: the pair goes to someone else and never back to alice
        assert alice.get("/api/pairs/next").json()["pair_id"] == "p1"
        assert bob.get("/api/pairs/next").json()["pair_id"] == "p2"  # p1 is alice's while she looks at it
        assert alice.post("/api/labels", json={"pair_id": "p1", "choice": "skip"}).status_code == 201
        assert bob.post("/api/labels", json={"pair_id": "p2", "choice": "b"}).status_code == 201
        assert bob.get("/api/pairs/next").json()["pair_id"] == "p1"
        assert alice.get("/api/pairs/next").json()["pair_id"] == "p3"
        assert alice.get("/api/progress").json()["skipped"] == 1
        records = server.export()
    with sqlite3.connect(server.db) as db:
        revisions = db.execute(
            "SELECT pair_id, annotator, old_label, new_label, old_choice, new_choice FROM revisions"
        ).fetchall()
    assert revisions == [("p0", "alice", first.json()["label"], "tie", "a", "tie")]
    mine = [(r["id"], r["label"]) for r in records if r["annotator"] == "alice"]
    assert mine == [("p0", "tie")]  # one record, the revised label; the skip is not exported


def test_a_lease_runs_out_and_the_pair_goes_to_someone_else(tmp_path, pairs_file):
    write_pairs(pairs_file, 1)
    with (
        AnnotateServer(tmp_path, pairs_file, "--lease-s", "1") as server,
        server.client("alice") as alice,
        server.client("bob") as bob,
    ):
        assert alice.get("/api/pairs/next").json()["pair_id"] == "p0"
        assert bob.get("/api/pairs/next").status_code == 204  # alice holds the only pair
        time.sleep(1.3)
        assert bob.get("/api/pairs/next").json()["pair_id"] == "p0"
        assert bob.post("/api/labels", json={"pair_id": "p0", "choice": "a"}).status_code == 201
        # alice's late answer is still kept: labels are never thrown away
        assert alice.post("/api/labels", json={"pair_id": "p0", "choice": "b"}).status_code == 201
        assert alice.get("/api/pairs/next").status_code == 204
        assert len(server.export()) == 2


def test_export_matches_rlaif_label_ids_orders_and_principles(tmp_path):
    """A TRL file served with a constitution and a seed: the export's ids, pair orders and principles are the
    ones `rlaif label` gives the same file with the same seed, so AI and human labels match by id."""
    trl = tmp_path / "trl.jsonl"
    trl.write_text(
        "".join(
            json.dumps({"prompt": f"question {i}", "chosen": f"please, answer {i}", "rejected": f"no answer {i}"})
            + "\n"
            for i in range(6)
        )
    )
    const = tmp_path / "polite.yaml"
    const.write_text(
        "name: polite\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n"
        "  - id: ruder\n    text: Which is ruder?\n    invert: true\n"
    )
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nfunction: tests.judge_fns:prefers_polite\n")
    p = run_cli(
        "label",
        "--pairs",
        trl,
        "--constitution",
        const,
        "--judge",
        judge,
        "--out",
        tmp_path / "ai",
        "--seed",
        "7",
        "--quiet",
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    ai = {r["id"]: r for r in map(json.loads, (tmp_path / "ai" / "labels.jsonl").read_text().splitlines())}
    constitution = load_constitution(const)
    with (
        AnnotateServer(tmp_path, trl, "--constitution", str(const), "--seed", "7") as server,
        server.client("alice") as alice,
    ):
        while (r := alice.get("/api/pairs/next")).status_code == 200:
            shown = r.json()
            assert shown["principle"] == constitution.principle(ai[shown["pair_id"]]["principle_id"]).text
            # pick the polite response, answering the question shown (for "ruder", the other one)
            polite_left = "please" in shown["response_a"]
            want_left = polite_left != (shown["principle"] == "Which is ruder?")
            ack = alice.post("/api/labels", json={"pair_id": shown["pair_id"], "choice": "a" if want_left else "b"})
            assert ack.status_code == 201
        records = server.export()
    assert {"polite", "ruder"} == {r["principle_id"] for r in records}  # both kinds were shown (seeded)
    assert sorted(r["id"] for r in records) == sorted(ai)
    for r in records:
        LabelRecord.model_validate(r)
        a = ai[r["id"]]
        assert (r["response_a"], r["response_b"], r["prompt"]) == (a["response_a"], a["response_b"], a["prompt"])
        assert r["principle_id"] == a["principle_id"]
        assert r["constitution_sha256"] == a["constitution_sha256"] == constitution.sha256
        assert r["source"] == "human" and r["status"] == "ok" and r["annotator"] == "alice"
        assert r["shown_order"] in ("ab", "ba") and datetime.fromisoformat(r["created_at"]).tzinfo is not None
        # the human picked the polite response under either principle; so did the judge
        assert r["label"] == a["label"] == ("a" if "please" in r["response_a"] else "b")
        assert r["p_a"] == (1.0 if r["label"] == "a" else 0.0)
    assert len({r["key"] for r in records}) == len(records)


def test_restart_on_the_same_database_resumes_and_refuses_other_settings(tmp_path, pairs_file):
    server = AnnotateServer(tmp_path, pairs_file)
    with server, server.client("alice") as alice:
        assert len(label_all(alice)) == 8
    with server, server.client("alice") as alice, server.client("bob") as bob:
        progress = alice.get("/api/progress").json()
        assert progress["done"] == 8 and progress["overall"]["pairs"] == 8  # nothing loaded twice
        assert bob.get("/api/pairs/next").status_code == 204
    # a pairs file that grew: the new pairs are added, the labelled ones kept
    rows = write_pairs(pairs_file, 10)
    with server, server.client("bob") as bob:
        assert [p["pair_id"] for p in label_all(bob)] == ["p8", "p9"]
    assert len(server.export()) == 10
    p = run_cli("annotate", "serve", "--pairs", pairs_file, "--db", server.db, "--seed", "1", "--port", free_port())
    assert p.returncode == 2 and "created with seed = 0, this run has 1" in p.stderr
    rows[0]["response_a"] = "edited"
    pairs_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = run_cli("annotate", "serve", "--pairs", pairs_file, "--db", server.db, "--port", free_port())
    assert p.returncode == 2 and "pair 'p0' differs" in p.stderr


def test_a_bad_pairs_row_is_named_and_can_be_skipped(tmp_path, pairs_file):
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    rows[2]["response_b"] = ""
    pairs_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = run_cli("annotate", "serve", "--pairs", pairs_file, "--db", tmp_path / "x.sqlite", "--port", free_port())
    assert p.returncode == 2 and p.stderr.strip() == f"error: {pairs_file}:3: response_b is empty"
    with AnnotateServer(tmp_path, pairs_file, "--skip-invalid") as server, server.client("alice") as alice:
        assert [pair["pair_id"] for pair in label_all(alice)] == [f"p{i}" for i in range(8) if i != 2]
    assert f"skipped {pairs_file}:3: response_b is empty" in server.log.read_text()
