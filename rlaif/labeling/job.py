"""The labelling job: read pairs → score them batch by batch (score.py) → store one label record per pair id.

`label` writes into a label folder (folder.py: its lock, and the job it belongs to): DIR/labels.jsonl (one record
per pair id; the same command run again skips what is done, by the record's content key), DIR/manifest.json
(what made the labels: input, constitution, judge, seed, shard, versions), DIR/spend.json (what the job has spent,
towards caps that hold per job) and DIR/stats.json (stats.py). A new attempt at a stored pair (a failed one, or
an edited one under --relabel-changed) supersedes its record when the pass ends. shards.py merges the folders of
a sharded job. With `ray` the same pass sends its batches to judges on a Ray cluster (ray.py) instead of judging
them here; everything else, records included, is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..cluster.connect import RayOptions
from ..config.judge import JudgeBase, load_judge_config
from ..constitution import Constitution, load_constitution
from ..data.folder import check_numbers, job_manifest, with_caps
from ..data.formats import DataError, count_pairs
from ..data.jobpass import JobPass, JobResult, in_folder, write_job_stats
from ..data.labels import Stored
from ..data.pairs import read_pairs, synthetic_line
from ..judges.base import TOO_LONG, Judge
from ..judges.registry import load_judge, not_ready
from ..records import LabelRecord, Pair
from .folder import Folder, LabelJobError, open_folder, read_spend
from .pairwise import PlannedPair, is_input_failure, judge_batch, plan_pair
from .stats import compute_stats


def label(pairs: str | Path, constitution: str | Path | Constitution, judge, out: str | Path, *,
          limit: Optional[int] = None, seed: int = 0, batch_size: Optional[int] = None,
          shard: tuple[int, int] = (0, 1), format: Optional[str] = None, skip_invalid: bool = False,
          max_chars: int = 100_000, progress: bool = True, on_batch: Optional[Callable[[int], None]] = None,
          retry_failed: bool = False, relabel_changed: bool = False, max_requests: Optional[int] = None,
          max_cost: Optional[float] = None, ray: Optional[RayOptions] = None) -> JobResult:
    """Label a file of pairs into `out`; running it again resumes. `judge` is a Judge, a config or a YAML path;
    with `ray`, a config or a YAML path, which each worker on the cluster loads.

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
    if judge_config.mode == "score":
        raise LabelJobError(f"{judge if isinstance(judge, (str, Path)) else 'the judge'} is a score judge (mode: "
                            f"score): rlaif label needs a pairwise judge. Rate responses with rlaif score, or set "
                            f"`mode: pairwise` in the judge config")
    refusal = not_ready(judge_config, judge_obj) or _ray_refusal(ray, judge_obj)
    if refusal:
        raise LabelJobError(refusal)  # before anything is written to `out`
    manifest = _manifest(pairs_path, format, constitution_path, constitution, judge_config, seed, shard, limit)
    cluster = None
    if ray is not None:
        from ..cluster.runner import RayRunner

        cluster = RayRunner(ray, "pairs")  # connected before the folder is opened: no cluster, nothing written
        manifest["ray"] = cluster.settings(judge_config)
    folder = open_folder(out_dir, manifest)
    job: Optional[_Pass] = None
    with in_folder(folder, manifest, lambda: job, lambda: _write_stats(folder, judge_config, job, 0.0, cluster)):
        try:
            if cluster is not None:
                cluster.start(partial(load_judge, judge_config), partial(judge_batch, constitution=constitution),
                              read_spend(out_dir))
            else:
                judge_obj = judge_obj or load_judge(judge_config)
                judge_obj.carry_spend(read_spend(out_dir))
            job = _Pass(folder, pairs_path, on_batch, runner=cluster, config=judge_config, judge=judge_obj,
                        constitution=constitution, judge_sha=judge_config.settings_sha256(),
                        skip_invalid=skip_invalid, retry_failed=retry_failed, relabel_changed=relabel_changed)
            job.show_progress("labelling", count_pairs(pairs_path, format), limit, shard, progress)
            pairs_read = read_pairs(pairs_path, format=format, seed=seed, skip_invalid=skip_invalid,
                                    max_chars=max_chars)
            seen = job.run(job.reading(pairs_read), lambda pair: _plan(pair, job, seed), limit, shard,
                           batch_size or getattr(judge_config, "batch_size", 8))
            return job.finish(manifest, lambda: _write_stats(folder, judge_config, job, job.wall, cluster),
                              input_pairs=seen)
        finally:
            if cluster is not None:
                cluster.close()


