"""Win rate of a policy against a baseline, as judged under a constitution: each (policy, baseline) pair of
responses to one prompt is judged in both orders (`rlaif.labeling.pairwise.judge_pairs`) — or, by a score judge, each
response is rated once and P(policy ≻ baseline) derived from the two scores — a tie (per the tie margin) counts
half, and a percentile bootstrap over prompts gives the 95% interval. `rlaif eval winrate` samples both models and
reports it; the self-feedback loop calls `judge_winrate` on its own samples.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..config.sampling import SamplingConfig
from ..constitution import GENERIC, Constitution, load_constitution
from ..data.prompts import read_prompts
from ..data.scores import derived_pair
from ..files import write_json_atomic
from ..intervals import bootstrap_ci
from ..judges.base import Judge, ScoreJudge, kind_of
from ..judges.registry import load_judge, refusal
from ..labeling.pairwise import judge_pairs
from ..records import LabelRecord, Pair, Prompt
from ..scoring.rate import rate_groups

Texts = Sequence[Union[str, Sequence[str]]]  # one response per prompt, or a list of samples per prompt
POINTS = {"a": 1.0, "b": 0.0, "tie": 0.5}  # response_a is the policy's: a win, a loss, a tie counts half


@dataclass
class WinRate:
    """Policy against baseline. `n` counts the judged comparisons (failed ones are left out of every rate)."""

    n: int
    wins: int
    losses: int
    ties: int
    failed: int
    win_rate: Optional[float]  # (wins + ties / 2) / n; None when nothing was judged
    ci_low: Optional[float]  # percentile bootstrap, 95%, resampling prompts
    ci_high: Optional[float]
    position_consistency: Optional[float]  # share of verdicts where both orders picked the same response

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if self.win_rate is None:
            return f"win rate: n/a (0 judged, {self.failed} failed)"
        ci = f" [95% CI {self.ci_low:.3f}, {self.ci_high:.3f}]" if self.ci_low is not None else ""
        return (
            f"win rate {self.win_rate:.3f}{ci}: {self.wins} wins, {self.losses} losses, {self.ties} ties, "
            f"n={self.n}, {self.failed} failed, position consistency {self.position_consistency:.3f}"
        )

    def rows(self) -> list[tuple[str, object]]:
        """(figure, value) for a table; only for a result with something judged (win_rate not None)."""
        ci = f"[{self.ci_low:.3f}, {self.ci_high:.3f}]" if self.ci_low is not None else "-"
        return [
            ("win rate (ties count half)", f"{self.win_rate:.3f}"),
            ("95% interval", ci),
            ("wins / losses / ties", f"{self.wins} / {self.losses} / {self.ties}"),
            ("judged (n)", self.n),
            ("failed", self.failed),
            ("position consistency", f"{self.position_consistency:.3f}"),
        ]


def _per_prompt(texts: Texts, what: str, n_prompts: int) -> list[list[str]]:
    if len(texts) != n_prompts:
        raise ValueError(f"{what}: {len(texts)} entries for {n_prompts} prompts")
    return [[t] if isinstance(t, str) else list(t) for t in texts]


def comparison_pairs(
    prompts: Sequence[Prompt], policy_texts: Texts, baseline_texts: Texts
) -> tuple[list[Pair], list[int]]:
    """One pair per (prompt, sample): response_a from the policy, response_b from the baseline (sample j against
    sample j). Returns the pairs and each pair's prompt index (the bootstrap's unit)."""
    policy = _per_prompt(policy_texts, "policy_texts", len(prompts))
    baseline = _per_prompt(baseline_texts, "baseline_texts", len(prompts))
    pairs, groups = [], []
    for i, (prompt, ps, bs) in enumerate(zip(prompts, policy, baseline)):
        if len(ps) != len(bs):
            raise ValueError(f"prompt {i}: {len(ps)} policy samples but {len(bs)} baseline samples")
        for j, (p, b) in enumerate(zip(ps, bs)):
            pairs.append(
                Pair(prompt=prompt, response_a=p, response_b=b, id=f"{i}-{j}", conversational=isinstance(prompt, list))
            )
            groups.append(i)
    return pairs, groups


def winrate_from_records(
    records: Sequence[LabelRecord], groups: Sequence[int], seed: int = 0, n_boot: int = 2000
) -> WinRate:
    """Count label records (response_a = policy) and bootstrap the win rate over the groups (prompts)."""
    judged = [(r, g) for r, g in zip(records, groups) if r.status == "ok"]
    n = len(judged)
    if n == 0:
        return WinRate(0, 0, 0, 0, len(records), None, None, None, None)
    labels = [r.label for r, _ in judged]
    wins, losses, ties = labels.count("a"), labels.count("b"), labels.count("tie")
    # The samples of one prompt are not independent, so the bootstrap resamples prompts (a cluster bootstrap)
    # and recomputes the win rate as total points over total comparisons.
    points: dict[int, float] = defaultdict(float)
    count: dict[int, int] = defaultdict(int)
    for r, g in judged:
        points[g] += POINTS[r.label]
        count[g] += 1
    prompts = sorted(count)
    s, c = np.array([points[k] for k in prompts]), np.array([count[k] for k in prompts], dtype=float)
    ci = bootstrap_ci(lambda s, c: float(s.sum() / c.sum()), [s, c], n_boot=n_boot, seed=seed)
    return WinRate(
        n=n,
        wins=wins,
        losses=losses,
        ties=ties,
        failed=len(records) - n,
        win_rate=(wins + 0.5 * ties) / n,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        position_consistency=sum(bool(r.position_consistent) for r, _ in judged) / n,
    )


def _constitution(constitution):

    if constitution is None or isinstance(constitution, Constitution):
        return constitution
    return load_constitution(constitution)


def judge_comparisons(
    judge, constitution, prompts: Sequence[Prompt], policy_texts: Texts, baseline_texts: Texts, seed: int = 0
) -> tuple[list[LabelRecord], list[int]]:
    """Label records of every (policy, baseline) comparison (response_a = policy) and their prompt indices. A
    pairwise judge judges each comparison in both orders; a score judge (`mode: score`) rates each response once
    and the preference is derived from the two scores (`rated_comparisons`)."""

    _refuse_unable(judge)
    pairs, groups = comparison_pairs(prompts, policy_texts, baseline_texts)
    constitution = _constitution(constitution) or GENERIC
    if kind_of(judge.config) is ScoreJudge:  # the one place a win rate's route follows the kind of judge
        return rated_comparisons(judge, constitution, pairs, groups, seed), groups
    return judge_pairs(judge, pairs, constitution, seed=seed), groups


def _refuse_unable(judge) -> None:
    """A win rate takes either kind of judge, but refuses (one line) one that cannot answer as its mode says."""
    problem = refusal(judge, None, "a win rate")
    if problem:
        raise ValueError(problem)


def rated_comparisons(
    judge: ScoreJudge, constitution, pairs: Sequence[Pair], groups: Sequence[int], seed: int = 0
) -> list[LabelRecord]:
    """d-RLAIF comparisons: every policy and baseline response rated once (one principle drawn per prompt), and
    P(policy ≻ baseline) = σ((s_policy − s_baseline) / T) from the expected scores and the judge's
    `score.temperature`, as `rlaif score` derives preferences (rlaif/data/scores.py). A tie is a P within the tie
    margin (the constitution's, else the judge's) of 1/2, so equal scores always tie; a failed rating fails its
    comparison. Position consistency is 1 by construction: no order is shown."""

    by_prompt: dict[int, list[int]] = defaultdict(list)
    for k, g in enumerate(groups):
        by_prompt[g].append(k)
    order = sorted(by_prompt)
    rated = rate_groups(
        judge,
        [pairs[by_prompt[g][0]].prompt for g in order],
        [[pairs[k].response_a for k in by_prompt[g]] + [pairs[k].response_b for k in by_prompt[g]] for g in order],
        constitution,
        seed,
    )
    cfg = judge.config
    scale, temperature = (cfg.score.low, cfg.score.high), cfg.score.temperature
    margin = constitution.tie_margin_or(cfg.tie_margin)
    records: list[Optional[LabelRecord]] = [None] * len(pairs)
    for g, scored in zip(order, rated):
        ks = by_prompt[g]
        for x, k in enumerate(ks):
            policy, baseline = scored[x].to_json(), scored[len(ks) + x].to_json()
            records[k] = LabelRecord.model_validate(
                derived_pair(policy, baseline, pairs[k].id, scale, temperature, margin)
            )
    return records


def judge_winrate(
    judge,
    constitution,
    prompts: Sequence[Prompt],
    policy_texts: Texts,
    baseline_texts: Texts,
    seed: int = 0,
    n_boot: int = 2000,
) -> WinRate:
    """The policy's win rate against the baseline under `judge` and `constitution` (a Constitution, a path or None
        for one generic principle). `policy_texts[i]` / `baseline_texts[i]`: a response to `prompts[i]`, or a list of
        samples (the j-th policy sample meets the j-th baseline sample). A pairwise judge judges both orders, a score
    judge rates each response once; ties count half."""
    records, groups = judge_comparisons(judge, constitution, prompts, policy_texts, baseline_texts, seed)
    return winrate_from_records(records, groups, seed=seed, n_boot=n_boot)


def evaluate_winrate(
    policy: str,
    baseline: str,
    prompts: str | Path,
    judge,
    constitution,
    n_samples: int = 1,
    config=None,
    seed: int = 0,
    n_boot: int = 2000,
    format: Optional[str] = None,
    log=None,
    out: Optional[str | Path] = None,
) -> tuple[WinRate, dict]:
    """`rlaif eval winrate`: sample `n_samples` responses per prompt from both models (same seed, same sampling
    settings), judge them, and return the win rate and a JSON-ready report (provenance and every comparison).
    `judge` is a Judge or a judge YAML path; `log` (optional) gets progress lines; the report is also written to
    `out` as JSON when given."""

    log = log or (lambda line: None)
    if isinstance(judge, Judge):  # a judge given loaded is asked before anything is sampled; a path, as it loads
        _refuse_unable(judge)
    config = config or SamplingConfig()
    constitution = _constitution(constitution) or GENERIC
    texts = read_prompts(prompts, format)
    started = time.time()
    drawn = {
        name: _sample(name, model, texts, n_samples, config, seed, log)
        for name, model in (("policy", policy), ("baseline", baseline))
    }
    records, groups, judge_info = _judge_drawn(judge, constitution, texts, drawn, seed, log)
    result = winrate_from_records(records, groups, seed=seed, n_boot=n_boot)
    report = {
        "winrate": result.to_dict(),
        "policy": str(policy),
        "baseline": str(baseline),
        "prompts": str(prompts),
        "n_prompts": len(texts),
        "n_samples": n_samples,
        "seed": seed,
        "sampling": config.model_dump(mode="json"),
        "judge": judge_info,
        "constitution": {"name": constitution.name, "version": constitution.version, "sha256": constitution.sha256},
        "bootstrap": {"resamples": n_boot, "level": 0.95, "method": "percentile", "unit": "prompt"},
        "wall_time_s": round(time.time() - started, 3),
        "comparisons": [_comparison(r, g) for r, g in zip(records, groups)],
    }
    if out is not None:
        write_json_atomic(out, report)
    return result, report


def _sample(name: str, model: str, texts: list, n_samples: int, config, seed: int, log) -> list[list[str]]:
    """`n_samples` responses per prompt from one of the two models."""
    # lazy: torch
    from ..policy.generate import sample_policy

    log(f"sampling {n_samples} response(s) to {len(texts)} prompts from the {name} {model}")
    return [[s.text for s in g] for g in sample_policy(model, texts, n_samples, config, seed=seed)]


def _judge_drawn(judge, constitution, texts: list, drawn: dict, seed: int, log):
    """Every comparison judged: (records, prompt indices, the judge's info). A judge given as a YAML path is loaded
    here and closed again."""
    own_judge = not isinstance(judge, Judge)
    judge_obj = load_judge(judge) if own_judge else judge
    try:
        n = sum(map(len, drawn["policy"]))
        log(f"judging {n} comparisons with {judge_obj.info.model} ({judge_obj.config.mode} judge)")
        records, groups = judge_comparisons(judge_obj, constitution, texts, drawn["policy"], drawn["baseline"], seed)
        return records, groups, judge_obj.info.model_dump()
    finally:
        if own_judge:
            judge_obj.close()


def _comparison(r: LabelRecord, prompt_index: int) -> dict:
    """One comparison as the report lists it, from the policy's side (response_a is the policy's)."""
    return {
        "prompt_index": prompt_index,
        "prompt": r.prompt,
        "policy": r.response_a,
        "baseline": r.response_b,
        "p_policy": r.p_a,
        "label": {"a": "win", "b": "loss", "tie": "tie"}.get(r.label),
        "position_consistent": r.position_consistent,
        "status": r.status,
        "error": r.error,
    }
