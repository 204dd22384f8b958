"""The score job (`rlaif score`), as the job engine runs it (rlaif/jobs/run.py): read responses (responses.py) →
rate them batch by batch with a score judge (rate.py) → one score record per response id in OUT/scores.jsonl. This
file holds only what is the score job's own.

Responses are sharded by prompt id, so the responses to one prompt stay in one shard and can be compared, and
`--limit` counts input rows (a row of pairs holds two responses). The judge's `score.temperature` is no part of the
job: a new T in the judge config is taken up by running the job again, which rates nothing anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..constitution import Constitution
from ..data.formats import DataError
from ..data.scores import SCORES_FILE, scale_of
from ..jobs.folder import FolderKind, JobError, judged_identity
from ..jobs.run import JobOptions, JobResult, JobSpec, run_job, split_settings
from ..jobs.store import Stored
from ..judges.base import TOO_LONG
from ..judges.registry import load_judge, not_ready
from ..numbers import score_record_problem
from ..records import ScoreRecord
from .rate import PlannedResponse, plan_response, rate_batch
from .responses import ScoreItem, read_responses
from .stats import compute_stats

RESPONSES_PER_BATCH = 16
RAY_NEEDS_CONFIG = "with ray, give the judge as a config or a YAML path: each worker loads its own judge from it"
PAIRWISE_JUDGE = ("{judge} is a pairwise judge (mode: pairwise): rlaif score needs a score judge. Set `mode: score` "
                  "in the judge config, or label pairs with rlaif label")

SCORES = FolderKind(job="rlaif score", records="scores", record="a score", doing="scored", file=SCORES_FILE,
                    same_job=(("constitution_sha256", "constitution"), ("judge_settings_sha256", "judge settings"),
                              ("seed", "seed"), ("shard", "shard")),
                    record_identity=judged_identity,
                    record_problem=lambda r, manifest: score_record_problem(r, scale_of(manifest)[0]))


def score(responses: str | Path, constitution: str | Path | Constitution, judge, out: str | Path,
          options: Optional[JobOptions] = None, **settings) -> JobResult:
    """Rate every response of a file of pairs (or of `rlaif generate`'s samples) into `out`; running it again
    resumes. `judge` must be a score judge (mode: score): a Judge, a config or a YAML path (with Ray, a config or a
    path). `settings` are JobOptions fields (`limit` counts input rows; `skip_invalid` records a response too long
    for the judge as failed and goes on, without it that is bad input) and `max_chars`, a row's longest text."""
    own, shared = split_settings(ScoreJob, settings)
    return run_job(ScoreJob(**own), responses, constitution, judge, out, JobOptions.of(options, **shared))


@dataclass
class ScoreJob(JobSpec):
    """What the score job brings to the engine."""

    max_chars: int = 100_000
    rows: int = field(default=0, init=False)  # input rows read this run

    kind = SCORES
    item, unit, doing, done, rate, input_count = "response", "responses", "scoring", "scored", "responses", \
        "input_responses"
    shard_field = "prompt_id"

    def check(self, judge, built: bool) -> None:
        if self.config.mode != "score":
            raise JobError(PAIRWISE_JUDGE.format(judge=judge if isinstance(judge, (str, Path)) else "the judge"))
        refusal = not_ready(self.config, judge if built else None)
        if refusal or (self.options.ray is not None and built):
            raise JobError(refusal or RAY_NEEDS_CONFIG)

    def numbers(self):
        return (("--max-chars", self.max_chars),)

    def manifest(self) -> dict:
        # the tie margin derived labels use: the constitution's when it sets one
        return {**super().manifest(), "tie_margin": self.constitution.tie_margin_or(self.config.tie_margin)}

    def loader(self):
        return partial(load_judge, self.config)

    def worker(self):
        return partial(rate_batch, constitution=self.constitution)

    def batch_size(self) -> int:
        # a batch of responses, not of trees: the responses to one prompt go to the judge together, so a backend
        # encodes their prefix once (the judge's own batch_size still bounds each forward pass)
        return RESPONSES_PER_BATCH

    def limit(self) -> Optional[int]:
        return None  # --limit counts input rows: `items` stops there

    def items(self, path: Path) -> Iterator[ScoreItem]:
        """The responses of the first --limit input rows."""
        last, limit = None, self.options.limit
        for item in read_responses(path, self.options.format, seed=self.options.seed, max_chars=self.max_chars):
            if item.source_line != last:
                last = item.source_line
                if limit is not None and self.rows >= limit:
                    return
                self.rows += 1
            yield item

    def rows_read(self, items_seen: int) -> dict:
        # input_responses counts every shard's (what `rlaif score merge` checks the shards add up to)
        return {"input_rows": self.rows, "input_responses": items_seen}

    def plan(self, item: ScoreItem) -> PlannedResponse:
        known = {p.id for p in self.constitution.principles}
        if item.principle and item.principle not in known:
            raise DataError(self.path, item.source_line,
                            f"principle '{item.principle}' is not in constitution '{self.constitution.name}' "
                            f"(its principles: {', '.join(sorted(known))})")
        return plan_response(item, self.constitution, self.config.settings_sha256(), self.options.seed)

    def requests_of(self, planned: PlannedResponse) -> int:
        return len(planned.principles)  # one query per principle (rate.rate_planned)

    def input_failure(self, error: Optional[str]) -> bool:
        return (error or "").startswith(TOO_LONG)

    def changed(self, planned: PlannedResponse, stored: Stored) -> str:
        return (f"response '{planned.id}' was scored before with other content ({self.store_path}:{stored.line}); "
                f"give the edited pair or prompt a new id")

    def bad_input(self, record: ScoreRecord) -> Optional[str]:
        # Without --skip-invalid a response too long for the judge is bad input: keep the rest, then report it.
        if self.options.skip_invalid or not (record.error or "").startswith(TOO_LONG):
            return None
        return f"response '{record.id}': {record.error} (--skip-invalid records such responses as failed and goes on)"

    def stats(self, records: Iterable[dict], manifest: dict, run: Optional[dict]) -> dict:
        return compute_stats(records, *scale_of(manifest), run)


__all__ = ["SCORES", "JobError", "JobResult", "ScoreJob", "score"]
