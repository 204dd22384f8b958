"""`rlaif export`: label records, or the preferences of a feedback source (ai, human or mixed), as training data
in TRL's preference format with the soft label kept as `p_chosen`.

Failed and tie pairs carry no usable preference and are left out (and counted). The records are read checked
(rlaif/numbers.py), and a folder whose job still runs is refused: what it holds then is partial. Conversational inputs
are written in TRL's conversational form (lists of messages), text inputs as plain strings. A score folder (`rlaif
score`) exports as its input pairs with preferences derived from their scores, or, with `pairs_from`, binarised per
prompt as UltraFeedback does (rlaif/data/scores.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from ..config.feedback import load_feedback_config
from ..config.paths import output_file_problem, require
from ..data.labels import open_labels, read_labels
from ..data.scores import binarize, check_pairs_from, trl_pair_row
from ..files import write_jsonl
from ..jobs.folder import refuse_running
from ..records import HUMAN_P
from .sources import AnyFeedback, load_feedback

FORMATS = ("trl",)


def trl_row(r: dict) -> dict:
    chosen, rejected = (r["response_a"], r["response_b"]) if r["label"] == "a" else (r["response_b"], r["response_a"])
    p_a = r["p_a"] if r.get("p_a") is not None else HUMAN_P[r["label"]]  # a person's choice written without p_a
    p_chosen = p_a if r["label"] == "a" else 1.0 - p_a
    prompt = r["prompt"]
    if r.get("conversational") or isinstance(prompt, list):
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        chosen = [{"role": "assistant", "content": chosen}]
        rejected = [{"role": "assistant", "content": rejected}]
    return {
        "id": r["id"],
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "p_chosen": p_chosen,
        "source": r.get("source", "ai"),
        "principle_id": r.get("principle_id"),
        "constitution_sha256": r.get("constitution_sha256"),
    }


def write_trl(records: Iterable[dict], out: str | Path) -> dict:
    """Write the records that carry a preference as TRL rows; counts of those written (also by source) and of
    those left out."""
    counts = {"written": 0, "skipped_tie": 0, "skipped_failed": 0, "written_ai": 0, "written_human": 0}

    def rows():
        for r in records:
            if r.get("status") != "ok" or (r.get("p_a") is None and r.get("source") != "human"):
                counts["skipped_failed"] += 1
            elif r["label"] == "tie":
                counts["skipped_tie"] += 1
            else:
                counts["written"] += 1
                counts[f"written_{r.get('source', 'ai')}"] += 1
                yield trl_row(r)

    write_jsonl(rows(), Path(out))
    return counts


def export_trl(labels: str | Path, out: str | Path) -> dict:
    """A label file (or directory) as TRL rows."""
    refuse_running(Path(labels), "export")
    counts = write_trl(read_labels(labels), out)
    return {k: counts[k] for k in ("written", "skipped_tie", "skipped_failed")}


def export_feedback(config: AnyFeedback, out: str | Path) -> dict:
    """The preferences of a feedback source as TRL rows; the counts include the written rows by source and what
    the source read (see sources.load_feedback)."""
    stats: dict = {}
    counts = write_trl(load_feedback(config, stats), out)
    return {**counts, "source": config.source, **stats}


def export_binarized(
    scores: str | Path, out: str | Path, pairs_from: str, seed: int = 0, min_margin: float = 0.0
) -> dict:
    """A score folder's responses binarised per prompt (best-vs-random, best-vs-worst, all-above-margin) as TRL
    rows, p_chosen from the two scores and T, both scores kept."""
    refuse_running(Path(scores), "export")
    source = open_labels(scores)
    scale, temperature = source.scale, source.temperature
    records = list(source.scores())
    counts = {
        "written": 0,
        "prompts": len({r["prompt_id"] for r in records}),
        "skipped_failed": sum(r.get("status") != "ok" for r in records),
    }

    def rows():
        for chosen, rejected in binarize(records, pairs_from, scale, temperature, seed, min_margin):
            counts["written"] += 1
            yield trl_pair_row(chosen, rejected, scale, temperature)

    write_jsonl(rows(), Path(out))
    return {**counts, "pairs_from": pairs_from}


def export(
    out: str | Path,
    labels: Optional[str | Path] = None,
    feedback: Optional[str | Path] = None,
    format: str = "trl",
    pairs_from: Optional[str] = None,
    seed: int = 0,
    min_margin: float = 0.0,
) -> dict:
    """`rlaif export`: a label file (`labels`; a score folder too) or a feedback YAML (`feedback`) written to `out`
    in `format`; `pairs_from` binarises a score folder's responses instead of exporting its input pairs."""
    if (labels is None) == (feedback is None):
        raise ValueError("pass one of --labels or --feedback")
    if format not in FORMATS:
        raise ValueError(f"unknown export format '{format}' (known: {', '.join(FORMATS)})")
    check_pairs_from(pairs_from, min_margin)
    if pairs_from is not None and (labels is None or open_labels(labels).kind != "scores"):
        raise ValueError(
            "--pairs-from binarises scored responses: give --labels a score folder (rlaif score) or its scores.jsonl"
        )
    require("--out", output_file_problem(out))
    if feedback is not None:
        return export_feedback(load_feedback_config(feedback), out)
    if pairs_from is not None:
        return export_binarized(labels, out, pairs_from, seed, min_margin)
    return export_trl(labels, out)
