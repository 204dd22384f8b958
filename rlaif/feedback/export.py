"""Export label records as training data: TRL's preference format with the soft label kept as `p_chosen`.

Failed and tie pairs carry no usable preference and are left out (and counted). Conversational inputs are
written in TRL's conversational form (lists of messages), text inputs as plain strings.
"""

from __future__ import annotations

import json
from pathlib import Path


def labels_file(path: str | Path) -> Path:
    """A labels JSONL file, or the labels.jsonl inside a label directory."""
    path = Path(path)
    return path / "labels.jsonl" if path.is_dir() else path


def iter_labels(path: str | Path):
    from ..data.labels import LabelStore

    f = labels_file(path)
    if not f.exists():
        raise FileNotFoundError(f"no labels at {f}")
    yield from LabelStore(f)


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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in iter_labels(labels):
            if r["status"] != "ok":
                counts["skipped_failed"] += 1
            elif r["label"] == "tie":
                counts["skipped_tie"] += 1
            else:
                f.write(json.dumps(trl_row(r), ensure_ascii=False) + "\n")
                counts["written"] += 1
    tmp.replace(out)
    return counts
