"""One run of a job over an input file into its folder (folder.py), as `rlaif label` and `rlaif revise` both run:
items are planned one by one, those the store already holds are skipped, the rest are worked on a batch at a
time, and each batch's records go to the store — new ids appended (fsync'd), new attempts at stored ids beside it
until the pass folds them in. A job brings the work and its counts; the pass does the rest the same for both.

Where the batches are worked is the pass's `runner`: in this process, one batch at a time (`InProcess`, the
default), or on a cluster's workers, several batches in flight (rlaif/cluster/runner.py, whose workers call the
job's own batch function). Either way this process plans every item, skips what is done
and is the one writer of the store.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol

from ..config.judge import JudgeBase
from ..progress import progress as make_progress
from ..records import Spend
from .folder import Folder, close_after_error, close_manifest, in_shard, write_spend
from ..data.formats import DataError
from .store import Stored


@dataclass
class JobResult:
    """How a run of a job ended: its folder, the stats it wrote, why it stopped early ("budget: …", None when
    complete), the items it worked on and those it found done."""

    out_dir: Path
    stats: dict
    stopped: Optional[str] = None
    done_now: int = 0
    skipped_done: int = 0

    labelled_now = property(lambda self: self.done_now)  # rlaif label's name for it
    revised_now = property(lambda self: self.done_now)  # rlaif revise's


@dataclass
class Done:
    """A batch back from the runner: its items (each with the record it replaces), their records, and why the job
    must stop (a spending cap reached inside the batch), if it must."""

    batch: list
    records: list
    stopped: Optional[str] = None


class Runner(Protocol):
    """Where a pass's batches are worked. `submit` queues a batch and returns the batches finished meanwhile (it
    may wait for some, to bound what is in flight); `drain` returns the rest as they finish; `spent` is what the
    job has spent, all its runs included; `note` is a word for the progress line (e.g. workers alive)."""

    def submit(self, batch: list) -> list[Done]: ...

    def drain(self) -> Iterator[Done]: ...

    def spent(self) -> Spend: ...

    def note(self) -> Optional[str]: ...


class InProcess:
    """The default runner: each batch is worked here, by the job's own `work`, as soon as it is queued."""

    def __init__(self, job: "JobPass"):
        self.job = job

    def submit(self, batch: list) -> list[Done]:
        try:
            return [Done(batch, self.job.work([pl for pl, _ in batch]))]
        finally:
            self.job.settle(batch)  # what a failed batch spent counts too

    def drain(self) -> Iterator[Done]:
        return iter(())

    def spent(self) -> Spend:
        return self.job.spent()

    def note(self) -> Optional[str]:
        return None


class Planned(Protocol):
    """An input item ready for work: its id, its line in the input file, and its content key."""

    id: str
    line: Optional[int]
    key: str


