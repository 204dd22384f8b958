"""`rlaif revise` as a job, exactly like `rlaif label`: it resumes by content key with one record per prompt id,
refuses a folder of another job (constitution, model, generation settings, rounds, seed), exits 4 on failed chains
until --retry-failed replaces them, and reports bad input as one FILE:LINE line with exit 2, keeping what it did."""

from __future__ import annotations

import json

import pytest

from rlaif.jobs.folder import FolderLock
from tests.labeling.jobfiles import strict_records, write_rows
from tests.revision.files import CONSTITUTION, cli, prompt_rows, revise_args, revise_files, revised, stats


def one_line(result, code: int = 2) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_resume_skips_what_is_done_and_revises_what_is_new(tmp_path):
    files = revise_files(tmp_path, prompt_rows(5))
    first = cli(*revise_args(files, "--limit", "3"))
    assert first.exit_code == 0, first.stderr
    assert sorted(revised(files["out"])) == ["q0", "q1", "q2"]
    second = cli(*revise_args(files))
    assert second.exit_code == 0, second.stderr
    records, s = revised(files["out"]), stats(files["out"])
    assert sorted(records) == [f"q{i}" for i in range(5)]
    assert (s["revised_now"], s["resumed_skipped"], s["prompts"], s["ok"]) == (2, 3, 5, 5)
    assert s["mean_initial_chars"] < s["mean_final_chars"] and s["final_differs_from_initial"] == 1.0
    assert sum(s["principles"].values()) == 10 and s["cut_at_max_new_tokens"] == {
        "initial": 0,
        "critique": 0,
        "revision": 0,
    }
    assert "revisions in" in second.stdout and "resumed (already done)" in second.stdout
    manifest = json.loads((files["out"] / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["rounds"] == 2 and manifest["input_prompts"] == 5
    assert manifest["model"]["function"] == "tests.revision.revisers:polite"
    # a row repeating an earlier prompt under its id is read once; another prompt under that id is an error
    write_rows(files["prompts"], [*prompt_rows(5), prompt_rows(1)[0]])
    assert cli(*revise_args(files)).exit_code == 0 and stats(files["out"])["repeated_rows"] == 1
    write_rows(files["prompts"], [*prompt_rows(5), {"id": "q0", "prompt": "another"}])
    assert one_line(cli(*revise_args(files))) == (
        f"error: {files['prompts']}:6: id 'q0' is used before, at line 1, for another prompt or response; give "
        f"each prompt its own id"
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (("--rounds", "3"), "different number of rounds (rounds: 2 in manifest.json, 3 now)"),
        (("--seed", "1"), "different seed (seed: 0 in manifest.json, 1 now)"),
        (("--max-new-tokens", "9"), "different generation settings"),
        ("constitution", "different constitution"),
        ("model", "different model settings"),
    ],
)
def test_a_folder_of_another_job_is_refused(tmp_path, change, message):
    files = revise_files(tmp_path, prompt_rows(2))
    assert cli(*revise_args(files)).exit_code == 0
    extra = change if isinstance(change, tuple) else ()
    if change == "constitution":
        files["constitution"].write_text(CONSTITUTION.replace("politely", "gently"))
    if change == "model":
        files["model"].write_text("backend: python\nfunction: tests.revision.revisers:flaky\n")
    line = one_line(cli(*revise_args(files, *extra)))
    assert message in line and "Use a new --out directory" in line
    (files["out"] / "manifest.json").unlink()  # job.json and the records still say which job made them
    assert message.split(" (")[0] in one_line(cli(*revise_args(files, *extra)))


def test_failed_chains_exit_4_until_retried(tmp_path, monkeypatch):
    files = revise_files(tmp_path, prompt_rows(3), "tests.revision.revisers:flaky")
    monkeypatch.setenv("RLAIF_TEST_REVISER_DOWN", "1")
    down = cli(*revise_args(files))
    assert down.exit_code == 4
    assert (
        "3 prompts have no revision because a step of their chain failed (3 this run, 0 before; most "
        "often: the first answer: ConnectionError"
        in down.stderr
        and "--retry-failed" in down.stderr
    )
    assert all(r["status"] == "failed" and r["final"] is None for r in revised(files["out"]).values())
    assert cli(*revise_args(files, "--allow-failed")).exit_code == 0  # accepted as it is
    monkeypatch.delenv("RLAIF_TEST_REVISER_DOWN")
    assert cli(*revise_args(files)).exit_code == 4  # without --retry-failed the failed chains stand
    back = cli(*revise_args(files, "--retry-failed"))
    assert back.exit_code == 0, back.stderr
    records = revised(files["out"])
    assert all(r["status"] == "ok" and r["final"].endswith("please") for r in records.values())
    old = strict_records(files["out"] / "superseded.jsonl")
    assert sorted(r["id"] for r in old) == ["q0", "q1", "q2"] and all(r["status"] == "failed" for r in old)
    s = stats(files["out"])
    assert (s["retried_this_run"], s["failed"], s["failed_before"]) == (3, 0, 0)


def test_an_edited_prompt_under_a_revised_id_is_an_error(tmp_path):
    files = revise_files(tmp_path, prompt_rows(2))
    assert cli(*revise_args(files)).exit_code == 0
    write_rows(files["prompts"], [prompt_rows(2)[0], {"id": "q1", "prompt": "edited"}])
    assert one_line(cli(*revise_args(files))) == (
        f"error: {files['prompts']}:2: prompt 'q1' was revised before with other content "
        f"({files['out'] / 'revisions.jsonl'}:2); give the edited prompt a new id"
    )


def test_a_folder_being_revised_is_refused(tmp_path):
    files = revise_files(tmp_path, prompt_rows(1))
    files["out"].mkdir()
    lock = FolderLock(files["out"], "revised")
    lock.acquire()
    try:
        assert "is already being revised by this process" in one_line(cli(*revise_args(files)))
    finally:
        lock.release()
    assert cli(*revise_args(files)).exit_code == 0


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": "ok"}, {"id": "x"}], ":2: row has no prompt; it has: id"),
        ([{"prompt": "ok"}, {"prompt": "ok 2"}, {"prompt": "  "}], ":3: prompt is empty"),
        ([{"prompt": "ok"}, {"prompt": "q", "response": 3}], ":2: response must be a non-empty string"),
        ([{"prompt": "ok"}, "{not json"], ":2: "),
    ],
)
def test_a_bad_prompt_row_is_one_file_line_error_and_loses_nothing(tmp_path, rows, message):
    files = revise_files(tmp_path, rows)
    line = one_line(cli(*revise_args(files, "--quiet")))
    assert line.startswith(f"error: {files['prompts']}{message}")
    # the good rows before it were revised and kept; fixed, the same command goes on from there
    assert len(revised(files["out"])) == len(rows) - 1


