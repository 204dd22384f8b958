"""Export label records as training data: TRL's preference format with the soft label kept as `p_chosen`.

Failed and tie pairs carry no usable preference and are left out (and counted). Conversational inputs are
written in TRL's conversational form (lists of messages), text inputs as plain strings.
"""

from __future__ import annotations

from pathlib import Path

from ..data.labels import read_labels, write_jsonl


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


def export_trl(labels: str | Path, out: str | Path) -> dict:
    counts = {"written": 0, "skipped_tie": 0, "skipped_failed": 0}

    def rows():
        for r in read_labels(labels):
            if r["status"] != "ok":
                counts["skipped_failed"] += 1
            elif r["label"] == "tie":
                counts["skipped_tie"] += 1
            else:
                counts["written"] += 1
                yield trl_row(r)
    write_jsonl(rows(), Path(out))
    return counts
