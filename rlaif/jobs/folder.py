"""The folder of a job over an input file (over 400 lines because it is one idea: what a job's folder is): its
lock, which job it belongs to, what the job has spent towards its caps, and the manifest's closing word. Each job
names what its folder holds in a `FolderKind`; the records themselves go through the one-record-per-id store
(store.py).

A folder belongs to one job (for labels: one constitution, one judge, one seed, one shard). manifest.json says so,
and so does the store itself: every record carries the hashes of what made it, and job.json keeps the rest, so
deleting the manifest does not let another job append. While a job writes it holds OUT/job.lock, a POSIX fcntl
lock (NFS servers honour these too): a second job on the folder is refused, naming the host and PID that hold
it. The kernel (or the NFS server, once a crashed node's lease runs out) drops the lock when its process ends,
even under SIGKILL, so the file left behind is no lock by itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import math
import os
import platform
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

from pydantic import ValidationError

from .._version import __version__
from ..config.judge import JudgeBase, JuryJudgeConfig
from ..data.labels import read_json_file
from ..files import fsync_dir, write_json_atomic
from ..records import Spend
from .store import LabelStore, Stored

LOCK_FILE = "job.lock"
IDENTITY_FILE = "job.json"
SPEND_FILE = "spend.json"
MANIFEST_FILE = "manifest.json"

_held: set[str] = set()  # folders this process holds: fcntl locks never conflict within one process


class JobError(RuntimeError):
    """A job that cannot start or go on (e.g. a different constitution in an existing output directory)."""


@dataclass(frozen=True)
class FolderKind:
    """What a job's folder holds, in the words its messages use, and what every record must share with the job."""

    job: str  # "rlaif label": the command whose folder it is (job.json, the manifest and the lock name it)
    records: str  # "labels": what the folder holds
    record: str  # "a label": one of them
    doing: str  # "labelled": what the job does to the folder
    file: str  # the store's file name
    # (manifest field, what it is): what a folder's records must share with the job that appends to it
    same_job: tuple[tuple[str, str], ...]
    # the manifest fields of `same_job` as one stored record carries them (checked where the record is)
    record_identity: Callable[[dict], dict]
    # why a stored record cannot be trusted (rlaif/numbers.py), given the job's manifest (a score's scale), or None
    record_problem: Callable[[dict, dict], Optional[str]]

    def stale_temp(self, name: str) -> bool:
        """A temp file of atomic_write that a killed job can leave (".NAME.tmpPID")."""
        files = (self.file, MANIFEST_FILE, "stats.json", IDENTITY_FILE, SPEND_FILE)
        return re.match(rf"^\.({'|'.join(map(re.escape, files))})\.tmp\d+$", name) is not None


class FolderLock:
    """OUT/job.lock, held (fcntl.lockf) while a job writes into OUT; it records the holder's host, PID and what it
    does to the folder ("revised"), which a refused job's message names."""

    def __init__(self, folder: Path, doing: str = "labelled"):
        self.folder, self.doing = folder, doing
        self.path = folder / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        key = str(self.path.resolve())
        if key in _held:
            raise JobError(f"{self.folder} is already being {self.doing} by this process")
        new = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
            os.close(fd)
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise JobError(self._refusal(holder)) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} {os.getpid()} {self.doing}\n".encode(), 0)
            os.fsync(fd)
            if new:
                fsync_dir(self.folder)
        except OSError as e:  # a full disk: name the file, as every other write of the job does
            os.close(fd)
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _held.add(key)

    def _refusal(self, holder: list[str]) -> str:
        host, pid = (holder + ["?", "?"])[:2]  # "?" when the holder has not written its name yet
        doing = holder[2] if len(holder) > 2 else "written"  # the holder's job, not this one's
        return (
            f"{self.folder} is being {doing} by another process (host {host}, PID {pid}): wait for it to "
            f"finish, or stop it. The lock ends with its process; only on NFS can a crashed node keep it for a "
            f"while. If no process {pid} runs on {host}, delete {self.path} and run again."
        )

    def holder(self) -> Optional[str]:
        """ "host PID" of the process holding this lock now, or None when no other process holds it. A probe only: it
        takes a shared lock for an instant (never in a process that holds the lock itself: closing any descriptor
        of the file would drop that process's own lock)."""
        if str(self.path.resolve()) in _held or not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            host, pid = (os.pread(fd, 256, 0).decode("utf-8", "replace").split() + ["?", "?"])[:2]
            return f"host {host}, PID {pid}"
        finally:
            os.close(fd)
        return None

    def release(self) -> None:
        # Closing the descriptor drops the lock. The file stays: deleting it could split the lock between a
        # process still holding the old file and one that creates a new one.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _held.discard(str(self.path.resolve()))


