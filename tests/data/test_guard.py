"""The numbers guard at the readers and the judge outputs (rlaif/numbers.py): a folder someone edited is refused at
FILE:LINE with exit 2 by every reader (export, training), never passed on as a wrong number; weights whose sum would
overflow give the label and the score every principle gives; a folder whose job still runs is not exported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlaif.constitution import Constitution, Principle
from rlaif.labeling.job import label
from rlaif.revision.job import revise
from rlaif.scoring.job import score
from tests.fuzz.helpers import cli
from tests.helpers import ROOT
from tests.labeling.jobfiles import polite_rows, stored, write_rows
from tests.revision.files import CONSTITUTION as REVISABLE
from tests.revision.files import prompt_rows

POLITE = "backend: python\nfunction: tests.judge_fns:prefers_polite\n"
SCORE_POLITE = "backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n"
HUGE = Constitution(
    name="huge",
    version="1",
    sampling="all",
    principles=[Principle(id=f"p{i}", text="Which is more polite?", weight=1e308) for i in range(3)],
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Label, score and revision folders, each made by a real job with a rule judge (huge weights: HUGE)."""
    tmp = tmp_path_factory.mktemp("guard")
    (tmp / "judge.yaml").write_text(POLITE)
    (tmp / "score.yaml").write_text(SCORE_POLITE)
    (tmp / "reviser.yaml").write_text("backend: python\nfunction: tests.revision.revisers:polite\n")
    (tmp / "c.yaml").write_text(REVISABLE)
    pairs = write_rows(tmp / "pairs.jsonl", polite_rows(4))
    label(pairs, HUGE, tmp / "judge.yaml", tmp / "labels", progress=False)
    score(pairs, HUGE, tmp / "score.yaml", tmp / "huge-scores", progress=False)
    score(pairs, tmp / "c.yaml", tmp / "score.yaml", tmp / "scores", progress=False)
    revise(
        write_rows(tmp / "prompts.jsonl", prompt_rows(3)),
        tmp / "c.yaml",
        tmp / "reviser.yaml",
        tmp / "revisions",
        progress=False,
    )
    return {
        "labels": tmp / "labels",
        "huge-scores": tmp / "huge-scores",
        "scores": tmp / "scores",
        "revisions": tmp / "revisions",
    }


def _edited(src: Path, dst: Path, name: str, edit) -> Path:
    """A copy of folder `src` whose file `name` went through `edit(list of line strings) -> lines`."""
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.name != "job.lock":
            (dst / f.name).write_bytes(f.read_bytes())
    lines = (src / name).read_text(encoding="utf-8").splitlines()
    (dst / name).write_text("".join(line + "\n" for line in edit(lines)), encoding="utf-8")
    return dst


def _set(field: str, value: str, line: int = 1):
    """An edit that sets one field of one record to `value`, written as raw JSON (NaN, a string, null...)."""

    def edit(lines):
        record = json.loads(lines[line - 1])
        record[field] = "@@"
        lines[line - 1] = json.dumps(record).replace('"@@"', value)
        return lines

    return edit


def _drop(field: str, line: int = 1):
    def edit(lines):
        record = json.loads(lines[line - 1])
        del record[field]
        lines[line - 1] = json.dumps(record)
        return lines

    return edit


def _twice(line: int = 1):
    return lambda lines: lines + [lines[line - 1]]


