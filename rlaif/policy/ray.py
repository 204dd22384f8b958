"""Sampling a policy on a Ray cluster (`rlaif generate --ray`): each worker is a Ray actor holding the policy, and the
driver hands out the prompts in the chunks, and with the seeds, that sampling in-process uses (one chunk of
`batch_size // n` prompts per generate() call, chunk k seeded `derived_seed(seed, k)`), so the samples are the same.
With vLLM each worker keeps one engine and samples chunk by chunk with the same seeds (in-process vLLM takes all
prompts in one call, with one seed: its samples differ from these).

Each worker reserves one CPU, and one GPU when the cluster has GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from ..cluster.connect import RayOptions, connect
from ..cluster.pool import Worker, WorkerPool, plan_workers
from ..config.judge import WorkerResources
from ..config.sampling import SamplingConfig
from ..records import Prompt, derived_seed
from .sampling import Sample


class PolicyWorker(Worker):
    """A Ray actor holding one loaded policy (transformers, or a vLLM engine where `use_vllm` says so)."""

    def __init__(self, policy: str, config: SamplingConfig):
        from .sampling import VLLMSampler, use_vllm

        path = Path(policy)
        self.config, self.vllm, self.model = config, None, None
        if use_vllm(config, path.is_dir() and not (path / "adapter_config.json").exists()):
            self.vllm = VLLMSampler(policy, 0, config.vllm_engine)
        else:
            from .sampling import load_policy

            self.model, self.tokenizer = load_policy(policy)

    def sample_chunk(self, prompts: Sequence[Prompt], n: int, seed: Optional[int]) -> list[list[Sample]]:
        from .sampling import sample

        if self.vllm is not None:
            return self.vllm.sample(prompts, n, self.config, seed)
        return sample(self.model, self.tokenizer, prompts, n, self.config, seed=seed)


def sample_on_ray(policy: str, prompts: Sequence[Prompt], n: int, config: SamplingConfig, options: RayOptions,
                  seed: Optional[int] = None,
                  on_batch: Optional[Callable[[int], None]] = None) -> tuple[list[list[Sample]], dict]:
    """`n` samples per prompt from `policy` on the cluster's workers, in the prompts' order, and the Ray settings
    (for the summary)."""
    ray = connect(options)
    resources = WorkerResources(num_gpus=1.0 if ray.cluster_resources().get("GPU") else 0.0)
    workers = plan_workers(ray, resources, options.workers)
    step = max(1, config.batch_size // n)  # as sample_policy: the chunk boundaries decide the samples
    chunks = [(k, prompts[start:start + step]) for k, start in enumerate(range(0, len(prompts), step))]
    pool = WorkerPool(ray, PolicyWorker, (str(policy), config), resources, min(workers, max(1, len(chunks))))
    pool.start()
    out: dict[int, list[list[Sample]]] = {}
    try:
        def collect(finished) -> None:
            for f in finished:
                out[f.payload] = f.result
            if on_batch:
                on_batch(sum(len(v) for v in out.values()))
        for k, chunk in chunks:
            collect(pool.room())
            pool.submit(k, "sample_chunk", list(chunk), n, None if seed is None else derived_seed(seed, k))
            collect(pool.finished())
        collect(list(pool.drain()))
    finally:
        pool.close()
    return [row for k in sorted(out) for row in out[k]], {"workers": pool.workers, "resources":
                                                          resources.model_dump(mode="json")}
