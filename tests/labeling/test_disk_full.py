"""Disk full (ENOSPC) on a real 64 KiB tmpfs: `rlaif label` ends with one line saying that resuming works once
space is freed (exit 2), loses nothing it had written, and the same command completes once there is room, with
one record per id. Needs root to mount the tmpfs (CI runs as root)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.labeling.jobfiles import job_files, rlaif_label, stored, strict_records, write_rows


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs; `small_disk.grow()` makes it 1 MiB (space freed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")

    class Disk:
        path = disk

        @staticmethod
        def grow():
            subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)

    yield Disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def big_rows(n: int, prefix: str = "b") -> list[dict]:
    """Pairs whose records take about 1.5 KB each."""
    return [
        {
            "id": f"{prefix}{i}",
            "prompt": "q" * 100,
            "response_a": "please " + "x" * 600,
            "response_b": "no " + "y" * 600,
        }
        for i in range(n)
    ]


def no_space_line(path) -> str:
    return (
        f"error: no space left on the device writing {path}. Everything written before is kept: free some "
        f"space and run the same command again to resume."
    )


def test_disk_full_while_appending_then_resume(tmp_path, small_disk):
    files = job_files(tmp_path, big_rows(60))
    files["out"] = small_disk.path / "out"
    p = rlaif_label(files, "--batch-size", "4")
    assert p.returncode == 2
    assert p.stderr.strip() == no_space_line(files["out"] / "labels.jsonl")
    before = strict_records(files["out"] / "labels.jsonl")  # whole lines only, strict JSON
    assert 0 < len(before) < 60
    assert json.loads((files["out"] / "manifest.json").read_text())["status"] == "error"
    small_disk.grow()
    p = rlaif_label(files, "--batch-size", "4")
    assert p.returncode == 0, p.stderr
    recs = stored(files["out"])
    assert len(recs) == 60 and all(r["status"] == "ok" for r in recs.values())
    assert strict_records(files["out"] / "labels.jsonl")[: len(before)] == before  # nothing written was lost


def test_disk_full_writing_the_manifest_then_resume(tmp_path, small_disk):
    files = job_files(tmp_path, big_rows(10))
    files["out"] = small_disk.path / "out"
    assert rlaif_label(files).returncode == 0
    with open(small_disk.path / "filler", "wb", buffering=0) as f:  # take every free block
        with pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
    write_rows(files["pairs"], big_rows(10) + big_rows(10, "c"))
    p = rlaif_label(files)
    assert p.returncode == 2
    assert p.stderr.strip() == no_space_line(files["out"] / "manifest.json")
    assert len(stored(files["out"])) == 10
    (small_disk.path / "filler").unlink()
    p = rlaif_label(files)
    assert p.returncode == 0, p.stderr
    assert len(stored(files["out"])) == 20


# 14 pairs fill the disk while the new attempts are written aside; 9 while the fold rewrites labels.jsonl
@pytest.mark.parametrize("n", [14, 9])
def test_disk_full_while_superseding_then_resume(tmp_path, small_disk, n):
    files = job_files(tmp_path, big_rows(n))
    files["out"] = small_disk.path / "out"
    assert rlaif_label(files, env={"RLAIF_TEST_JUDGE_DOWN": "1"}).returncode == 4
    p = rlaif_label(files, "--retry-failed", "--batch-size", "4")
    assert p.returncode == 2 and p.stderr.startswith("error: no space left on the device writing ")
    recs = stored(files["out"])  # what a reader sees: still one record per id
    assert len(recs) == n
    small_disk.grow()
    p = rlaif_label(files, "--retry-failed")
    assert p.returncode == 0, p.stderr
    recs = stored(files["out"])
    assert len(recs) == n and all(r["status"] == "ok" for r in recs.values())
    assert sorted(r["id"] for r in strict_records(files["out"] / "superseded.jsonl")) == sorted(recs)
    assert not (files["out"] / "superseding.jsonl").exists()