@dataclass
class Folder:
    """An open job folder: its store, what the store holds by id, and the lock held while writing."""

    path: Path
    store: LabelStore
    stored: dict[str, Stored]
    lock: FolderLock

    def close(self) -> None:
        self.lock.release()


def open_folder(out_dir: Path, manifest: dict, kind: FolderKind) -> Folder:
    """Create or reopen the job's folder, refusing one that another job made or another process is writing;
    leaves the store folded (one record per id) and the manifest saying "running" (and naming the job)."""
    manifest["job"] = kind.job
    _make_folder(out_dir, kind)
    lock = FolderLock(out_dir, kind.doing)
    lock.acquire()
    try:
        for p in out_dir.iterdir():
            if kind.stale_temp(p.name):
                p.unlink(missing_ok=True)  # we hold the lock: whoever wrote it is gone
        store = LabelStore(out_dir / kind.file)
        _check_identity(out_dir, manifest, store, kind)
        store.open()
        stored = store.index(_record_check(manifest, kind))
        write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    except BaseException:
        lock.release()
        raise
    return Folder(out_dir, store, stored, lock)


def _make_folder(out_dir: Path, kind: FolderKind) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise JobError(f"--out {out_dir} is a file; name a folder for the {kind.records} (it is created if missing)")
    if out_dir.is_dir():
        return
    try:
        out_dir.mkdir(parents=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise JobError(f"--out {out_dir}: cannot make a folder there ({e.strerror}: {e.filename})") from None
    fsync_dir(out_dir.parent)  # the new folder's entry is data too


def _read(path: Path, fix: str) -> dict:
    try:
        data = read_json_file(path)
    except ValueError as e:
        raise JobError(f"{e}: {fix}") from None
    if not isinstance(data, dict):
        raise JobError(f"{path} is not a JSON object: {fix}")
    return data


def _same_job(old: dict, new: dict, out_dir: Path, where: str, kind: FolderKind, holds: str) -> None:
    """Refuse a folder whose manifest or job.json (`old`) names another kind of job, or this kind with other
    settings; `holds` is what the folder holds, in the words the message uses."""
    job = old.get("job", kind.job)  # an older rlaif named no job
    if job != kind.job:
        raise JobError(
            f"{out_dir} is the folder of an `{job}` job ({where} says so): `{kind.job}` keeps its "
            f"{kind.records} in a folder of its own. Use a new --out directory."
        )
    for field_name, what in kind.same_job:
        if old.get(field_name) != new.get(field_name):
            raise JobError(
                f"{out_dir} holds {holds} made with a different {what} ({field_name}: "
                f"{old.get(field_name)!s:.16} in {where}, {new.get(field_name)!s:.16} now). Use a new --out "
                f"directory, or the same {what}."
            )


def _check_identity(out_dir: Path, manifest: dict, store: LabelStore, kind: FolderKind) -> None:
    """The manifest, if any, and job.json must name this job; job.json is written when the folder is new."""
    rebuilt = f"delete it and run again (the {kind.records} carry what made them, so it is rebuilt)"
    manifest_path, identity_path = out_dir / MANIFEST_FILE, out_dir / IDENTITY_FILE
    has_manifest = manifest_path.exists()
    holds = any(f.exists() and f.stat().st_size for f in (store.path, store.superseding))
    words = kind.records if holds else "records"  # a folder without this kind's store may be another kind's
    if has_manifest:
        _same_job(_read(manifest_path, rebuilt), manifest, out_dir, MANIFEST_FILE, kind, words)
    identity = {"job": kind.job, **{k: manifest.get(k) for k, _ in kind.same_job}}
    if identity_path.exists():
        _same_job(
            _read(identity_path, f"delete it and run again{'' if has_manifest else ' with manifest.json'}"),
            identity,
            out_dir,
            IDENTITY_FILE,
            kind,
            words,
        )
        return
    if holds and not has_manifest:
        raise JobError(
            f"{out_dir} holds {kind.records}, but neither {MANIFEST_FILE} nor {IDENTITY_FILE} says "
            f"which seed and shard made them: use a new --out directory"
        )
    write_json_atomic(identity_path, identity)


def _record_check(manifest: dict, kind: FolderKind) -> Callable[[dict, str], None]:
    """Refuse a stored record made by another job (what a deleted manifest would hide), and one whose numbers or
    fields someone edited out of range: a resumed job would skip it as done and keep it."""
    whats = dict(kind.same_job)

    def check(record: dict, where: str) -> None:
        if (problem := kind.record_problem(record, manifest)) is not None:
            raise JobError(
                f"{where}: {problem}. Fix or delete that line and run again (a deleted record is made again)."
            )
        for field_name, got in kind.record_identity(record).items():
            if got != manifest[field_name]:
                what = whats[field_name]
                raise JobError(
                    f"{where}: {kind.record} made with a different {what} ({field_name}: {got!s:.16} there, "
                    f"{manifest[field_name]!s:.16} now). Use a new --out directory, or the same {what}."
                )

    return check


def refuse_running(path: Path, doing: str) -> None:
    """Refuse to read a job's folder (or a file in it) while its job runs: what it holds then is partial. `doing`
    names what the reader was about to do ("export")."""
    folder = path if path.is_dir() else path.parent
    holder = FolderLock(folder).holder()
    if holder is not None:
        raise JobError(
            f"{folder} is still being written by its job ({holder}): what it holds is partial. Wait "
            f"for the job to finish before you {doing} it (or stop the job)."
        )


# -- spending caps, per job ----------------------------------------------------------------------------------------
# what a judged job's folder (labels, scores) shares with every run of the job: (manifest field, what it is)
JUDGED_SAME_JOB = (
    ("constitution_sha256", "constitution"),
    ("judge_settings_sha256", "judge settings"),
    ("seed", "seed"),
    ("shard", "shard"),
)


def judged_identity(record: dict) -> dict:
    """The identity of a judged record (a label, a score): the constitution and judge settings it was made under."""
    judge = record.get("judge")
    return {
        "constitution_sha256": record.get("constitution_sha256"),
        "judge_settings_sha256": judge.get("settings_sha256") if isinstance(judge, dict) else None,
    }


def read_spend(out_dir: Path) -> Spend:
    """What the job has spent in its earlier runs (OUT/spend.json), towards the caps that hold per job; a jury's
    job also has each member's share (`members`). Requests still held for a batch in flight (`reserved_requests`:
    its run was killed before the batch came back) count as sent: how many of them went out is unknown, and a cap
    must not be passed."""
    path = out_dir / SPEND_FILE
    if not path.exists():
        return Spend()
    data = _read(path, "fix or delete it (deleting it forgets what the job has spent)")
    members = data.get("members", {})
    spend = _spend(data) if isinstance(members, dict) else None
    parts = [(name, _spend(part)) for name, part in members.items()] if spend is not None else []
    if spend is None or any(part is None for _, part in parts):
        raise JobError(
            f"{path}: requests, reserved_requests and cost (a jury's too, per member) must be finite numbers >= 0; "
            f"fix the file"
        )
    return Spend(spend.requests, spend.cost, tuple(parts))


def _spend(data) -> Optional[Spend]:
    """A spend as spend.json keeps it (reserved requests counted as sent), or None when it is no such thing."""
    try:
        requests, reserved = int(data.get("requests", 0)), int(data.get("reserved_requests", 0))
        cost = float(data.get("cost", 0.0))
    except (AttributeError, TypeError, ValueError, OverflowError):
        return None
    return Spend(requests + reserved, cost) if requests >= 0 and reserved >= 0 and 0 <= cost < math.inf else None


def write_spend(out_dir: Path, spend: Spend, reserved: Spend = Spend()) -> None:
    """spend.json: what the job has spent, and the requests held for its batches in flight
    (rlaif.jobs.run.JobPass.reserve), in total and, for a jury, per member."""

    def entry(spent: Spend, held: Spend) -> dict:
        reserved = {"reserved_requests": held.requests} if held.requests else {}
        return {"requests": spent.requests, "cost": spent.cost, **reserved}

    names = list(dict.fromkeys(n for n, _ in (*spend.members, *reserved.members)))
    members = {name: entry(spend.member(name), reserved.member(name)) for name in names}
    write_json_atomic(out_dir / SPEND_FILE, {**entry(spend, reserved), **({"members": members} if members else {})})


def caps(config: JudgeBase) -> dict[str, float]:
    """The spending caps set for this model ({"max_requests": 7}), none when it has no cap."""
    return {cap: value for cap in ("max_requests", "max_cost") if (value := getattr(config, cap, None)) is not None}


def cap_holders(config: JudgeBase) -> list[tuple[Optional[str], JudgeBase]]:
    """Who spends under a cap in a job, with the name its share of the spend goes by: the model itself (None), or
    each member of a jury that has a cap of its own (a jury's caps are its members': each holds for that member)."""
    members = config.seated() if isinstance(config, JuryJudgeConfig) else [(None, config)]
    return [(name, c) for name, c in members if caps(c)]


def share(spend: Spend, name: Optional[str]) -> Spend:
    """What `name` (None: the model itself) has spent of `spend`."""
    return spend if name is None else spend.member(name)


def up_to_caps(spent: Spend, config: JudgeBase) -> Spend:
    """`spent` raised to each cap set (a jury's: each capped member's share to its own caps, the totals with it):
    the most that an attempt started from `spent` can have spent."""
    for name, c in cap_holders(config):
        limits, was = caps(c), share(spent, name)
        raised = Spend(max(was.requests, limits.get("max_requests", 0)), max(was.cost, limits.get("max_cost", 0.0)))
        if name is None:
            return Spend(raised.requests, raised.cost, spent.members)
        more = raised - was
        spent = spent + Spend(more.requests, more.cost, ((name, more),))
    return spent


def with_caps(config: JudgeBase, max_requests: Optional[int], max_cost: Optional[float]) -> JudgeBase:
    """The model config with the caps given on the command line (they are plumbing: the settings hash stays)."""
    caps = {k: v for k, v in (("max_requests", max_requests), ("max_cost", max_cost)) if v is not None}
    if not caps:
        return config
    flag = "--" + next(iter(caps)).replace("_", "-")
    if isinstance(config, JuryJudgeConfig):
        raise JobError(f"{flag}: a jury's caps are its members': set them in a member's file (backend: openai)")
    if any(k not in type(config).model_fields for k in caps):
        raise JobError(f"{flag}: a {config.backend} judge has no spending caps (backend: openai has)")
    try:
        return type(config).model_validate({**config.model_dump(), **caps})
    except ValidationError as e:
        raise JobError(f"{flag}: {e.errors()[0]['msg']}") from None


# -- what every job's manifest and options share -------------------------------------------------------------------
def in_shard(item_id: str, shard: tuple[int, int]) -> bool:
    """Whether `item_id` belongs to shard I of N: by a hash of the id, so input order and resume never move it."""
    index, count = shard
    return count == 1 or int(hashlib.sha256(item_id.encode()).hexdigest()[:12], 16) % count == index


def check_numbers(shard: tuple[int, int], numbers: Sequence[tuple[str, Optional[int]]]) -> None:
    """Refuse a shard that is not I/N with 0 <= I < N, and a (flag, value) that is set but not positive."""
    if shard[1] < 1 or not 0 <= shard[0] < shard[1]:
        raise JobError(f"--shard must be I/N with 0 <= I < N, got {shard[0]}/{shard[1]}")
    for flag, value in numbers:
        if value is not None and value < 1:
            raise JobError(f"{flag} must be a positive number, got {value}")


def file_sha256(path: Path) -> str:
    """The content hash of an input file, or of every file of an input folder (a saved dataset)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    """The versions of rlaif, Python and the packages that can change a record, for the manifest."""
    import importlib.metadata as md

    out = {"rlaif": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "vllm", "httpx", "pydantic"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def started_at() -> str:
    return datetime.now(timezone.utc).isoformat()


def job_manifest(
    input_path: Path,
    format: Optional[str],
    constitution_path: Optional[str],
    constitution,
    seed: int,
    shard: tuple[int, int],
    limit: Optional[int],
    **what,
) -> dict:
    """What makes a job's records what they are, written to DIR/manifest.json when it starts: the input, the
    constitution (a job without one, `rlaif generate`, has none), `what` the job adds (its judge or model), the
    seed, shard and limit, the versions."""
    judged = (
        {}
        if constitution is None
        else {
            "constitution": constitution_path,
            "constitution_name": constitution.name,
            "constitution_version": constitution.version,
            "constitution_sha256": constitution.sha256,
        }
    )
    return {
        "rlaif_version": __version__,
        "created_at": started_at(),
        "input": str(input_path),
        "input_sha256": file_sha256(input_path),
        "format": format,
        **judged,
        **what,
        "seed": seed,
        "shard": list(shard),
        "limit": limit,
        "versions": versions(),
        "status": "running",
    }


def close_manifest(folder: Folder, manifest: dict, status: str, **extra) -> None:
    """The manifest's last word: how the run ended ("complete", "stopped", "error", "interrupted")."""
    manifest.update(status=status, finished_at=started_at(), **extra)
    write_json_atomic(folder.path / MANIFEST_FILE, manifest, in_place_if_full=status != "complete")


def close_after_error(
    folder: Folder, manifest: dict, error: BaseException, fold: bool, write_stats: Callable[[], object]
) -> None:
    """Leave the folder saying what happened: fold what this run superseded (`fold`), the manifest's status
    ("error" or "interrupted", never "running") and stats. Best effort: the error to report is the first one, and
    a full disk may refuse these writes too; what is not folded now is folded by the next run."""
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "error"
    steps = [folder.store.fold] if fold else []
    steps += [
        lambda: close_manifest(folder, manifest, status, error=str(error)[:500] or type(error).__name__),
        write_stats,
    ]
    for step in steps:
        with contextlib.suppress(Exception):
            step()
