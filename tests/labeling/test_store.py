"""The label store on real files: one record per id whatever state a kill leaves it in, strict JSON, and JSON
documents that are empty or broken named in one clean error."""

from __future__ import annotations

import json

import pytest

from rlaif.data.labels import read_json_file, read_labels
from rlaif.files import write_json_atomic
from rlaif.jobs.store import LabelStore
from tests.labeling.jobfiles import strict_records


def rec(pid: str, status: str = "ok", key: str = "k", **extra) -> dict:
    return {
        "id": pid,
        "key": f"{key}-{pid}",
        "status": status,
        "p_a": 0.9 if status == "ok" else None,
        "label": "a" if status == "ok" else None,
        "prompt": "q",
        "response_a": "x",
        "response_b": "y",
        **extra,
    }


def store_with(tmp_path, records, waiting=()) -> LabelStore:
    store = LabelStore(tmp_path / "labels.jsonl")
    store.open()
    store.append(records)
    store.supersede(waiting)
    return store


def test_new_attempts_wait_aside_then_fold_in_one_rewrite(tmp_path):
    store = store_with(tmp_path, [rec("a", "failed"), rec("b"), rec("c", "failed")])
    store.supersede([rec("a", key="new"), rec("c", key="new")])
    # until the fold, readers see the old records, one per id
    assert [r["status"] for r in read_labels(store.path)] == ["failed", "ok", "failed"]
    assert store.fold() == 2
    assert [(r["id"], r["key"]) for r in strict_records(store.path)] == [("a", "new-a"), ("b", "k-b"), ("c", "new-c")]
    assert [r["status"] for r in strict_records(store.superseded)] == ["failed", "failed"]
    assert not store.superseding.exists()


@pytest.mark.parametrize("killed_after", ["archive", "rename"])
def test_a_fold_killed_midway_is_redone_without_duplicates(tmp_path, killed_after):
    store = store_with(tmp_path, [rec("a", "failed"), rec("b")])
    new = rec("a", key="new")
    store.supersede([new])
    # what a SIGKILL leaves after each step of fold(): the old record archived, or labels.jsonl already rewritten
    store.superseded.write_text(json.dumps(rec("a", "failed")) + "\n")
    if killed_after == "rename":
        store.path.write_text(json.dumps(new) + "\n" + json.dumps(rec("b")) + "\n")
    index = store.index()
    assert {i: s.key for i, s in index.items()} == {"a": "new-a", "b": "k-b"}
    assert strict_records(store.superseded) == [rec("a", "failed")]
    assert not store.superseding.exists()


def test_ids_an_older_rlaif_stored_twice_keep_their_ok_record(tmp_path):
    # what the old job wrote after a --skip-invalid row was fixed (failed, then ok) and after an edited pair
    store = store_with(tmp_path, [rec("x", "failed"), rec("y"), rec("x"), rec("y", key="edited"), rec("z")])
    index = store.index()
    assert {i: (s.key, s.status) for i, s in index.items()} == {
        "x": ("k-x", "ok"),
        "y": ("edited-y", "ok"),
        "z": ("k-z", "ok"),
    }
    assert [r["id"] for r in strict_records(store.path)] == ["x", "y", "z"]
    assert [(r["id"], r["status"]) for r in strict_records(store.superseded)] == [("x", "failed"), ("y", "ok")]


def test_index_refuses_a_line_that_is_no_record(tmp_path):
    store = store_with(tmp_path, [rec("a")])
    with open(store.path, "a") as f:
        f.write("[1, 2]\n")
    with pytest.raises(ValueError, match=r"labels.jsonl:2: not a label record"):
        store.index()


def test_open_cuts_partial_lines_of_every_store_file(tmp_path):
    store = store_with(tmp_path, [rec("a"), rec("b")], waiting=[rec("a", key="new")])
    for f in (store.path, store.superseding):
        with open(f, "a") as fh:
            fh.write('{"id": "half')
    assert store.open() == 2 * len('{"id": "half')
    assert [r["id"] for r in strict_records(store.path)] == ["a", "b"]
    assert [r["id"] for r in strict_records(store.superseding)] == ["a"]


def test_store_writes_strict_json_only(tmp_path):
    store = store_with(tmp_path, [rec("a")])
    with pytest.raises(ValueError, match="Out of range float"):
        store.append([rec("b", p_a=float("nan"))])
    with pytest.raises(ValueError, match="Out of range float"):
        write_json_atomic(tmp_path / "stats.json", {"x": float("inf")})
    assert [r["id"] for r in strict_records(store.path)] == ["a"] and not (tmp_path / "stats.json").exists()


@pytest.mark.parametrize("text, what", [("", "is empty"), ('{"status": ', "is not valid JSON")])
def test_a_broken_json_document_is_one_error_naming_it(tmp_path, text, what):
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        read_json_file(path)
    assert str(e.value).startswith(f"{path} {what}")
