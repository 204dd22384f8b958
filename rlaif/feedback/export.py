"""`rlaif export`: label records, or the preferences of a feedback source (ai, human or mixed), as training data
in TRL's preference format with the soft label kept as `p_chosen`.

Failed and tie pairs carry no usable preference and are left out (and counted). Conversational inputs are
written in TRL's conversational form (lists of messages), text inputs as plain strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from ..config.feedback import load_feedback_config
from ..config.paths import output_file_problem, require
from ..data.labels import read_labels, write_jsonl
from .sources import AnyFeedback, load_feedback

FORMATS = ("trl",)


def trl_row(r: dict) -> dict:
    chosen, rejected = (r["response_a"], r["response_b"]) if r["label"] == "a" else (r["response_b"], r["response_a"])
    p_chosen = r["p_a"] if r["label"] == "a" else 1.0 - r["p_a"]
    prompt = r["prompt"]
    if r.get("conversational") or isinstance(prompt, list):
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        chosen = [{"role": "assistant", "content": chosen}]
        rejected = [{"role": "assistant", "content": rejected}]
    return {"id": r["id"], "prompt": prompt, "chosen": chosen, "rejected": rejected, "p_chosen": p_chosen,
            "source": r.get("source", "ai"), "principle_id": r.get("principle_id"),
            "constitution_sha256": r.get("constitution_sha256")}


def write_trl(records: Iterable[dict], out: str | Path) -> dict:
    """Write the records that carry a preference as TRL rows; counts of those written (also by source) and of
    those left out."""
    counts = {"written": 0, "skipped_tie": 0, "skipped_failed": 0, "written_ai": 0, "written_human": 0}

    def rows():
        for r in records:
            if r.get("status") != "ok" or r.get("p_a") is None:
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
    counts = write_trl(read_labels(labels), out)
    return {k: counts[k] for k in ("written", "skipped_tie", "skipped_failed")}


def export_feedback(config: AnyFeedback, out: str | Path) -> dict:
    """The preferences of a feedback source as TRL rows; the counts include the written rows by source and what
    the source read (see sources.load_feedback)."""
    stats: dict = {}
    counts = write_trl(load_feedback(config, stats), out)
    return {**counts, "source": config.source, **stats}


def export(out: str | Path, labels: Optional[str | Path] = None, feedback: Optional[str | Path] = None,
           format: str = "trl") -> dict:
    """`rlaif export`: a label file (`labels`) or a feedback YAML (`feedback`) written to `out` in `format`."""
    if (labels is None) == (feedback is None):
        raise ValueError("pass one of --labels or --feedback")
    if format not in FORMATS:
        raise ValueError(f"unknown export format '{format}' (known: {', '.join(FORMATS)})")
    require("--out", output_file_problem(out))
    if feedback is not None:
        return export_feedback(load_feedback_config(feedback), out)
    return export_trl(labels, out)
