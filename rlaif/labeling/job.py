"""The labelling job: read pairs → score them batch by batch (score.py) → store one label record per pair id.

`label` writes into a label folder (folder.py: its lock, and the job it belongs to): DIR/labels.jsonl (one record
per pair id; the same command run again skips what is done, by the record's content key), DIR/manifest.json
(what made the labels: input, constitution, judge, seed, shard, versions), DIR/spend.json (what the job has spent,
towards caps that hold per job) and DIR/stats.json (stats.py). A new attempt at a stored pair (a failed one, or
an edited one under --relabel-changed) supersedes its record when the pass ends. shards.py merges the folders of
a sharded job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .._version import __version__
from ..config.judge import JudgeBase, load_judge_config
from ..constitution import Constitution, load_constitution
from ..data.folder import (check_numbers, close_after_error, close_manifest, file_sha256, in_shard,
                           started_at, versions, with_caps)
from ..data.formats import DataError, count_pairs
from ..data.labels import Stored, write_json_atomic
from ..data.pairs import read_pairs
from ..judges.base import TOO_LONG, Judge
from ..judges.registry import load_judge, not_ready
from ..progress import progress as make_progress
from ..records import LabelRecord, Pair
from .folder import Folder, LabelJobError, open_folder, read_spend, write_spend
from .score import PlannedPair, StoppedEarly, is_input_failure, plan_pair, score_planned
from .stats import compute_stats

@dataclass
class JobResult:
    out_dir: Path
    stats: dict
    stopped: Optional[str] = None  # why the job stopped early ("budget: …"), None when complete
    labelled_now: int = 0
    skipped_done: int = 0


def label(pairs: str | Path, constitution: str | Path | Constitution, judge, out: str | Path, *,
          limit: Optional[int] = None, seed: int = 0, batch_size: Optional[int] = None,
          shard: tuple[int, int] = (0, 1), format: Optional[str] = None, skip_invalid: bool = False,
          max_chars: int = 100_000, progress: bool = True, on_batch: Optional[Callable[[int], None]] = None,
          retry_failed: bool = False, relabel_changed: bool = False, max_requests: Optional[int] = None,
          max_cost: Optional[float] = None) -> JobResult:
    """Label a file of pairs into `out`; running it again resumes. `judge` is a Judge, a config or a YAML path.

    `retry_failed` labels again the pairs whose judge call failed; `relabel_changed` labels again a pair whose id
    was labelled with other content (without it that is an error). `max_requests` / `max_cost` replace the judge's
    caps, which count what the job has spent in all its runs. Each new record supersedes the pair's old one."""
    pairs_path, out_dir = Path(pairs), Path(out)
    if not isinstance(constitution, Constitution):
        constitution_path, constitution = str(constitution), load_constitution(constitution)
    else:
        constitution_path = None
    check_numbers(shard, (("--limit", limit), ("--batch-size", batch_size), ("--max-chars", max_chars)))
    judge_obj: Optional[Judge] = judge if isinstance(judge, Judge) else None  # loaded after the cheap checks
    judge_config = with_caps(judge.config if judge_obj else _judge_config(judge), max_requests, max_cost)
    if judge_obj is not None:
        judge_obj.config = judge_config
    refusal = not_ready(judge_config, judge_obj)
    if refusal:
        raise LabelJobError(refusal)  # before anything is written to `out`
    manifest = _manifest(pairs_path, format, constitution_path, constitution, judge_config, seed, shard, limit)
    folder = open_folder(out_dir, manifest)
    job: Optional[_Pass] = None
    try:
        if judge_obj is None:
            judge_obj = load_judge(judge_config)
        judge_obj.carry_spend(read_spend(out_dir))
        job = _Pass(folder, judge_obj, constitution, pairs_path, skip_invalid, retry_failed, relabel_changed,
                    on_batch, spent_saved=judge_obj.spent())
        total = count_pairs(pairs_path, format)
        job.bar = make_progress("labelling", (min(total, limit) if limit is not None else total)
                                if shard[1] == 1 else None, progress)
        started = time.time()
        try:
            seen = _label_pairs(job, read_pairs(pairs_path, format=format, seed=seed, skip_invalid=skip_invalid,
                                                max_chars=max_chars), limit, shard, seed,
                                batch_size or getattr(judge_config, "batch_size", 8))
        finally:
            if job.bar:
                job.bar.stop()
        stats = _finish(folder, manifest, judge_config, job, seen, time.time() - started)
    except BaseException as e:
        _after_error(folder, manifest, judge_config, job, e)
        raise
    finally:
        folder.close()
    return JobResult(out_dir, stats, job.stopped, job.labelled, job.skipped)


