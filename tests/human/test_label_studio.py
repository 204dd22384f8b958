"""The Label Studio bridge without Label Studio: `rlaif annotate export-tasks --format label-studio` against the
tasks a real Label Studio server was given, and `rlaif human import` on the real export it gave back
(fixtures/label_studio_export.json, written by `bash scripts/test-label-studio.sh`; see label_studio_case.py).
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rlaif.constitution import load_constitution
from rlaif.data.pairs import DataError, read_pairs
from rlaif.human.importer import import_labels
from rlaif.human.label_studio import ORDER_KEY
from rlaif.human.presentation import shown_order
from tests.helpers import run_cli
from tests.human import label_studio_case as case

# a fresh Label Studio gives its first user (the admin, alice) id 1 and the one who joins next (bob) id 2
USERS = {case.ALICE: "label-studio:1", case.BOB: "label-studio:2"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def fixture() -> list[dict]:
    return json.loads(case.FIXTURE.read_text(encoding="utf-8"))


def write_export(tmp_path: Path, tasks: list[dict]) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def export_tasks(tmp_path: Path, *extra: str, seed: int = case.SEED):
    pairs, constitution = case.write_inputs(tmp_path)
    return run_cli(
        "annotate",
        "export-tasks",
        "--format",
        "label-studio",
        "--pairs",
        pairs,
        "--constitution",
        constitution,
        "--out",
        tmp_path / "ls",
        "--seed",
        str(seed),
        *extra,
    )


def test_the_real_export_imports_with_every_choice_on_the_right_response_and_rlaif_labels_ids(tmp_path):
    p = run_cli("human", "import", case.FIXTURE, "--out", tmp_path / "human.jsonl")
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    assert counts == {"labels": 15, "a": 7, "b": 7, "tie": 1}
    # one answer was given in Label Studio's editor (it times the annotator), the others through its API
    assert [a["completed_by"] for t in fixture() for a in t["annotations"] if a["lead_time"]] == [2]
    human = read_jsonl(tmp_path / "human.jsonl")
    pairs, constitution = case.write_inputs(tmp_path)
    case.check_labels(human, pairs, constitution, USERS)
    # the ids and principles are the ones `rlaif label` gives the same pairs with the same seed, so AI and human
    # labels meet by id; the judge that prefers "please" agrees with both annotators
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nfunction: tests.judge_fns:prefers_polite\n")
    p = run_cli(
        "label",
        "--pairs",
        pairs,
        "--constitution",
        constitution,
        "--judge",
        judge,
        "--out",
        tmp_path / "ai",
        "--seed",
        str(case.SEED),
        "--quiet",
    )
    assert p.returncode == 0, p.stderr
    ai = {r["id"]: r for r in read_jsonl(tmp_path / "ai" / "labels.jsonl")}
    assert {r["id"] for r in human} == set(ai)
    for r in human:
        assert r["principle_id"] == ai[r["id"]]["principle_id"]
        assert r["constitution_sha256"] == ai[r["id"]]["constitution_sha256"]
        if r["annotator"] == USERS[case.ALICE]:
            assert r["label"] == ai[r["id"]]["label"]


def test_export_tasks_writes_what_label_studio_was_given(tmp_path):
    """The tasks written today are the ones the fixture's server stored: the fixture stays a test of them."""
    p = export_tasks(tmp_path)
    assert p.returncode == 0, p.stderr
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text(encoding="utf-8"))
    assert [t["data"] for t in tasks] == [t["data"] for t in fixture()]
    orders = [t["data"]["rlaif"]["shown_order"] for t in tasks]
    assert json.loads(p.stdout) == {"tasks": 8, "shown_ab": orders.count("ab"), "shown_ba": orders.count("ba")}
    by_id = {p.id: p for p in read_pairs(tmp_path / "pairs.jsonl", seed=case.SEED)}
    const = load_constitution(tmp_path / "polite.yaml")
    for t in tasks:
        data, known = t["data"], t["data"]["rlaif"]
        pair = by_id[known["pair_id"]]
        order = shown_order(case.SEED, ORDER_KEY, pair.id)  # seeded per task, stored in it
        principle = const.principles_for(pair, case.SEED)[0]  # the one the judge drew for the pair
        assert (known["shown_order"], known["principle_id"], known["principle_invert"]) == (
            order,
            principle.id,
            principle.invert,
        )
        assert data["principle"] == principle.text
        assert (data["left"], data["right"]) == (
            (pair.response_a, pair.response_b) if order == "ab" else (pair.response_b, pair.response_a)
        )
        assert (known["prompt"], known["response_a"], known["response_b"]) == (
            pair.prompt,
            pair.response_a,
            pair.response_b,
        )
    chat = next(t["data"] for t in tasks if t["data"]["rlaif"]["conversational"])
    assert chat["prompt"] == "System: You are terse.\n\nUser: Can you check my essay?"
    # another seed draws other orders
    p = export_tasks(tmp_path / "other", seed=case.SEED + 1)
    other = json.loads((tmp_path / "other" / "ls" / "tasks.json").read_text(encoding="utf-8"))
    assert [t["data"]["rlaif"]["shown_order"] for t in other] != [t["data"]["rlaif"]["shown_order"] for t in tasks]


