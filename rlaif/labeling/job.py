"""The labelling job: read pairs → score them batch by batch (score.py) → append label records to a folder.

`label` writes DIR/labels.jsonl (one record per pair, keyed by `record_key`, so the same command run again skips
what is done), DIR/manifest.json (what made the labels: input, constitution, judge, seed, shard, versions; another
folder's manifest is refused) and DIR/stats.json (stats.py). The folders of a sharded job are merged by shards.py.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from .._version import __version__
from ..config.judge import JudgeBase, load_judge_config
from ..constitution import Constitution, load_constitution
from ..data.formats import DataError, count_pairs
from ..data.labels import LabelStore, write_json_atomic
from ..data.pairs import read_pairs
from ..judges.base import TOO_LONG, Judge
from ..judges.registry import load_judge, not_ready
from ..progress import progress as make_progress
from .score import PlannedPair, StoppedEarly, plan_pair, score_planned
from .stats import compute_stats


class LabelJobError(RuntimeError):
    """A job that cannot start or go on (e.g. a different constitution in an existing output directory)."""


@dataclass
class JobResult:
    out_dir: Path
    stats: dict
    stopped: Optional[str] = None  # why the job stopped early ("budget: …"), None when complete
    labelled_now: int = 0
    skipped_done: int = 0


def in_shard(pair_id: str, shard: tuple[int, int]) -> bool:
    index, count = shard
    return count == 1 or int(hashlib.sha256(pair_id.encode()).hexdigest()[:12], 16) % count == index


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _versions() -> dict:
    import importlib.metadata as md

    out = {"rlaif": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "vllm", "httpx", "pydantic"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _check_manifest(out_dir: Path, manifest: dict) -> None:
    path = out_dir / "manifest.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    # A changed input file is allowed: keys are content hashes, so pairs already labelled are skipped and new
    # ones are added. What would mix incompatible labels in one file is refused.
    for field_name, what in (("constitution_sha256", "constitution"), ("judge_settings_sha256", "judge settings"),
                             ("seed", "seed"), ("shard", "shard")):
        if old.get(field_name) != manifest.get(field_name):
            raise LabelJobError(
                f"{out_dir} holds labels made with a different {what} ({field_name}: {old.get(field_name)!s:.16} "
                f"here, {manifest.get(field_name)!s:.16} now). Use a new --out directory, or the same {what}.")


def label(pairs: str | Path, constitution: str | Path | Constitution, judge, out: str | Path, *,
          limit: Optional[int] = None, seed: int = 0, batch_size: Optional[int] = None,
          shard: tuple[int, int] = (0, 1), format: Optional[str] = None, skip_invalid: bool = False,
          max_chars: int = 100_000, progress: bool = True,
          on_batch: Optional[Callable[[int], None]] = None) -> JobResult:
    """Label a file of pairs into `out`; running it again resumes. `judge` is a Judge, a config or a YAML path."""
    pairs_path, out_dir = Path(pairs), Path(out)
    if not isinstance(constitution, Constitution):
        constitution_path, constitution = str(constitution), load_constitution(constitution)
    else:
        constitution_path = None
    if shard[1] < 1 or not 0 <= shard[0] < shard[1]:
        raise LabelJobError(f"--shard must be I/N with 0 <= I < N, got {shard[0]}/{shard[1]}")
    judge_obj: Optional[Judge] = judge if isinstance(judge, Judge) else None  # loaded after the cheap checks
    judge_config = judge.config if judge_obj else _judge_config(judge)
    refusal = not_ready(judge_config, judge_obj)
    if refusal:
        raise LabelJobError(refusal)  # before anything is written to `out`
    manifest = _manifest(pairs_path, format, constitution_path, constitution, judge_config, seed, shard, limit)
    store, done = _open_folder(out_dir, manifest)

    if judge_obj is None:
        judge_obj = load_judge(judge_config)
    batch = batch_size or getattr(judge_config, "batch_size", 8)
    total = count_pairs(pairs_path, format)
    total = min(total, limit) if limit is not None else total
    started, skipped, seen = time.time(), 0, 0
    bar = make_progress("labelling", total if shard[1] == 1 else None, progress)
    batches = _Batches(judge_obj, constitution, store, pairs_path, skip_invalid, bar, on_batch)
    try:
        for pair in read_pairs(pairs_path, format=format, seed=seed, skip_invalid=skip_invalid,
                               max_chars=max_chars):
            if limit is not None and seen >= limit:
                break
            seen += 1
            if not in_shard(pair.id, shard):
                continue
            planned = plan_pair(pair, constitution, judge_obj, seed)
            if planned.key in done:
                skipped += 1
                if bar:
                    bar.advance(1)
                continue
            done.add(planned.key)
            batches.pending.append(planned)
            if len(batches.pending) >= batch:
                batches.flush()
                if batches.stopped:
                    break
        if not batches.stopped:
            batches.flush()
    except DataError:
        if not batches.stopped and batches.pending:
            batches.flush()  # bad input further on: keep the work already judged before reporting it
        raise
    finally:
        if bar:
            bar.stop()
    stats = _finish(out_dir, manifest, store, judge_config, batches, seen, skipped, time.time() - started)
    return JobResult(out_dir, stats, batches.stopped, batches.labelled, skipped)


def _judge_config(judge) -> JudgeBase:
    return judge if isinstance(judge, JudgeBase) else load_judge_config(judge)


def _manifest(pairs_path: Path, format: Optional[str], constitution_path: Optional[str], constitution: Constitution,
              judge_config: JudgeBase, seed: int, shard: tuple[int, int], limit: Optional[int]) -> dict:
    """What makes these labels what they are, written to DIR/manifest.json when the job starts."""
    return {
        "rlaif_version": __version__, "created_at": datetime.now(timezone.utc).isoformat(),
        "input": str(pairs_path), "input_sha256": _file_sha256(pairs_path), "format": format,
        "constitution": constitution_path, "constitution_name": constitution.name,
        "constitution_version": constitution.version, "constitution_sha256": constitution.sha256,
        "judge": judge_config.public_dict(), "judge_settings_sha256": judge_config.settings_sha256(),
        "seed": seed, "shard": list(shard), "limit": limit, "versions": _versions(), "status": "running",
    }


def _open_folder(out_dir: Path, manifest: dict) -> tuple[LabelStore, set[str]]:
    """Create or reopen the label folder (refusing one made by another job): its store and the keys already done."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, manifest)
    store = LabelStore(out_dir / "labels.jsonl")
    store.open()
    done = store.keys()
    write_json_atomic(out_dir / "manifest.json", manifest)
    return store, done


