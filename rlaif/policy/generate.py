"""Policy samples as pairs to label, the first step of an RLAIF round (generate → label → train): N responses per
prompt from a policy, written as rows `rlaif label` reads — {id, prompt, response_a, response_b} plus provenance.

Prompts come from any file `rlaif label` reads whose rows carry a prompt: rows of {prompt} (text or chat messages),
pair or preference files, label files (a label directory too). Repeated prompts are read once, first one kept.
For n > 2 every one of the n·(n−1)/2 pairs of a prompt's samples is written (`sample_a`, `sample_b` name the two
samples), so a pairwise judge can rank all n samples, e.g. best against worst as in Yuan et al. 2024.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..cluster.connect import RayOptions
from ..config.paths import model_problem, output_file_problem, require
from ..config.sampling import SamplingConfig
from ..files import write_jsonl
from ..data.prompts import read_prompts
from ..records import Prompt, sha256_json
from .sampling import Sample, derived_seed, load_policy, sample, sample_vllm, use_vllm


def sample_policy(policy: str, prompts: Sequence[Prompt], n: int, config: SamplingConfig,
                  seed: Optional[int] = None,
                  on_batch: Optional[Callable[[int], None]] = None) -> list[list[Sample]]:
    """`n` samples per prompt from a saved policy (directory or hub id): vLLM when `use_vllm` says so, transformers
    otherwise, one batch of prompts at a time (`on_batch` gets the prompts done so far). The model is freed after."""
    import torch

    path = Path(policy)
    out: list[list[Sample]] = []
    try:
        if use_vllm(config, path.is_dir() and not (path / "adapter_config.json").exists()):
            out = sample_vllm(policy, prompts, n, config, seed=seed)
            if on_batch:
                on_batch(len(prompts))
            return out
        model, tokenizer = load_policy(policy)
        step = max(1, config.batch_size // n)  # one generate() call per chunk
        for k, start in enumerate(range(0, len(prompts), step)):
            seed_k = None if seed is None else derived_seed(seed, k)
            out.extend(sample(model, tokenizer, prompts[start:start + step], n, config, seed=seed_k))
            if on_batch:
                on_batch(len(out))
        del model
        return out
    finally:
        # `rlaif eval winrate` loads a second model (and the judge) next: give this one's GPU memory back
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def pair_rows(prompts: Sequence[Prompt], samples: Sequence[Sequence[Sample]],
              provenance: Optional[dict] = None) -> tuple[list[dict], int]:
    """Rows for `rlaif label`: every pair (i < j) of one prompt's samples. Pairs with an empty response are left
    out (a label needs two responses) and counted; returns (rows, pairs left out)."""
    rows, empty = [], 0
    for prompt, group in zip(prompts, samples):
        prompt_id = sha256_json(prompt)[:16]
        for i, j in combinations(range(len(group)), 2):
            a, b = group[i].text, group[j].text
            if not a.strip() or not b.strip():
                empty += 1
                continue
            rows.append({"id": sha256_json([prompt, a, b, i, j])[:16], "prompt": prompt, "response_a": a,
                         "response_b": b, "prompt_id": prompt_id, "sample_a": i, "sample_b": j,
                         **(provenance or {})})
    return rows, empty


@dataclass
class GenerateResult:
    out: Path
    prompts: int
    samples: int
    pairs: int
    empty_pairs: int      # pairs left out because a response was empty
    unfinished: int       # samples cut at max_new_tokens
    wall_s: float
    ray: Optional[dict] = None  # the Ray workers that sampled (None: in-process)

    def summary(self) -> str:
        where = f" on {self.ray['workers']} Ray workers" if self.ray else ""
        return (f"{self.pairs} pairs from {self.prompts} prompts ({self.samples} samples, {self.unfinished} cut at "
                f"max_new_tokens, {self.empty_pairs} pairs left out for an empty response) in {self.wall_s:.1f}s"
                f"{where} -> {self.out}")


def generate(policy: str, prompts: str | Path, out: str | Path, n: int = 2,
             config: Optional[SamplingConfig] = None, seed: int = 0, format: Optional[str] = None,
             progress: bool = True, ray: Optional[RayOptions] = None) -> GenerateResult:
    """Sample `n` responses per prompt of the file `prompts` from `policy` and write pairs to `out` (JSONL); with
    `ray`, on a Ray cluster's workers (rlaif/policy/ray.py), with the same samples."""
    from ..progress import progress as make_progress

    if n < 2:
        raise ValueError(f"n must be at least 2 to make pairs, got {n}")
    config = config or SamplingConfig()
    started = time.time()
    texts = read_prompts(prompts, format)
    require("--policy", model_problem(policy))  # before anything is sampled
    require("--out", output_file_problem(out))
    bar = make_progress("sampling prompts", len(texts), progress)
    done = 0

    def advance(total: int) -> None:
        nonlocal done
        if bar:
            bar.advance(total - done)
        done = total

    cluster = None
    try:
        if ray is not None:
            from .ray import sample_on_ray

            samples, cluster = sample_on_ray(policy, texts, n, config, ray, seed=seed, on_batch=advance)
        else:
            samples = sample_policy(policy, texts, n, config, seed=seed, on_batch=advance)
    finally:
        if bar:
            bar.stop()
    provenance = {"policy": str(policy), "sampling": {**config.model_dump(mode="json"), "n": n, "seed": seed}}
    rows, empty = pair_rows(texts, samples, provenance)
    write_jsonl(rows, out)
    return GenerateResult(Path(out), len(texts), sum(len(g) for g in samples), len(rows), empty,
                          sum(not s.finished for g in samples for s in g), time.time() - started, cluster)
