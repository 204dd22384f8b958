"""The score job (`rlaif score`), as the job engine runs it (rlaif/jobs/run.py): read responses (responses.py) →
rate them batch by batch with a score judge (rate.py) → one score record per response id in OUT/scores.jsonl. This
file holds only what is the score job's own.

Responses are sharded by prompt id, so the responses to one prompt stay in one shard and can be compared, and
`--limit` counts input rows (a row of pairs holds two responses). The judge's `score.temperature` is no part of the
job: a new T in the judge config is taken up by running the job again, which rates nothing anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..constitution import Constitution
from ..data.formats import DataError
from ..data.scores import SCORES_FILE, derived_labels, scale_of
from ..jobs.folder import JUDGED_SAME_JOB, FolderKind, JobError, judged_identity
from ..jobs.run import INVALID_INPUT, JobOptions, JobResult, JudgedJob, count_reason, is_input_failure, top_reasons
from ..jobs.store import Stored
from ..judges.base import ScoreJudge
from ..numbers import score_record_problem
from .rate import PlannedResponse, plan_response, rate_planned
from .responses import ScoreItem, read_responses

RESPONSES_PER_BATCH = 16

SCORES = FolderKind(
    job="rlaif score",
    records="scores",
    record="a score",
    doing="scored",
    file=SCORES_FILE,
    same_job=JUDGED_SAME_JOB,
    record_identity=judged_identity,
    record_problem=lambda r, manifest: score_record_problem(r, scale_of(manifest)[0]),
)


def score(
    responses: str | Path,
    constitution: str | Path | Constitution,
    judge,
    out: str | Path,
    options: Optional[JobOptions] = None,
    **settings,
) -> JobResult:
    """Rate every response of a file of pairs (or of `rlaif generate`'s samples) into `out`; running it again
    resumes. `judge` must be a score judge (mode: score): a Judge, a config or a YAML path (with Ray, a config or a
    path). `settings` are JobOptions fields (`limit` counts input rows; `skip_invalid` records the responses of a row
    that cannot be read, and a response too long for the judge, as failed and goes on, as `rlaif label` does: without
    it that is bad input) and `max_chars`, a row's longest text."""
    return ScoreJob.run(responses, constitution, judge, out, options, **settings)


@dataclass
class ScoreJob(JudgedJob):
    """What the score job brings to the engine."""

    rows: int = field(default=0, init=False)  # input rows read this run

    kind = SCORES
    item, unit, doing, done, rate, input_count = (
        "response",
        "responses",
        "scoring",
        "scored",
        "responses",
        "input_responses",
    )
    shard_field = "prompt_id"
    judge_kind = ScoreJudge
    other_kind = "Set `mode: score` in the judge config, or label pairs with rlaif label"
    judged = staticmethod(rate_planned)

    def manifest(self) -> dict:
        # the tie margin derived labels use: the constitution's when it sets one
        return {**super().manifest(), "tie_margin": self.constitution.tie_margin_or(self.config.tie_margin)}

    def batch_size(self) -> int:
        # a batch of responses, not of trees: the responses to one prompt go to the judge together, so a backend
        # encodes their prefix once (the judge's own batch_size still bounds each forward pass)
        return RESPONSES_PER_BATCH

    def limit(self) -> Optional[int]:
        return None  # --limit counts input rows: `items` stops there

    def items(self, path: Path) -> Iterator[ScoreItem]:
        """The responses of the first --limit input rows."""
        last, o = None, self.options
        responses = read_responses(path, o.format, seed=o.seed, max_chars=self.max_chars, skip_invalid=o.skip_invalid)
        for item in self.noting(responses):
            if item.source_line != last:
                last = item.source_line
                if o.limit is not None and self.rows >= o.limit:
                    return
                self.rows += 1
            yield item

    def rows_read(self, items_seen: int) -> dict:
        # input_responses counts every shard's (what `rlaif score merge` checks the shards add up to)
        return {"input_rows": self.rows, "input_responses": items_seen}

    def plan(self, item: ScoreItem) -> PlannedResponse:
        """Plan a response; one whose row names a principle the constitution lacks is bad input (a failed record
        under --skip-invalid)."""
        reason = None if item.invalid else self.unknown_principle(item.principle)
        if reason:
            if not self.options.skip_invalid:
                raise DataError(self.path, item.source_line, reason)
            item.invalid = reason
        return plan_response(item, self.constitution, self.config.settings_sha256(), self.options.seed)

    def requests_of(self, planned: PlannedResponse) -> int:
        return len(planned.principles)  # one query per principle (rate.rate_planned)

    def row_line(self, item_id: str) -> Optional[int]:
        return super().row_line(item_id.rpartition(":")[0])  # "rlaif:line-N:a": a side of the row's pair

    def changed(self, planned: PlannedResponse, stored: Stored) -> str:
        return (
            f"response '{planned.id}' was scored before with other content ({self.store_path}:{stored.line}); "
            f"give the edited pair or prompt a new id"
        )

    def total(self, path: Path) -> Optional[int]:
        return None  # the progress line counts responses, and a row of pairs holds two

    def stats(self, records: Iterable[dict], manifest: dict) -> dict:
        return compute_stats(records, *scale_of(manifest))


# -- the folder's stats: responses rated and failed (and why), the histogram of expected scores, the mean reward per
# principle, and, where the input pairs carry a human choice, how often the preference derived from the two scores
# agrees with it.
def compute_stats(records: Iterable[dict], scale: tuple[int, int], temperature: float, tie_margin: float) -> dict:
    records = list(records)
    low, high = scale
    histogram = {str(s): 0 for s in range(low, high + 1)}  # expected scores, rounded to the nearest score
    principles: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    invalid_rows: set[str] = set()  # the input rows that could not be read (their pair ids), kept by --skip-invalid
    ok = failed_input = prompt_tokens = completion_tokens = 0
    score_sum = 0.0
    for r in records:
        prompt_tokens += r.get("prompt_tokens", 0)
        completion_tokens += r.get("completion_tokens", 0)
        if r["status"] != "ok":
            count_reason(errors, r.get("error"))
            failed_input += is_input_failure(r.get("error"))
            if (r.get("error") or "").startswith(INVALID_INPUT):
                invalid_rows.add(r.get("pair_id") or r["id"])
            continue
        ok += 1
        score_sum += r["score"]
        histogram[str(min(high, max(low, round(r["score"]))))] += 1
        principles.setdefault(r.get("principle_id") or "?", []).append(r["reward"])
    agree = decided = 0
    # only pairs with a human choice count (both responses of such a pair carry it): samples never do
    labelled = [r for r in records if r.get("human_label") in ("a", "b")]
    for pair in derived_labels(labelled, scale, temperature, tie_margin):
        if pair["status"] == "ok" and pair.get("human_label") in ("a", "b"):
            decided += 1
            agree += pair["label"] == pair["human_label"]
    return {
        "responses": len(records),
        "ok": ok,
        "failed": len(records) - ok,
        "failed_input": failed_input,
        "failed_judge": len(records) - ok - failed_input,
        "invalid_rows": len(invalid_rows),
        "prompts": len({r["prompt_id"] for r in records}),
        "scale": [low, high],
        "temperature": temperature,
        "tie_margin": tie_margin,
        "score_histogram": histogram,
        "mean_score": round(score_sum / ok, 4) if ok else None,
        "mean_reward_by_principle": {k: round(sum(v) / len(v), 4) for k, v in sorted(principles.items())},
        "human_pairs": decided,
        "agreement_with_human": round(agree / decided, 4) if decided else None,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "failure_reasons": top_reasons(errors),
    }


__all__ = ["SCORES", "JobError", "JobResult", "ScoreJob", "compute_stats", "score"]