def _ray_refusal(ray: Optional[RayOptions], judge: Optional[Judge]) -> Optional[str]:
    if ray is not None and judge is not None:
        return "with ray, give the judge as a config or a YAML path: each worker loads its own judge from it"
    return None


def _judge_config(judge) -> JudgeBase:
    return judge if isinstance(judge, JudgeBase) else load_judge_config(judge)


def _manifest(pairs_path: Path, format: Optional[str], constitution_path: Optional[str], constitution: Constitution,
              judge_config: JudgeBase, seed: int, shard: tuple[int, int], limit: Optional[int]) -> dict:
    """What makes these labels what they are, written to DIR/manifest.json when the job starts."""
    return job_manifest(pairs_path, format, constitution_path, constitution, seed, shard, limit,
                        judge=judge_config.public_dict(), judge_settings_sha256=judge_config.settings_sha256())


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
    return plan_pair(pair, job.constitution, job.judge_sha, seed)


@dataclass
class _Pass(JobPass):
    """One run over the input: the pairs waiting for the judge, where their records go, and this run's counts."""

    judge: Optional[Judge] = None  # None when the judging runs on a cluster's workers
    constitution: Constitution = None
    judge_sha: str = ""
    skip_invalid: bool = False
    retry_failed: bool = False
    relabel_changed: bool = False
    live: set[str] = field(default_factory=set)  # ids rlaif made for unreadable rows ("rlaif:line-N"), as read now
    last_line: int = 0  # the last input line read
    read_all: bool = False  # whether this run read the input to its end
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("labelled", "failed", "retried", "relabelled", "consistent", "a", "b", "tie", "prompt_tokens",
         "completion_tokens"), 0))

    @property
    def pairs_path(self) -> Path:
        return self.input_path

    def reading(self, pairs: Iterator[Pair]) -> Iterator[Pair]:
        """The input's pairs, noting how far this run reads and the rows that still have an id of a line."""
        for pair in pairs:
            self.last_line = pair.source_line or self.last_line
            if synthetic_line(pair.id) is not None:
                self.live.add(pair.id)
            yield pair
        self.read_all = True

    def retired(self) -> set[str]:
        """The failed records of unreadable rows ("rlaif:line-N", kept by --skip-invalid) whose line holds no such
        row any more: it was fixed (and has its own id now), removed, or the file ends before it. Only lines this
        run read are judged; one past a --limit keeps its record."""
        return {i for i in self.folder.stored if (line := synthetic_line(i)) is not None and i not in self.live
                and (self.read_all or line <= self.last_line)}

    def requests_of(self, planned: PlannedPair) -> int:
        return 2 * len(planned.principles)  # both orders of each principle (judges/prompting.pair_queries)

    def attempt_again(self, planned: PlannedPair, stored: Stored) -> bool:
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

    def work(self, batch: list[PlannedPair]) -> list[LabelRecord]:
        records, stopped = judge_batch(self.judge, batch, self.constitution)
        self.stopped = self.stopped or stopped
        return records

    def bad_input(self, record: LabelRecord) -> Optional[str]:
        # Without --skip-invalid a pair too long for the judge is bad input: keep the rest, then report it.
        if self.skip_invalid or not (record.error or "").startswith(TOO_LONG):
            return None
        return f"pair '{record.id}': {record.error} (--skip-invalid records such pairs as failed and goes on)"

    def count(self, record: LabelRecord, stored: Optional[Stored]) -> None:
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

    def spent(self):
        return self.judge.spent()

    def run_stats(self, wall: float) -> dict:
        c = self.counts
        decided = c["a"] + c["b"] + c["tie"]
        tokens = c["prompt_tokens"] + c["completion_tokens"]
        return {"labelled_now": c["labelled"], "resumed_skipped": self.skipped, "failed_this_run": c["failed"],
                "retried_this_run": c["retried"], "relabelled_this_run": c["relabelled"],
                "run_labels": {k: c[k] for k in ("a", "b", "tie")},
                "run_position_consistency": round(c["consistent"] / decided, 4) if decided else None,
                "run_inconsistent": decided - c["consistent"],
                "spent_requests": self.spent_saved.requests, "spent_cost": round(self.spent_saved.cost, 6),
                "wall_time_s": round(wall, 3),
                "pairs_per_s": round(c["labelled"] / wall, 4) if wall > 0 else None,
                "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
                "run_prompt_tokens": c["prompt_tokens"], "run_completion_tokens": c["completion_tokens"]}


def _write_stats(folder: Folder, judge_config: JudgeBase, job: Optional[_Pass], wall: float, cluster=None) -> dict:
    stats = compute_stats(folder.store, judge_config, job.run_stats(wall) if job else None)
    return write_job_stats(folder, stats, job, cluster)



