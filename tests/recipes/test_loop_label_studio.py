"""Tier 4: people inside the loop through Label Studio (`feedback.annotate.label_studio_export`). The loop writes
each iteration's queue as Label Studio tasks and, while it waits, reads the project's JSON export into its SQLite
annotation database. Label Studio itself is played by the test: it writes exports in the real format (each
annotation shaped like one in the export a real Label Studio gave, tests/human/fixtures): answers within the wait
train now, late ones in the next iteration, each exactly once however often the export is written again; a bad
export or annotation is reported in one line and left out."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from rlaif.config.yamlfile import ConfigFileError
from rlaif.human.label_studio import LABEL_CONFIG
from rlaif.human.presentation import pair_order_label
from tests.helpers import write_jsonl
from tests.human.label_studio_case import FIXTURE
from tests.recipes.loop_case import ids_in, loop_config, two_iterations_with_people

TASKS = "label_studio_tasks.json"
REAL = json.loads(FIXTURE.read_text(encoding="utf-8"))  # a real Label Studio export, for its task and annotation


def project_export(tasks: list[dict], answers: dict[str, list[tuple[int, str]]], *more: dict) -> str:
    """Label Studio's JSON export of a project holding `tasks` (as the loop wrote them): `answers` maps a pair id
    to its (user id, choice) annotations; a task nobody answered has none. `more`: tasks of the export as they are."""
    return json.dumps(export_rows(tasks, answers) + list(more), indent=2)


def export_rows(tasks: list[dict], answers: dict[str, list[tuple[int, str]]]) -> list[dict]:
    rows = []
    for n, t in enumerate(tasks, 1):
        row = {**copy.deepcopy(REAL[0]), "id": n, "data": t["data"], "annotations": []}
        for user, choice in answers.get(t["data"]["rlaif"]["pair_id"], []):
            a = copy.deepcopy(REAL[0]["annotations"][0])
            a.update(id=100 * n + user, task=n, completed_by=user, updated_by=user)
            a["result"][0]["value"]["choices"] = [choice]
            row["annotations"].append(a)
        rows.append(row)
    return rows


def write_export(path: Path, text: str) -> None:
    """As a script saving Label Studio's export would: written beside, then renamed into place."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def wait_for(path: Path, timeout_s: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never came"
        time.sleep(0.02)
    return path