def _judge_config(judge) -> JudgeBase:
    return judge if isinstance(judge, JudgeBase) else load_judge_config(judge)


def _manifest(pairs_path: Path, format: Optional[str], constitution_path: Optional[str], constitution: Constitution,
              judge_config: JudgeBase, seed: int, shard: tuple[int, int], limit: Optional[int]) -> dict:
    """What makes these labels what they are, written to DIR/manifest.json when the job starts."""
    return {
        "rlaif_version": __version__, "created_at": started_at(),
        "input": str(pairs_path), "input_sha256": file_sha256(pairs_path), "format": format,
        "constitution": constitution_path, "constitution_name": constitution.name,
        "constitution_version": constitution.version, "constitution_sha256": constitution.sha256,
        "judge": judge_config.public_dict(), "judge_settings_sha256": judge_config.settings_sha256(),
        "seed": seed, "shard": list(shard), "limit": limit, "versions": versions(), "status": "running",
    }


def _label_pairs(job: _Pass, pairs, limit: Optional[int], shard: tuple[int, int], seed: int, batch: int) -> int:
    """Queue the pairs of this shard that need a label and judge them a batch at a time; returns the input rows
    read. Bad input further on keeps the work already judged before it is reported."""
    seen = 0
    try:
        for pair in pairs:
            if limit is not None and seen >= limit:
                break
            seen += 1
            if in_shard(pair.id, shard) and job.add(_plan(pair, job, seed)) and len(job.pending) >= batch:
                job.flush()
                if job.stopped:
                    break
        if not job.stopped:
            job.flush()
    except DataError:
        if not job.stopped and job.pending:
            job.flush()
        raise
    return seen


def _plan(pair: Pair, job: _Pass, seed: int) -> PlannedPair:
    """Plan a pair; a row naming a principle the constitution lacks is bad input (a failed record under
    --skip-invalid)."""
    known = {p.id for p in job.constitution.principles}
    if pair.principle and not pair.invalid and pair.principle not in known:
        reason = (f"principle '{pair.principle}' is not in constitution '{job.constitution.name}' "
                  f"(its principles: {', '.join(sorted(known))})")
        if not job.skip_invalid:
            raise DataError(job.pairs_path, pair.source_line, reason)
        pair.invalid = reason
    return plan_pair(pair, job.constitution, job.judge, seed)


