"""Tier 4: `rlaif label --ray` on a real local Ray cluster (tests/cluster/conftest.py) with two workers: the records,
stats and manifest are the in-process job's; a worker process killed with SIGKILL mid-job and a driver killed with
SIGKILL then run again both end with every pair labelled exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from rlaif.cluster.connect import RayOptions
from rlaif.labeling.job import label
from tests.cluster.compare import TIMING, close
from tests.helpers import ROOT
from tests.labeling.jobfiles import job_files, label_command, polite_rows, stored, strict_records

TWO_PRINCIPLES = (
    "name: c\nversion: '1'\nsampling: one_per_pair\nprinciples:\n"
    "  - id: polite\n    text: Which is more polite?\n"
    "  - id: ruder\n    text: Which is ruder?\n    invert: true\n"
)


def _judge(tmp: Path, **kwargs) -> Path:
    path = tmp / "judge.yaml"
    path.write_text(f"backend: python\nfunction: tests.labeling.fns:polite_in\nkwargs: {json.dumps(kwargs)}\n")
    return path


def _same_job(here: Path, there: Path) -> None:
    """Records sorted by id, stats and manifest equal with the timing fields and the Ray settings dropped."""
    records = [sorted(strict_records(d / "labels.jsonl"), key=lambda r: r["id"]) for d in (here, there)]
    close(*records, "records")
    for name in ("stats.json", "manifest.json"):
        here_json, there_json = (json.loads((d / name).read_text()) for d in (here, there))
        assert "ray" not in here_json and there_json["ray"]["workers"] == 2
        close(*({k: v for k, v in j.items() if k not in TIMING} for j in (here_json, there_json)), name)


def test_rule_judge_labels_as_in_process(tmp_path, ray_cluster):
    files = job_files(
        tmp_path,
        polite_rows(30)
        + [{"id": "named", "prompt": "q", "response_a": "please", "response_b": "no", "principle": "ruder"}],
        constitution=TWO_PRINCIPLES,
    )
    judge = _judge(tmp_path)
    here = label(files["pairs"], files["constitution"], judge, tmp_path / "here", seed=3, batch_size=4, progress=False)
    there = label(
        files["pairs"],
        files["constitution"],
        judge,
        tmp_path / "there",
        seed=3,
        batch_size=4,
        progress=False,
        ray=RayOptions(ray_cluster),
    )  # as many workers as 2 CPUs hold: 2
    assert here.labelled_now == there.labelled_now == 31
    _same_job(tmp_path / "here", tmp_path / "there")
    per_worker = there.stats["ray"]["per_worker"]
    assert len(per_worker) == 2 and sum(w["pairs"] for w in per_worker) == 31
    # the same command again resumes: nothing is left to label
    again = label(
        files["pairs"],
        files["constitution"],
        judge,
        tmp_path / "there",
        seed=3,
        batch_size=4,
        progress=False,
        ray=RayOptions(ray_cluster, workers=2),
    )
    assert again.labelled_now == 0 and again.skipped_done == 31


def test_tiny_transformers_judge_labels_as_in_process(tmp_path, ray_cluster, tiny_model_dir):
    files = job_files(tmp_path, polite_rows(6))
    judge = tmp_path / "tiny.yaml"
    judge.write_text(
        f"backend: transformers\nmodel: {tiny_model_dir}\ndevice: cpu\nbatch_size: 2\nresources: {{num_cpus: 1}}\n"
    )
    label(files["pairs"], files["constitution"], judge, tmp_path / "here", batch_size=2, progress=False)
    label(
        files["pairs"],
        files["constitution"],
        judge,
        tmp_path / "there",
        batch_size=2,
        progress=False,
        ray=RayOptions(ray_cluster, workers=2),
    )
    _same_job(tmp_path / "here", tmp_path / "there")


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(tmp_path, ray_cluster):
    n, pids = 40, tmp_path / "pids"
    pids.mkdir()
    files = job_files(tmp_path, polite_rows(n))
    judge = _judge(tmp_path, pids=str(pids), delay=0.02)
    killed: list[int] = []

    def kill_one_worker(written: int) -> None:
        if written >= 6 and not killed:
            pid = int(sorted(pids.iterdir())[0].name)  # a worker process, named by the process itself
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = label(
        files["pairs"],
        files["constitution"],
        judge,
        files["out"],
        batch_size=2,
        progress=False,
        on_batch=kill_one_worker,
        ray=RayOptions(ray_cluster, workers=2),
    )
    assert killed and result.labelled_now == n
    records = strict_records(files["out"] / "labels.jsonl")
    assert sorted(r["id"] for r in records) == sorted(f"p{i}" for i in range(n))  # each once
    assert all(r["status"] == "ok" and r["label"] == "a" for r in records)
    # Ray started the killed worker again (a new process) and ran its batches there
    assert len(list(pids.iterdir())) >= 3 and result.stats["ray"]["workers_alive"] == 2
    assert sum(w["pairs"] for w in result.stats["ray"]["per_worker"]) == n


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_driver_killed_then_run_again_loses_and_duplicates_nothing(tmp_path, ray_cluster):
    n = 60
    files = job_files(tmp_path, polite_rows(n))
    _judge(tmp_path, delay=0.01)
    cmd = label_command(files, "--batch-size", "2", "--ray", "--ray-address", ray_cluster, "--workers", "2")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    labels = files["out"] / "labels.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while _lines(labels) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 10 <= _lines(labels) < n
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    recs = stored(files["out"])
    assert sorted(recs) == sorted(f"p{i}" for i in range(n)) and _lines(labels) == n
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert stats["pairs"] == n and 0 < stats["labelled_now"] < n and stats["ray"]["workers"] == 2
    assert "pairs/s per worker" in done.stdout


def test_a_judge_that_cannot_load_on_the_workers_is_one_line(tmp_path, ray_cluster):
    import pytest

    from rlaif.cluster.connect import ClusterError

    files = job_files(tmp_path, polite_rows(3), function="tests.nowhere:judge")
    with pytest.raises(ClusterError) as e:
        label(
            files["pairs"],
            files["constitution"],
            files["judge"],
            files["out"],
            progress=False,
            ray=RayOptions(ray_cluster, workers=1),
        )
    assert str(e.value) == (
        "a worker could not load its model: ValueError: judge function 'tests.nowhere:judge' "
        "cannot be imported: No module named 'tests.nowhere'"
    )
    assert json.loads((files["out"] / "manifest.json").read_text())["status"] == "error"