def test_the_labeling_config_shows_text_only_and_asks_a_b_or_tie(tmp_path):
    assert export_tasks(tmp_path).returncode == 0
    root = ET.fromstring((tmp_path / "ls" / "config.xml").read_text(encoding="utf-8"))
    shown = {el.get("name"): el.get("value") for el in root.iter("Text")}
    assert shown == {"prompt": "$prompt", "principle": "$principle", "left": "$left", "right": "$right"}
    # no tag that renders a value as HTML: a response is shown as the characters it is
    assert not [el.tag for el in root.iter() if el.tag in ("HyperText", "HyperTextLabels", "Html")]
    (choices,) = root.iter("Choices")
    assert (choices.get("name"), choices.get("choice"), choices.get("required")) == ("choice", "single", "true")
    assert [c.get("value") for c in choices.iter("Choice")] == ["A", "B", "Tie"]
    variables = set(re.findall(r"\$(\w+)", (tmp_path / "ls" / "config.xml").read_text()))
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text(encoding="utf-8"))
    assert all(variables <= set(t["data"]) for t in tasks)


def test_a_user_named_in_full_by_the_export_is_the_same_annotator(tmp_path):
    """Label Studio's snapshot export can expand `completed_by` into the user ({id, email, ...})."""
    tasks = fixture()
    for t in tasks:
        for a in t["annotations"]:
            a["completed_by"] = {
                "id": a["completed_by"],
                "email": f"user{a['completed_by']}@x.test",
                "first_name": "",
                "last_name": "",
            }
    import_labels(write_export(tmp_path, tasks), tmp_path / "expanded.jsonl")
    import_labels(case.FIXTURE, tmp_path / "plain.jsonl")
    assert read_jsonl(tmp_path / "expanded.jsonl") == read_jsonl(tmp_path / "plain.jsonl")


def alices(task: dict) -> dict:
    """alice's annotation of a task (user 1)."""
    return next(a for a in task["annotations"] if a["completed_by"] == 1)


def _choice(value):
    def edit(task):
        alices(task)["result"][0]["value"]["choices"] = value

    return edit


def _drop(key):
    def edit(task):
        del alices(task)[key]

    return edit


def _known(key, value):
    def edit(task):
        task["data"]["rlaif"][key] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            _choice(["Maybe"]),
            "by label-studio:1: choice 'Maybe' is not one of A, B, Tie (was the labeling config changed?)",
        ),
        (_choice([]), "by label-studio:1: no choice (one of A, B, Tie is needed, or the task skipped)"),
        (_choice(["A", "B"]), "more than one choice"),
        (_drop("completed_by"), "completed_by names no Label Studio user"),
        (_known("shown_order", "xy"), "data.rlaif: shown_order: Input should be 'ab' or 'ba'"),
        (_known("response_a", 7), "data.rlaif: response_a: Input should be a valid string"),
        (_known("shown_order", "ba"), "the task data was changed after `rlaif annotate export-tasks`"),
        (
            lambda task: task["data"].update(left="edited in Label Studio"),
            "its left and right responses are not pair 'markup' in the order recorded (ab)",
        ),
        (lambda task: task["data"].pop("rlaif"), "was not written by `rlaif annotate export-tasks`"),
        (
            lambda task: task["annotations"].append(copy.deepcopy(alices(task))),
            "a second label for pair 'markup' by 'label-studio:1' (first on line 3); delete the extra "
            "annotation in Label Studio, or import each project once",
        ),
    ],
)
def test_a_bad_task_or_annotation_is_named_by_file_and_task_and_nothing_is_written(tmp_path, edit, message):
    tasks = fixture()
    edit(tasks[2])
    export = write_export(tmp_path, tasks)
    with pytest.raises(DataError) as e:
        import_labels(export, tmp_path / "out.jsonl")
    assert (e.value.path, e.value.line) == (str(export), 3) and message in e.value.message, str(e.value)
    assert not (tmp_path / "out.jsonl").exists()
    assert e.value.message.startswith("task 3") or "a second label" in e.value.message