def tasks_in(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def shown_label(record: dict, choice: str) -> str:
    """The label in the pair's own order that a choice on screen (A: left) gives."""
    return pair_order_label({"A": "a", "B": "b"}[choice], record["shown_order"], False)


class Project(threading.Thread):
    """Label Studio with its people: user 1 answers A on the first two tasks of iteration 1 at once, and the
    export is saved three times over during the wait (the same annotations each time); the third task is answered
    only once iteration 1 has taken its answers. In iteration 2 user 1 answers every task, and user 2 picks a
    choice the labeling config does not have on one of them."""

    def __init__(self, out: Path, export: Path):
        super().__init__(daemon=True)
        self.out, self.export = out, export
        self.error: BaseException | None = None

    def run(self):
        try:
            first = tasks_in(wait_for(self.out / "iter-1" / TASKS))
            ids = [t["data"]["rlaif"]["pair_id"] for t in first]
            for _ in range(3):
                write_export(self.export, project_export(first, {i: [(1, "A")] for i in ids[:2]}))
                time.sleep(0.3)
            wait_for(self.out / "iter-1/human_labels.jsonl")
            write_export(self.export, project_export(first, {i: [(1, "A")] for i in ids}))
            both = first + tasks_in(wait_for(self.out / "iter-2" / TASKS))
            answers = {t["data"]["rlaif"]["pair_id"]: [(1, "A")] for t in both}
            answers[both[-1]["data"]["rlaif"]["pair_id"]].append((2, "Maybe"))
            write_export(self.export, project_export(both, answers))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_a_loop_labelled_in_label_studio_trains_on_each_answer_once(tmp_path, one_thread, capfd):
    from rlaif.recipes.loop import train

    out, export = tmp_path / "run", tmp_path / "ls-export.json"
    annotate = {"label_studio_export": str(export), "wait_s": 4}
    config = two_iterations_with_people(out, annotate)
    project = Project(out, export)
    project.start()
    train(config)
    project.join(timeout=30)
    assert project.error is None and not project.is_alive()

    queue1, queue2 = ids_in(out / "iter-1/human_queue.jsonl"), ids_in(out / "iter-2/human_queue.jsonl")
    assert len(queue1) == len(queue2) == 3
    for k, queue in ((1, queue1), (2, queue2)):  # the tasks are the queue, in its order (highest priority first)
        assert [t["data"]["rlaif"]["pair_id"] for t in tasks_in(out / f"iter-{k}" / TASKS)] == queue
    assert (out / "label_studio_config.xml").read_text() == LABEL_CONFIG
    on_time, late = queue1[:2], queue1[2:]
    assert ids_in(out / "iter-1/human_labels.jsonl") == on_time and ids_in(out / "iter-1/carried_labels.jsonl") == []
    assert ids_in(out / "iter-2/carried_labels.jsonl") == late and ids_in(out / "iter-2/human_labels.jsonl") == queue2
    for name in ("iter-1/human_labels.jsonl", "iter-2/human_labels.jsonl", "iter-2/carried_labels.jsonl"):
        for r in map(json.loads, (out / name).read_text().splitlines()):  # A on screen, read into the pair's order
            assert r["annotator"] == "label-studio:1" and r["label"] == shown_label(r, "A"), r

    # one label per pair and user however often the export was read; each taken once, by the iteration it trained
    with sqlite3.connect(out / "annotations.sqlite") as db:
        labels = db.execute("SELECT pair_id, annotator FROM labels").fetchall()
        uses = db.execute("SELECT pair_id, annotator, iteration FROM uses").fetchall()
        revisions = db.execute("SELECT COUNT(*) FROM revisions").fetchone()[0]
    assert sorted(labels) == sorted((p, "label-studio:1") for p in queue1 + queue2) and revisions == 0
    taken_by = [(p, 1) for p in on_time] + [(p, 2) for p in late + queue2]
    assert sorted(uses) == sorted((p, "label-studio:1", k) for p, k in taken_by)

    rows = [json.loads(line)["people"] for line in (out / "iterations.jsonl").read_text().splitlines()]
    assert rows[0] == {**rows[0], "labels": 2, "carried": 0, "labelled_in_wait": 2, "export_left_out": 0}
    assert rows[0]["waited_s"] >= 4
    assert rows[1] == {**rows[1], "labels": 3, "carried": 1, "labelled_in_wait": 3, "export_left_out": 1}
    assert rows[1]["waited_s"] < 4  # every pair of iteration 2 was answered before its wait ran out
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {export}:6: task 6, annotation 602: ")
    assert "by label-studio:2: choice 'Maybe' is not one of A, B, Tie" in warnings[0]


def test_an_export_read_again_and_again_and_bad_ones_beside_it(tmp_path, capsys):
    """Without a model: the loop's side for two iterations (wait_s 0), the export written by hand between takes."""
    from rlaif.recipes.loop_people import people_in_the_loop

    out, export = tmp_path / "run", tmp_path / "export.json"
    annotate = {"label_studio_export": str(export), "wait_s": 0}
    config = loop_config(out, f"feedback={json.dumps({'source': 'mixed', 'budget': 2, 'annotate': annotate})}")
    for k, ids in ((1, ["a1", "a2"]), (2, ["b1", "b2"])):
        rows = [{"id": i, "prompt": f"question {i}", "response_a": "yes", "response_b": "no"} for i in ids]
        write_jsonl(out / f"iter-{k}/human_queue.jsonl", rows)
    it1, it2 = out / "iter-1", out / "iter-2"

    def warnings() -> list[str]:
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]

    def db_rows(sql: str) -> list[tuple]:
        with sqlite3.connect(out / "annotations.sqlite") as db:
            return db.execute(sql).fetchall()

    with people_in_the_loop(config, main=True) as people:
        assert people.take(1, it1, {"a1", "a2"}, resumed=False)["labels"] == 0  # nobody has exported yet
        first = tasks_in(it1 / TASKS)
        full = project_export(first, {"a1": [(1, "B")]})
        export.write_text(full[: len(full) // 2])  # caught half written by a script that writes in place
        taken = people.take(1, it1, {"a1", "a2"}, resumed=False)
        assert (taken["labels"], taken["export_left_out"]) == (0, 1)
        (line,) = warnings()
        assert line.startswith(f"warning: {export}:") and "malformed JSON" in line
        export.write_text(full)  # the script done: the iteration (killed before training) waits again
        taken = people.take(1, it1, {"a1", "a2"}, resumed=False)
        assert (taken["labels"], taken["export_left_out"]) == (1, 0) and warnings() == []
        (r,) = map(json.loads, (it1 / "human_labels.jsonl").read_text().splitlines())
        assert (r["id"], r["annotator"], r["label"]) == ("a1", "label-studio:1", shown_label(r, "B"))
        for _ in range(3):  # the same export again and again: the same one label
            write_export(export, full)
            people.studio.read(force=True)
        assert db_rows("SELECT pair_id, annotator, revision FROM labels") == [("a1", "label-studio:1", 0)]

        taken = people.take(2, it2, {"b1", "b2"}, resumed=False)  # iteration 2's tasks out, nothing new yet
        assert (taken["labels"], taken["carried"], taken["export_left_out"]) == (0, 0, 0)
        # then a late answer to a2, one to b2, a choice the config lacks, and tasks of another run
        second = tasks_in(it2 / TASKS)
        stranger = copy.deepcopy(second[0])
        stranger["data"]["rlaif"]["pair_id"] = "not-queued"
        edited = copy.deepcopy(second[1])  # b2's id over other responses, answered by another user
        for key in ("left", "right"):
            edited["data"][key] += "!"
        for key in ("response_a", "response_b"):
            edited["data"]["rlaif"][key] += "!"
        (edited,) = export_rows([edited], {"b2": [(3, "A")]})
        edited["id"] = 6
        answers = {"a1": [(1, "B")], "a2": [(1, "A")], "b1": [(1, "Maybe")], "b2": [(1, "A")], "not-queued": [(1, "A")]}
        write_export(export, project_export(first + second + [stranger], answers, edited))
        taken = people.take(2, it2, {"b1", "b2"}, resumed=False)
        assert (taken["labels"], taken["carried"], taken["export_left_out"]) == (1, 1, 3)
        assert ids_in(it2 / "human_labels.jsonl") == ["b2"] and ids_in(it2 / "carried_labels.jsonl") == ["a2"]
        problems = warnings()
        assert len(problems) == 3 and all(p.startswith(f"warning: {export}:") for p in problems)
        assert "choice 'Maybe' is not one of A, B, Tie" in problems[0]
        assert "pair 'not-queued' is not in" in problems[1]
        assert "pair 'b2' differs from the pair with that id in" in problems[2]
        # a1's answer changed in Label Studio after iteration 1 took it: a revision, not taken again
        answers["a1"] = [(1, "A")]
        write_export(export, project_export(first + second, answers))
        taken = people.take(2, it2, {"b1", "b2"}, resumed=False)
        assert (taken["labels"], taken["carried"], taken["export_left_out"]) == (1, 1, 1) and warnings() == []
        # a file that is not the full JSON export: said once, what was read before stays
        write_export(export, json.dumps([{"id": 1, "rlaif": {}, "annotation_id": 4, "annotator": 1, "choice": "A"}]))
        people.studio.read()
        (line,) = warnings()
        assert line.startswith(f"warning: {export}: a Label Studio JSON-MIN export")
    # a resumed run (a new process) reads the same export from scratch: nothing new, nothing taken twice
    write_export(export, project_export(first + second, answers))
    with people_in_the_loop(config, main=True) as people:
        taken = people.take(2, it2, {"b1", "b2"}, resumed=False)
        assert (taken["labels"], taken["carried"], taken["export_left_out"]) == (1, 1, 1)
        assert ["choice 'Maybe'" in line for line in warnings()] == [True]  # said again by the new process
    assert db_rows("SELECT pair_id, label, revision FROM labels ORDER BY pair_id") == [
        ("a1", shown_label({"shown_order": first[0]["data"]["rlaif"]["shown_order"]}, "A"), 1),
        ("a2", shown_label({"shown_order": first[1]["data"]["rlaif"]["shown_order"]}, "A"), 0),
        ("b2", shown_label({"shown_order": second[1]["data"]["rlaif"]["shown_order"]}, "A"), 0),
    ]
    assert sorted(db_rows("SELECT pair_id, iteration FROM uses")) == [("a1", 1), ("a2", 2), ("b2", 2)]


@pytest.mark.parametrize(
    "annotate, error",
    [
        (
            {"label_studio_export": "e.json", "serve": True, "wait_s": 1},
            r"feedback.annotate.label_studio_export: give serve: true \(the loop's app\) or label_studio_export "
            r"\(Label Studio\), not both",
        ),
        (
            {"label_studio_export": "e.json", "tokens": "t.txt", "wait_s": 1},
            r"feedback.annotate.tokens: applies to serve: true \(Label Studio has its own users\)",
        ),
    ],
)
def test_label_studio_or_the_app(tmp_path, annotate, error):
    with pytest.raises(ConfigFileError, match=error):
        loop_config(tmp_path, f"feedback={json.dumps({'source': 'mixed', 'annotate': annotate})}")
    # on its own, Label Studio needs no db: the loop keeps its own, OUT/annotations.sqlite
    annotate = {"label_studio_export": "e.json", "wait_s": 1}
    fb = loop_config(tmp_path, f"feedback={json.dumps({'source': 'mixed', 'annotate': annotate})}").feedback.root
    assert fb.annotate.serve is False and fb.annotate.db is None
