"""Tier 4: people inside the loop (rlaif/recipes/loop_people.py). A scripted annotator, a real HTTP client against
the annotation app the loop serves on 127.0.0.1, answers some of an iteration's pairs within its wait and some
after: each late answer trains in the next iteration, exactly once, and the SQLite file records which iteration
took which answer. Without a model: the same bookkeeping against a database another process serves (serve:
false), a resumed iteration keeping what it took, and the config's refusals."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from rlaif.config.yamlfile import ConfigFileError
from tests.helpers import write_jsonl
from tests.recipes.loop_case import ids_in, loop_config, two_iterations_with_people

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the annotation app needs the human extra: pip install -e '.[human]'")

TOKEN = "alice-token-0001"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Annotator(threading.Thread):
    """alice, through the app's JSON API: she answers the first `on_time` pairs of iteration 1 at once, holds the
    next one until iteration 1 has taken its answers (its human_labels.jsonl exists), then answers it and every
    pair after it as it comes. The app hands pairs out in load order, so iteration 1's late pairs come before
    iteration 2's, and iteration 2's wait ends once all of its own are answered."""

    def __init__(self, url: str, out: Path, on_time: int, answers: int):
        super().__init__(daemon=True)
        self.url, self.out, self.on_time, self.answers = url, out, on_time, answers
        self.given: list[str] = []
        self.error: BaseException | None = None

    def run(self):
        try:
            with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
                while len(self.given) < self.answers:
                    try:
                        r = c.get("/api/pairs/next")
                    except httpx.ConnectError:  # the loop has not started the app yet
                        time.sleep(0.05)
                        continue
                    if r.status_code == 204:  # the loop has not queued the next pairs yet
                        time.sleep(0.05)
                        continue
                    pair = r.json()["pair_id"]
                    if len(self.given) == self.on_time:
                        while not (self.out / "iter-1/human_labels.jsonl").exists():
                            time.sleep(0.02)
                    assert c.post("/api/labels", json={"pair_id": pair, "choice": "a"}).status_code == 201
                    self.given.append(pair)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_a_live_loop_trains_on_answers_within_the_wait_and_carries_late_ones_once(tmp_path, one_thread):
    from rlaif.recipes.loop import train
    from rlaif.recipes.loop_feedback import iteration_feedback

    out, port, tokens = tmp_path / "run", free_port(), tmp_path / "tokens.txt"
    tokens.write_text(f"alice:{TOKEN}\n")
    annotate = {"wait_s": 4, "port": port, "tokens": str(tokens)}
    config = two_iterations_with_people(out, annotate)
    alice = Annotator(f"http://127.0.0.1:{port}", out, on_time=2, answers=6)
    alice.start()
    train(config)
    alice.join(timeout=30)
    assert alice.error is None and len(alice.given) == 6

    queue1, queue2 = ids_in(out / "iter-1/human_queue.jsonl"), ids_in(out / "iter-2/human_queue.jsonl")
    assert len(queue1) == len(queue2) == 3 and alice.given == queue1 + queue2  # highest priority first
    on_time, late = queue1[:2], queue1[2:]
    assert ids_in(out / "iter-1/human_labels.jsonl") == on_time and ids_in(out / "iter-1/carried_labels.jsonl") == []
    assert ids_in(out / "iter-2/carried_labels.jsonl") == late and ids_in(out / "iter-2/human_labels.jsonl") == queue2

    # the database says which iteration took each answer: every answer once, none lost
    with sqlite3.connect(out / "annotations.sqlite") as db:
        uses = db.execute("SELECT pair_id, annotator, iteration, run FROM uses ORDER BY iteration, pair_id").fetchall()
    assert sorted((p, i) for p, _, i, _ in uses) == sorted([(p, 1) for p in on_time] + [(p, 2) for p in late + queue2])
    assert {a for _, a, _, _ in uses} == {"alice"} and {r for *_, r in uses} == {str(out.resolve())}

    rows = [json.loads(line) for line in (out / "iterations.jsonl").read_text().splitlines()]
    assert rows[0]["people"]["labels"] == 2 and rows[0]["people"]["carried"] == 0
    assert rows[0]["people"]["labelled_in_wait"] == 2 and rows[0]["people"]["waited_s"] >= 4
    assert rows[1]["people"] == {**rows[1]["people"], "labels": 3, "carried": 1, "labelled_in_wait": 3}
    assert rows[1]["people"]["waited_s"] < 4  # every pair of iteration 2 was answered before the wait ran out
    assert rows[1]["feedback"]["carried"] == {"human_pairs": 1}
    # what each iteration trained on, read back as its other processes read it
    trained = [{p.id: p for p in iteration_feedback(config, out / f"iter-{k}", k, write=False).train} for k in (1, 2)]
    assert set(on_time) <= set(trained[0]) and not set(late) & set(trained[0])
    assert set(late + queue2) <= set(trained[1]) and not set(on_time) & set(trained[1])
    assert all(trained[1][p].human_label in ("a", "b") for p in late)
    assert rows[1]["train_pairs"] + rows[1]["too_long"] == len(trained[1])


def test_pointing_the_loop_at_a_running_servers_database(tmp_path):
    """serve: false: the loop adds its queues to another process's database and reads the answers there; answers
    are taken once, late ones go to the next iteration, a resumed iteration keeps what it took, a skip is none."""
    from rlaif.human.db import AnnotationDB
    from rlaif.recipes.loop_people import people_in_the_loop

    db_path = tmp_path / "served.sqlite"
    AnnotationDB(db_path).close()  # as `rlaif annotate serve --db` leaves it
    out = tmp_path / "run"
    annotate = {"serve": False, "db": str(db_path), "wait_s": 0}
    config = loop_config(out, f"feedback={json.dumps({'source': 'mixed', 'budget': 2, 'annotate': annotate})}")
    for k, ids in ((1, ["a1", "a2"]), (2, ["b1", "b2"])):
        rows = [{"id": i, "prompt": f"question {i}", "response_a": "yes", "response_b": "no"} for i in ids]
        write_jsonl(out / f"iter-{k}/human_queue.jsonl", rows)
    other = AnnotationDB(db_path)  # the server's connection, where people's answers land
    it1, it2 = out / "iter-1", out / "iter-2"
    with people_in_the_loop(config, main=True) as people:
        assert people.url is None
        assert people.take(1, it1, {"a1", "a2"}, resumed=False)["labels"] == 0  # nobody answered yet
        other.record("a1", "ann", "b", "b", "ab")
        other.record("a2", "ann", "skip", "skip", "ab")
        taken = people.take(1, it1, {"a1", "a2"}, resumed=True)  # its DPO steps began: it keeps what it took
        assert (taken["labels"], taken["carried"]) == (0, 0)
        # killed before its training began: the iteration waits and takes again
        taken = people.take(1, it1, {"a1", "a2"}, resumed=False)
        assert (taken["labels"], taken["carried"]) == (1, 0) and ids_in(out / "iter-1/human_labels.jsonl") == ["a1"]
        other.record("a2", "ann", "a", "a", "ab")  # the skip revised into a label, after iteration 1 took its own
        taken = people.take(2, it2, {"b1", "b2"}, resumed=False)
        assert (taken["labels"], taken["carried"]) == (0, 1) and ids_in(out / "iter-2/carried_labels.jsonl") == ["a2"]
        other.record("b2", "ann", "a", "a", "ab")
        other.record("a1", "ann", "a", "a", "ab")  # a revision of an answer iteration 1 took: not taken again
        taken = people.take(2, it2, {"b1", "b2"}, resumed=False)  # again before training: it takes what came since
        assert (taken["queued"], taken["labels"], taken["carried"]) == (2, 1, 1)
        assert ids_in(out / "iter-2/human_labels.jsonl") == ["b2"] and ids_in(out / "iter-2/carried_labels.jsonl") == [
            "a2"
        ]
    with sqlite3.connect(db_path) as db:
        uses = db.execute("SELECT pair_id, iteration, label FROM uses ORDER BY pair_id").fetchall()
    assert uses == [("a1", 1, "b"), ("a2", 2, "a"), ("b2", 2, "a")]
    assert [r["label"] for r in map(json.loads, (out / "iter-1/human_labels.jsonl").read_text().splitlines())] == ["b"]
    other.close()


@pytest.mark.parametrize(
    "annotate, extra, error",
    [
        ({"serve": False, "wait_s": 1}, {}, "feedback.annotate.db: required with serve: false"),
        ({"wait_s": -1}, {}, "feedback.annotate.wait_s: Input should be greater than or equal to 0"),
        ({"wait_s": 1}, {"human": "h.jsonl"}, "feedback.human: leave it out with annotate"),
        ({"wait_s": 1, "serv": True}, {}, "feedback.annotate.serv: unknown field"),
    ],
)
def test_annotate_refusals(tmp_path, annotate, extra, error):
    with pytest.raises(ConfigFileError, match=error):
        loop_config(tmp_path, f"feedback={json.dumps({'source': 'mixed', 'annotate': annotate, **extra})}")
    with pytest.raises(ConfigFileError, match="not used by source ai"):
        loop_config(tmp_path, f"feedback={json.dumps({'source': 'ai', 'annotate': {'wait_s': 1}})}")