def test_skip_invalid_leaves_bad_annotations_out_and_says_which(tmp_path):
    tasks = fixture()
    _choice(["Maybe"])(tasks[0])
    tasks[5]["data"]["right"] = "edited"
    p = run_cli("human", "import", write_export(tmp_path, tasks), "--out", tmp_path / "out.jsonl")
    assert p.returncode == 2 and p.stderr.startswith(f"error: {tmp_path / 'export.json'}:1: task 1, annotation ")
    assert ": by label-studio:1: choice 'Maybe' is not one of A, B, Tie" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.jsonl").exists()
    p = run_cli("human", "import", write_export(tmp_path, tasks), "--out", tmp_path / "out.jsonl", "--skip-invalid")
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    skipped = [line for line in p.stderr.splitlines() if line.startswith("skipped ")]
    assert counts["skipped_invalid"] == len(skipped) == 2
    assert skipped[0].startswith(f"skipped {tmp_path / 'export.json'}:1: task 1, annotation {alices(tasks[0])['id']}: ")
    assert skipped[1].startswith(f"skipped {tmp_path / 'export.json'}:6: task 6: its left and right responses")
    # task 6's two labels and task 1's bad one are out; the other 12 are in
    assert counts["labels"] == len(read_jsonl(tmp_path / "out.jsonl")) == 15 - 2 - 1


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"id": 1, "rlaif": {}, "annotation_id": 4, "annotator": 1, "choice": "A"}], "a Label Studio JSON-MIN export"),
        ([{"data": {"left": "x", "rlaif": {}}}], "the tasks `rlaif annotate export-tasks` wrote, without annotations"),
    ],
)
def test_the_wrong_label_studio_file_is_named_as_such(tmp_path, rows, message):
    p = run_cli("human", "import", write_export(tmp_path, rows), "--out", tmp_path / "out.jsonl")
    assert p.returncode == 2 and p.stderr.startswith(f"error: {tmp_path / 'export.json'}: {message}")
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.jsonl").exists()


def test_export_tasks_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path):
    pairs, constitution = case.write_inputs(tmp_path)
    with open(pairs, "a", encoding="utf-8") as f:
        f.write(
            "not json\n"
            + json.dumps({"prompt": "p", "response_a": "x", "response_b": "y", "principle": "kindest"})
            + "\n"
        )
    out = tmp_path / "ls"
    args = (
        "annotate",
        "export-tasks",
        "--format",
        "label-studio",
        "--pairs",
        pairs,
        "--constitution",
        constitution,
        "--out",
        out,
    )
    p = run_cli(*args)
    assert p.returncode == 2 and p.stderr.strip() == f"error: {pairs}:9: malformed JSON: Expecting value (column 1)"
    assert not out.exists() or not any(out.iterdir())
    p = run_cli(*args, "--skip-invalid")
    assert (
        p.returncode == 2
        and p.stderr.strip() == f"error: {pairs}:10: principle 'kindest' is not in constitution 'polite'"
    )
    (tmp_path / "file").write_text("")
    p = run_cli(*args[:-1], tmp_path / "file")
    assert (
        p.returncode == 2
        and p.stderr.strip() == f"error: --out: {tmp_path / 'file'} is a file; give a folder (it is created if missing)"
    )
    p = run_cli(*args[:3], "csv", *args[4:])
    assert p.returncode == 2 and p.stderr.strip() == "error: --format: unknown task format 'csv' (known: label-studio)"


def test_skip_invalid_reports_each_row_left_out(tmp_path):
    pairs, constitution = case.write_inputs(tmp_path)
    with open(pairs, "a", encoding="utf-8") as f:
        f.write("not json\n" + json.dumps({**case.PAIR_ROWS[2], "response_a": "Stand."}) + "\n")
    p = run_cli(
        "annotate",
        "export-tasks",
        "--format",
        "label-studio",
        "--pairs",
        pairs,
        "--constitution",
        constitution,
        "--out",
        tmp_path / "ls",
        "--skip-invalid",
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [
        f"skipped {pairs}:9: malformed JSON: Expecting value (column 1)",
        f"skipped {pairs}:10: duplicate id 'markup' (first on line 3)",
    ]
    assert json.loads(p.stdout)["tasks"] == 8 and json.loads(p.stdout)["skipped_invalid"] == 2
    assert len(json.loads((tmp_path / "ls" / "tasks.json").read_text(encoding="utf-8"))) == 8
