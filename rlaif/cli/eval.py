"""`rlaif eval winrate`: a policy against a baseline, both sampled on the same prompts, every comparison judged in
both orders under a constitution (by a score judge: each response rated once, the preference derived from the two
scores), ties counted half, with a bootstrap interval over prompts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..config.judge import load_judge_config
from ..config.paths import model_problem, output_file_problem, require
from ..constitution import load_constitution
from .common import fail, guard, print_table
from .options import MAX_NEW, PROMPTS, SAMPLING, SEED, TEMPERATURE, TOP_P, sampling_config

app = typer.Typer(help="Evaluate a policy with a judge (win rate against a baseline).", no_args_is_help=True)


@app.command("winrate")
def winrate_cmd(
    policy: str = typer.Option(..., help="Policy: a local model directory or a hub id."),
    baseline: str = typer.Option(..., help="Baseline (e.g. the SFT model): a directory or a hub id."),
    prompts: Path = PROMPTS,
    judge: Path = typer.Option(..., help="Judge YAML."),
    constitution: Path = typer.Option(..., help="Constitution YAML."),
    n_samples: int = typer.Option(
        1, min=1, help="Responses per prompt from each model; sample j of the policy meets sample j of the baseline."
    ),
    out_file: Optional[Path] = typer.Option(
        None, "--out", help="JSON report: the win rate, provenance and every comparison."
    ),
    seed: int = SEED,
    resamples: int = typer.Option(2000, min=0, help="Bootstrap resamples over prompts (0: no interval)."),
    config: Optional[Path] = SAMPLING,
    temperature: Optional[float] = TEMPERATURE,
    top_p: Optional[float] = TOP_P,
    max_new_tokens: Optional[int] = MAX_NEW,
) -> None:
    """Win rate of a policy against a baseline: both sampled on the same prompts, each pair judged in both orders
    (a score judge rates each response once: P = sigmoid((s_policy - s_baseline) / T)), ties counted half, a 95%
    bootstrap interval over prompts."""

    def run():
        # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
        from ..eval.winrate import evaluate_winrate

        # everything a user can get wrong is checked before either model samples
        require("--policy", model_problem(policy))
        require("--baseline", model_problem(baseline))
        require("--out", out_file and output_file_problem(out_file))
        load_judge_config(judge)
        load_constitution(constitution)
        result, _ = evaluate_winrate(
            policy,
            baseline,
            prompts,
            judge,
            constitution,
            n_samples=n_samples,
            config=sampling_config(config, temperature, top_p, max_new_tokens),
            seed=seed,
            n_boot=resamples,
            out=out_file,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        return result

    result = guard(run)
    if result.win_rate is None:
        fail(f"error: no comparison could be judged ({result.failed} failed); see the errors in the report")
    print_table("policy against baseline", result.rows())
    print(result.summary() + (f"; report in {out_file}" if out_file else ""))
