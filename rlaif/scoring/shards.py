"""Merge the folders of a sharded score job (`rlaif score --shard I/N`, sharded by prompt id) into one score
folder, with the checks of rlaif.data.shards (same job, every score on the judge's scale by rlaif.numbers'
score_record_problem, no response twice, every input response rated) and the folder's stats."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from ..data.labels import read_scores
from ..data.scores import scale_of
from ..jobs.shards import ShardedJob, merge_shards
from ..numbers import score_record_problem
from .job import SCORES
from .stats import compute_stats


def _check(manifest: dict) -> Callable[[dict], Optional[str]]:
    """Why a score record cannot be merged, on the scale of the judge config the shard's manifest keeps."""
    scale = scale_of(manifest)[0]
    return lambda record: score_record_problem(record, scale)


def _stats(scores: Path, manifest: dict) -> dict:
    return compute_stats(read_scores(scores), *scale_of(manifest))


SCORE_SHARDS = ShardedJob(kind=SCORES, item="response", shard_key="prompt_id", input_count="input_responses",
                          check=_check, stats=_stats)


def merge(dirs: Sequence[str | Path], out: str | Path) -> dict:
    return merge_shards(dirs, out, SCORE_SHARDS)
