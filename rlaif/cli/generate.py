"""`rlaif generate` (policy samples written as pairs for `rlaif label`) and `rlaif eval winrate` (a policy against a
baseline under a judge and a constitution). Thin: parse, build the sampling config, call one library function,
print. torch is imported only when a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .common import fail, guard

eval_app = typer.Typer(help="Evaluate a policy with a judge (win rate against a baseline).", no_args_is_help=True)

_SAMPLING = typer.Option(None, "--config", help="Sampling YAML (temperature, top_p, top_k, max_new_tokens, "
                         "batch_size, backend); the flags below override it.")
_TEMPERATURE = typer.Option(None, min=0.0, help="Softmax temperature; 0: greedy (default 1.0).")
_TOP_P = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling threshold (default 1.0).")
_MAX_NEW = typer.Option(None, min=1, help="Longest response in tokens (default 64).")
_SEED = typer.Option(0, help="Sampling seed (the same seed draws the same samples).")
_PROMPTS = typer.Option(..., help="Prompts: rows with `prompt` (text or chat messages), or any pair or label "
                        "file (prompts read once each). JSONL(.gz), JSON, Parquet or a datasets directory.")


def _sampling(config: Optional[Path], temperature: Optional[float], top_p: Optional[float],
              max_new_tokens: Optional[int]):
    from transformers.utils import logging as hf_logging

    from ..config.train import SamplingConfig
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
                 quiet: bool = typer.Option(False, help="No progress bar.")) -> None:
    """Sample N responses per prompt from a policy; write every pair of them as input for rlaif label."""
    def run():
        from ..policy.generate import generate

        return generate(policy, prompts, out_file, n=n, config=_sampling(config, temperature, top_p, max_new_tokens),
                        seed=seed, progress=not quiet)
    result = guard(run)
    print(result.summary())


@eval_app.command("winrate")
def winrate_cmd(policy: str = typer.Option(..., help="Policy: a local model directory or a hub id."),
                baseline: str = typer.Option(..., help="Baseline (e.g. the SFT model): a directory or a hub id."),
                prompts: Path = _PROMPTS,
                judge: Path = typer.Option(..., help="Judge YAML."),
                constitution: Path = typer.Option(..., help="Constitution YAML."),
                n_samples: int = typer.Option(1, min=1, help="Responses per prompt from each model; sample j of "
                                              "the policy meets sample j of the baseline."),
                out_file: Optional[Path] = typer.Option(None, "--out", help="JSON report: the win rate, "
                                                        "provenance and every comparison."),
                seed: int = _SEED,
                resamples: int = typer.Option(2000, min=0, help="Bootstrap resamples over prompts (0: no "
                                              "interval)."),
                config: Optional[Path] = _SAMPLING, temperature: Optional[float] = _TEMPERATURE,
                top_p: Optional[float] = _TOP_P, max_new_tokens: Optional[int] = _MAX_NEW) -> None:
    """Win rate of a policy against a baseline: both sampled on the same prompts, each pair judged in both orders,
    ties counted half, a 95% bootstrap interval over prompts."""
    def run():
        from ..data.labels import write_json_atomic
        from ..eval.winrate import evaluate_winrate

        result, report = evaluate_winrate(policy, baseline, prompts, judge, constitution, n_samples=n_samples,
                                          config=_sampling(config, temperature, top_p, max_new_tokens),
                                          seed=seed, n_boot=resamples,
                                          log=lambda line: print(line, file=sys.stderr, flush=True))
        if out_file is not None:
            out_file.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out_file, report)
        return result
    result = guard(run)
    if result.win_rate is None:
        fail(f"error: no comparison could be judged ({result.failed} failed); see the errors in the report")
    _table(result)
    print(result.summary() + (f"; report in {out_file}" if out_file else ""))


def _table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="policy against baseline")
    t.add_column("figure")
    t.add_column("value", justify="right")
    ci = f"[{result.ci_low:.3f}, {result.ci_high:.3f}]" if result.ci_low is not None else "-"
    for name, value in (("win rate (ties count half)", f"{result.win_rate:.3f}"), ("95% interval", ci),
                        ("wins / losses / ties", f"{result.wins} / {result.losses} / {result.ties}"),
                        ("judged (n)", result.n), ("failed", result.failed),
                        ("position consistency", f"{result.position_consistency:.3f}")):
        t.add_row(name, str(value))
    Console().print(t)
