"""Policy samples as pairs to label, the first step of an RLAIF round (generate → label → train): `rlaif generate`,
the fourth job on the engine (rlaif/jobs/run.py). N responses per prompt from a policy, one sample record per
prompt in the job's folder, and the pairs file `rlaif label` reads: {id, prompt, response_a, response_b} for every
pair i < j of a prompt's samples (`sample_a`, `sample_b` name the two), plus provenance.

The pairs file is `--out`, as it always was; the job's folder is beside it, named after it (`pairs.jsonl` →
`pairs.job/`: its lock, manifest, samples.jsonl, stats), so the same command run again resumes (prompts sampled
before are kept) and the pairs file is rewritten whole at the end of every run. Prompts come from any file
`rlaif label` reads whose rows carry a prompt; a repeated prompt is read once, the first kept.

Samples are drawn a batch of `batch_size // n` prompts at a time, each batch seeded by the place of its first
prompt in the input (`derived_seed(seed, place // step)`): a fresh run draws what sampling in-process always drew,
and a run on Ray the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from ..config.judge import WorkerResources
from ..config.paths import model_problem, output_file_problem, require
from ..config.sampling import SamplingConfig
from ..data.prompts import PromptRow, read_prompt_rows
from ..files import write_jsonl
from ..jobs.folder import FolderKind
from ..jobs.run import JobOptions, JobResult, JobSpec
from ..numbers import sample_problem
from ..records import Prompt, SampleRecord, derived_seed, sha256_json
from .sampling import Sample, SavedPolicy

SAMPLES_FILE = "samples.jsonl"
SAMPLES = FolderKind(
    job="rlaif generate",
    records="samples",
    record="a prompt's samples",
    doing="sampled",
    file=SAMPLES_FILE,
    same_job=(("policy", "policy"), ("sampling_sha256", "sampling settings"), ("seed", "seed"), ("shard", "shard")),
    record_identity=lambda r: {
        "policy": r.get("policy"),
        "sampling_sha256": r.get("sampling_sha256"),
        "seed": r.get("seed"),
    },
    record_problem=lambda r, _: sample_problem(r),
)


def job_folder(out: str | Path) -> Path:
    """The job's folder beside the pairs file `out`: pairs.jsonl → pairs.job."""
    out = Path(out)
    return out.with_name(f"{out.stem if out.suffix else out.name}.job")


def generate(
    policy: str, prompts: str | Path, out: str | Path, options: Optional[JobOptions] = None, **settings
) -> "GenerateResult":
    """Sample `n` responses per prompt of the file `prompts` from `policy` and write every pair of them to `out`
    (JSONL); running it again resumes. `settings` are JobOptions fields (seed=, progress=, ray=, …) and this job's
    own: `n` (at least 2) and `config`, the sampling settings."""
    job = GenerateJob.run(prompts, None, str(policy), job_folder(out), options, out=Path(out), **settings)
    s = job.stats
    return GenerateResult(
        Path(out),
        s["prompts"],
        s["samples"],
        s["pairs"],
        s["empty_pairs"],
        s["unfinished"],
        s["wall_time_s"],
        s.get("ray"),
        job,
    )


@dataclass
class PolicyConfig:
    """What `rlaif generate` loads: the policy and how it samples. `resources` None: a Ray worker takes one CPU,
    and one GPU when the cluster has GPUs (rlaif/jobs/ray.py)."""

    policy: str
    sampling: SamplingConfig
    n: int
    resources: Optional[WorkerResources] = None

    def settings_sha256(self) -> str:
        return sha256_json([self.sampling.model_dump(mode="json"), self.n])


@dataclass
class PlannedPrompt:
    """A prompt before the policy sees it: its id (a hash of the prompt), its line and place among the input's
    distinct prompts, and its key."""

    id: str
    line: int
    key: str
    prompt: Prompt
    place: int


