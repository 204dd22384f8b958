"""A label folder belongs to one job and one process at a time: two real `rlaif label` processes on one --out,
a deleted or broken manifest, labels appended from another job, an --out that is a file, bad numbers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.helpers import ROOT
from tests.labeling.jobfiles import CONSTITUTION, job_files, label_command, polite_rows, rlaif_label, stored

KINDER = CONSTITUTION.replace("more polite", "kinder")


def test_a_second_process_on_the_same_folder_is_refused_naming_host_and_pid(tmp_path):
    files = job_files(tmp_path, polite_rows(40))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLAIF_TEST_DELAY": "0.05"}
    first = subprocess.Popen(
        label_command(files, "--batch-size", "1"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        labels, deadline = files["out"] / "labels.jsonl", time.time() + 60
        while not (labels.exists() and labels.stat().st_size) and first.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert first.poll() is None, first.stderr.read().decode()
        second = rlaif_label(files)
        assert second.returncode == 2
        assert f"is being labelled by another process (host {socket.gethostname()}, PID {first.pid})" in second.stderr
        assert f"delete {files['out'] / 'job.lock'}" in second.stderr
        os.kill(first.pid, signal.SIGKILL)  # the lock dies with its process: nothing stale to clear
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    done = rlaif_label(files)
    assert done.returncode == 0, done.stderr
    assert sorted(stored(files["out"])) == sorted(f"p{i}" for i in range(40))


def test_a_deleted_manifest_does_not_let_another_job_in(tmp_path):
    files = job_files(tmp_path, polite_rows(3))
    assert rlaif_label(files).returncode == 0
    out = files["out"]
    (out / "manifest.json").unlink()
    files["constitution"].write_text(KINDER)
    p = rlaif_label(files)
    assert p.returncode == 2 and "holds labels made with a different constitution" in p.stderr
    assert "in job.json" in p.stderr
    files["constitution"].write_text(CONSTITUTION)
    p = rlaif_label(files, "--seed", "1")
    assert p.returncode == 2 and "different seed (seed: 0 in job.json, 1 now)" in p.stderr
    (out / "job.json").unlink()
    p = rlaif_label(files)
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"error: {out} holds labels, but neither manifest.json nor job.json says which "
        f"seed and shard made them: use a new --out directory"
    )
    assert len(stored(out)) == 3


def test_labels_appended_from_another_job_are_refused_line_by_line(tmp_path):
    files = job_files(tmp_path, polite_rows(3))
    assert rlaif_label(files).returncode == 0
    (tmp_path / "other").mkdir()
    other = job_files(tmp_path / "other", polite_rows(2, "q"), constitution=KINDER)
    assert rlaif_label(other).returncode == 0
    with open(files["out"] / "labels.jsonl", "a") as f:
        f.write((other["out"] / "labels.jsonl").read_text())
    p = rlaif_label(files)
    assert p.returncode == 2
    assert p.stderr.startswith(f"error: {files['out'] / 'labels.jsonl'}:4: a label made with a different constitution")


@pytest.mark.parametrize("text", ["", '{"seed": 0'])
def test_an_empty_or_corrupt_manifest_is_one_error_naming_it(tmp_path, text):
    files = job_files(tmp_path, polite_rows(2))
    assert rlaif_label(files).returncode == 0
    (files["out"] / "manifest.json").write_text(text)
    p = rlaif_label(files)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"error: {files['out'] / 'manifest.json'} is ")
    assert "delete it and run again" in p.stderr
    (files["out"] / "manifest.json").unlink()
    assert rlaif_label(files).returncode == 0  # the store and job.json still say which job this is


def test_out_naming_a_file_and_bad_numbers_are_clean_errors(tmp_path):
    files = job_files(tmp_path, polite_rows(2))
    files["out"].write_text("not a folder")
    p = rlaif_label(files)
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"error: --out {files['out']} is a file; name a folder for the labels (it is created if missing)"
    )
    files["out"] = tmp_path / "out2"
    for flag, value in (("--limit", "-3"), ("--batch-size", "0"), ("--max-chars", "-1")):
        p = rlaif_label(files, flag, value)
        assert p.returncode == 2 and p.stderr.strip() == f"error: {flag} must be a positive number, got {value}"
    assert not files["out"].exists()  # refused before anything was written


def test_another_kind_of_job_is_refused_naming_the_job_that_holds_or_made_the_folder(tmp_path):
    from rlaif.jobs.folder import JobError
    from rlaif.labeling.job import label
    from rlaif.scoring.job import score
    from tests.helpers import rlaif_command
    from tests.revision.files import prompt_rows, revise_args, revise_files

    files = revise_files(tmp_path, prompt_rows(20), "tests.revision.revisers:slow_polite")
    (tmp_path / "score.yaml").write_text("backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n")
    pairs = files["prompts"].with_name("pairs.jsonl")
    pairs.write_text('{"id": "p0", "prompt": "q", "response_a": "please", "response_b": "no"}\n')
    out, lock = files["out"], files["out"] / "job.lock"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLAIF_TEST_DELAY": "0.2"}
    reviser = subprocess.Popen(
        rlaif_command(*revise_args(files)), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 60
        while (
            not (lock.exists() and lock.read_text().endswith("revised\n"))
            and reviser.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.01)
        assert reviser.poll() is None, reviser.stderr.read().decode()
        with pytest.raises(
            JobError,
            match=rf"^{out} is being revised by another process \(host .*, PID "
            rf"{reviser.pid}\)",
        ):
            score(pairs, files["constitution"], tmp_path / "score.yaml", out, progress=False)
    finally:
        reviser.kill()
        reviser.wait()
    with pytest.raises(JobError) as e:
        score(pairs, files["constitution"], tmp_path / "score.yaml", out, progress=False)
    assert str(e.value) == (
        f"{out} is the folder of an `rlaif revise` job (manifest.json says so): `rlaif score` "
        f"keeps its scores in a folder of its own. Use a new --out directory."
    )
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nfunction: tests.labeling.fns:flaky\n")
    label(pairs, files["constitution"], judge, tmp_path / "labels", progress=False)
    (tmp_path / "labels" / "manifest.json").unlink()  # job.json says it too
    with pytest.raises(JobError, match=r"is the folder of an `rlaif label` job \(job.json says so\): `rlaif score` "):
        score(pairs, files["constitution"], tmp_path / "score.yaml", tmp_path / "labels", progress=False)
