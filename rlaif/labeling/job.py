"""The labelling job: read pairs → judge them in both orders under the constitution → append label records.

`score_pairs` turns pairs into judge queries and the verdicts back into debiased label records; `label` runs it
as a resumable job over a file, writing DIR/labels.jsonl, DIR/manifest.json and DIR/stats.json.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

from .._version import __version__
from ..constitution import Constitution, Principle, load_constitution
from .preference import label_for, order_probabilities, position_consistent, weighted_mean
from ..progress import progress as make_progress
from ..records import LabelRecord, Pair, Verdict, sha256_json
from .stats import compute_stats
from ..data.labels import LabelStore, write_json_atomic

GENERIC = Constitution(name="generic", version="1", principles=[
    Principle(id="better", text="Which response is the better reply to the user?")])


class LabelJobError(RuntimeError):
    """A job that cannot start or go on (e.g. a different constitution in an existing output directory)."""


def record_key(pair: Pair, principles: Sequence[Principle], constitution_sha: str, judge_sha: str) -> str:
    """The resume key: a content hash of what decides a label (pair, principles, constitution, judge)."""
    return sha256_json([pair.id, pair.prompt, pair.response_a, pair.response_b, [p.id for p in principles],
                        constitution_sha, judge_sha])[:32]


def _record(pair: Pair, principles: Sequence[Principle], verdicts: Sequence[Verdict], constitution: Constitution,
            judge, tie_margin: float, key: str) -> LabelRecord:
    base = dict(id=pair.id, key=key, prompt=pair.prompt, response_a=pair.response_a, response_b=pair.response_b,
                constitution_sha256=constitution.sha256, judge=judge.info, human_label=pair.human_label,
                conversational=pair.conversational,
                principle_id="all" if len(principles) > 1 else principles[0].id,
                prompt_tokens=sum(v.prompt_tokens for v in verdicts),
                completion_tokens=sum(v.completion_tokens for v in verdicts))
    rationale = [v.rationale for v in verdicts] if any(v.rationale for v in verdicts) else None
    failed = [v for v in verdicts if v.p_first is None]
    if failed:
        return LabelRecord(**base, p_a=None, label=None, status="failed", rationale=rationale,
                           error=failed[0].error or "the judge returned no verdict")
    per_orders = []
    for k, p in enumerate(principles):
        ab, ba = verdicts[2 * k], verdicts[2 * k + 1]
        per_orders.append(order_probabilities(ab.p_first, ba.p_first, p.invert, judge.config.clamp))
    weights = [p.weight for p in principles]
    orders = [weighted_mean([o[0] for o in per_orders], weights), weighted_mean([o[1] for o in per_orders], weights)]
    p_a = (orders[0] + orders[1]) / 2
    masses = [v.label_mass for v in verdicts if v.label_mass is not None]
    return LabelRecord(
        **base, p_a=p_a, label=label_for(p_a, tie_margin), status="ok", position_consistent=position_consistent(orders),
        p_a_orders=orders, rationale=rationale,
        per_principle={p.id: (o[0] + o[1]) / 2 for p, o in zip(principles, per_orders)} if len(principles) > 1 else None,
        label_mass=sum(masses) / len(masses) if masses else None)


def _failed(pair: Pair, constitution: Constitution, judge, key: str, error: str) -> LabelRecord:
    return LabelRecord(id=pair.id, key=key, prompt=pair.prompt, response_a=pair.response_a,
                       response_b=pair.response_b, p_a=None, label=None, status="failed", error=error,
                       constitution_sha256=constitution.sha256, judge=judge.info, human_label=pair.human_label,
                       conversational=pair.conversational)


@dataclass
class _Planned:
    pair: Pair
    principles: list[Principle]
    key: str


def _plan(pair: Pair, constitution: Constitution, judge, seed: int) -> _Planned:
    principles = constitution.principles_for(pair, seed) if not pair.invalid else []
    return _Planned(pair, principles, record_key(pair, principles, constitution.sha256, judge.info.settings_sha256))


def _score_planned(judge, planned: Sequence[_Planned], constitution: Constitution) -> list[LabelRecord]:
    """Judge a batch; raises BudgetExhausted carrying the records of the pairs that were fully answered."""
    from ..judges.base import BudgetExhausted

    margin = constitution.tie_margin if constitution.tie_margin is not None else judge.config.tie_margin
    queries, spans = [], []
    for pl in planned:
        if pl.pair.invalid:
            spans.append(None)
            continue
        q = judge.queries(pl.pair, pl.principles, constitution)  # grouped per pair: backends share its prefix
        spans.append((len(queries), len(queries) + len(q)))
        queries.extend(q)
    try:
        verdicts: list[Optional[Verdict]] = list(judge.judge(queries)) if queries else []
        exhausted = None
    except BudgetExhausted as e:
        verdicts, exhausted = e.verdicts, e
    records = []
    for pl, span in zip(planned, spans):
        if span is None:
            records.append(_failed(pl.pair, constitution, judge, pl.key, f"invalid input: {pl.pair.invalid}"))
            continue
        vs = verdicts[span[0]:span[1]]
        if any(v is None for v in vs):
            continue  # not fully answered before the cap: left for a resumed run, never a placeholder
        records.append(_record(pl.pair, pl.principles, vs, constitution, judge, margin, pl.key))
    if exhausted is not None:
        raise StoppedEarly(str(exhausted), records)
    return records


class StoppedEarly(RuntimeError):
    """The judge's spending cap was reached mid-batch; `records` holds the pairs that were fully answered."""

    def __init__(self, message: str, records: list[LabelRecord]):
        super().__init__(message)
        self.records = records


