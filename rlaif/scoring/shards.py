"""Merge the folders of a sharded score job (`rlaif score --shard I/N`, sharded by prompt id) into one score
folder, with the checks of rlaif.data.shards (same job, complete, disjoint) and the folder's stats."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..data.labels import read_scores, write_json_atomic
from ..data.scores import SCORES_FILE, scale_of
from ..data.shards import merge_shards
from .stats import compute_stats


def merge(dirs: Sequence[str | Path], out: str | Path) -> dict:
    merged, target, _ = merge_shards(dirs, out, SCORES_FILE, read_scores, what="response")
    write_json_atomic(Path(out) / "manifest.json", merged)
    scale, temperature, tie_margin = scale_of(merged)
    stats = compute_stats(read_scores(target), scale, temperature, tie_margin)
    write_json_atomic(Path(out) / "stats.json", stats)
    return stats