@dataclass
class JobPass:
    """The items waiting for work, where their records go, and this run's counts. Subclasses implement `work`
    (a batch of planned items → records, setting `stopped` when a cap ends the job), `attempt_again` (whether a
    stored item gets a new record), `count` and `spent`, and may name records that are bad input (`bad_input`)."""

    folder: Folder
    input_path: Path
    on_batch: Optional[Callable[[int], None]]
    spent_saved: Any = None
    runner: Optional[Runner] = None  # None: InProcess(self)
    config: Optional[JudgeBase] = None  # the judge's or model's: its request cap and retries (see `reserve`)
    bar: Any = None
    pending: list[tuple[Any, Optional[Stored]]] = field(default_factory=list)
    stopped: Optional[str] = None  # why the job stopped early ("budget: …")
    written: int = 0  # records written this run
    skipped: int = 0  # items whose stored record stands
    superseding: int = 0  # records this run wrote for ids the store held (folded in when the pass ends)
    wall: float = 0.0  # seconds `run` took
    reserved: dict[tuple, int] = field(default_factory=dict)  # requests held for each batch out (see `reserve`)
    reserved_saved: int = 0

    def __post_init__(self):
        self.runner = self.runner or InProcess(self)
        if self.spent_saved is None:  # what the job had spent when this run began (spend.json, carried)
            self.spent_saved = self.runner.spent()

    # -- what a job brings --------------------------------------------------------------------------------------
    def work(self, batch: list) -> list:
        raise NotImplementedError

    def attempt_again(self, planned, stored: Stored) -> bool:
        raise NotImplementedError

    def count(self, record, stored: Optional[Stored]) -> None:
        """Count a record written this run (`stored`: what it replaces)."""

    def spent(self) -> Spend:
        return Spend()

    def requests_of(self, planned) -> int:
        """The most requests working one item sends, retries aside (what `reserve` holds for it)."""
        return 0

    def retired(self) -> set[str]:
        """Ids of stored records no input row maps to any more, moved to superseded.jsonl when the pass ends (the
        label job's records of rows it could not read, since fixed). None by default: ids are the rows' own."""
        return set()

    def bad_input(self, record) -> Optional[str]:
        """Why a record is bad input to report as FILE:LINE (and not store), or None."""
        return None

    def shard_key(self, item) -> str:
        """What decides an input item's shard: its id (the score job shards by prompt id instead)."""
        return item.id

    # -- the pass -------------------------------------------------------------------------------------------
    def show_progress(self, description: str, total: int, limit: Optional[int], shard: tuple[int, int],
                      enabled: bool, unit: str = "pairs") -> None:
        """A progress bar (or lines, off a terminal) over the input rows this run reads; no total for a shard."""
        self.bar = make_progress(description, (min(total, limit) if limit is not None else total)
                                 if shard[1] == 1 else None, enabled, unit=unit)

    def run(self, items: Iterable, plan: Callable[[Any], Any], limit: Optional[int], shard: tuple[int, int],
            batch: int) -> int:
        """Queue the items of this shard that need work and work them a batch at a time; returns the input rows
        read (and sets `wall`). Bad input further on keeps the work done before it is reported."""
        started, seen = time.time(), 0
        try:
            for item in items:
                if limit is not None and seen >= limit:
                    break
                seen += 1
                if in_shard(self.shard_key(item), shard) and self.add(plan(item)) and len(self.pending) >= batch:
                    self.flush()
                    if self.stopped:
                        break
            if not self.stopped:
                self.flush()
            for done in self.runner.drain():  # batches still on a cluster's workers, stopped or not
                self.write(done)
        except DataError:
            if not self.stopped and self.pending:
                self.flush()
            with contextlib.suppress(DataError):  # the first bad input is the one to report
                for done in self.runner.drain():
                    self.write(done)
            raise
        finally:
            self.wall = time.time() - started
            if self.bar:
                self.bar.stop()
        return seen

    def add(self, planned) -> bool:
        """Queue an item that needs work; False (counted as already done) when its stored record stands."""
        stored = self.folder.stored.get(planned.id)
        if stored is not None and not self.attempt_again(planned, stored):
            self.skipped += 1
            if self.bar:
                self.bar.advance(1)
            return False
        self.pending.append((planned, stored))
        return True

    def flush(self) -> None:
        """Hand the pending items to the runner, and write the records of every batch it has finished."""
        batch, self.pending = self.pending, []
        if batch:
            self.reserve(batch)
            for done in self.runner.submit(batch):
                self.write(done)

    def write(self, done: Done) -> None:
        """Store a finished batch's records: new ids appended to the store, new attempts beside it."""
        batch, records = done.batch, done.records
        self.stopped = self.stopped or done.stopped
        self.settle(batch)
        bad = [(r, why) for r in records if (why := self.bad_input(r))]
        records = [r for r in records if not any(r is b for b, _ in bad)]
        before = {pl.id: stored for pl, stored in batch if stored is not None}
        self.folder.store.append(r.to_json() for r in records if r.id not in before)
        self.superseding += self.folder.store.supersede(r.to_json() for r in records if r.id in before)
        for r in records:
            self.count(r, before.get(r.id))
        self.written += len(records)
        if self.bar:
            self.bar.advance(len(records))
            note = self.runner.note()
            if note:
                self.bar.set_note(note)
        if self.on_batch:
            self.on_batch(self.written)
        if bad:
            record, why = bad[0]
            raise DataError(str(self.input_path), next(pl.line for pl, _ in batch if pl.key == record.key), why)

    def reserve(self, batch: list) -> None:
        """Under a request cap, hold the most requests `batch` can send (each item's, times the attempts a request
        gets, within what the cap leaves) in spend.json before it goes out. A SIGKILL mid-batch, which runs no
        `finally`, then leaves the job counted at or above what it sent, so a resumed job never passes the cap;
        it may stop short of it by what the batch did not send. `settle` puts the real spend in its place."""
        cap = getattr(self.config, "max_requests", None)
        if cap is None:
            return
        attempts = getattr(self.config, "max_retries", 0) + 1
        most = sum(self.requests_of(pl) for pl, _ in batch) * attempts
        room = cap - self.runner.spent().requests - sum(self.reserved.values())
        self.reserved[_batch_key(batch)] = max(0, min(most, room))
        self.save_spend()

    def settle(self, batch: list) -> None:
        """A batch is back (or failed): what it spent is in the runner's count now, in place of its reservation."""
        self.reserved.pop(_batch_key(batch), None)
        self.save_spend()

    def save_spend(self) -> None:
        spent, reserved = self.runner.spent(), sum(self.reserved.values())
        if (spent, reserved) != (self.spent_saved, self.reserved_saved):
            write_spend(self.folder.path, spent, reserved)
            self.spent_saved, self.reserved_saved = spent, reserved

    def finish(self, manifest: dict, write_stats: Callable[[], dict], **extra) -> JobResult:
        """Fold this run's new attempts in (and retire what no input row maps to any more), then the stats and the
        manifest's closing status."""
        retired = self.retired()
        if self.superseding or retired:
            self.folder.store.fold(retired)
        stats = write_stats()
        close_manifest(self.folder, manifest, "stopped" if self.stopped else "complete", **extra)
        return JobResult(self.folder.path, stats, self.stopped, self.written, self.skipped)