def test_a_constitution_without_critique_and_revision_requests_is_refused_at_its_line(tmp_path):
    files = revise_files(
        tmp_path,
        prompt_rows(1),
        constitution="name: c\nversion: '1'\nprinciples:\n"
        "  - id: a\n    text: Which is better?\n    critique: only half of the pair\n",
    )
    line = one_line(cli(*revise_args(files)))
    assert line == (
        f"{files['constitution']}:3: principles: no principle has both a critique and a revision "
        f"request; rlaif revise draws each round's principle among those that do (see "
        f"constitutions/harmless.yaml)"
    )
    assert not files["out"].exists()  # refused before any work


def test_a_prompt_too_long_for_the_model_is_one_file_line_error(tmp_path, tiny_model_dir, one_thread):
    rows = [{"id": "a", "prompt": "short"}, {"id": "b", "prompt": "short too"}, {"id": "c", "prompt": "long " * 60}]
    files = revise_files(tmp_path, rows, model=f"backend: transformers\nmodel: {tiny_model_dir}\nmax_length: 200\n")
    line = one_line(cli(*revise_args(files, "--max-new-tokens", "4", "--rounds", "1")))
    assert (
        line.startswith(
            f"error: {files['prompts']}:3: prompt 'c': the first answer: conversation too long for the model: "
        )
        and "over max_length=200" in line
    )
    assert sorted(revised(files["out"])) == ["a", "b"]  # nothing lost
    assert json.loads((files["out"] / "manifest.json").read_text())["status"] == "error"


def test_shards_are_disjoint_and_together_complete(tmp_path):
    files = revise_files(tmp_path, prompt_rows(30))
    ids = []
    for i in range(3):
        shard = {**files, "out": tmp_path / f"shard{i}"}
        assert cli(*revise_args(shard, "--shard", f"{i}/3")).exit_code == 0
        ids += list(revised(shard["out"]))
        assert 0 < stats(shard["out"])["prompts"] < 30
    assert sorted(ids) == sorted(f"q{i}" for i in range(30))  # each prompt in exactly one shard
    other = one_line(cli(*revise_args({**files, "out": tmp_path / "shard0"}, "--shard", "1/3")))
    assert "different shard" in other
    assert "--shard must be I/N with 0 <= I < N, got 3/3" in one_line(cli(*revise_args(files, "--shard", "3/3")))


def test_rounds_are_bounded(tmp_path):
    files = revise_files(tmp_path, prompt_rows(1))
    for rounds in ("0", "17", "1000000"):
        line = one_line(cli(*revise_args(files, "--rounds", rounds)))
        assert line == (
            "error: --rounds must be a positive number, got 0"
            if rounds == "0"
            else f"error: --rounds must be at most 16, got {rounds}: each round is a critique and a revision "
            f"more per prompt, in a longer conversation (Constitutional AI used up to 4)"
        )
    assert not files["out"].exists()  # refused before anything is written
    assert cli(*revise_args(files, "--rounds", "16")).exit_code == 0
    assert len(revised(files["out"])["q0"]["rounds"]) == 16