def score_pairs(judge, pairs: Sequence[Pair], constitution: Optional[Constitution] = None,
                seed: int = 0) -> list[LabelRecord]:
    """Judge pairs in-process (no files): both orders, the constitution's principles, debiased records."""
    constitution = constitution or GENERIC
    planned = [_plan(p, constitution, judge, seed) for p in pairs]
    return _score_planned(judge, planned, constitution)


# ---------------------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------------------

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
    from ..data.formats import DataError, count_pairs
    from ..data.pairs import read_pairs
    from ..judges.base import TOO_LONG, Judge
    from ..judges.registry import load_judge, not_ready

    pairs_path, out_dir = Path(pairs), Path(out)
    if not isinstance(constitution, Constitution):
        constitution_path, constitution = str(constitution), load_constitution(constitution)
    else:
        constitution_path = None
    if shard[1] < 1 or not 0 <= shard[0] < shard[1]:
        raise LabelJobError(f"--shard must be I/N with 0 <= I < N, got {shard[0]}/{shard[1]}")
    judge_obj: Judge = judge if isinstance(judge, Judge) else None  # loaded after the cheap checks
    judge_config = judge.config if judge_obj else _judge_config(judge)
    refusal = not_ready(judge_config, judge_obj)
    if refusal:
        raise LabelJobError(refusal)  # before anything is written to `out`
    manifest = {
        "rlaif_version": __version__, "created_at": datetime.now(timezone.utc).isoformat(),
        "input": str(pairs_path), "input_sha256": _file_sha256(pairs_path), "format": format,
        "constitution": constitution_path, "constitution_name": constitution.name,
        "constitution_version": constitution.version, "constitution_sha256": constitution.sha256,
        "judge": judge_config.public_dict(), "judge_settings_sha256": judge_config.settings_sha256(),
        "seed": seed, "shard": list(shard), "limit": limit, "versions": _versions(), "status": "running",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, manifest)
    store = LabelStore(out_dir / "labels.jsonl")
    store.open()
    done = store.keys()
    write_json_atomic(out_dir / "manifest.json", manifest)

    if judge_obj is None:
        judge_obj = load_judge(judge_config)
    batch = batch_size or getattr(judge_config, "batch_size", 8)
    total = count_pairs(pairs_path, format)
    total = min(total, limit) if limit is not None else total
    started, labelled, skipped, seen, stopped = time.time(), 0, 0, 0, None
    prompt_tokens = completion_tokens = 0
    bar = make_progress("labelling", total if shard[1] == 1 else None, progress)
    pending: list[_Planned] = []

    def flush() -> None:
        nonlocal labelled, prompt_tokens, completion_tokens, stopped
        batch = list(pending)
        pending.clear()
        if not batch:
            return
        try:
            records = _score_planned(judge_obj, batch, constitution)
        except StoppedEarly as e:
            records, stopped = e.records, f"budget: {e}"
        # Without --skip-invalid a pair too long for the judge is bad input: keep the rest, then report it.
        too_long = [] if skip_invalid else [r for r in records if (r.error or "").startswith(TOO_LONG)]
        records = [r for r in records if r not in too_long]
        store.append(r.to_json() for r in records)
        labelled += len(records)
        prompt_tokens += sum(r.prompt_tokens for r in records)
        completion_tokens += sum(r.completion_tokens for r in records)
        if bar:
            bar.advance(len(records))
        if on_batch:
            on_batch(labelled)
        if too_long:
            line = next(p.pair.source_line for p in batch if p.key == too_long[0].key)
            raise DataError(str(pairs_path), line, f"pair '{too_long[0].id}': {too_long[0].error} "
                            f"(--skip-invalid records such pairs as failed and goes on)")

    try:
        for pair in read_pairs(pairs_path, format=format, seed=seed, skip_invalid=skip_invalid,
                               max_chars=max_chars):
            if limit is not None and seen >= limit:
                break
            seen += 1
            if not in_shard(pair.id, shard):
                continue
            planned = _plan(pair, constitution, judge_obj, seed)
            if planned.key in done:
                skipped += 1
                if bar:
                    bar.advance(1)
                continue
            done.add(planned.key)
            pending.append(planned)
            if len(pending) >= batch:
                flush()
                if stopped:
                    break
        if not stopped:
            flush()
    except DataError:
        if not stopped and pending:
            flush()  # bad input further on: keep the work already judged before reporting it
        raise
    finally:
        if bar:
            bar.stop()
    wall = time.time() - started
    run = {"labelled_now": labelled, "resumed_skipped": skipped, "wall_time_s": round(wall, 3),
           "pairs_per_s": round(labelled / wall, 4) if wall > 0 else None,
           "tokens_per_s": round((prompt_tokens + completion_tokens) / wall, 2) if wall > 0 else None,
           "run_prompt_tokens": prompt_tokens, "run_completion_tokens": completion_tokens}
    stats = compute_stats(store, judge_config, run)
    stats["stopped"] = stopped
    write_json_atomic(out_dir / "stats.json", stats)
    manifest["status"] = "stopped" if stopped else "complete"
    manifest["input_pairs"] = seen
    manifest["finished_at"] = datetime.now(timezone.utc).isoformat()
    write_json_atomic(out_dir / "manifest.json", manifest)
    return JobResult(out_dir, stats, stopped, labelled, skipped)


def _judge_config(judge):
    from ..config.judge import JudgeBase
    from ..config.judge import load_judge_config

    return judge if isinstance(judge, JudgeBase) else load_judge_config(judge)
