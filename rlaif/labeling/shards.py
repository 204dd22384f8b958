"""Merge the output directories of a sharded labelling job (`--shard I/N`) into one, checking that the shards
come from the same job, are disjoint, and together cover every input pair."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .stats import compute_stats
from ..data.labels import LabelStore, fsync_dir, read_json_file, read_labels, write_json_atomic

SAME_JOB = ("input_sha256", "constitution_sha256", "judge_settings_sha256", "seed", "limit")


def merge(dirs: Sequence[str | Path], out: str | Path) -> dict:
    manifests = []
    for d in map(Path, dirs):
        m = d / "manifest.json"
        if not m.exists():
            raise ValueError(f"{d}: no manifest.json (not a label directory)")
        manifests.append((d, read_json_file(m)))
    first_dir, first = manifests[0]
    for d, m in manifests[1:]:
        for k in SAME_JOB:
            if m.get(k) != first.get(k):
                raise ValueError(f"{d} and {first_dir} come from different jobs: {k} differs")
    n = first["shard"][1]
    seen = sorted(m["shard"][0] for _, m in manifests)
    if any(m["shard"][1] != n for _, m in manifests) or seen != list(range(n)):
        raise ValueError(f"shards must be 0..{n - 1} of {n}, each once; got {seen}")
    for d, m in manifests:
        if m.get("status") != "complete":
            raise ValueError(f"{d}: shard is not complete (status {m.get('status')}); finish it first")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder for the merged labels")
    if not out.is_dir():
        out.mkdir(parents=True)
        fsync_dir(out.parent)
    target = out / "labels.jsonl"
    if target.exists() and target.stat().st_size:
        raise ValueError(f"{target} already exists; merge into a new directory")
    ids: set[str] = set()
    store = LabelStore(target)
    store.open()
    for d, _ in manifests:
        batch = []
        for r in read_labels(d):
            if r["id"] in ids:
                raise ValueError(f"pair {r['id']} appears in more than one shard ({d})")
            ids.add(r["id"])
            batch.append(r)
        store.append(batch)
    expected = first.get("input_pairs")
    if expected is not None and len(ids) != expected:
        raise ValueError(f"shards hold {len(ids)} pairs but the input has {expected}: incomplete")
    merged = {**first, "shard": [0, 1], "merged_from": [str(d) for d, _ in manifests], "status": "complete"}
    write_json_atomic(out / "manifest.json", merged)
    stats = compute_stats(read_labels(target))
    write_json_atomic(out / "stats.json", stats)
    return stats