def _refused(result, where: str, says: str) -> None:
    """Exit 2, one line naming FILE:LINE and the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and where in errors[0] and says in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


# -- overflowing weights --------------------------------------------------------------------------------------------
def test_weights_whose_sum_overflows_give_what_every_principle_says(folders):
    labels = stored(folders["labels"])
    for r in labels.values():  # every principle prefers the polite response a
        assert r["status"] == "ok" and r["label"] == "a" and r["p_a"] == pytest.approx(0.9)
    scores = [json.loads(x) for x in (folders["huge-scores"] / "scores.jsonl").read_text().splitlines()]
    for r in scores:
        assert r["status"] == "ok" and r["score"] == pytest.approx(8 if r["side"] == "a" else 3)
        assert sum(r["distribution"].values()) == pytest.approx(1.0)


# -- edited label folders -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "edit, says",
    [
        (_set("p_a", "1.7"), "p_a = 1.7 is outside [0, 1]"),
        (_set("p_a", "-0.5"), "p_a = -0.5 is outside [0, 1]"),
        (_set("p_a", "NaN"), "p_a is nan, not a finite number"),
        (_set("p_a", "Infinity"), "p_a is inf, not a finite number"),
        (_set("p_a", '"0.9"'), "p_a is the string '0.9', not a finite number"),
        (_set("p_a", "null"), "p_a is null, not a finite number"),
        (_set("p_a", "true"), "p_a is true, not a finite number"),
        (_drop("p_a"), "p_a is null, not a finite number"),
        (_set("label", '"b"'), "label 'b' contradicts p_a"),
        (_set("p_a_orders", "[0.9, 2]"), "p_a_orders[1] = 2.0 is outside [0, 1]"),
        (_drop("prompt"), "prompt is missing"),
        (_set("id", "7"), "id is 7; it must be a non-empty string"),
        (_twice(2), "a second record for id 'p1' (the first is at line 2)"),
    ],
)
def test_an_edited_label_folder_is_refused_at_file_line(folders, tmp_path, edit, says):
    edited = _edited(folders["labels"], tmp_path / "edited", "labels.jsonl", edit)
    line = 5 if "second record" in says else 1
    _refused(cli("export", "--labels", edited, "--out", tmp_path / "trl.jsonl"), f"labels.jsonl:{line}:", says)
    assert not (tmp_path / "trl.jsonl").exists()


def test_training_refuses_an_edited_feedback_line_before_the_first_step(folders, tmp_path):
    edited = _edited(folders["labels"], tmp_path / "edited", "labels.jsonl", _set("p_a", "NaN", line=3))
    config = tmp_path / "dpo.yaml"
    config.write_text(
        f"method: dpo\nmodel: {{type: tiny}}\noutput_dir: {tmp_path / 'run'}\nmax_steps: 2\n"
        f"batch_size: 1\nfeedback: {{source: ai, ai: {edited}}}\npairs: {{eval_fraction: 0}}\n"
    )
    _refused(cli("train", "dpo", "--config", config), "labels.jsonl:3:", "p_a is nan, not a finite number")
    assert not list((tmp_path / "run").glob("checkpoint-*")) and not (tmp_path / "run" / "model").exists()


# -- edited score folders -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "edit, says",
    [
        (_set("reward", "NaN"), "reward is nan, not a finite number"),
        (_set("reward", '"high"'), "reward is the string 'high', not a finite number"),
        (_set("reward", "0.99"), "does not match score"),
        (_set("score", "11"), "score = 11.0 is outside [1, 10]"),
        (_drop("prompt_id"), "prompt_id is missing"),
        (_set("distribution", '{"1": 0.5, "2": 0.7}'), "distribution sums to 1.2"),
        (_twice(), "a second record for id"),
    ],
)
def test_an_edited_score_folder_is_refused_at_file_line(folders, tmp_path, edit, says):
    edited = _edited(folders["scores"], tmp_path / "edited", "scores.jsonl", edit)
    line = 9 if "second record" in says else 1
    for args in (["--labels", edited], ["--labels", edited, "--pairs-from", "best-vs-worst"]):
        _refused(cli("export", *args, "--out", tmp_path / "trl.jsonl"), f"scores.jsonl:{line}:", says)
    assert not (tmp_path / "trl.jsonl").exists()


def test_a_score_manifest_edited_off_any_scale_is_refused(folders, tmp_path):
    edited = _edited(folders["scores"], tmp_path / "edited", "scores.jsonl", lambda lines: lines)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["judge"]["score"]["temperature"] = -1
    (edited / "manifest.json").write_text(json.dumps(manifest))
    _refused(
        cli("export", "--labels", edited, "--out", tmp_path / "trl.jsonl"),
        "manifest.json: judge.score.temperature:",
        "T is -1, not a finite number above 0",
    )


# -- edited revision folders ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "edit, says",
    [
        (_set("final", '""'), "final is the string '': an ok chain ends in a revision with text"),
        (_set("final", "null"), "final is null"),
        (_twice(), "a second record for id"),
    ],
)
def test_an_edited_revision_folder_is_refused_at_file_line(folders, tmp_path, edit, says):
    edited = _edited(folders["revisions"], tmp_path / "edited", "revisions.jsonl", edit)
    line = 4 if "second record" in says else 1
    _refused(cli("export", "--revisions", edited, "--out", tmp_path / "sft.jsonl"), f"revisions.jsonl:{line}:", says)
    assert not (tmp_path / "sft.jsonl").exists()


# -- a folder whose job still runs ---------------------------------------------------------------------------------
HOLD = """
import sys, time
from pathlib import Path
from rlaif.jobs.folder import FolderLock
FolderLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["labels", "scores", "revisions"])
def test_export_refuses_a_folder_whose_job_still_runs(folders, tmp_path, kind):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folders[kind])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        flag = "--revisions" if kind == "revisions" else "--labels"
        _refused(
            cli("export", flag, folders[kind], "--out", tmp_path / "out.jsonl"),
            str(folders[kind]),
            f"is still being written by its job (host {os.uname().nodename}, PID {holder.pid})",
        )
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10  # the lock ends with its process
    while time.time() < deadline:
        done = cli(
            "export",
            "--revisions" if kind == "revisions" else "--labels",
            folders[kind],
            "--out",
            tmp_path / "out.jsonl",
        )
        if done.exit_code == 0:
            break
    assert done.exit_code == 0, done.stderr


