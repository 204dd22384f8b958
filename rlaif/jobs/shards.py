"""Merging the folders of a sharded job (`--shard I/N` of `rlaif label` or `rlaif score`) into one. The shards must
come from one job, be complete and cover shards 0..N-1 once each; every record is checked as the store promises it
(its numbers by rlaif.numbers, its job, its shard), no id appears twice, and together they hold every input item.
The merged folder is built beside OUT and renamed into place when whole, so a merge that fails leaves no OUT."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Iterator, Sequence

from ..data.labels import numbered, read_json_file
from ..files import append_jsonl, fsync_dir, write_json_atomic
from ..records import Spend
from .folder import MANIFEST_FILE, in_shard, read_spend, write_spend
from .run import JobSpec
from .store import SUPERSEDING_FILE, LabelStore

SAME_JOB = ("input_sha256", "constitution_sha256", "judge_settings_sha256", "seed", "limit")
BATCH = 4096  # records written at a time
RESUME = "run that shard's job again (its same command) to resume it, then merge"


def merge_shards(dirs: Sequence[str | Path], out: str | Path, job: JobSpec) -> dict:
    """Check the shard folders of `job` (a spec of the job: LabelJob(), ScoreJob()) and write the merged folder OUT
    (its records, spend.json, stats.json and manifest.json); returns its stats. Nothing is left at OUT, nor beside it,
    unless the whole merge succeeds."""
    shards = _manifests(map(Path, dirs))
    out = Path(out)
    _refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed merge of a process with this PID left
        tmp.mkdir()
        target = tmp / job.kind.file
        target.touch()  # the merged store, empty when no shard holds a record
        n = _write_records(shards, target, job)
        first = shards[0][1]
        _check_count(n, first.get(job.input_count), job.item)
        # what the shards spent is the merged job's: its caps hold over the whole job if it is ever run again
        spends = [read_spend(d) for d, _ in shards]
        write_spend(tmp, sum(spends, Spend()))
        merged = {**first, "shard": [0, 1], "merged_from": [str(d) for d, _ in shards], "status": "complete"}
        stats = job.stats(LabelStore(target), merged)
        write_json_atomic(tmp / "stats.json", stats)
        write_json_atomic(tmp / MANIFEST_FILE, merged)
        _rename(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.filename and Path(e.filename).is_relative_to(tmp):
            # name the folder the user asked for: the temp folder is gone
            raise OSError(e.errno, e.strerror, str(out)) from e
        raise
    fsync_dir(out.parent)
    return stats


def _manifests(dirs) -> list[tuple[Path, dict]]:
    """The shards' manifests, in shard order, once each shard is known to be a complete shard of one job."""
    shards = []
    for d in dirs:
        m = d / MANIFEST_FILE
        if not m.exists():
            raise ValueError(f"{d}: no manifest.json (not a job folder)")
        manifest = read_json_file(m)
        shard = manifest.get("shard") if isinstance(manifest, dict) else None
        if not (isinstance(shard, list) and len(shard) == 2 and all(type(x) is int for x in shard)):
            raise ValueError(f"{m}: no shard I/N in it (not the manifest of a job)")
        shards.append((d, manifest))
    first_dir, first = shards[0]
    for d, m in shards[1:]:
        for k in SAME_JOB:
            if m.get(k) != first.get(k):
                raise ValueError(f"{d} and {first_dir} come from different jobs: {k} differs")
    n = first["shard"][1]
    seen = sorted(m["shard"][0] for _, m in shards)
    if any(m["shard"][1] != n for _, m in shards) or seen != list(range(n)):
        raise ValueError(f"shards must be 0..{n - 1} of {n}, each once; got {seen}")
    for d, m in shards:
        if m.get("status") != "complete":
            raise ValueError(f"{d}: shard is not complete (status {m.get('status')}); finish it first")
    return sorted(shards, key=lambda s: s[1]["shard"][0])


def _check_count(n: int, expected, item: str) -> None:
    """The shards' records must be as many as the input's items (when the manifest counts them: older ones don't)."""
    if expected is None or n == expected:
        return
    if type(expected) is not int:
        raise ValueError(f"the shards' manifests count {expected!r} input {item}s, not a number: make the shards again")
    if n < expected:
        raise ValueError(
            f"the shards hold {n} {item}s, but the input has {expected}: {expected - n} missing. Run "
            f"the shards' jobs again (their same commands: each does only what its folder lacks), "
            f"then merge"
        )
    raise ValueError(
        f"the shards hold {n} {item}s, but the input has only {expected}: a shard holds records of "
        f"items the input no longer has (or was edited); make the shards again into new folders"
    )


def _refuse_existing(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder for the merged records")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} already exists; merge into a new directory")


def _rename(tmp: Path, out: Path) -> None:
    """Put the whole merged folder in place (over an empty OUT, never over one that holds anything)."""
    try:
        os.rename(tmp, out)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise
        raise ValueError(f"{out} already exists (made while this merge ran); merge into a new directory") from None


def _write_records(shards: list[tuple[Path, dict]], target: Path, job: JobSpec) -> int:
    """Append every shard's records to `target`, refusing any it cannot trust; returns how many."""
    where: dict[str, tuple[Path, int]] = {}  # id -> (file, line) where it was read
    batch: list[dict] = []
    for d, manifest in shards:
        f = d / job.kind.file
        for line, r in _records(d, manifest, job):
            first = where.setdefault(r["id"], (f, line))
            if first != (f, line):
                raise ValueError(f"{job.item} id {r['id']!r} appears twice: {first[0]}:{first[1]} and {f}:{line}")
            if not in_shard(r[job.shard_field], tuple(manifest["shard"])):
                i, n = manifest["shard"]
                raise ValueError(
                    f"{f}:{line}: {job.kind.record} whose {job.shard_field} {r[job.shard_field]!r} is not "
                    f"in shard {i}/{n}, the shard of {d}"
                )
            batch.append(r)
            if len(batch) >= BATCH:
                append_jsonl(target, batch)
                batch = []
    append_jsonl(target, batch)
    return len(where)


def _records(d: Path, manifest: dict, job: JobSpec) -> Iterator[tuple[int, dict]]:
    """(line, record) of a shard's store, each checked: its numbers and fields, and the job that made it."""
    f = d / job.kind.file
    waiting = d / SUPERSEDING_FILE
    if waiting.exists() and waiting.stat().st_size:
        raise ValueError(
            f"{d}: records wait in {SUPERSEDING_FILE} (a killed job leaves them): the shard is incomplete; {RESUME}"
        )
    if not f.exists():  # a complete shard that no input item fell into
        return
    if _torn(f):
        raise ValueError(
            f"{f}: the last line is cut short (a killed job leaves this): the shard is incomplete; {RESUME}"
        )
    for line, r in numbered(f):
        why = job.kind.record_problem(r, manifest)
        if why is None:
            why = next(
                (
                    f"{job.kind.record} made with a different {dict(job.kind.same_job)[name]} than the "
                    f"shard's manifest names"
                    for name, got in job.kind.record_identity(r).items()
                    if got != manifest.get(name)
                ),
                None,
            )
        if why is not None:
            raise ValueError(
                f"{f}:{line}: {why}; the merge takes no record it cannot trust (fix or delete the "
                f"line, then run that shard's job again to redo it)"
            )
        yield line, r


def _torn(f: Path) -> bool:
    """Whether the file's last line has no newline: a write cut short, which the job's next run cuts off."""
    size = f.stat().st_size
    if not size:
        return False
    with open(f, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) != b"\n"
