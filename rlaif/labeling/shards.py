"""Merge the output directories of a sharded labelling job (`--shard I/N`) into one, checking that the shards
come from the same job, are disjoint, and together cover every input pair."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .stats import compute_stats
from ..data.labels import read_labels, write_json_atomic
from ..data.shards import merge_shards


def merge(dirs: Sequence[str | Path], out: str | Path) -> dict:
    merged, target, n = merge_shards(dirs, out, "labels.jsonl", read_labels)
    expected = merged.get("input_pairs")
    if expected is not None and n != expected:
        raise ValueError(f"shards hold {n} pairs but the input has {expected}: incomplete")
    write_json_atomic(Path(out) / "manifest.json", merged)
    stats = compute_stats(read_labels(target))
    write_json_atomic(Path(out) / "stats.json", stats)
    return stats
