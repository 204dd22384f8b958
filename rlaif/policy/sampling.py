"""Sampling responses from a policy: the one place PPO rollouts, the self-feedback loop, `rlaif generate` and
`rlaif eval winrate` draw policy samples. transformers' `generate` on an in-memory model (what the recipes
hold); vLLM's offline engine for a saved model directory when vllm is installed and `backend` allows it.

A sample keeps its token ids (PPO scores exactly the tokens it sampled) and its decoded text (judges read text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..config.devices import device_and_dtype
from ..config.sampling import SamplingConfig
from ..models.vllm import VLLMEngine
from ..records import Spend, derived_seed  # noqa: F401 - derived_seed: rlaif.policy.sampling.derived_seed, as before
from .chat import prompt_ids


@dataclass
class Sample:
    prompt: object  # the prompt as given: text or a list of chat messages
    prompt_ids: list[int]
    response_ids: list[int]  # sampled tokens, up to and including EOS when the response ended
    text: str  # the response decoded without special tokens
    finished: bool  # ended with EOS (False: cut at max_new_tokens)


def _finish(tokenizer, prompt, ids: list[int], row: list[int]) -> Sample:
    out: list[int] = []
    finished = False
    for t in row:  # what follows EOS is padding (generate pads rows that ended early in their batch)
        out.append(t)
        if t == tokenizer.eos_token_id:
            finished = True
            break
    return Sample(prompt, ids, out, tokenizer.decode(out, skip_special_tokens=True).strip(), finished)


def load_policy(policy: str):
    """A causal LM and its tokenizer from a local directory or hub id: bf16 on a GPU, fp32 on a CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = device_and_dtype()
    tokenizer = AutoTokenizer.from_pretrained(policy)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=dtype).to(device)
    model.eval()
    return model, tokenizer


@torch.no_grad()
def sample(
    model, tokenizer, prompts: Sequence, n: int, config: SamplingConfig, seed: Optional[int] = None
) -> list[list[Sample]]:
    """`n` responses per prompt from an in-memory causal LM (transformers generate, left-padded batches).
    Returns one list of n samples per prompt. `seed` makes the draw repeatable."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    jobs = [(i, j) for i in range(len(prompts)) for j in range(n)]
    out: list[list[Optional[Sample]]] = [[None] * n for _ in prompts]
    gen = dict(
        max_new_tokens=config.max_new_tokens, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    if config.temperature > 0:
        gen.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)
    else:
        gen.update(do_sample=False)
    cm = torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if seed is not None else None
    if cm is not None:
        cm.__enter__()
        torch.manual_seed(seed)
    try:
        for start in range(0, len(jobs), config.batch_size):
            chunk = jobs[start : start + config.batch_size]
            width = max(len(encoded[i]) for i, _ in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (i, _) in enumerate(chunk):
                ids[r, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[r, width - len(encoded[i]) :] = 1
            rows = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **gen)
            for r, (i, j) in enumerate(chunk):
                out[i][j] = _finish(tokenizer, prompts[i], encoded[i], rows[r, width:].tolist())
    finally:
        if cm is not None:
            cm.__exit__(None, None, None)
        model.train(was_training)
    return out  # type: ignore[return-value]


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMSampler:
    """Policy samples from one vLLM engine (`VLLMEngine`) kept alive across rollouts: started once from a saved model
    directory, then `load(dir)` swaps in newer weights in place, so a policy that trains between rollouts is sampled
    without restarting the engine. Build it under `if __name__ == "__main__":` (vLLM spawns worker processes)."""

    def __init__(self, path: str, seed: int = 0, engine_kwargs: Optional[dict] = None):
        self.engine = VLLMEngine(str(path), **{"seed": seed, **(engine_kwargs or {})})
        self.tokenizer = self.engine.tokenizer

    def load(self, path: str) -> None:
        """Replace the engine's weights with those saved (Hugging Face format) in `path`."""
        self.engine.load(path)

    def sample(
        self, prompts: Sequence, n: int, config: SamplingConfig, seed: Optional[int] = None
    ) -> list[list[Sample]]:
        from vllm import SamplingParams

        encoded = [prompt_ids(self.tokenizer, p) for p in prompts]
        params = SamplingParams(
            n=n,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k if config.top_k > 0 else -1,
            max_tokens=config.max_new_tokens,
            seed=seed,
        )
        results = self.engine.generate(encoded, params)
        out = []
        for prompt, ids, res in zip(prompts, encoded, results):
            row = []
            for c in res.outputs:
                s = _finish(self.tokenizer, prompt, ids, list(c.token_ids))
                s.finished = s.finished or c.finish_reason == "stop"
                row.append(s)
            out.append(row)
        return out

    def close(self) -> None:
        self.engine.close()


