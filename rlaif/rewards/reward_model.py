"""`rlaif reward score`: a trained reward model (the directory `rlaif train reward` saves) scores both responses
of every pair; writes id, r_a, r_b and p_a = σ(r_a − r_b) (the Bradley-Terry preference the model was trained to
match) per pair, and the pairwise accuracy against human choices where the input carries them.

Pairs are encoded and batched exactly as in training (rlaif.train.data encode_pairs/collate; the score head
reads each sequence's last non-pad token), so a score here is the score the training loop computed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional, TextIO, Union

PathLike = Union[str, Path]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def load_reward_model(model_dir: PathLike, dtype=None, device=None):
    """(model, tokenizer) from a saved reward-model directory: a one-output sequence classifier, frozen, in eval
    mode, on `device` (default: auto, a GPU when there is one) in `dtype` (default fp32, on a GPU too: scores are
    compared to each other, so they keep full precision unless a caller asks otherwise)."""
    from ..config.devices import device_and_dtype

    path = Path(model_dir)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: not a saved model directory (no config.json); pass the model/ folder "
                                f"`rlaif train reward` writes in its output directory")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device, dtype = device_and_dtype(device or "auto", dtype or "float32")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=dtype)
    if model.config.num_labels != 1:
        raise ValueError(f"{path}: a reward model has one output, this one has {model.config.num_labels}")
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    return model.eval().requires_grad_(False), tokenizer


def score_pairs_file(model_dir: PathLike, pairs: PathLike, out: Optional[PathLike] = None, batch_size: int = 16,
                     max_length: Optional[int] = None, format: Optional[str] = None, seed: int = 0) -> dict:
    """Score every pair of `pairs` (any input rlaif.data.read_pairs reads) and write one JSON line per pair to
    `out` (stdout when None). Pairs longer than `max_length` tokens (default: the model's context) are written
    with r_a = r_b = p_a = null and an error, and counted. Returns the counts and the human-label accuracy."""
    import torch

    from ..data.pairs import read_pairs
    from ..recipes.reward import rewards
    from ..train.data import Preference, collate, encode_pairs

    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    model, tokenizer = load_reward_model(model_dir)
    limit = max_length or getattr(model.config, "max_position_embeddings", None) or 4096
    device = next(model.parameters()).device
    counts = {"pairs": 0, "scored": 0, "too_long": 0, "human_pairs": 0, "human_correct": 0}

    def flush(batch: list, sink: TextIO) -> None:
        encoded = [e for _, e in batch]
        with torch.no_grad():
            tensors = {k: v.to(device) for k, v in collate(encoded, tokenizer.pad_token_id, limit).items()}
            r_a, r_b = rewards(model, tensors)
        for (pair, _), a, b in zip(batch, r_a.tolist(), r_b.tolist()):
            row = {"id": pair.id, "r_a": a, "r_b": b, "p_a": _sigmoid(a - b)}
            if pair.human_label in ("a", "b"):
                row["human_label"] = pair.human_label
                counts["human_pairs"] += 1
                # a tie in score picks neither, so it counts as wrong
                counts["human_correct"] += int((a > b) if pair.human_label == "a" else (b > a))
            sink.write(json.dumps(row) + "\n")
            counts["scored"] += 1
        batch.clear()

    sink = open(out, "w", encoding="utf-8") if out is not None else sys.stdout
    try:
        batch: list = []
        for pair in read_pairs(pairs, format=format, seed=seed):
            counts["pairs"] += 1
            encoded, dropped = encode_pairs(tokenizer, [Preference(pair.id, pair.prompt, pair.response_a,
                                                                   pair.response_b, 0.5)], limit, whole=True)
            if dropped:
                counts["too_long"] += 1
                sink.write(json.dumps({"id": pair.id, "r_a": None, "r_b": None, "p_a": None,
                                       "error": f"longer than {limit} tokens"}) + "\n")
                continue
            batch.append((pair, encoded[0]))
            if len(batch) == batch_size:
                flush(batch, sink)
        if batch:
            flush(batch, sink)
    finally:
        if out is not None:
            sink.close()
    n = counts["human_pairs"]
    return {"pairs": counts["pairs"], "scored": counts["scored"], "too_long": counts["too_long"],
            "human_pairs": n, "human_accuracy": counts["human_correct"] / n if n else None}