@dataclass
class _Pass:
    """One run over the input: the pairs waiting for the judge, where their records go, and this run's counts."""

    folder: Folder
    judge: Judge
    constitution: Constitution
    pairs_path: Path
    skip_invalid: bool
    retry_failed: bool
    relabel_changed: bool
    on_batch: Optional[Callable[[int], None]]
    spent_saved: Any = None
    bar: Any = None
    pending: list[tuple[PlannedPair, Optional[Stored]]] = field(default_factory=list)
    stopped: Optional[str] = None  # why the judge stopped early ("budget: …")
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("labelled", "skipped", "failed", "retried", "relabelled", "consistent", "a", "b", "tie",
         "prompt_tokens", "completion_tokens"), 0))

    @property
    def labelled(self) -> int:
        return self.counts["labelled"]

    @property
    def skipped(self) -> int:
        return self.counts["skipped"]

    def add(self, planned: PlannedPair) -> bool:
        """Queue a pair that needs a label; False (counted as already done) when its stored record stands."""
        stored = self.folder.stored.get(planned.pair.id)
        if stored is not None and not self._attempt_again(planned, stored):
            self.counts["skipped"] += 1
            if self.bar:
                self.bar.advance(1)
            return False
        self.pending.append((planned, stored))
        return True

    def _attempt_again(self, planned: PlannedPair, stored: Stored) -> bool:
        """Whether a pair whose id the store holds gets a new record (which then supersedes the stored one)."""
        if stored.key == planned.key:  # the same content: only a judge failure is tried again, when asked
            return stored.status != "ok" and self.retry_failed and not is_input_failure(stored.error)
        if stored.status != "ok" or self.relabel_changed:
            return True
        raise DataError(self.pairs_path, planned.pair.source_line,
                        f"pair '{planned.pair.id}' was labelled before with different content "
                        f"({self.folder.store.path}:{stored.line}). Give the edited pair a new id, or pass "
                        f"--relabel-changed to label it again (the old label moves to "
                        f"{self.folder.store.superseded.name})")

    def flush(self) -> None:
        """Judge the pending pairs and write their records: new ids to the store, new attempts beside it."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            records = score_planned(self.judge, [pl for pl, _ in batch], self.constitution)
        except StoppedEarly as e:
            records, self.stopped = e.records, f"budget: {e}"
        finally:
            self._save_spend()
        # Without --skip-invalid a pair too long for the judge is bad input: keep the rest, then report it.
        too_long = [] if self.skip_invalid else [r for r in records if (r.error or "").startswith(TOO_LONG)]
        records = [r for r in records if r not in too_long]
        before = {pl.pair.id: stored for pl, stored in batch if stored is not None}
        self.folder.store.append(r.to_json() for r in records if r.id not in before)
        self.folder.store.supersede(r.to_json() for r in records if r.id in before)
        for r in records:
            self._count(r, before.get(r.id))
        if self.bar:
            self.bar.advance(len(records))
        if self.on_batch:
            self.on_batch(self.labelled)
        if too_long:
            line = next(p.pair.source_line for p, _ in batch if p.key == too_long[0].key)
            raise DataError(str(self.pairs_path), line, f"pair '{too_long[0].id}': {too_long[0].error} "
                            f"(--skip-invalid records such pairs as failed and goes on)")

    def _count(self, record: LabelRecord, stored: Optional[Stored]) -> None:
        c = self.counts
        c["labelled"] += 1
        c["prompt_tokens"] += record.prompt_tokens
        c["completion_tokens"] += record.completion_tokens
        if stored is not None:
            c["retried" if stored.status != "ok" else "relabelled"] += 1
        if record.status != "ok":
            c["failed"] += 1
        else:
            c[record.label] += 1
            c["consistent"] += bool(record.position_consistent)

    def _save_spend(self) -> None:
        spent = self.judge.spent()
        if spent != self.spent_saved:
            write_spend(self.folder.path, spent)
            self.spent_saved = spent

    def run_stats(self, wall: float) -> dict:
        c = self.counts
        decided = c["a"] + c["b"] + c["tie"]
        tokens = c["prompt_tokens"] + c["completion_tokens"]
        return {"labelled_now": c["labelled"], "resumed_skipped": c["skipped"], "failed_this_run": c["failed"],
                "retried_this_run": c["retried"], "relabelled_this_run": c["relabelled"],
                "run_labels": {k: c[k] for k in ("a", "b", "tie")},
                "run_position_consistency": round(c["consistent"] / decided, 4) if decided else None,
                "run_inconsistent": decided - c["consistent"],
                "spent_requests": self.spent_saved.requests, "spent_cost": round(self.spent_saved.cost, 6),
                "wall_time_s": round(wall, 3),
                "pairs_per_s": round(c["labelled"] / wall, 4) if wall > 0 else None,
                "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
                "run_prompt_tokens": c["prompt_tokens"], "run_completion_tokens": c["completion_tokens"]}


def _finish(folder: Folder, manifest: dict, judge_config: JudgeBase, job: _Pass, seen: int, wall: float) -> dict:
    """Fold this run's new attempts in, then the final stats (over the whole folder, with this run's counts) and
    the manifest's closing status."""
    if job.counts["retried"] or job.counts["relabelled"]:
        folder.store.fold()
    stats = _write_stats(folder, judge_config, job, wall)
    close_manifest(folder, manifest, "stopped" if job.stopped else "complete", input_pairs=seen)
    return stats


def _write_stats(folder: Folder, judge_config: JudgeBase, job: Optional[_Pass], wall: float) -> dict:
    stats = compute_stats(folder.store, judge_config, job.run_stats(wall) if job else None)
    if job:
        stats["failed_before"] = max(0, stats["failed"] - job.counts["failed"])
        stats["stopped"] = job.stopped
    write_json_atomic(folder.path / "stats.json", stats)
    return stats


def _after_error(folder: Folder, manifest: dict, judge_config: JudgeBase, job: Optional[_Pass],
                 error: BaseException) -> None:
    """Leave the folder saying what happened (rlaif.data.folder.close_after_error)."""
    fold = bool(job and (job.counts["retried"] or job.counts["relabelled"]))
    close_after_error(folder, manifest, error, fold, lambda: _write_stats(folder, judge_config, job, 0.0))
