"""The label folder of a job (OUT/): its lock, which job it belongs to, and what that job has spent.

A folder belongs to one job: one constitution, one judge, one seed, one shard. manifest.json says so, and so does
the store itself: every record carries the constitution and judge hashes, and job.json keeps the seed and shard,
so deleting the manifest does not let another job append. While a job writes it holds OUT/job.lock, a POSIX
fcntl lock (NFS servers honour these too): a second `rlaif label` on the folder is refused, naming the host and
PID that hold it. The kernel (or the NFS server, once a crashed node's lease runs out) drops the lock when its
process ends, even under SIGKILL, so the file left behind is no lock by itself.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..data.labels import LABELS_FILE, LabelStore, Stored, fsync_dir, read_json_file, write_json_atomic
from ..judges.base import Spend

LOCK_FILE = "job.lock"
IDENTITY_FILE = "job.json"
SPEND_FILE = "spend.json"
MANIFEST_FILE = "manifest.json"
# (field, what it is): what a folder's labels must share with the job that appends to it
SAME_JOB = (("constitution_sha256", "constitution"), ("judge_settings_sha256", "judge settings"),
            ("seed", "seed"), ("shard", "shard"))
# temp files of atomic_write that a killed job can leave (".NAME.tmpPID")
_STALE_TEMP = re.compile(r"^\.(labels\.jsonl|manifest\.json|stats\.json|job\.json|spend\.json)\.tmp\d+$")

_held: set[str] = set()  # folders this process holds: fcntl locks never conflict within one process


class LabelJobError(RuntimeError):
    """A job that cannot start or go on (e.g. a different constitution in an existing output directory)."""


class FolderLock:
    """OUT/job.lock, held (fcntl.lockf) while a job writes into OUT; it records the holder's host and PID."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        key = str(self.path.resolve())
        if key in _held:
            raise LabelJobError(f"{self.folder} is already being labelled by this process")
        new = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
            os.close(fd)
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise LabelJobError(self._refusal(holder)) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
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
        return (f"{self.folder} is being labelled by another process (host {host}, PID {pid}): wait for it to "
                f"finish, or stop it. The lock ends with its process; only on NFS can a crashed node keep it for a "
                f"while. If no process {pid} runs on {host}, delete {self.path} and run again.")

    def release(self) -> None:
        # Closing the descriptor drops the lock. The file stays: deleting it could split the lock between a
        # process still holding the old file and one that creates a new one.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _held.discard(str(self.path.resolve()))


@dataclass
class Folder:
    """An open label folder: its store, what the store holds by pair id, and the lock held while writing."""

    path: Path
    store: LabelStore
    stored: dict[str, Stored]
    lock: FolderLock

    def close(self) -> None:
        self.lock.release()


def open_folder(out_dir: Path, manifest: dict) -> Folder:
    """Create or reopen the job's folder, refusing one that another job made or another process is writing;
    leaves the store folded (one record per id) and the manifest saying "running"."""
    _make_folder(out_dir)
    lock = FolderLock(out_dir)
    lock.acquire()
    try:
        for p in out_dir.iterdir():
            if _STALE_TEMP.match(p.name):
                p.unlink(missing_ok=True)  # we hold the lock: whoever wrote it is gone
        store = LabelStore(out_dir / LABELS_FILE)
        _check_identity(out_dir, manifest, store)
        store.open()
        stored = store.index(_record_check(manifest))
        write_json_atomic(out_dir / MANIFEST_FILE, manifest)
    except BaseException:
        lock.release()
        raise
    return Folder(out_dir, store, stored, lock)


def _make_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise LabelJobError(f"--out {out_dir} is a file; name a folder for the labels (it is created if missing)")
    if out_dir.is_dir():
        return
    try:
        out_dir.mkdir(parents=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise LabelJobError(f"--out {out_dir}: cannot make a folder there ({e.strerror}: {e.filename})") from None
    fsync_dir(out_dir.parent)  # the new folder's entry is data too


def _read(path: Path, fix: str) -> dict:
    try:
        data = read_json_file(path)
    except ValueError as e:
        raise LabelJobError(f"{e}: {fix}") from None
    if not isinstance(data, dict):
        raise LabelJobError(f"{path} is not a JSON object: {fix}")
    return data


def _same_job(old: dict, new: dict, out_dir: Path, where: str) -> None:
    for field_name, what in SAME_JOB:
        if old.get(field_name) != new.get(field_name):
            raise LabelJobError(
                f"{out_dir} holds labels made with a different {what} ({field_name}: {old.get(field_name)!s:.16} "
                f"in {where}, {new.get(field_name)!s:.16} now). Use a new --out directory, or the same {what}.")


def _check_identity(out_dir: Path, manifest: dict, store: LabelStore) -> None:
    """The manifest, if any, and job.json must name this job; job.json is written when the folder is new."""
    rebuilt = "delete it and run again (the labels carry what made them, so it is rebuilt)"
    manifest_path, identity_path = out_dir / MANIFEST_FILE, out_dir / IDENTITY_FILE
    has_manifest = manifest_path.exists()
    if has_manifest:
        _same_job(_read(manifest_path, rebuilt), manifest, out_dir, MANIFEST_FILE)
    identity = {k: manifest.get(k) for k, _ in SAME_JOB}
    if identity_path.exists():
        _same_job(_read(identity_path, f"delete it and run again{'' if has_manifest else ' with manifest.json'}"),
                  identity, out_dir, IDENTITY_FILE)
        return
    holds = any(f.exists() and f.stat().st_size for f in (store.path, store.superseding))
    if holds and not has_manifest:
        raise LabelJobError(f"{out_dir} holds labels, but neither {MANIFEST_FILE} nor {IDENTITY_FILE} says which "
                            f"seed and shard made them: use a new --out directory")
    write_json_atomic(identity_path, identity)


def _record_check(manifest: dict) -> Callable[[dict, str], None]:
    """Refuse a stored record made with another constitution or judge (what a deleted manifest would hide)."""
    def check(record: dict, where: str) -> None:
        judge = record.get("judge")
        got = {"constitution_sha256": record.get("constitution_sha256"),
               "judge_settings_sha256": judge.get("settings_sha256") if isinstance(judge, dict) else None}
        for field_name, what in SAME_JOB[:2]:
            if got[field_name] != manifest[field_name]:
                raise LabelJobError(
                    f"{where}: a label made with a different {what} ({field_name}: {got[field_name]!s:.16} there, "
                    f"{manifest[field_name]:.16} now). Use a new --out directory, or the same {what}.")
    return check


def read_spend(out_dir: Path) -> Spend:
    """What the job has spent in its earlier runs (OUT/spend.json), towards the caps that hold per job."""
    path = out_dir / SPEND_FILE
    if not path.exists():
        return Spend()
    data = _read(path, "fix or delete it (deleting it forgets what the job has spent)")
    try:
        spend = Spend(requests=int(data.get("requests", 0)), cost=float(data.get("cost", 0.0)))
    except (TypeError, ValueError, OverflowError):
        spend = None
    if spend is None or spend.requests < 0 or not 0 <= spend.cost < math.inf:
        raise LabelJobError(f"{path}: requests and cost must be finite numbers >= 0; fix the file")
    return spend


def write_spend(out_dir: Path, spend: Spend) -> None:
    write_json_atomic(out_dir / SPEND_FILE, {"requests": spend.requests, "cost": spend.cost})
