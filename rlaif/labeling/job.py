"""The labelling job (`rlaif label`), as the job engine runs it (rlaif/jobs/run.py): read pairs → judge them batch by
batch in both orders (pairwise.py) → one label record per pair id in OUT/labels.jsonl. This file holds only what is
the labelling job's own: its folder, how a row becomes a planned pair, its judge, and what it counts.

A label folder belongs to one job: one constitution, one judge, one seed, one shard (manifest.json and job.json
say so, and every record carries its constitution and judge hashes). A pair labelled before with other content is
an error naming both lines, unless `relabel_changed`; an id-less row that could not be read is stored as
`rlaif:line-N`, and that record is retired once its line holds another row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..constitution import Constitution
from ..data.formats import DataError
from ..data.labels import LABELS_FILE
from ..data.pairs import read_pairs
from ..jobs.folder import JUDGED_SAME_JOB, FolderKind, JobError, judged_identity
from ..jobs.run import JobOptions, JobResult, JudgedJob, count_reason, is_input_failure, judged_batch, top_reasons
from ..jobs.store import Stored
from ..judges.base import PairwiseJudge
from ..numbers import label_problem
from ..records import LabelRecord, Pair
from .pairwise import PlannedPair, judge_planned, plan_pair
from .reuse import MemberRuns

LabelJobError = JobError  # the labelling job's name for it

LABELS = FolderKind(
    job="rlaif label",
    records="labels",
    record="a label",
    doing="labelled",
    file=LABELS_FILE,
    same_job=JUDGED_SAME_JOB,
    record_identity=judged_identity,
    record_problem=lambda r, _: label_problem(r),
)


def label(
    pairs: str | Path,
    constitution: str | Path | Constitution,
    judge,
    out: str | Path,
    options: Optional[JobOptions] = None,
    **settings,
) -> JobResult:
    """Label a file of pairs into `out`; running it again resumes. `judge` is a Judge, a config or a YAML path; with
    Ray, a config or a path, which each worker on the cluster loads. `settings` are JobOptions fields (seed=,
    limit=, progress=, retry_failed=, max_requests=, ray=, …) and this job's own: `relabel_changed` labels again a
    pair whose id was labelled with other content (without it that is an error), `max_chars` caps a row's text,
    `member_labels` (with a jury) lists its members' own label or score folders, whose verdicts it takes instead
    of judging again (reuse.py)."""
    return LabelJob.run(pairs, constitution, judge, out, options, **settings)


@dataclass
class LabelJob(JudgedJob):
    """What the labelling job brings to the engine."""

    relabel_changed: bool = False
    member_labels: tuple = ()  # a jury's members' own runs (reuse.py)
    runs: Optional[MemberRuns] = field(default=None, init=False)
    reused: dict[str, int] = field(default_factory=dict, init=False)  # member verdicts taken from them this run

    kind = LABELS
    item, unit, doing, done, rate, input_count = "pair", "pairs", "labelling", "labelled", "pairs", "input_pairs"
    counters = ("relabelled", "consistent", "a", "b", "tie")
    judge_kind = PairwiseJudge
    other_kind = "Rate responses with rlaif score, or set `mode: pairwise` in the judge config"
    judged = staticmethod(judge_planned)

    def check(self, judge, built: bool) -> None:
        """The judge's checks, then the members' runs, read and matched to the jury's members (a refusal is one
        ValueError, before anything is written)."""
        super().check(judge, built)
        if self.member_labels:
            self.runs = MemberRuns.open(self.config, self.member_labels)
            self.reused = dict.fromkeys(self.runs.records, 0)

    def worker(self):
        if self.runs is None:
            return super().worker()
        return partial(judged_batch, partial(judge_planned, reuse=self.runs), constitution=self.constitution)

    def items(self, path: Path) -> Iterator[Pair]:
        o = self.options
        yield from self.noting(
            read_pairs(path, format=o.format, seed=o.seed, skip_invalid=o.skip_invalid, max_chars=self.max_chars)
        )

    def plan(self, pair: Pair) -> PlannedPair:
        """Plan a pair; a row naming a principle the constitution lacks is bad input (a failed record under
        --skip-invalid)."""
        reason = None if pair.invalid else self.unknown_principle(pair.principle)
        if reason:
            if not self.options.skip_invalid:
                raise DataError(self.path, pair.source_line, reason)
            pair.invalid = reason
        return plan_pair(pair, self.constitution, self.config.settings_sha256(), self.options.seed)

    def requests_of(self, planned: PlannedPair) -> int:
        return 2 * len(planned.principles)  # both orders of each principle (judges/prompting.pair_queries)

    def attempt_again(self, planned: PlannedPair, stored: Stored) -> bool:
        if stored.key != planned.key and stored.status == "ok" and self.relabel_changed:
            return True
        return super().attempt_again(planned, stored)

    def changed(self, planned: PlannedPair, stored: Stored) -> str:
        return (
            f"pair '{planned.item.id}' was labelled before with different content ({self.store_path}:"
            f"{stored.line}). Give the edited pair a new id, or pass --relabel-changed to label it again (the "
            f"old label moves to superseded.jsonl)"
        )

    def count(self, counts: dict, record: LabelRecord, stored: Optional[Stored]) -> None:
        relabelled = stored is not None and stored.status == "ok"
        super().count(counts, record, None if relabelled else stored)
        counts["relabelled"] += relabelled
        for name in getattr(record, "_reused", ()):
            self.reused[name] = self.reused.get(name, 0) + 1
        if record.status == "ok":
            counts[record.label] += 1
            counts["consistent"] += bool(record.position_consistent)

    def run_stats(self, job) -> dict:
        c, wall = job.counts, job.wall
        decided = c["a"] + c["b"] + c["tie"]
        tokens = c["prompt_tokens"] + c["completion_tokens"]
        return {
            **super().run_stats(job),
            "relabelled_this_run": c["relabelled"],
            "run_labels": {k: c[k] for k in ("a", "b", "tie")},
            "run_position_consistency": round(c["consistent"] / decided, 4) if decided else None,
            "run_inconsistent": decided - c["consistent"],
            "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
            **({"member_verdicts_reused": dict(self.reused)} if self.runs is not None else {}),
        }

    def stats(self, records: Iterable[dict], manifest: dict) -> dict:
        return compute_stats(records, self.config)


# -- the folder's stats ------------------------------------------------------------------------------------------
# Computed by streaming the records, so they describe the whole folder (all runs of a resumed job), not one run.
CAPABLE_JUDGES = "judges/vllm.yaml (a GPU) or judges/openai.yaml (an OpenAI-compatible server)"


def _rate(num: int, den: int) -> Optional[float]:
    return round(num / den, 4) if den else None


def compute_stats(records: Iterable[dict], judge_config=None) -> dict:
    n = ok = failed = failed_input = consistent = 0
    labels = {"a": 0, "b": 0, "tie": 0}
    human_n = agree = agree_decided = decided = first_only_agree = 0
    prompt_tokens = completion_tokens = 0
    errors: dict[str, int] = {}
    flags: dict[str, int] = {}
    sources = {"logprobs": 0, "text": 0}  # verdicts of ok labels, one per order
    for r in records:
        n += 1
        prompt_tokens += r.get("prompt_tokens", 0)
        completion_tokens += r.get("completion_tokens", 0)
        for flag in r.get("flags") or ():
            flags[flag] = flags.get(flag, 0) + 1
        if r["status"] != "ok":
            failed += 1
            failed_input += is_input_failure(r.get("error"))
            count_reason(errors, r.get("error"))
            continue
        ok += 1
        labels[r["label"]] += 1
        for source in r.get("verdict_source") or ():
            if source in sources:
                sources[source] += 1
        consistent += bool(r.get("position_consistent"))
        human = r.get("human_label")
        if human in ("a", "b"):
            human_n += 1
            agree += r["label"] == human
            if r["label"] != "tie":
                decided += 1
                agree_decided += r["label"] == human
            # the naive single-order verdict: response_a shown first (pair order is already randomised)
            first = r["p_a_orders"][0]
            first_only_agree += ("a" if first > 0.5 else "b") == human
    stats = {
        "pairs": n,
        "ok": ok,
        "failed": failed,
        # judge errors (the exit code 4, --retry-failed) apart from input that could not be judged
        "failed_judge": failed - failed_input,
        "failed_input": failed_input,
        "labels": labels,
        "flags": flags,
        "position_consistency": _rate(consistent, ok),
        "human_labelled": human_n,
        # ties count as disagreement here: a judge that cannot tell does not get credit
        "agreement_with_human": _rate(agree, human_n),
        "agreement_with_human_decided": _rate(agree_decided, decided),
        "decided_with_human": decided,
        "agreement_single_order": _rate(first_only_agree, human_n),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "failure_reasons": top_reasons(errors),
        # text verdicts are 0 or 1 (a server that returned no logprobs): they carry no soft probability
        "verdict_sources": sources,
    }
    if judge_config is not None:
        cost = (
            prompt_tokens * judge_config.price_per_1k_prompt_tokens
            + completion_tokens * judge_config.price_per_1k_completion_tokens
        ) / 1000
        stats["estimated_cost"] = round(cost, 6) if cost else None
    return stats


def judge_advice(stats: dict) -> Optional[str]:
    """One plain line when this run's judge could not tell the responses apart (more than half of its labels
    ties, or more than half of its pairs judged differently once the order was swapped), saying what to do."""
    labels = stats.get("run_labels") or {}
    n = sum(labels.values())
    if not n:
        return None
    problems = []
    if labels.get("tie", 0) * 2 > n:
        problems.append(f"{labels['tie']} of this run's {n} labels are ties")
    inconsistent = stats.get("run_inconsistent", 0)
    if inconsistent * 2 > n:
        problems.append(
            f"in {inconsistent} of {n} pairs the judge picked a different response once the order was swapped"
        )
    if not problems:
        return None
    return (
        f"Note: {' and '.join(problems)}: this judge cannot tell these responses apart, so these labels "
        f"will not teach a preference. Use a more capable judge: {CAPABLE_JUDGES}."
    )


__all__ = ["LABELS", "LabelJob", "LabelJobError", "compute_stats", "judge_advice", "label"]