@dataclass
class _Batches:
    """The pairs waiting for the judge, and what the job has written so far."""

    judge: Judge
    constitution: Constitution
    store: LabelStore
    pairs_path: Path
    skip_invalid: bool
    bar: Any
    on_batch: Optional[Callable[[int], None]]
    pending: list[PlannedPair] = field(default_factory=list)
    labelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stopped: Optional[str] = None  # why the judge stopped early ("budget: …")

    def flush(self) -> None:
        """Judge the pending pairs and append their records."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            records = score_planned(self.judge, batch, self.constitution)
        except StoppedEarly as e:
            records, self.stopped = e.records, f"budget: {e}"
        # Without --skip-invalid a pair too long for the judge is bad input: keep the rest, then report it.
        too_long = [] if self.skip_invalid else [r for r in records if (r.error or "").startswith(TOO_LONG)]
        records = [r for r in records if r not in too_long]
        self.store.append(r.to_json() for r in records)
        self.labelled += len(records)
        self.prompt_tokens += sum(r.prompt_tokens for r in records)
        self.completion_tokens += sum(r.completion_tokens for r in records)
        if self.bar:
            self.bar.advance(len(records))
        if self.on_batch:
            self.on_batch(self.labelled)
        if too_long:
            line = next(p.pair.source_line for p in batch if p.key == too_long[0].key)
            raise DataError(str(self.pairs_path), line, f"pair '{too_long[0].id}': {too_long[0].error} "
                            f"(--skip-invalid records such pairs as failed and goes on)")


def _finish(out_dir: Path, manifest: dict, store: LabelStore, judge_config: JudgeBase, batches: _Batches,
            seen: int, skipped: int, wall: float) -> dict:
    """The final stats (over the whole folder, with this run's speed) and the manifest's closing status."""
    tokens = batches.prompt_tokens + batches.completion_tokens
    run = {"labelled_now": batches.labelled, "resumed_skipped": skipped, "wall_time_s": round(wall, 3),
           "pairs_per_s": round(batches.labelled / wall, 4) if wall > 0 else None,
           "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
           "run_prompt_tokens": batches.prompt_tokens, "run_completion_tokens": batches.completion_tokens}
    stats = compute_stats(store, judge_config, run)
    stats["stopped"] = batches.stopped
    write_json_atomic(out_dir / "stats.json", stats)
    manifest.update(status="stopped" if batches.stopped else "complete", input_pairs=seen,
                    finished_at=datetime.now(timezone.utc).isoformat())
    write_json_atomic(out_dir / "manifest.json", manifest)
    return stats
