"""One record per pair id, as a user meets it through `rlaif label`: an edited pair, a fixed invalid row, a row
whose id looks like a synthetic one, a principle the constitution lacks, a store an older rlaif wrote twice into.
Real files and real `rlaif label` subprocesses with a python judge."""

from __future__ import annotations

import json

from datasets import load_dataset

from rlaif.data.pairs import parse_row
from tests.helpers import run_cli
from tests.labeling.jobfiles import job_files, polite_rows, rlaif_label, stored, strict_records, write_rows


def test_an_edited_pair_is_refused_naming_both_lines_or_relabelled_on_request(tmp_path):
    files = job_files(tmp_path, polite_rows(4))
    assert rlaif_label(files).returncode == 0
    rows = polite_rows(4)
    rows[2]["response_a"] = "please, an edited reply"
    write_rows(files["pairs"], rows)
    p = rlaif_label(files)
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"error: {files['pairs']}:3: pair 'p2' was labelled before with different content "
        f"({files['out'] / 'labels.jsonl'}:3). Give the edited pair a new id, or pass --relabel-changed to label "
        f"it again (the old label moves to superseded.jsonl)"
    )
    assert json.loads((files["out"] / "manifest.json").read_text())["status"] == "error"
    assert stored(files["out"])["p2"]["response_a"] == "please, 2"

    assert rlaif_label(files, "--relabel-changed").returncode == 0
    recs = stored(files["out"])
    assert len(recs) == 4 and recs["p2"]["response_a"] == "please, an edited reply"
    assert [r["response_a"] for r in strict_records(files["out"] / "superseded.jsonl")] == ["please, 2"]
    # what every downstream reader gets: one row per pair
    assert run_cli("export", "--labels", files["out"], "--out", tmp_path / "trl.jsonl").returncode == 0
    assert len(load_dataset("json", data_files=str(files["out"] / "labels.jsonl"), split="train")) == 4
    assert len(strict_records(tmp_path / "trl.jsonl")) == 4


def test_a_fixed_invalid_row_supersedes_its_failed_record(tmp_path):
    rows = polite_rows(3)
    files = job_files(tmp_path, [rows[0], {**rows[1], "response_b": ""}, rows[2]])
    assert rlaif_label(files, "--skip-invalid").returncode == 0  # bad input is no judge failure: exit 0
    assert stored(files["out"])["p1"]["status"] == "failed"
    write_rows(files["pairs"], rows)
    p = rlaif_label(files)
    assert p.returncode == 0, p.stderr
    recs = stored(files["out"])
    assert [recs[i]["status"] for i in ("p0", "p1", "p2")] == ["ok"] * 3
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert (stats["pairs"], stats["ok"], stats["failed"], stats["retried_this_run"]) == (3, 3, 0, 1)
    assert [r["id"] for r in strict_records(files["out"] / "superseded.jsonl")] == ["p1"]


def test_synthetic_ids_cannot_collide_with_real_ones(tmp_path):
    rows = polite_rows(4)
    files = job_files(
        tmp_path, [rows[0], rows[1], "{not json", {**rows[3], "id": "line-3"}, {**rows[2], "id": "rlaif:line-9"}]
    )
    assert rlaif_label(files, "--skip-invalid").returncode == 0
    recs = stored(files["out"])
    assert set(recs) == {"p0", "p1", "rlaif:line-3", "line-3", "rlaif:line-5"}
    assert recs["line-3"]["status"] == "ok" and recs["rlaif:line-3"]["status"] == "failed"
    assert "kept for rows rlaif cannot read" in recs["rlaif:line-5"]["error"]


def test_a_principle_the_constitution_lacks_is_file_line_or_a_failed_record(tmp_path):
    rows = polite_rows(3)
    rows[1]["principle"] = "honest"
    files = job_files(tmp_path, rows)
    p = rlaif_label(files, "--batch-size", "1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == (
        f"error: {files['pairs']}:2: principle 'honest' is not in constitution 'c' (its principles: polite)"
    )
    assert json.loads((files["out"] / "manifest.json").read_text())["status"] == "error"
    assert list(stored(files["out"])) == ["p0"]  # the work before the bad row is kept
    p = rlaif_label(files, "--skip-invalid")
    assert p.returncode == 0, p.stderr
    bad = stored(files["out"])["p1"]
    assert bad["status"] == "failed" and bad["error"].startswith("invalid input: principle 'honest'")


def test_a_store_with_an_id_twice_is_folded_when_the_job_reopens_it(tmp_path):
    files = job_files(tmp_path, polite_rows(3))
    assert rlaif_label(files).returncode == 0
    labels = files["out"] / "labels.jsonl"
    recs = strict_records(labels)
    # what the old job left after a --skip-invalid row was fixed: a failed record, then the ok one
    failed = {**recs[0], "key": "old", "status": "failed", "p_a": None, "label": None, "error": "invalid input: x"}
    write_rows(labels, [failed, *recs])
    p = rlaif_label(files)
    assert p.returncode == 0, p.stderr
    assert sorted(stored(files["out"])) == ["p0", "p1", "p2"]
    assert strict_records(files["out"] / "superseded.jsonl") == [failed]
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert (stats["pairs"], stats["ok"], stats["failed"]) == (3, 3, 0)


def test_a_fixed_id_less_row_retires_the_record_of_its_line(tmp_path):
    rows = polite_rows(3)
    unreadable = {"prompt": "question x", "response_a": "please, x", "response_b": ""}  # no id, and invalid
    files = job_files(tmp_path, [rows[0], unreadable, rows[1], unreadable])
    assert rlaif_label(files, "--skip-invalid").returncode == 0
    assert set(stored(files["out"])) == {"p0", "rlaif:line-2", "p1", "rlaif:line-4"}

    fixed = {**unreadable, "response_b": "no x"}  # fixed, it gets the content hash `rlaif label` gives it
    write_rows(files["pairs"], [rows[0], fixed, rows[1], unreadable])
    assert rlaif_label(files, "--skip-invalid", "--limit", "2").returncode == 0  # line 4 is not read: kept
    assert set(stored(files["out"])) == {"p0", parse_row(fixed).id, "p1", "rlaif:line-4"}
    write_rows(files["pairs"], [rows[0], fixed, rows[1]])  # the last row removed: no row maps to its record
    p = rlaif_label(files)
    assert p.returncode == 0, p.stderr
    recs = stored(files["out"])
    assert len(recs) == 3 and not any(i.startswith("rlaif:") for i in recs)
    assert all(r["status"] == "ok" for r in recs.values())
    assert [r["id"] for r in strict_records(files["out"] / "superseded.jsonl")] == ["rlaif:line-2", "rlaif:line-4"]
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert (stats["pairs"], stats["ok"], stats["failed"]) == (3, 3, 0)