@dataclass
class GenerateJob(JobSpec):
    """What `rlaif generate` brings to the engine."""

    out: Path = Path("pairs.jsonl")
    n: int = 2
    config: Optional[SamplingConfig] = None  # the sampling settings (the engine's `self.config` is the PolicyConfig)
    places: dict[str, tuple[int, int]] = field(default_factory=dict, init=False)  # prompt id -> (place, first line)
    order: list[str] = field(default_factory=list, init=False)  # the prompt ids in input order

    kind = SAMPLES
    item, unit, doing, done, rate, input_count = (
        "prompt",
        "prompts",
        "sampling prompts",
        "sampled",
        "prompts",
        "input_prompts",
    )

    def __post_init__(self):
        self.sampling = self.config or SamplingConfig()

    def model_config(self, policy) -> PolicyConfig:
        return PolicyConfig(str(policy), self.sampling, self.n)

    def is_built(self, model) -> bool:
        return False  # a policy is named by its path or hub id: each run (each Ray worker) loads it

    def check(self, policy, built: bool) -> None:
        if self.n < 2:
            raise ValueError(f"n must be at least 2 to make pairs, got {self.n}")
        for _ in read_prompt_rows(self.path, self.options.format):
            pass  # a prompt file that is bad input is named first (FILE:LINE), before any model is looked for
        require("--policy", model_problem(str(policy)))
        require("--out", output_file_problem(self.out))

    def manifest(self) -> dict:
        return {
            "policy": self.config.policy,
            "sampling": self.provenance()["sampling"],
            "sampling_sha256": self.config.settings_sha256(),
            "pairs": str(self.out),
        }

    def provenance(self) -> dict:
        """What every pair row carries: the policy and the sampling settings, n and seed."""
        return {
            "policy": self.config.policy,
            "sampling": {**self.sampling.model_dump(mode="json"), "n": self.n, "seed": self.options.seed},
        }

    def loader(self):
        return partial(SavedPolicy, self.config.policy, self.sampling)

    def worker(self):
        return partial(
            sample_batch,
            n=self.n,
            step=self.batch_size(),
            seed=self.options.seed,
            policy=self.config.policy,
            sampling_sha256=self.config.settings_sha256(),
        )

    def batch_size(self) -> int:
        return max(1, self.sampling.batch_size // self.n)  # prompts per generate() call, n samples each

    def items(self, path: Path) -> Iterable[PromptRow]:
        return read_prompt_rows(path, self.options.format)

    def plan(self, row: PromptRow) -> PlannedPrompt:
        pid = sha256_json(row.prompt)[:16]
        if pid not in self.places:
            self.places[pid] = (len(self.places), row.line)
            self.order.append(pid)
        key = sha256_json([row.prompt, self.config.policy, self.config.settings_sha256(), self.options.seed])[:32]
        return PlannedPrompt(pid, row.line, key, row.prompt, self.places[pid][0])

    def repeated(self, planned: PlannedPrompt) -> bool:
        return self.places[planned.id][1] != planned.line  # a prompt read before: sampled once

    def rows_read(self, items_seen: int) -> dict:
        return {"input_rows": items_seen, "input_prompts": len(self.order)}

    def finished(self, records: Iterable[dict]) -> None:
        """Write the pairs file from every stored record, in the input's order of prompts."""
        by_id = {r["id"]: r for r in records if r.get("status") == "ok"}
        done = [by_id[pid] for pid in self.order if pid in by_id]
        rows, _ = pair_rows([r["prompt"] for r in done], [r["samples"] for r in done], self.provenance())
        write_jsonl(rows, self.out)

    def stats(self, records: Iterable[dict], manifest: dict) -> dict:
        records = list(records)
        ok = [r for r in records if r.get("status") == "ok"]
        rows, empty = pair_rows([r["prompt"] for r in ok], [r["samples"] for r in ok])
        return {
            "prompts": len(ok),
            "samples": sum(len(r["samples"]) for r in ok),
            "pairs": len(rows),
            "empty_pairs": empty,
            "unfinished": sum(not f for r in ok for f in r["finished"]),
            "ok": len(ok),
            "failed": len(records) - len(ok),
            "pairs_file": str(self.out),
        }


def sample_batch(
    sampler: SavedPolicy,
    batch: Sequence[PlannedPrompt],
    n: int,
    step: int,
    seed: int,
    policy: str,
    sampling_sha256: str,
) -> tuple[list[SampleRecord], None]:
    """A batch of prompts sampled (here or on a Ray worker): one record per prompt, seeded by the place of the
    batch's first prompt, as sampling in-process always chunked and seeded its prompts."""
    groups = sampler.sample([p.prompt for p in batch], n, seed=derived_seed(seed, batch[0].place // step))
    return [
        SampleRecord(
            id=p.id,
            key=p.key,
            prompt=p.prompt,
            samples=[s.text for s in group],
            finished=[s.finished for s in group],
            policy=policy,
            sampling_sha256=sampling_sha256,
            seed=seed,
            prompt_tokens=len(group[0].prompt_ids) if group else 0,
            completion_tokens=sum(len(s.response_ids) for s in group),
        )
        for p, group in zip(batch, groups)
    ], None


def pair_rows(
    prompts: Sequence[Prompt], samples: Sequence[Sequence[Any]], provenance: Optional[dict] = None
) -> tuple[list[dict], int]:
    """Rows for `rlaif label`: every pair (i < j) of one prompt's samples (Sample objects or their texts). Pairs
    with an empty response are left out (a label needs two responses) and counted; returns (rows, pairs left
    out)."""
    rows, empty = [], 0
    for prompt, group in zip(prompts, samples):
        prompt_id = sha256_json(prompt)[:16]
        texts = [s.text if isinstance(s, Sample) else s for s in group]
        for i, j in combinations(range(len(texts)), 2):
            a, b = texts[i], texts[j]
            if not a.strip() or not b.strip():
                empty += 1
                continue
            rows.append(
                {
                    "id": sha256_json([prompt, a, b, i, j])[:16],
                    "prompt": prompt,
                    "response_a": a,
                    "response_b": b,
                    "prompt_id": prompt_id,
                    "sample_a": i,
                    "sample_b": j,
                    **(provenance or {}),
                }
            )
    return rows, empty


@dataclass
class GenerateResult:
    out: Path
    prompts: int
    samples: int
    pairs: int
    empty_pairs: int  # pairs left out because a response was empty
    unfinished: int  # samples cut at max_new_tokens
    wall_s: float
    ray: Optional[dict] = None  # the Ray workers that sampled (None: in-process)
    job: Optional[JobResult] = None

    def summary(self) -> str:
        where = f" on {self.ray['workers']} Ray workers" if self.ray else ""
        return (
            f"{self.pairs} pairs from {self.prompts} prompts ({self.samples} samples, {self.unfinished} cut at "
            f"max_new_tokens, {self.empty_pairs} pairs left out for an empty response) in {self.wall_s:.1f}s"
            f"{where} -> {self.out}"
        )


def sample_policy(
    policy: str,
    prompts: Sequence[Prompt],
    n: int,
    config: SamplingConfig,
    seed: Optional[int] = None,
    on_batch: Optional[Callable[[int], None]] = None,
) -> list[list[Sample]]:
    """`n` samples per prompt from a saved policy, in-process and without a job folder (`rlaif eval winrate`):
    chunks of `batch_size // n` prompts, chunk k seeded `derived_seed(seed, k)` (vLLM: all prompts in one call).
    `on_batch` gets the prompts done so far. The model is freed after."""
    sampler = SavedPolicy(policy, config)
    try:
        step = (len(prompts) or 1) if sampler.vllm is not None else max(1, config.batch_size // n)
        out: list[list[Sample]] = []
        for k, start in enumerate(range(0, len(prompts), step)):
            out.extend(
                sampler.sample(
                    prompts[start : start + step],
                    n,
                    seed=None if seed is None else (seed if sampler.vllm else derived_seed(seed, k)),
                )
            )
            if on_batch:
                on_batch(len(out))
        return out
    finally:
        sampler.close()
