"""The score job (`rlaif score`): read responses (responses.py) → rate them batch by batch with a score judge
(rate.py) → store one score record per response id. A job over responses beside rlaif/labeling/, in the same kind
of folder (rlaif/data/folder.py: its lock, the job it belongs to, what it spent).

DIR/scores.jsonl holds one record per response id (appended and fsync'd per batch; the same command run again
skips what is done, by the record's content key, and a SIGKILL loses at most the batch in flight),
DIR/manifest.json what made them (input, constitution, judge, seed, shard, versions), DIR/spend.json what the job
spent towards its caps and DIR/stats.json (stats.py). Responses are sharded by prompt id, so the responses to one
prompt stay in one shard and can be compared. The judge's `score.temperature` is no part of the job: a new T in
the judge config is taken up by running the job again, which rates nothing anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from ..cluster.connect import RayOptions
from ..config.judge import JudgeBase, load_judge_config
from ..constitution import Constitution, load_constitution
from ..jobs.folder import (Folder, FolderKind, JobError, check_numbers, job_manifest, judged_identity, open_folder, read_spend, with_caps)
from ..data.formats import DataError
from ..jobs.run import JobPass, JobResult, in_folder, write_job_stats
from ..jobs.store import Stored
from ..data.scores import SCORES_FILE, scale_of
from ..judges.base import TOO_LONG, Judge
from ..judges.registry import load_judge, not_ready
from ..progress import progress as make_progress
from ..numbers import score_record_problem
from ..records import ScoreRecord
from .rate import PlannedResponse, plan_response, rate_batch
from .responses import ScoreItem, read_responses
from .stats import compute_stats

RESPONSES_PER_BATCH = 16
RAY_NEEDS_CONFIG = "with ray, give the judge as a config or a YAML path: each worker loads its own judge from it"
PAIRWISE_JUDGE = ("{judge} is a pairwise judge (mode: pairwise): rlaif score needs a score judge. Set `mode: score` "
                  "in the judge config, or label pairs with rlaif label")


SCORES = FolderKind(job="rlaif score",
                    records="scores", record="a score", doing="scored", file=SCORES_FILE,
                    same_job=(("constitution_sha256", "constitution"), ("judge_settings_sha256", "judge settings"),
                              ("seed", "seed"), ("shard", "shard")),
                    record_identity=judged_identity,
                    record_problem=lambda r, manifest: score_record_problem(r, scale_of(manifest)[0]))


def score(responses: str | Path, constitution: str | Path | Constitution, judge, out: str | Path, *,
          limit: Optional[int] = None, seed: int = 0, batch_size: Optional[int] = None,
          shard: tuple[int, int] = (0, 1), format: Optional[str] = None, max_chars: int = 100_000,
          progress: bool = True, on_batch: Optional[Callable[[int], None]] = None, retry_failed: bool = False,
          max_requests: Optional[int] = None, max_cost: Optional[float] = None,
          ray: Optional[RayOptions] = None, skip_invalid: bool = False) -> JobResult:
    """Rate every response of a file of pairs (or of `rlaif generate`'s samples) into `out`; running it again
    resumes. `judge` is a Judge, a config or a YAML path, and must be a score judge (mode: score); with `ray`, a
    config or a YAML path, which each worker on the cluster loads. `limit` counts input rows. `skip_invalid`
    records a response too long for the judge as failed and goes on (without it that is bad input, exit 2)."""
    input_path, out_dir = Path(responses), Path(out)
    constitution_path = None if isinstance(constitution, Constitution) else str(constitution)
    if constitution_path is not None:
        constitution = load_constitution(constitution_path)
    check_numbers(shard, (("--limit", limit), ("--batch-size", batch_size), ("--max-chars", max_chars)))
    judge_obj: Optional[Judge] = judge if isinstance(judge, Judge) else None
    config = with_caps(judge_obj.config if judge_obj else _judge_config(judge), max_requests, max_cost)
    if config.mode != "score":
        raise JobError(PAIRWISE_JUDGE.format(judge=judge if isinstance(judge, (str, Path)) else "the judge"))
    if judge_obj is not None:
        judge_obj.config = config
    refusal = not_ready(config, judge_obj) or (RAY_NEEDS_CONFIG if ray is not None and judge_obj else None)
    if refusal:
        raise JobError(refusal)
    manifest = job_manifest(input_path, format, constitution_path, constitution, seed, shard, limit,
                            judge=config.public_dict(), judge_settings_sha256=config.settings_sha256())
    manifest["tie_margin"] = constitution.tie_margin_or(config.tie_margin)  # what derived labels use
    cluster = None
    if ray is not None:
        from ..jobs.ray import RayRunner

        cluster = RayRunner(ray, "responses")  # connected before the folder is opened: no cluster, nothing written
        manifest["ray"] = cluster.settings(config)
    folder = open_folder(out_dir, manifest, SCORES)
    job: Optional[_Pass] = None
    with in_folder(folder, manifest, lambda: job, lambda: _write_stats(folder, manifest, job, 0.0, cluster)):
        try:
            judge_obj = _start(cluster, config, constitution, judge_obj, out_dir)
            job = _Pass(folder, input_path, on_batch, runner=cluster, config=config, judge=judge_obj,
                        constitution=constitution, judge_sha=config.settings_sha256(), seed=seed,
                        retry_failed=retry_failed, skip_invalid=skip_invalid)
            job.bar = make_progress("scoring", None, progress, unit="responses")  # responses per row vary: no total
            items = read_responses(input_path, format, seed=seed, max_chars=max_chars)
            # a batch of responses, not of trees: the responses to one prompt go to the judge together, so a
            # backend encodes their prefix once (the judge's own batch_size still bounds each forward pass)
            responses = job.run(job.rows(items, limit), job.plan, None, shard, batch_size or RESPONSES_PER_BATCH)
            # input_responses counts every shard's (what `rlaif score merge` checks the shards add up to)
            return job.finish(manifest, lambda: _write_stats(folder, manifest, job, job.wall, cluster),
                              input_rows=job.rows_read, input_responses=responses)
        finally:
            if cluster is not None:
                cluster.close()


def _start(cluster, config: JudgeBase, constitution: Constitution, judge: Optional[Judge],
           out_dir: Path) -> Optional[Judge]:
    """The judge of an in-process job, loaded and carrying what the job spent; on Ray, the workers started instead
    (and no judge here)."""
    if cluster is not None:
        cluster.start(partial(load_judge, config), partial(rate_batch, constitution=constitution), read_spend(out_dir))
        return None
    judge = judge or load_judge(config)
    judge.carry_spend(read_spend(out_dir))
    return judge


def _judge_config(judge) -> JudgeBase:
    return judge if isinstance(judge, JudgeBase) else load_judge_config(judge)


@dataclass
class _Pass(JobPass):
    """One run over the input: the responses waiting for the judge, where their records go, and this run's counts."""

    judge: Optional[Judge] = None  # None when the rating runs on a cluster's workers
    constitution: Constitution = None
    judge_sha: str = ""
    seed: int = 0
    retry_failed: bool = False
    skip_invalid: bool = False
    rows_read: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("scored", "failed", "retried", "prompt_tokens", "completion_tokens"), 0))

    def rows(self, items, limit: Optional[int]):
        """The responses of the first `limit` input rows."""
        last = None
        for item in items:
            if item.source_line != last:
                last = item.source_line
                if limit is not None and self.rows_read >= limit:
                    return
                self.rows_read += 1
            yield item

    def plan(self, item: ScoreItem) -> PlannedResponse:
        known = {p.id for p in self.constitution.principles}
        if item.principle and item.principle not in known:
            raise DataError(self.input_path, item.source_line,
                            f"principle '{item.principle}' is not in constitution '{self.constitution.name}' "
                            f"(its principles: {', '.join(sorted(known))})")
        return plan_response(item, self.constitution, self.judge_sha, self.seed)

    def shard_key(self, item: ScoreItem) -> str:
        return item.prompt_id

    def requests_of(self, planned: PlannedResponse) -> int:
        return len(planned.principles)  # one query per principle (rate.rate_planned)

    def attempt_again(self, planned: PlannedResponse, stored: Stored) -> bool:
        if stored.key == planned.key:  # the same content: only a judge failure is tried again, when asked
            return stored.status != "ok" and self.retry_failed and not (stored.error or "").startswith(TOO_LONG)
        if stored.status != "ok":
            return True
        raise DataError(self.input_path, planned.line,
                        f"response '{planned.id}' was scored before with other content "
                        f"({self.folder.store.path}:{stored.line}); give the edited pair or prompt a new id")

    def work(self, batch: list[PlannedResponse]) -> list[ScoreRecord]:
        records, stopped = rate_batch(self.judge, batch, self.constitution)
        self.stopped = self.stopped or stopped
        return records

    def bad_input(self, record: ScoreRecord) -> Optional[str]:
        # Without --skip-invalid a response too long for the judge is bad input: keep the rest, then report it.
        if self.skip_invalid or not (record.error or "").startswith(TOO_LONG):
            return None
        return f"response '{record.id}': {record.error} (--skip-invalid records such responses as failed and goes on)"

    def count(self, record: ScoreRecord, stored: Optional[Stored]) -> None:
        c = self.counts
        c["scored"] += 1
        c["prompt_tokens"] += record.prompt_tokens
        c["completion_tokens"] += record.completion_tokens
        c["retried"] += stored is not None
        c["failed"] += record.status != "ok"

    def spent(self):
        return self.judge.spent()

    def run_stats(self, wall: float) -> dict:
        c = self.counts
        return {"scored_now": c["scored"], "resumed_skipped": self.skipped, "failed_this_run": c["failed"],
                "retried_this_run": c["retried"], "spent_requests": self.spent_saved.requests,
                "spent_cost": round(self.spent_saved.cost, 6), "wall_time_s": round(wall, 3),
                "responses_per_s": round(c["scored"] / wall, 4) if wall > 0 else None,
                "run_prompt_tokens": c["prompt_tokens"], "run_completion_tokens": c["completion_tokens"]}


def _write_stats(folder: Folder, manifest: dict, job: Optional[_Pass], wall: float, cluster=None) -> dict:
    scale, temperature, tie_margin = scale_of(manifest)
    stats = compute_stats(folder.store, scale, temperature, tie_margin, job.run_stats(wall) if job else None)
    return write_job_stats(folder, stats, job, cluster)


__all__ = ["SCORES", "JobError", "JobResult", "score"]
