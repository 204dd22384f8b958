"""`rlaif export --revisions DIR`: the chains of a revision folder as training data.

- `sft`: one `messages` row per ok chain — the prompt's turns, then the final revision as the assistant's turn —
  for `rlaif train sft` (loss on that last turn only) or TRL's SFTTrainer, loadable with
  `datasets.load_dataset("json", data_files=...)`. This is what Constitutional AI fine-tunes on (SL-CAI).
- `trl`: `prompt` / `chosen` (the final revision) / `rejected` (the first answer) preference rows, in TRL's
  conversational form (the chain was a chat; a text prompt is one user turn). Straight to DPO (TRL's DPOTrainer reads
  them as they are), or through `rlaif label` first, so that a judge checks each revision really is better (the label
  job reads `chosen` as a known choice, so its stats' agreement with `human_label` is the share of pairs where the judge
  agrees the revision is better).

Failed chains, and chains whose final revision is the first answer unchanged (`trl` only), are left out and counted. The
chains are read checked (rlaif.numbers.revision_problem: an ok chain has a final revision with text; one record per id),
and a folder whose job still runs is refused. Every row keeps the chain's id and provenance (constitution hash,
principles, model).
"""

from __future__ import annotations

from pathlib import Path

from ..config.paths import output_file_problem, require
from ..data.labels import read_records
from ..files import write_jsonl
from ..jobs.folder import refuse_running
from ..numbers import revision_problem
from ..policy.chat import chat_turns
from .job import REVISIONS_FILE

FORMATS = ("sft", "trl")


def revisions_file(path: str | Path) -> Path:
    """A revisions JSONL file, or the revisions.jsonl inside a revision folder."""
    path = Path(path)
    return path / REVISIONS_FILE if path.is_dir() else path


def _provenance(r: dict) -> dict:
    return {
        "id": r["id"],
        "constitution_sha256": r["constitution_sha256"],
        "principle_ids": [rnd["principle_id"] for rnd in r["rounds"]],
        "model": r["model"]["model"],
    }


def sft_row(r: dict) -> dict:
    return {"messages": [*chat_turns(r["prompt"]), {"role": "assistant", "content": r["final"]}], **_provenance(r)}


def trl_row(r: dict) -> dict:
    """Conversational always, as the chain was a chat: one file never mixes text and chat rows, which TRL reads by
    the first row's shape."""

    def turn(text: str) -> list[dict]:
        return [{"role": "assistant", "content": text}]

    return {
        "prompt": chat_turns(r["prompt"]),
        "chosen": turn(r["final"]),
        "rejected": turn(r["initial"]),
        **_provenance(r),
    }


def export_revisions(revisions: str | Path, out: str | Path, format: str = "sft") -> dict:
    """Write the ok chains of a revision folder (or revisions.jsonl) to `out` as `format` rows; returns counts."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format '{format}' for revisions (known: {', '.join(FORMATS)})")
    require("--out", output_file_problem(out))
    source = revisions_file(revisions)
    if not source.exists():
        raise FileNotFoundError(f"no revisions at {source} (a folder written by rlaif revise, or its {REVISIONS_FILE})")
    refuse_running(source, "export")
    counts = {"written": 0, "skipped_failed": 0, "skipped_unchanged": 0}

    def rows():
        for r in read_records(source, revision_problem):
            if r.get("status") != "ok" or r.get("final") is None:
                counts["skipped_failed"] += 1
            elif format == "trl" and r["final"] == r["initial"]:
                counts["skipped_unchanged"] += 1
            else:
                counts["written"] += 1
                yield sft_row(r) if format == "sft" else trl_row(r)

    write_jsonl(rows(), out)
    return counts
