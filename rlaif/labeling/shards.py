"""Merge the output directories of a sharded labelling job (`--shard I/N`) into one, with the checks of
rlaif.data.shards: the shards come from the same job, every label is one the store would keep (rlaif.numbers'
label_problem), no pair is labelled twice, and together they label every input pair."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .folder import LABELS
from .stats import compute_stats
from ..data.labels import read_labels
from ..jobs.shards import ShardedJob, merge_shards
from ..numbers import label_problem

LABEL_SHARDS = ShardedJob(kind=LABELS, item="pair", shard_key="id", input_count="input_pairs",
                          check=lambda manifest: label_problem,
                          stats=lambda labels, manifest: compute_stats(read_labels(labels)))


def merge(dirs: Sequence[str | Path], out: str | Path) -> dict:
    return merge_shards(dirs, out, LABEL_SHARDS)