class SavedPolicy:
    """A saved policy (a local directory or hub id) loaded to sample from: vLLM's engine where `use_vllm` says so,
    else transformers. What `rlaif generate`'s job loads (here, or on each Ray worker) and `rlaif eval winrate`
    samples with. A local model spends nothing: `carry_spend` and `spent` are there for the job engine."""

    def __init__(self, policy: str, config: SamplingConfig):
        from pathlib import Path

        path = Path(policy)
        self.config, self.vllm, self.model = config, None, None
        if use_vllm(config, path.is_dir() and not (path / "adapter_config.json").exists()):
            self.vllm = VLLMSampler(str(policy), 0, config.vllm_engine)
        else:
            self.model, self.tokenizer = load_policy(policy)

    def sample(self, prompts: Sequence, n: int, seed: Optional[int] = None) -> list[list[Sample]]:
        if self.vllm is not None:
            return self.vllm.sample(prompts, n, self.config, seed)
        return sample(self.model, self.tokenizer, prompts, n, self.config, seed=seed)

    def carry_spend(self, before) -> None:
        pass

    def spent(self) -> Spend:
        return Spend()

    def close(self) -> None:
        import gc

        if self.vllm is not None:
            self.vllm.close()
        self.vllm = self.model = None
        gc.collect()  # `rlaif eval winrate` loads a second model (and the judge) next: give this one's memory back
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def sample_vllm(
    path: str,
    prompts: Sequence,
    n: int,
    config: SamplingConfig,
    seed: Optional[int] = None,
    engine_kwargs: Optional[dict] = None,
) -> list[list[Sample]]:
    """`n` responses per prompt from a saved model directory (or hub id), with an engine started for the call."""
    sampler = VLLMSampler(path, seed or 0, engine_kwargs)
    try:
        return sampler.sample(prompts, n, config, seed)
    finally:
        sampler.close()


class PolicySampler:
    """Samples the policy a recipe is training. transformers: `generate` on the model in memory. vLLM: one engine
    for the whole run; before a rollout whose weights changed (a new `version`, e.g. the optimizer step), the
    policy is saved in Hugging Face format to `weights_dir` and the engine reloads it in place. Log-probabilities
    for training are always recomputed by the trainer's own model, so the engine only has to sample."""

    def __init__(self, config: SamplingConfig, weights_dir, seed: int = 0):
        from pathlib import Path

        self.config, self.dir, self.seed = config, Path(weights_dir), seed
        self.vllm = use_vllm(config, model_is_path=True)
        self.engine: Optional[VLLMSampler] = None
        self.version: object = None

    def __call__(
        self, model, tokenizer, prompts: Sequence, n: int, seed: Optional[int] = None, version: object = None
    ) -> list[list[Sample]]:
        if not self.vllm:
            return sample(model, tokenizer, prompts, n, self.config, seed)
        if self.engine is None or version is None or version != self.version:
            self._push(model, tokenizer)
            self.version = version
        return self.engine.sample(prompts, n, self.config, seed)

    def _push(self, model, tokenizer) -> None:
        if getattr(model, "peft_config", None):
            raise NotImplementedError(
                "sampling a LoRA policy with vLLM is not supported: set sampling.backend: transformers"
            )
        model.save_pretrained(self.dir, safe_serialization=True)
        tokenizer.save_pretrained(self.dir)
        if self.engine is None:
            self.engine = VLLMSampler(str(self.dir), self.seed, self.config.vllm_engine)
        else:
            self.engine.load(str(self.dir))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def use_vllm(config: SamplingConfig, model_is_path: bool) -> bool:
    """Whether to sample with vLLM: asked for explicitly, or auto with vllm installed, a saved model and a GPU."""
    if config.backend == "vllm":
        if not vllm_available():
            raise RuntimeError("sampling backend vllm: vllm is not installed (pip install 'rlaif[vllm]')")
        return True
    return config.backend == "auto" and model_is_path and vllm_available() and torch.cuda.is_available()
