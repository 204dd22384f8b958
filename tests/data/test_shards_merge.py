"""`rlaif label merge` and `rlaif score merge` check the records, not only the manifests: on the folders of real
sharded jobs (python judges), edited as a user or a killed job leaves them, a record that cannot be trusted, a torn
tail, an id twice, a record in the wrong shard or one missing is refused naming the file and line (exit 2), and a
failed merge (a refusal, a full disk) leaves nothing behind, so running the same command again works."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rlaif.cli.common import error_lines
from rlaif.labeling.job import label
from rlaif.scoring.job import score
from tests.helpers import ROOT, rlaif_command
from tests.labeling.jobfiles import job_files
from tests.labeling.test_disk_full import small_disk  # noqa: F401 - a fixture: a real 64 KiB tmpfs
from tests.scoring.test_score_job import _files as score_files

PAIRS = 24


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """Shards 0/2 and 1/2 of a label job over 24 pairs (labels/s0, labels/s1) and of a score job over 12 pairs, 24
    responses (scores/s0, scores/s1): made once, copied by each test."""
    root = tmp_path_factory.mktemp("shards")
    (root / "labels").mkdir()
    files = job_files(root / "labels", _rows(PAIRS), function="tests.judge_fns:prefers_polite")
    (root / "scores").mkdir()
    scored = score_files(root / "scores", n=PAIRS // 2)
    for i in range(2):
        label(
            files["pairs"],
            str(files["constitution"]),
            files["judge"],
            root / "labels" / f"s{i}",
            shard=(i, 2),
            progress=False,
        )
        score(
            scored["pairs"],
            scored["constitution"],
            scored["judge"],
            root / "scores" / f"s{i}",
            shard=(i, 2),
            progress=False,
        )
    return root


def _rows(n: int, filler: str = "") -> list[dict]:
    return [
        {
            "id": f"p{i}",
            "prompt": f"question {i}",
            "response_a": f"please, {i}{filler}",
            "response_b": f"no {i}{filler}",
        }
        for i in range(n)
    ]


def _shards(made: Path, tmp_path: Path, kind: str) -> list[Path]:
    dirs = [tmp_path / f"s{i}" for i in range(2)]
    for i, d in enumerate(dirs):
        shutil.copytree(made / kind / f"s{i}", d)
    return dirs


def _lines(f: Path) -> list[str]:
    return f.read_text().splitlines(keepends=True)


def _edit(f: Path, line: int, **fields) -> None:
    lines = _lines(f)
    lines[line - 1] = json.dumps({**json.loads(lines[line - 1]), **fields}) + "\n"
    f.write_text("".join(lines))


def _nothing_left(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f"{out.name}.tmp-*"))


def _merge(kind: str):
    from rlaif.jobs.shards import merge_shards
    from rlaif.labeling.job import LabelJob
    from rlaif.scoring.job import ScoreJob

    return lambda dirs, out: merge_shards(dirs, out, LabelJob() if kind == "labels" else ScoreJob())


def _dup_across(s0: Path, s1: Path, f: str) -> str:
    first = _lines(s0 / f)[0]
    (s1 / f).write_text((s1 / f).read_text() + first)
    return rf"appears twice: {s0 / f}:1 and {s1 / f}:{len(_lines(s1 / f))}\b"


def _dup_within(s0: Path, s1: Path, f: str) -> str:
    lines = _lines(s0 / f)
    (s0 / f).write_text("".join(lines) + lines[2])
    return rf"appears twice: {s0 / f}:3 and {s0 / f}:{len(lines) + 1}\b"


def _missing_one(s0: Path, s1: Path, f: str) -> str:
    (s1 / f).write_text("".join(_lines(s1 / f)[:-1]))
    return f"the shards hold {PAIRS - 1} .*, but the input has {PAIRS}: 1 missing"


def _wrong_shard(s0: Path, s1: Path, f: str) -> str:
    lines = _lines(s0 / f)
    (s0 / f).write_text("".join(lines[:-1]))
    (s1 / f).write_text((s1 / f).read_text() + lines[-1])
    return rf"{s1 / f}:{len(_lines(s1 / f))}: .* is not in shard 1/2, the shard of {s1}"


def _torn_tail(s0: Path, s1: Path, f: str) -> str:
    os.truncate(s1 / f, (s1 / f).stat().st_size - 10)  # what a SIGKILL mid-append leaves
    return f"{s1 / f}: the last line is cut short .* the shard is incomplete; run that shard's job again"


def _waiting(s0: Path, s1: Path, f: str) -> str:
    (s0 / "superseding.jsonl").write_text(_lines(s0 / f)[0])
    return f"{s0}: records wait in superseding.jsonl .* the shard is incomplete"


def _p_a_off(s0: Path, s1: Path, f: str) -> str:
    _edit(s0 / f, 2, p_a=1.7, label="a")
    return rf"{s0 / f}:2: p_a = 1.7 is outside \[0, 1\]; the merge takes no record it cannot trust"


def _other_judge(s0: Path, s1: Path, f: str) -> str:
    record = json.loads(_lines(s1 / f)[0])
    _edit(s1 / f, 1, judge={**record["judge"], "settings_sha256": "0" * 64})
    return f"{s1 / f}:1: .* made with a different judge settings than the shard's manifest names"


def _off_scale(s0: Path, s1: Path, f: str) -> str:
    _edit(s1 / f, 3, score=11.0, reward=1.2222222222222223)
    return rf"{s1 / f}:3: score = 11.0 is outside \[1, 10\]"


def _reward_nan(s0: Path, s1: Path, f: str) -> str:
    (s0 / f).write_text((s0 / f).read_text().replace('"reward": ', '"reward": NaN, "was": ', 1))
    return rf"{s0 / f}:1: reward is nan, not a finite number"


CASES = [
    ("labels", e)
    for e in (_dup_across, _dup_within, _missing_one, _wrong_shard, _torn_tail, _waiting, _p_a_off, _other_judge)
] + [("scores", e) for e in (_dup_across, _missing_one, _wrong_shard, _torn_tail, _off_scale, _reward_nan)]


@pytest.mark.parametrize("kind, edit", CASES, ids=[f"{k}-{e.__name__.strip('_')}" for k, e in CASES])
def test_merge_refuses_records_it_cannot_trust_and_leaves_nothing(made, tmp_path, kind, edit):
    s0, s1 = _shards(made, tmp_path, kind)
    message = edit(s0, s1, f"{kind}.jsonl")
    before = {p: p.read_bytes() for d in (s0, s1) for p in d.iterdir()}
    out = tmp_path / "merged"
    with pytest.raises(ValueError, match=message):
        _merge(kind)([s0, s1], out)
    assert _nothing_left(out)
    assert {p: p.read_bytes() for d in (s0, s1) for p in d.iterdir()} == before  # the shards are untouched


def test_the_same_shards_unedited_merge_whole(made, tmp_path):
    for kind, count in (("labels", "pairs"), ("scores", "responses")):
        out = tmp_path / kind / "merged"
        stats = _merge(kind)(_shards(made, tmp_path / kind, kind), out)
        records = [json.loads(x) for x in _lines(out / f"{kind}.jsonl")]
        assert stats[count] == len(records) == len({r["id"] for r in records}) == PAIRS
        assert json.loads((out / "manifest.json").read_text())["shard"] == [0, 1]
        assert sorted(p.name for p in out.parent.iterdir()) == ["merged", "s0", "s1"]  # no temp folder left


def test_cli_refuses_a_torn_shard_with_exit_2_then_merges_once_resumed(made, tmp_path):
    s0, s1 = _shards(made, tmp_path, "scores")
    _torn_tail(s0, s1, "scores.jsonl")
    out = tmp_path / "merged"
    cmd = rlaif_command("score", "merge", s0, s1, "--out", out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {s1 / 'scores.jsonl'}: the last line is cut short")
    assert len(done.stderr.strip().splitlines()) == 1 and _nothing_left(out)
    scored = score_files(made / "scores", n=PAIRS // 2)  # the files the shards were made from
    score(scored["pairs"], scored["constitution"], scored["judge"], s1, shard=(1, 2), progress=False)  # resume
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(_lines(out / "scores.jsonl")) == PAIRS


def test_an_existing_merged_folder_is_refused_and_kept(made, tmp_path):
    s0, s1 = _shards(made, tmp_path, "labels")
    out = tmp_path / "merged"
    out.mkdir()  # an empty folder is merged into
    _merge("labels")([s0, s1], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=f"{out} already exists; merge into a new directory"):
        _merge("labels")([s0, s1], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_shard_that_no_pair_fell_into_merges(tmp_path):
    files = job_files(tmp_path, _rows(2), function="tests.judge_fns:prefers_polite")
    dirs = [tmp_path / f"s{i}" for i in range(4)]
    for i, d in enumerate(dirs):
        label(files["pairs"], str(files["constitution"]), files["judge"], d, shard=(i, 4), progress=False)
    assert any(not (d / "labels.jsonl").exists() for d in dirs)
    assert _merge("labels")(dirs, tmp_path / "merged")["pairs"] == 2


def test_disk_full_in_process_leaves_nothing_and_the_rerun_merges(made, tmp_path, monkeypatch):
    s0, s1 = _shards(made, tmp_path, "labels")
    out = tmp_path / "merged"
    fsync = os.fsync

    def full(fd):  # the merge's first write (its records) meets a full disk when it is flushed to the device
        monkeypatch.setattr(os, "fsync", fsync)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as failed:
        _merge("labels")([s0, s1], out)
    assert os.fsync is fsync  # the failure came from the patched write
    assert _nothing_left(out)
    assert error_lines(failed.value)[0] == [
        f"error: no space left on the device writing {out}. Everything written before is kept: free some space "
        f"and run the same command again to resume."
    ]
    assert _merge("labels")([s0, s1], out)["pairs"] == PAIRS


def test_disk_full_on_a_real_small_disk_then_the_same_command_merges(tmp_path, small_disk):  # noqa: F811
    files = job_files(tmp_path, _rows(PAIRS, filler=" " + "x" * 3000), function="tests.judge_fns:prefers_polite")
    dirs = [tmp_path / f"s{i}" for i in range(2)]
    for i, d in enumerate(dirs):
        label(files["pairs"], str(files["constitution"]), files["judge"], d, shard=(i, 2), progress=False)
    out = small_disk.path / "merged"
    cmd = rlaif_command("label", "merge", *dirs, "--out", out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: no space left on the device writing {out}. Everything written before "
        f"is kept: free some space and run the same command again to resume."
    )
    assert list(small_disk.path.iterdir()) == []  # no half-written folder, no temp folder
    small_disk.grow()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(_lines(out / "labels.jsonl")) == PAIRS