# -- a job resumed over a store someone edited ----------------------------------------------------------------------
@pytest.mark.parametrize("job", ["label", "score"])
def test_a_job_resumed_over_an_edited_record_refuses_it_at_file_line(tmp_path, job):
    (tmp_path / "judge.yaml").write_text(POLITE if job == "label" else SCORE_POLITE)
    (tmp_path / "c.yaml").write_text(REVISABLE)
    pairs = write_rows(tmp_path / "pairs.jsonl", polite_rows(3))
    args = [
        job,
        "--pairs",
        pairs,
        "--constitution",
        tmp_path / "c.yaml",
        "--judge",
        tmp_path / "judge.yaml",
        "--out",
        tmp_path / "out",
        "--quiet",
    ]
    assert cli(*args).exit_code == 0
    name, field, value, says = (
        ("labels.jsonl", "p_a", "1.7", "p_a = 1.7 is outside [0, 1]")
        if job == "label"
        else ("scores.jsonl", "score", "NaN", "score is nan, not a finite number")
    )
    store = tmp_path / "out" / name
    store.write_text("".join(line + "\n" for line in _set(field, value, line=2)(store.read_text().splitlines())))
    before = store.read_bytes()
    _refused(cli(*args), f"{name}:2:", f"{says}. Fix or delete that line and run again")
    assert store.read_bytes() == before  # nothing lost, nothing rewritten
    store.write_text("".join(line + "\n" for i, line in enumerate(store.read_text().splitlines()) if i != 1))
    assert cli(*args).exit_code == 0  # the deleted record is made again
    assert len(store.read_text().splitlines()) == (3 if job == "label" else 6)


def test_an_input_row_with_a_lone_surrogate_is_bad_input_at_its_line(tmp_path):
    """A JSON escape can spell text no UTF-8 encodes ("\\udc80"): the row is refused at its line, or recorded as
    invalid under --skip-invalid, never a codec error naming nothing."""
    (tmp_path / "judge.yaml").write_text(POLITE)
    (tmp_path / "c.yaml").write_text(REVISABLE)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        '{"prompt": "q1", "response_a": "please", "response_b": "no"}\n'
        '{"prompt": "q\\udc80", "response_a": "please", "response_b": "no"}\n'
    )
    args = [
        "label",
        "--pairs",
        pairs,
        "--constitution",
        tmp_path / "c.yaml",
        "--judge",
        tmp_path / "judge.yaml",
        "--out",
        tmp_path / "out",
        "--quiet",
    ]
    _refused(cli(*args), "pairs.jsonl:2:", "holds text no UTF-8 encodes (a lone surrogate, '\\udc80'")
    assert cli(*args, "--skip-invalid").exit_code == 0
    records = stored(tmp_path / "out")
    assert records["rlaif:line-2"]["status"] == "failed" and "lone surrogate" in records["rlaif:line-2"]["error"]
