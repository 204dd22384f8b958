"""`rlaif generate`: N samples per prompt from a policy, written as every pair of them for `rlaif label`. The
sampling options here are shared with `rlaif eval winrate`. torch is imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import guard
from .label import RAY, RAY_ADDRESS, WORKERS, ray_options

_SAMPLING = typer.Option(None, "--config", help="Sampling YAML (temperature, top_p, top_k, max_new_tokens, "
                         "batch_size, backend); the flags below override it.")
_TEMPERATURE = typer.Option(None, min=0.0, help="Softmax temperature; 0: greedy (default 1.0).")
_TOP_P = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling threshold (default 1.0).")
_MAX_NEW = typer.Option(None, min=1, help="Longest response in tokens (default 64).")
_SEED = typer.Option(0, help="Sampling seed (the same seed draws the same samples).")
_PROMPTS = typer.Option(..., help="Prompts: rows with `prompt` (text or chat messages), or any pair or label "
                        "file (prompts read once each). JSONL(.gz), JSON, Parquet or a datasets directory.")


def sampling_config(config: Optional[Path], temperature: Optional[float], top_p: Optional[float],
                    max_new_tokens: Optional[int]):
    """The sampling settings: the `--config` YAML (if any) with the flags that were given on top."""
    from transformers.utils import logging as hf_logging

    from ..config.sampling import SamplingConfig
    from ..config.yamlfile import load_model

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model would drown our own progress
    overrides = {k: v for k, v in (("temperature", temperature), ("top_p", top_p),
                                   ("max_new_tokens", max_new_tokens)) if v is not None}
    return load_model(config, SamplingConfig, overrides) if config else SamplingConfig(**overrides)


def generate_cmd(policy: str = typer.Option(..., help="Policy: a local model directory or a hub id."),
                 prompts: Path = _PROMPTS,
                 n: int = typer.Option(2, min=2, help="Responses per prompt; every pair of them is written "
                                       "(n·(n−1)/2 rows per prompt)."),
                 out_file: Path = typer.Option(..., "--out", help="Output JSONL of pairs, the input of rlaif label."),
                 config: Optional[Path] = _SAMPLING, temperature: Optional[float] = _TEMPERATURE,
                 top_p: Optional[float] = _TOP_P, max_new_tokens: Optional[int] = _MAX_NEW, seed: int = _SEED,
                 quiet: bool = typer.Option(False, help="No progress bar."), ray: bool = RAY,
                 ray_address: Optional[str] = RAY_ADDRESS, workers: Optional[int] = WORKERS) -> None:
    """Sample N responses per prompt from a policy; write every pair of them as input for rlaif label."""
    on_ray = ray_options(ray, ray_address, workers)

    def run():
        from ..policy.generate import generate

        sampling = sampling_config(config, temperature, top_p, max_new_tokens)
        return generate(policy, prompts, out_file, n=n, config=sampling, seed=seed, progress=not quiet,
                        ray=on_ray)

    result = guard(run)
    print(result.summary())
