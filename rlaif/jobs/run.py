"""The one job engine (a file of over 400 lines because it is one idea): `run_job(spec, inputs, constitution,
model, out, options)` runs any job over an input file into its folder (folder.py), whatever the job is. `rlaif
label`, `score`, `revise` and `generate` are each a `JobSpec` — what is truly their own: the folder they keep, how
they read and plan an item, how a model is loaded and a batch worked, and what they count — and share everything
else here, in one order:

    checks (no model, nothing written) → manifest → Ray connected, if asked → folder opened (lock, identity,
    resume) → model loaded (here or on the workers) → the pass → stats and the manifest's last word.

The pass plans items one by one, skips those the store holds, works the rest a batch at a time and stores each
batch's records: new ids appended (fsync'd), new attempts at stored ids beside them until the pass folds them in.
Where batches are worked is the pass's runner: here, one at a time (`InProcess`), or on a Ray cluster's workers
(ray.py), several in flight; either way this process plans every item, skips what is done and is the one writer.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Optional, Protocol

from ..cluster.connect import RayOptions
from ..config.judge import JudgeBase, load_judge_config
from ..constitution import Constitution, load_constitution
from ..data.formats import DataError, count_pairs
from ..data.pairs import synthetic_line
from ..files import write_json_atomic
from ..judges.base import TOO_LONG, not_ready, until_cap
from ..judges.registry import load_judge
from ..judges.registry import refusal as judge_refusal
from ..progress import progress as make_progress
from ..records import Spend
from .folder import (
    Folder,
    FolderKind,
    JobError,
    cap_holders,
    check_numbers,
    close_after_error,
    close_manifest,
    in_shard,
    job_manifest,
    open_folder,
    read_spend,
    share,
    with_caps,
    write_spend,
)
from .ray import Done, RayRunner
from .store import Stored


@dataclass(frozen=True)
class JobOptions:
    """What every job shares, on the command line (rlaif/cli/options.py) and in the API."""

    limit: Optional[int] = None  # input rows to read at most
    seed: int = 0
    shard: tuple[int, int] = (0, 1)  # (I, N): this run's share of the items, by a hash of their shard key
    format: Optional[str] = None  # the input's format (None: detected)
    batch_size: Optional[int] = None  # items per batch (None: the job's default for its model)
    skip_invalid: bool = False  # record unusable input as failed and go on (else: bad input, exit 2)
    retry_failed: bool = False  # work again the items whose model call failed
    max_requests: Optional[int] = None  # caps over all the job's runs, replacing the model config's
    max_cost: Optional[float] = None
    progress: bool = True
    on_batch: Optional[Callable[[int], None]] = None  # called with the records written so far, after each batch
    ray: Optional[RayOptions] = None  # run the batches on a Ray cluster

    @classmethod
    def of(cls, options: Optional["JobOptions"] = None, **given) -> "JobOptions":
        """`options` (or the defaults) with the fields `given` set."""
        return replace(options or cls(), **given)


@dataclass
class Planned:
    """An input item ready for work: the item (a Pair, a ScoreItem), the principles it is judged or rated by, and
    its content key (the resume key); its id and input line are the item's. `seed` is the one the principles were
    drawn with (a jury's score member draws its own with it, per prompt, as `rlaif score` does)."""

    item: Any
    principles: list
    key: str
    seed: int = 0

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def line(self) -> Optional[int]:
        return self.item.source_line


class JobSpec:
    """What one job brings to `run_job`. A spec object is made for one run: it holds the job's own settings, and
    `run_job` binds the constitution, the model config and the options to it before the pass (`self.constitution`,
    `self.config`, `self.options`). Subclasses set the class attributes and override what their job does
    differently; the defaults are what most jobs do."""

    kind: FolderKind  # its folder: the store's file, the words for its records, what a record shares with the job
    item: str  # one input item, as messages and merges name it: "pair", "response", "prompt"
    unit: str  # several: the progress line's and the Ray stats' unit ("pairs")
    doing: str  # the progress line's description ("labelling")
    done: str  # stats.json's name for the records written this run ("labelled" → labelled_now)
    rate: str  # … and for its rate ("pairs" → pairs_per_s)
    input_count: str  # the manifest field counting the input items the run read ("input_pairs")
    shard_field: str = "id"  # the record field (and item attribute) that decides an item's shard
    counters: tuple[str, ...] = ()  # the job's own counters, beside done/failed/retried/tokens

    constitution: Optional[Constitution] = None
    constitution_path: Optional[str] = None  # the file it was read from (None: built in code), for FILE:LINE errors
    config: Any = None
    options: JobOptions = JobOptions()

    # -- before anything is written ----------------------------------------------------------------------------
    def model_config(self, model) -> Any:
        """The config of `model` (a built model, a config, or a YAML path)."""

        if isinstance(model, JudgeBase):
            return model
        return model.config if self.is_built(model) else load_judge_config(model)

    def is_built(self, model) -> bool:
        """Whether `model` is a loaded model (a judge, a generator) rather than its config or path."""
        return hasattr(model, "carry_spend")

    def check(self, model, built: bool) -> None:
        """Refuse what cannot run (raise JobError), before the folder is touched: e.g. a score judge given to
        rlaif label. The model config, constitution and options are bound."""

    def numbers(self) -> tuple[tuple[str, Optional[int]], ...]:
        """The job's own (flag, value) numbers that must be positive when set."""
        return ()

    def manifest(self) -> dict:
        """What the job adds to manifest.json: its model config and settings hash, and what else makes its records."""
        return {"judge": self.config.public_dict(), "judge_settings_sha256": self.config.settings_sha256()}

    # -- the model, here or on a Ray worker (both callables must pickle: partials of module functions) -----------
    def loader(self) -> Callable[[], Any]:
        raise NotImplementedError

    def worker(self) -> Callable[[Any, list], tuple[list, Optional[str]]]:
        """(model, batch of planned items) -> (records, why the job must stop early, or None)."""
        raise NotImplementedError

    def batch_size(self) -> int:
        return getattr(self.config, "batch_size", 8)

    # -- the pass ------------------------------------------------------------------------------------------------
    def items(self, path: Path) -> Iterable:
        """The input's items, in order (each with an id and its input line)."""
        raise NotImplementedError

    def total(self, path: Path) -> Optional[int]:
        """How many input rows the progress line counts to (None: no total)."""
        return count_pairs(path, self.options.format)

    def limit(self) -> Optional[int]:
        """How many items the pass reads at most: --limit, unless the job counts it in input rows itself."""
        return self.options.limit

    def rows_read(self, items_seen: int) -> dict:
        """The manifest's closing counts of the input this run read (by default: the items)."""
        return {self.input_count: items_seen}

    def plan(self, item) -> Any:
        raise NotImplementedError

    def repeated(self, planned) -> bool:
        """Whether `planned` repeats an item read before in this input (skipped; an error if it differs)."""
        return False

    def requests_of(self, planned) -> int:
        """The most requests working one item sends, retries aside (what the pass reserves under a cap)."""
        return 0

    def attempt_again(self, planned, stored: Stored) -> bool:
        """Whether an item whose id the store holds gets a new record (superseding the stored one): with the same
        content only a failed model call, under --retry-failed; with other content, a failed record."""
        if stored.key == planned.key:
            return stored.status != "ok" and self.options.retry_failed and not self.input_failure(stored.error)
        if stored.status != "ok":
            return True
        raise DataError(self.path, planned.line, self.changed(planned, stored))

    def input_failure(self, error: Optional[str]) -> bool:
        """Whether a failed record says the input is bad (another try fails the same way)."""
        return False

    def changed(self, planned, stored: Stored) -> str:
        """The message for an item stored ok under its id with other content."""
        return (
            f"{self.item} '{planned.id}' was {self.kind.doing} before with other content "
            f"({self.store_path}:{stored.line}); give the edited {self.item} a new id"
        )

    def bad_input(self, record) -> Optional[str]:
        """Why a record is bad input to report as FILE:LINE (and not store), or None."""
        return None

    def count(self, counts: dict, record, stored: Optional[Stored]) -> None:
        """Count a record written this run (`stored`: what it replaces)."""
        counts["done"] += 1
        counts["prompt_tokens"] += record.prompt_tokens
        counts["completion_tokens"] += record.completion_tokens
        counts["retried"] += stored is not None
        counts["failed"] += record.status != "ok"

    def finished(self, records: Iterable[dict]) -> None:
        """What the job writes from its whole store once the pass has folded it (rlaif generate: its pairs file)."""

    def retired(self, stored: dict[str, Stored]) -> set[str]:
        """Ids of stored records no input row maps to any more (moved to superseded.jsonl when the pass ends)."""
        return set()

    def run_stats(self, job: "JobPass") -> dict:
        """This run's figures for stats.json."""
        c, wall = job.counts, job.wall
        return {
            f"{self.done}_now": c["done"],
            "resumed_skipped": job.skipped,
            "failed_this_run": c["failed"],
            "retried_this_run": c["retried"],
            "spent_requests": job.spent_saved.requests,
            "spent_cost": round(job.spent_saved.cost, 6),
            "wall_time_s": round(wall, 3),
            f"{self.rate}_per_s": round(c["done"] / wall, 4) if wall > 0 else None,
            "run_prompt_tokens": c["prompt_tokens"],
            "run_completion_tokens": c["completion_tokens"],
        }

    def stats(self, records: Iterable[dict], manifest: dict) -> dict:
        """stats.json's figures of the folder's records (all runs); this run's (`run_stats`) go on top."""
        raise NotImplementedError

    # set by run_job for the hooks above
    path: Path = Path()
    store_path: Path = Path()

    @classmethod
    def run(cls, inputs, constitution, model, out, options: Optional[JobOptions] = None, /, **settings) -> "JobResult":
        """`run_job` of this job with the keywords a job's entry function (`label(...)`) takes: the spec's own fields
        and JobOptions fields (seed=, limit=, …) together; an unknown one is a TypeError, as for any function. The
        arguments before them are positional, so a spec may have a field named like one (rlaif generate's `out`)."""
        shared = {f.name for f in fields(JobOptions)}
        own = {k: v for k, v in settings.items() if k not in shared}
        unknown = set(own) - {f.name for f in fields(cls) if f.init}
        if unknown:
            s = "s" if len(unknown) > 1 else ""
            raise TypeError(f"unexpected keyword argument{s}: {', '.join(sorted(unknown))}")
        given = {k: v for k, v in settings.items() if k in shared}
        return run_job(cls(**own), inputs, constitution, model, out, JobOptions.of(options, **given))


INVALID_INPUT = "invalid input"  # the error of a row that could not be read (kept by --skip-invalid)


def is_input_failure(error: Optional[str]) -> bool:
    """A failed record that says the input is bad (an unreadable row, an item too long for the judge), not the
    judge: another try fails the same way, so --retry-failed leaves it and it never makes the exit code 4."""
    return (error or "").startswith((INVALID_INPUT, TOO_LONG))


@dataclass
class JudgedJob(JobSpec):
    """A job whose model is a judge (`rlaif label`, `rlaif score`): the one place a job asks for the kind of judge
    it needs (`judge_kind`: PairwiseJudge or ScoreJudge). The judge is loaded from its config, here or on each Ray
    worker; one of the other kind, or one that cannot judge on its own, is refused before anything is written.
    What else the two read alike is here too: a row's longest text, a row naming a principle the constitution
    lacks, an item too long for the judge (bad input, unless --skip-invalid), and the failed records an unreadable
    row leaves under --skip-invalid (an id of its line, "rlaif:line-N", retired once that line holds another row)."""

    max_chars: int = 100_000  # a row's longest text
    live: set[str] = field(default_factory=set, init=False)  # ids of unreadable rows' items, as read now
    last_line: int = field(default=0, init=False)  # the last input line read
    read_all: bool = field(default=False, init=False)  # whether this run read the input to its end

    judge_kind: ClassVar[type]
    other_kind: ClassVar[str]  # what the refusal of a judge of the other kind suggests instead
    judged: ClassVar[Callable]  # (judge, planned batch, constitution) -> records; raises StoppedEarly at a cap

    def numbers(self):
        return (("--max-chars", self.max_chars),)

    def check(self, judge, built: bool) -> None:
        given = judge if built else self.config  # a loaded judge: its own class must answer the kind asked for
        source = str(judge) if isinstance(judge, (str, Path)) else "the judge"
        refusal = judge_refusal(given, self.judge_kind, self.kind.job, source, self.other_kind)
        refusal = refusal or not_ready(self.config, judge if built else None)
        if refusal is None and self.options.ray is not None and built:
            refusal = "with ray, give the judge as a config or a YAML path: each worker loads its own judge from it"
        if refusal:
            raise JobError(refusal)

    def loader(self):
        return partial(load_judge, self.config, self.judge_kind, self.kind.job)

    def worker(self):
        return partial(judged_batch, self.judged, constitution=self.constitution)

    def unknown_principle(self, principle: Optional[str]) -> Optional[str]:
        """Why an item naming `principle` cannot be judged: the constitution lacks it (None: it can)."""
        known = {p.id for p in self.constitution.principles}
        if not principle or principle in known:
            return None
        return (
            f"principle '{principle}' is not in constitution '{self.constitution.name}' "
            f"(its principles: {', '.join(sorted(known))})"
        )

    def input_failure(self, error: Optional[str]) -> bool:
        return is_input_failure(error)

    def noting(self, items: Iterable) -> Iterator:
        """`items` as read, noting how far this run reads and the items of rows that still have an id of a line."""
        for item in items:
            self.last_line = item.source_line or self.last_line
            if self.row_line(item.id) is not None:
                self.live.add(item.id)
            yield item
        self.read_all = True

    def row_line(self, item_id: str) -> Optional[int]:
        """The input line of the unreadable row an item stands for (its id "rlaif:line-N"); None for any other."""
        return synthetic_line(item_id)

    def retired(self, stored: dict[str, Stored]) -> set[str]:
        """The failed records of unreadable rows (kept by --skip-invalid) whose line holds no such row any more: it
        was fixed (and has its own id now), removed, or the file ends before it. Only lines this run read are
        judged; one past a --limit keeps its record."""
        return {
            i
            for i in stored
            if (line := self.row_line(i)) is not None
            and i not in self.live
            and (self.read_all or line <= self.last_line)
        }

    def bad_input(self, record) -> Optional[str]:
        # Without --skip-invalid an item too long for the judge is bad input: keep the rest, then report it.
        if self.options.skip_invalid or not (record.error or "").startswith(TOO_LONG):
            return None
        return (
            f"{self.item} '{record.id}': {record.error} (--skip-invalid records such {self.unit} as failed and goes on)"
        )


def judged_batch(judged: Callable, judge, planned: list, constitution: Constitution) -> tuple[list, Optional[str]]:
    """A judged job's batch, here or on a Ray worker: (records, why it stopped early at a cap, or None)."""
    return until_cap(lambda: judged(judge, planned, constitution))


def run_job(
    spec: JobSpec,
    inputs: str | Path,
    constitution: Optional[str | Path | Constitution],
    model,
    out: str | Path,
    options: JobOptions,
) -> "JobResult":
    """Run `spec`'s job over the input file `inputs` into the folder `out`; running it again resumes. `model` is a
    loaded model, a model config or a YAML path (with Ray: a config or a path, which each worker loads); a model
    given loaded is used as it is, one loaded here is closed at the end."""
    spec.path, out = Path(inputs), Path(out)
    constitution_path = None if constitution is None or isinstance(constitution, Constitution) else str(constitution)
    spec.constitution = load_constitution(constitution) if constitution_path else constitution
    spec.constitution_path = constitution_path
    spec.options = options
    check_numbers(options.shard, (("--limit", options.limit), ("--batch-size", options.batch_size), *spec.numbers()))
    built = model if spec.is_built(model) else None
    spec.config = spec.model_config(model)
    spec.check(model, built is not None)
    spec.config = with_caps(spec.config, options.max_requests, options.max_cost)
    if built is not None:
        built.config = spec.config
    manifest = job_manifest(
        spec.path,
        options.format,
        constitution_path,
        spec.constitution,
        options.seed,
        options.shard,
        options.limit,
        **spec.manifest(),
    )
    cluster = None
    if options.ray is not None:
        cluster = RayRunner(options.ray, spec.unit)  # connected before the folder is opened: no cluster, no folder
        manifest["ray"] = cluster.settings(spec.config)
    folder = open_folder(out, manifest, spec.kind)
    spec.store_path = folder.store.path
    job: Optional[JobPass] = None

    def write_stats() -> dict:
        return _write_stats(folder, spec, manifest, job, cluster)

    with in_folder(folder, manifest, lambda: job, write_stats):
        loaded = None
        try:
            if cluster is not None:
                cluster.start(spec.loader(), spec.worker(), read_spend(out))
            else:
                loaded = built or spec.loader()()
                loaded.carry_spend(read_spend(out))
            job = JobPass(folder, spec, loaded, cluster)
            job.bar = make_progress(spec.doing, _total(spec, options), options.progress, unit=spec.unit)
            seen = job.run(spec.items(spec.path), options.batch_size or spec.batch_size())
            return job.finish(manifest, write_stats, **spec.rows_read(seen))
        finally:
            if loaded is not None and built is None:
                loaded.close()
            if cluster is not None:
                cluster.close()


def _total(spec: JobSpec, options: JobOptions) -> Optional[int]:
    """The progress line's total: the input rows this run reads (none for a shard: its share is not known)."""
    if options.shard[1] != 1 or (total := spec.total(spec.path)) is None:
        return None
    return min(total, options.limit) if options.limit is not None else total


def _write_stats(folder: Folder, spec: JobSpec, manifest: dict, job: Optional["JobPass"], cluster=None) -> dict:
    """stats.json: the folder's records, this run's figures, the failures recorded before this run, why the run
    stopped, and the Ray workers' figures when it ran on Ray; written atomically."""
    stats = {**spec.stats(folder.store, manifest), **(spec.run_stats(job) if job else {})}
    if job:
        stats["failed_before"] = max(0, stats["failed"] - job.counts["failed"])
        stats["stopped"] = job.stopped
    if cluster is not None:
        stats["ray"] = cluster.stats()
    write_json_atomic(folder.path / "stats.json", stats)
    return stats


# -- the pass ----------------------------------------------------------------------------------------------------
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


class Runner(Protocol):
    """Where a pass's batches are worked. `submit` queues a batch and returns the batches finished meanwhile (it
    may wait for some, to bound what is in flight); `drain` returns the rest as they finish; `spent` is what the
    job has spent, all its runs included; `note` is a word for the progress line (e.g. workers alive)."""

    def submit(self, batch: list) -> list[Done]: ...

    def drain(self) -> Iterator[Done]: ...

    def spent(self) -> Spend: ...

    def note(self) -> Optional[str]: ...


class InProcess:
    """The default runner: each batch is worked here, by the job's own batch function, as soon as it is queued."""

    def __init__(self, job: "JobPass", model):
        self.job, self.model, self.work = job, model, job.spec.worker()

    def submit(self, batch: list) -> list[Done]:
        try:
            records, stopped = self.work(self.model, [pl for pl, _ in batch])
            return [Done(batch, records, stopped)]
        finally:
            self.job.settle(batch)  # what a failed batch spent counts too

    def drain(self) -> Iterator[Done]:
        return iter(())

    def spent(self) -> Spend:
        return self.model.spent()

    def note(self) -> Optional[str]:
        return None


COUNTERS = ("done", "failed", "retried", "prompt_tokens", "completion_tokens")


@dataclass
class JobPass:
    """One run over the input: the items waiting for work, where their records go, and this run's counts."""

    folder: Folder
    spec: JobSpec
    model: Any = None  # the loaded model (None when the batches run on a cluster's workers)
    runner: Optional[Runner] = None  # None: InProcess
    bar: Any = None
    spent_saved: Any = None
    pending: list[tuple[Any, Optional[Stored]]] = field(default_factory=list)
    stopped: Optional[str] = None  # why the job stopped early ("budget: …")
    written: int = 0  # records written this run
    skipped: int = 0  # items whose stored record stands
    superseding: int = 0  # records this run wrote for ids the store held (folded in when the pass ends)
    wall: float = 0.0  # seconds `run` took
    reserved: dict[tuple, Spend] = field(default_factory=dict)  # requests held for each batch out (see `reserve`)
    reserved_saved: Spend = Spend()
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.runner = self.runner or InProcess(self, self.model)
        self.counts = dict.fromkeys((*COUNTERS, *self.spec.counters), 0)
        self.spent_saved = self.runner.spent()  # what the job had spent when this run began (spend.json, carried)

    def run(self, items: Iterable, batch: int) -> int:
        """Queue the items of this shard that need work and work them a batch at a time; returns the input items
        read (and sets `wall`). Bad input further on keeps the work done before it is reported."""
        spec, options = self.spec, self.spec.options
        started, seen, limit = time.time(), 0, spec.limit()
        try:
            for item in items:
                if limit is not None and seen >= limit:
                    break
                seen += 1
                if (
                    in_shard(getattr(item, spec.shard_field), options.shard)
                    and self.add(spec.plan(item))
                    and len(self.pending) >= batch
                ):
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
        if self.spec.repeated(planned):
            return False
        stored = self.folder.stored.get(planned.id)
        if stored is not None and not self.spec.attempt_again(planned, stored):
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
        bad = [(r, why) for r in records if (why := self.spec.bad_input(r))]
        records = [r for r in records if not any(r is b for b, _ in bad)]
        before = {pl.id: stored for pl, stored in batch if stored is not None}
        self.folder.store.append(r.to_json() for r in records if r.id not in before)
        self.superseding += self.folder.store.supersede(r.to_json() for r in records if r.id in before)
        for r in records:
            self.spec.count(self.counts, r, before.get(r.id))
        self.written += len(records)
        if self.bar:
            self.bar.advance(len(records))
            note = self.runner.note()
            if note:
                self.bar.set_note(note)
        if self.spec.options.on_batch:
            self.spec.options.on_batch(self.written)
        if bad:
            record, why = bad[0]
            raise DataError(str(self.spec.path), next(pl.line for pl, _ in batch if pl.key == record.key), why)

    def reserve(self, batch: list) -> None:
        """Under a request cap, hold the most requests `batch` can send (each item's, times the attempts a request
        gets, within what the cap leaves) in spend.json before it goes out; a jury holds them per member with a
        cap, each member sending an item's requests. A SIGKILL mid-batch, which runs no `finally`, then leaves the
        job counted at or above what it sent, so a resumed job never passes the cap; it may stop short of it by
        what the batch did not send. `settle` puts the real spend in its place."""
        items = sum(self.spec.requests_of(pl) for pl, _ in batch)
        spent, held = self.runner.spent(), sum(self.reserved.values(), Spend())
        reserved = Spend()
        for name, config in cap_holders(self.spec.config):
            cap = getattr(config, "max_requests", None)
            if cap is None:
                continue
            room = cap - share(spent, name).requests - share(held, name).requests
            n = max(0, min(items * (getattr(config, "max_retries", 0) + 1), room))
            reserved = reserved + Spend(n, 0.0, () if name is None else ((name, Spend(n)),))
        if reserved != Spend():
            self.reserved[_batch_key(batch)] = reserved
            self.save_spend()

    def settle(self, batch: list) -> None:
        """A batch is back (or failed): what it spent is in the runner's count now, in place of its reservation."""
        self.reserved.pop(_batch_key(batch), None)
        self.save_spend()

    def save_spend(self) -> None:
        spent, reserved = self.runner.spent(), sum(self.reserved.values(), Spend())
        if (spent, reserved) != (self.spent_saved, self.reserved_saved):
            write_spend(self.folder.path, spent, reserved)
            self.spent_saved, self.reserved_saved = spent, reserved

    def finish(self, manifest: dict, write_stats: Callable[[], dict], **extra) -> JobResult:
        """Fold this run's new attempts in (and retire what no input row maps to any more), then the stats and the
        manifest's closing status."""
        retired = self.spec.retired(self.folder.stored)
        if self.superseding or retired:
            self.folder.store.fold(retired)
        self.spec.finished(self.folder.store)
        stats = write_stats()
        close_manifest(self.folder, manifest, "stopped" if self.stopped else "complete", **extra)
        return JobResult(self.folder.path, stats, self.stopped, self.written, self.skipped)


def _batch_key(batch: list) -> tuple:
    return tuple(planned.id for planned, _ in batch)


@contextlib.contextmanager
def in_folder(
    folder: Folder, manifest: dict, job: Callable[[], Optional[JobPass]], write_stats: Callable[[], object]
) -> Iterator[None]:
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
    key = text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1].rstrip() + "…"
    reasons[key] = reasons.get(key, 0) + 1


def top_reasons(reasons: dict[str, int]) -> dict[str, int]:
    """The TOP_REASONS commonest reasons, commonest first, and how many failed for any other reason."""
    ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
    top = dict(ranked[:TOP_REASONS])
    if len(ranked) > TOP_REASONS:
        top[f"({len(ranked) - TOP_REASONS} other reasons)"] = sum(n for _, n in ranked[TOP_REASONS:])
    return top
