"""The revision job (`rlaif revise`), as the job engine runs it (rlaif/jobs/run.py): read prompts → run their
critique-revision chains batch by batch (chain.py) → one revision record per prompt id in OUT/revisions.jsonl.
This file holds only what is the revision job's own: its folder, its model (a generator), and what it counts.

A revision folder belongs to one job: one constitution, one model and its generation settings, one number of
rounds, one seed, one shard. A row repeating an id read before in the file is skipped when it is the same prompt,
and an error naming both lines when it is another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable, Optional

from ..config.sampling import SamplingConfig
from ..config.yamlfile import field_errors
from ..constitution import Constitution
from ..data.formats import DataError
from ..data.prompts import PromptRow, read_prompt_rows
from ..jobs.folder import FolderKind, JobError
from ..jobs.run import JobOptions, JobResult, JobSpec, count_reason, top_reasons
from ..numbers import revision_problem
from ..records import RevisionRecord
from .chain import ChainSettings, PlannedChain, plan_chain, revise_batch
from .generators import TOO_LONG, generation_settings, generation_sha256, model_info
from .registry import build_generator

REVISIONS_FILE = "revisions.jsonl"
# Each round is two requests more per prompt and four turns more in the conversation it sends; Constitutional AI
# (Bai et al. 2022, sec. 3) revised up to 4 times, its gains flattening after the first. 16 leaves room for
# experiments and stops a typo (--rounds 200) before it spends 400 requests per prompt.
MAX_ROUNDS = 16


def _revision_identity(record: dict) -> dict:
    model = record.get("model")
    return {
        "constitution_sha256": record.get("constitution_sha256"),
        "model_settings_sha256": model.get("settings_sha256") if isinstance(model, dict) else None,
        "generation_sha256": record.get("generation_sha256"),
    }


REVISIONS = FolderKind(
    job="rlaif revise",
    records="revisions",
    record="a revision",
    doing="revised",
    file=REVISIONS_FILE,
    same_job=(
        ("constitution_sha256", "constitution"),
        ("model_settings_sha256", "model settings"),
        ("generation_sha256", "generation settings"),
        ("rounds", "number of rounds"),
        ("seed", "seed"),
        ("shard", "shard"),
    ),
    record_identity=_revision_identity,
    record_problem=lambda r, _: revision_problem(r),
)


def revise(
    prompts: str | Path,
    constitution: str | Path | Constitution,
    model,
    out: str | Path,
    options: Optional[JobOptions] = None,
    **settings,
) -> JobResult:
    """Run the critique-revision chains of a file of prompts into `out`; running it again resumes. `model` is a
    Generator, a model config or a YAML path (judges/*.yaml); with Ray or caps, a config or a path. `settings` are
    JobOptions fields and this job's own: `rounds` (1 to MAX_ROUNDS) and `sampling`, the generation settings."""
    return ReviseJob.run(prompts, constitution, model, out, options, **settings)


@dataclass
class ReviseJob(JobSpec):
    """What the revision job brings to the engine."""

    rounds: int = 2
    sampling: Optional[SamplingConfig] = None
    lines: dict[str, tuple[int, str]] = field(default_factory=dict, init=False)  # id -> (line, key) of this run's rows
    repeats: int = field(default=0, init=False)  # rows that repeated an earlier row of the file, this run

    kind = REVISIONS
    item, unit, doing, done, rate, input_count = (
        "prompt",
        "prompts",
        "revising",
        "revised",
        "revisions",
        "input_prompts",
    )

    def __post_init__(self):
        self.sampling = self.sampling or SamplingConfig()

    def numbers(self):
        return (("--rounds", self.rounds),)

    def check(self, model, built: bool) -> None:
        if self.rounds > MAX_ROUNDS:
            raise JobError(
                f"--rounds must be at most {MAX_ROUNDS}, got {self.rounds}: each round is a critique and "
                f"a revision more per prompt, in a longer conversation (Constitutional AI used up to 4)"
            )
        _check_revisable(self.constitution, self.constitution_path)
        o = self.options
        if built and (o.max_requests is not None or o.max_cost is not None or o.ray is not None):
            raise JobError(
                f"{'ray' if o.ray is not None else 'max_requests / max_cost'}: give the model config (caps "
                f"are set, and workers load the model, from it), not a built generator"
            )

    def manifest(self) -> dict:
        return {
            "model": self.config.public_dict(),
            "model_settings_sha256": self.config.settings_sha256(),
            "generation": generation_settings(self.sampling),
            "generation_sha256": generation_sha256(self.sampling),
            "rounds": self.rounds,
        }

    def loader(self):
        return partial(build_generator, self.config, self.sampling)

    def worker(self):
        settings = ChainSettings(
            self.constitution,
            self.rounds,
            self.options.seed,
            model_info(self.config),
            generation_settings(self.sampling),
            generation_sha256(self.sampling),
        )
        return partial(revise_batch, settings=settings)

    def batch_size(self) -> int:
        return self.sampling.batch_size

    def items(self, path: Path) -> Iterable[PromptRow]:
        return read_prompt_rows(path, self.options.format)

    def plan(self, row: PromptRow) -> PlannedChain:
        return plan_chain(
            row,
            self.constitution,
            self.rounds,
            self.options.seed,
            self.config.settings_sha256(),
            generation_sha256(self.sampling),
        )

    def repeated(self, planned: PlannedChain) -> bool:
        """A row that repeats an id read before in this file is skipped when it is the same prompt, and an error
        naming both lines when it is another."""
        first = self.lines.setdefault(planned.id, (planned.line, planned.key))
        if first[0] == planned.line:
            return False
        if first[1] != planned.key:
            raise DataError(
                self.path,
                planned.line,
                f"id '{planned.id}' is used before, at line {first[0]}, for "
                f"another prompt or response; give each prompt its own id",
            )
        self.repeats += 1
        return True

    def requests_of(self, planned: PlannedChain) -> int:
        # a critique and a revision per round, and the first answer when the row brings none (chain.run_chains)
        return 2 * len(planned.principles) + (planned.row.response is None)

    def bad_input(self, record: RevisionRecord) -> Optional[str]:
        # A conversation too long for the model is bad input: keep the rest, then report it.
        if TOO_LONG not in (record.error or ""):
            return None
        return (
            f"prompt '{record.id}': {record.error} (fewer --rounds, a smaller max_new_tokens, or a model with "
            f"a longer context)"
        )

    def run_stats(self, job) -> dict:
        c, wall = job.counts, job.wall
        return {
            **super().run_stats(job),
            "repeated_rows": self.repeats,
            "tokens_per_s": round(c["completion_tokens"] / wall, 2) if wall > 0 else None,
        }

    def stats(self, records: Iterable[dict], manifest: dict) -> dict:
        return compute_stats(records, manifest["rounds"])


def _check_revisable(constitution: Constitution, path: Optional[str]) -> None:
    """A constitution whose principles never have both requests cannot revise: FILE:LINE, before any work."""
    if constitution.revisable():
        return
    message = (
        "no principle has both a critique and a revision request; rlaif revise draws each round's "
        "principle among those that do (see constitutions/harmless.yaml)"
    )
    if path is None:
        raise ValueError(f"constitution '{constitution.name}': {message}")
    raise field_errors(path, [(("principles",), message)])


# -- the folder's stats: chains done and failed, tokens, how long the first answers and the final revisions are, how
# often a revision changed the answer, where generation stopped, and the principles drawn.
def _mean(total: float, n: int) -> Optional[float]:
    return round(total / n, 2) if n else None


def compute_stats(records: Iterable[dict], rounds: int) -> dict:
    n = ok = 0
    prompt_tokens = completion_tokens = from_input = changed = 0
    chars = {"initial": 0, "final": 0}
    words = {"initial": 0, "final": 0}
    cut = {"initial": 0, "critique": 0, "revision": 0}  # generations that stopped at max_new_tokens
    principles: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in records:
        n += 1
        prompt_tokens += r.get("prompt_tokens", 0)
        completion_tokens += r.get("completion_tokens", 0)
        cut["initial"] += r.get("initial_finish") == "length"
        for rnd in r.get("rounds") or ():
            principles[rnd["principle_id"]] = principles.get(rnd["principle_id"], 0) + 1
            cut["critique"] += rnd.get("critique_finish") == "length"
            cut["revision"] += rnd.get("revision_finish") == "length"
        if r["status"] != "ok":
            count_reason(errors, r.get("error"))
            continue
        ok += 1
        from_input += r.get("initial_source") == "input"
        changed += r["final"] != r["initial"]
        for k in chars:
            chars[k] += len(r[k])
            words[k] += len(r[k].split())
    return {
        "prompts": n,
        "ok": ok,
        "failed": n - ok,
        "rounds": rounds,
        "initial_from_input": from_input,
        "final_differs_from_initial": round(changed / ok, 4) if ok else None,
        "mean_initial_chars": _mean(chars["initial"], ok),
        "mean_final_chars": _mean(chars["final"], ok),
        "mean_initial_words": _mean(words["initial"], ok),
        "mean_final_words": _mean(words["final"], ok),
        "cut_at_max_new_tokens": cut,
        "principles": dict(sorted(principles.items())),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "failure_reasons": top_reasons(errors),
    }


__all__ = ["MAX_ROUNDS", "REVISIONS", "REVISIONS_FILE", "JobError", "JobResult", "ReviseJob", "compute_stats", "revise"]