def _batch_key(batch: list) -> tuple:
    return tuple(planned.id for planned, _ in batch)


@contextlib.contextmanager
def in_folder(folder: Folder, manifest: dict, job: Callable[[], Optional[JobPass]],
              write_stats: Callable[[], object]) -> Iterator[None]:
    """Run a job's pass in its open folder: on any error (Ctrl-C included) the folder says what happened
    (rlaif.jobs.folder.close_after_error, with `job()`'s superseded records folded in), and the lock is released
    however it ends."""
    try:
        yield
    except BaseException as e:
        current = job()
        close_after_error(folder, manifest, e, bool(current and current.superseding), write_stats)
        raise
    finally:
        folder.close()


REASON_CHARS = 200  # a failure reason as stats.json and the exit-4 summary give it: at most this long, on one line
TOP_REASONS = 20  # the commonest reasons stats.json lists; the rest are counted together


def count_reason(reasons: dict[str, int], error: Optional[str]) -> None:
    """Count a failed record under its whole reason, on one line and cut only past REASON_CHARS (a cut at the
    first colon left "HTTP 401 from http" of "HTTP 401 from http://host/v1/...: invalid key")."""
    text = " ".join((error or "unknown").split())
    key = text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 1].rstrip() + "…"
    reasons[key] = reasons.get(key, 0) + 1


def top_reasons(reasons: dict[str, int]) -> dict[str, int]:
    """The TOP_REASONS commonest reasons, commonest first, and how many failed for any other reason."""
    ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
    top = dict(ranked[:TOP_REASONS])
    if len(ranked) > TOP_REASONS:
        top[f"({len(ranked) - TOP_REASONS} other reasons)"] = sum(n for _, n in ranked[TOP_REASONS:])
    return top


def write_job_stats(folder: Folder, stats: dict, job: Optional[JobPass], cluster=None) -> dict:
    """Finish a job's stats.json: the failures recorded before this run, why the run stopped, and the Ray workers'
    figures when it ran on Ray; written atomically."""
    from ..files import write_json_atomic

    if job:
        stats["failed_before"] = max(0, stats["failed"] - job.counts["failed"])
        stats["stopped"] = job.stopped
    if cluster is not None:
        stats["ray"] = cluster.stats()
    write_json_atomic(folder.path / "stats.json", stats)
    return stats

