"""The revision job (`rlaif revise`): read prompts → run their critique-revision chains batch by batch (chain.py)
→ store one revision record per prompt id. A job over prompts beside rlaif/labeling/, in the same kind of folder.

`revise` writes into a job folder (rlaif/data/folder.py: its lock, the job it belongs to, what it spent):
DIR/revisions.jsonl (one record per prompt id, appended and fsync'd per batch; the same command run again skips
what is done, by the record's content key), DIR/manifest.json (input, constitution, model and generation
settings, rounds, seed, shard, versions), DIR/job.json, DIR/spend.json (towards caps that hold per job) and
DIR/stats.json (stats.py). A new attempt at a stored prompt (a failed chain under --retry-failed, or a failed
chain whose prompt was edited) supersedes its record when the pass ends. A SIGKILL loses at most the batch in
flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from ..cluster.connect import RayOptions
from ..config.judge import JudgeBase, load_judge_config
from ..config.sampling import SamplingConfig
from ..config.yamlfile import field_errors
from ..constitution import Constitution, load_constitution
from ..jobs.folder import Folder, FolderKind, JobError, check_numbers, job_manifest, open_folder, read_spend, with_caps
from ..data.formats import DataError, count_pairs
from ..jobs.run import JobPass, JobResult, in_folder, write_job_stats
from ..jobs.store import Stored
from ..data.prompts import PromptRow, read_prompt_rows
from ..numbers import revision_problem
from ..records import RevisionRecord
from .chain import ChainSettings, PlannedChain, plan_chain, revise_batch
from .generators import TOO_LONG, Generator, generation_settings, generation_sha256, model_info
from .registry import build_generator
from .stats import compute_stats

REVISIONS_FILE = "revisions.jsonl"
# Each round is two requests more per prompt and four turns more in the conversation it sends; Constitutional AI
# (Bai et al. 2022, sec. 3) revised up to 4 times, its gains flattening after the first. 16 leaves room for
# experiments and stops a typo (--rounds 200) before it spends 400 requests per prompt.
MAX_ROUNDS = 16


def _revision_identity(record: dict) -> dict:
    model = record.get("model")
    return {"constitution_sha256": record.get("constitution_sha256"),
            "model_settings_sha256": model.get("settings_sha256") if isinstance(model, dict) else None,
            "generation_sha256": record.get("generation_sha256")}


REVISIONS = FolderKind(job="rlaif revise",
                       records="revisions", record="a revision", doing="revised", file=REVISIONS_FILE,
                       same_job=(("constitution_sha256", "constitution"), ("model_settings_sha256", "model settings"),
                                 ("generation_sha256", "generation settings"), ("rounds", "number of rounds"),
                                 ("seed", "seed"), ("shard", "shard")),
                       record_identity=_revision_identity, record_problem=lambda r, _: revision_problem(r))


def revise(prompts: str | Path, constitution: str | Path | Constitution, model, out: str | Path, *,
           rounds: int = 2, limit: Optional[int] = None, seed: int = 0, shard: tuple[int, int] = (0, 1),
           sampling: Optional[SamplingConfig] = None, format: Optional[str] = None, retry_failed: bool = False,
           max_requests: Optional[int] = None, max_cost: Optional[float] = None, progress: bool = True,
           on_batch: Optional[Callable[[int], None]] = None, ray: Optional[RayOptions] = None) -> JobResult:
    """Run the critique-revision chains of a file of prompts into `out`; running it again resumes. `model` is a
    Generator, a model config or a YAML path (judges/*.yaml), with `ray` a config or a path, which each worker on
    the cluster loads (rlaif/cluster/runner.py); `sampling` the generation settings."""
    prompts_path, out_dir = Path(prompts), Path(out)
    constitution_path = None if isinstance(constitution, Constitution) else str(constitution)
    if constitution_path is not None:
        constitution = load_constitution(constitution_path)
    check_numbers(shard, (("--rounds", rounds), ("--limit", limit)))
    if rounds > MAX_ROUNDS:
        raise JobError(f"--rounds must be at most {MAX_ROUNDS}, got {rounds}: each round is a critique and a "
                       f"revision more per prompt, in a longer conversation (Constitutional AI used up to 4)")
    _check_revisable(constitution, constitution_path)
    sampling = sampling or SamplingConfig()
    generator: Optional[Generator] = model if isinstance(model, Generator) else None
    if generator is not None and (max_requests is not None or max_cost is not None or ray is not None):
        raise JobError(f"{'ray' if ray is not None else 'max_requests / max_cost'}: give the model config (caps are "
                       f"set, and workers load the model, from it), not a built generator")
    config = with_caps(generator.config if generator else _model_config(model), max_requests, max_cost)
    manifest = _manifest(prompts_path, format, constitution_path, constitution, config, sampling, rounds, seed,
                         shard, limit)
    cluster = None
    if ray is not None:
        from ..jobs.ray import RayRunner

        cluster = RayRunner(ray, "prompts")  # connected before the folder is opened: no cluster, nothing written
        manifest["ray"] = cluster.settings(config)
    folder = open_folder(out_dir, manifest, REVISIONS)
    job: Optional[_Pass] = None
    built = generator is None and cluster is None
    settings = ChainSettings(constitution, rounds, seed, model_info(config), generation_settings(sampling),
                             generation_sha256(sampling))
    with in_folder(folder, manifest, lambda: job, lambda: _write_stats(folder, manifest, job, 0.0, cluster)):
        try:
            if cluster is not None:
                cluster.start(partial(build_generator, config, sampling), partial(revise_batch, settings=settings),
                              read_spend(out_dir))
            else:
                generator = build_generator(config, sampling) if built else generator
                generator.carry_spend(read_spend(out_dir))
            job = _Pass(folder, prompts_path, on_batch, runner=cluster, config=config, generator=generator,
                        settings=settings, retry_failed=retry_failed)
            job.show_progress("revising", count_pairs(prompts_path, format), limit, shard, progress, "prompts")
            seen = job.run(read_prompt_rows(prompts_path, format), job.plan, limit, shard, sampling.batch_size)
            return job.finish(manifest, lambda: _write_stats(folder, manifest, job, job.wall, cluster),
                              input_prompts=seen)
        finally:
            if built and generator is not None:
                generator.close()
            if cluster is not None:
                cluster.close()


def _model_config(model) -> JudgeBase:
    return model if isinstance(model, JudgeBase) else load_judge_config(model)


def _check_revisable(constitution: Constitution, path: Optional[str]) -> None:
    """A constitution whose principles never have both requests cannot revise: FILE:LINE, before any work."""
    if constitution.revisable():
        return
    message = ("no principle has both a critique and a revision request; rlaif revise draws each round's "
               "principle among those that do (see constitutions/harmless.yaml)")
    if path is None:
        raise ValueError(f"constitution '{constitution.name}': {message}")
    raise field_errors(path, [(("principles",), message)])


def _manifest(prompts_path: Path, format: Optional[str], constitution_path: Optional[str],
              constitution: Constitution, config: JudgeBase, sampling: SamplingConfig, rounds: int, seed: int,
              shard: tuple[int, int], limit: Optional[int]) -> dict:
    """What makes these revisions what they are, written to DIR/manifest.json when the job starts."""
    return job_manifest(prompts_path, format, constitution_path, constitution, seed, shard, limit,
                        model=config.public_dict(), model_settings_sha256=config.settings_sha256(),
                        generation=generation_settings(sampling), generation_sha256=generation_sha256(sampling),
                        rounds=rounds)


@dataclass
class _Pass(JobPass):
    """One run over the input: the chains waiting for the model, where their records go, and this run's counts."""

    generator: Optional[Generator] = None  # None when the chains run on a cluster's workers
    settings: ChainSettings = None
    retry_failed: bool = False
    lines: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (line, key) of this run's rows
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("revised", "repeated", "failed", "retried", "prompt_tokens", "completion_tokens"), 0))

    def plan(self, row: PromptRow) -> PlannedChain:
        s = self.settings
        return plan_chain(row, s.constitution, s.rounds, s.seed, s.model.settings_sha256, s.generation_sha256)

    def add(self, planned: PlannedChain) -> bool:
        """A row that repeats an id read before in this file is skipped when it is the same prompt, and an error
        naming both lines when it is another."""
        first = self.lines.setdefault(planned.id, (planned.line, planned.key))
        if first[0] == planned.line:
            return super().add(planned)
        if first[1] != planned.key:
            raise DataError(self.input_path, planned.line, f"id '{planned.id}' is used before, at line {first[0]}, "
                            f"for another prompt or response; give each prompt its own id")
        self.counts["repeated"] += 1
        return False

    def requests_of(self, planned: PlannedChain) -> int:
        # a critique and a revision per round, and the first answer when the row brings none (chain.run_chains)
        return 2 * len(planned.principles) + (planned.row.response is None)

    def attempt_again(self, planned: PlannedChain, stored: Stored) -> bool:
        """Whether a prompt whose id the store holds gets a new chain (whose record then supersedes the old)."""
        if stored.key == planned.key:  # the same content: only a failed chain is run again, when asked
            return stored.status != "ok" and self.retry_failed
        if stored.status != "ok":
            return True
        raise DataError(self.input_path, planned.line,
                        f"prompt '{planned.id}' was revised before with other content "
                        f"({self.folder.store.path}:{stored.line}); give the edited prompt a new id")

    def work(self, batch: list[PlannedChain]) -> list[RevisionRecord]:
        records, stopped = revise_batch(self.generator, batch, self.settings)
        self.stopped = self.stopped or stopped
        return records

    def bad_input(self, record: RevisionRecord) -> Optional[str]:
        # A conversation too long for the model is bad input: keep the rest, then report it.
        if TOO_LONG not in (record.error or ""):
            return None
        return (f"prompt '{record.id}': {record.error} (fewer --rounds, a smaller max_new_tokens, or a model with "
                f"a longer context)")

    def count(self, record: RevisionRecord, stored: Optional[Stored]) -> None:
        c = self.counts
        c["revised"] += 1
        c["prompt_tokens"] += record.prompt_tokens
        c["completion_tokens"] += record.completion_tokens
        c["retried"] += stored is not None
        c["failed"] += record.status != "ok"

    def spent(self):
        return self.generator.spent()

    def run_stats(self, wall: float) -> dict:
        c = self.counts
        return {"revised_now": c["revised"], "resumed_skipped": self.skipped, "repeated_rows": c["repeated"],
                "failed_this_run": c["failed"], "retried_this_run": c["retried"],
                "spent_requests": self.spent_saved.requests, "spent_cost": round(self.spent_saved.cost, 6),
                "wall_time_s": round(wall, 3),
                "revisions_per_s": round(c["revised"] / wall, 4) if wall > 0 else None,
                "tokens_per_s": round(c["completion_tokens"] / wall, 2) if wall > 0 else None,
                "run_prompt_tokens": c["prompt_tokens"], "run_completion_tokens": c["completion_tokens"]}


def _write_stats(folder: Folder, manifest: dict, job: Optional[_Pass], wall: float, cluster=None) -> dict:
    stats = compute_stats(folder.store, manifest["rounds"], job.run_stats(wall) if job else None)
    return write_job_stats(folder, stats, job, cluster)


__all__ = ["MAX_ROUNDS", "REVISIONS", "REVISIONS_FILE", "JobError", "JobResult", "revise"]
