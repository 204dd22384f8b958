"""Merging the folders of a sharded job (`--shard I/N` of `rlaif label` or `rlaif score`) into one: the shards must
come from the same job, be complete, cover shards 0..N-1 once each and hold disjoint ids. Their spend.json files add
up into the merged folder's. The job's own module then writes the merged manifest and stats."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..records import Spend
from .folder import read_spend, write_spend
from .labels import LabelStore, fsync_dir, read_json_file

SAME_JOB = ("input_sha256", "constitution_sha256", "judge_settings_sha256", "seed", "limit")


def merge_shards(dirs: Sequence[str | Path], out: str | Path, file_name: str,
                 read: Callable[[Path], Iterable[dict]], what: str = "pair") -> tuple[dict, Path, int]:
    """Check the shard folders and write their records into OUT/`file_name`; returns the first shard's manifest,
    the merged file and how many records it holds."""
    manifests = []
    for d in map(Path, dirs):
        m = d / "manifest.json"
        if not m.exists():
            raise ValueError(f"{d}: no manifest.json (not a job folder)")
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
        raise ValueError(f"--out {out} is a file; name a folder for the merged records")
    if not out.is_dir():
        out.mkdir(parents=True)
        fsync_dir(out.parent)
    target = out / file_name
    if target.exists() and target.stat().st_size:
        raise ValueError(f"{target} already exists; merge into a new directory")
    ids: set[str] = set()
    store = LabelStore(target)
    store.open()
    for d, _ in manifests:
        batch = []
        for r in read(d):
            if r["id"] in ids:
                raise ValueError(f"{what} {r['id']} appears in more than one shard ({d})")
            ids.add(r["id"])
            batch.append(r)
        store.append(batch)
    # what the shards spent is the merged job's: its caps hold over the whole job if it is ever run again
    spends = [read_spend(d) for d, _ in manifests]
    write_spend(out, Spend(requests=sum(x.requests for x in spends), cost=sum(x.cost for x in spends)))
    merged = {**first, "shard": [0, 1], "merged_from": [str(d) for d, _ in manifests], "status": "complete"}
    return merged, target, len(ids)
