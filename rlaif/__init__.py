"""rlaif: reinforcement learning from AI feedback.

A judge LLM, guided by a constitution, labels which of two responses is better; the labels carry soft,
order-debiased probabilities and full provenance. Importing this package never imports torch or vllm.
"""

from __future__ import annotations

import warnings

from ._version import __version__
from .constitution import GENERIC, Constitution, Principle, load_constitution
from .data.pairs import read_pairs as _read
from .judges.registry import load_judge as _load
from .labeling.job import label as _label
from .labeling.pairwise import judge_pairs as _judge
from .records import LabelRecord, Pair, Query, ScoreRecord, Verdict
from .scoring.rate import rate_responses

__all__ = [
    "Constitution",
    "Principle",
    "load_constitution",
    "LabelRecord",
    "Pair",
    "Query",
    "ScoreRecord",
    "Verdict",
    "load_judge",
    "judge_pairs",
    "score",
    "rate",
    "label",
    "read_pairs",
    "__version__",
]


def load_judge(config, kind=None):
    """Load a judge from a `judges/*.yaml` file or a config object (see rlaif.config.judge): a pairwise judge or a
    score judge, as its `mode` says. With `kind` (rlaif.judges.base.PairwiseJudge or ScoreJudge), a judge of the
    other kind is refused before its model loads (ValueError, one line naming the file)."""

    return _load(config, kind)


def judge_pairs(judge, pairs, constitution=None, seed: int = 0) -> list[LabelRecord]:
    """Judge pairs in-process, no files: each pair in both orders under the constitution's principles (default: one
    generic principle), debiased into one label record per pair, in order. `judge` comes from `load_judge`; `seed`
    draws the principle of each pair under `sampling: one_per_pair`."""

    return _judge(judge, list(pairs), constitution, seed=seed)


def score(judge, pairs, constitution=None, seed: int = 0) -> list[LabelRecord]:
    """Deprecated: the old name of `judge_pairs` (kept for one release; "score" now means a rating, `rate`)."""
    warnings.warn(
        "rlaif.score is deprecated and will be removed in the next release: use rlaif.judge_pairs (same arguments)",
        DeprecationWarning,
        stacklevel=2,
    )
    return judge_pairs(judge, pairs, constitution, seed=seed)


def rate(judge, prompt, responses, constitution=None, seed: int = 0) -> list[ScoreRecord]:
    """Rate the responses to one prompt in-process with a score judge (mode: score), no files: one score record
    per response, in order, under one principle drawn for the prompt (default: one generic principle).
    (`judge_pairs` is the pairwise judge's; the job over a file is rlaif.scoring.job.score, the `rlaif score`
    command.)"""

    return rate_responses(judge, prompt, list(responses), constitution or GENERIC, seed=seed)


def label(*args, **kwargs):
    """Run a resumable labelling job over a file into a label folder; see rlaif.labeling.job.label."""

    return _label(*args, **kwargs)


def read_pairs(*args, **kwargs):
    """Read pairs from any supported input; see rlaif.data.pairs.read_pairs."""

    return _read(*args, **kwargs)
