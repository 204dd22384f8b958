"""Reward-model scoring, the one place a trained reward model (the directory `rlaif train reward` saves) turns
token ids into scores: the training loss reads `sequence_rewards`, PPO's model reward (rlaif.rewards.sources) and
`rlaif reward score` read `score_sequences`. Every sequence is prompt + response encoded by rlaif.policy.chat and
right-padded; the score head reads each sequence's last non-pad token, so a score here is the score training saw.

`rlaif reward score` (`score_pairs_file`) writes id, r_a, r_b and p_a = σ(r_a − r_b) (the Bradley-Terry preference
the model was trained to match) per pair, and the pairwise accuracy against human choices where the input has them.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO, Union

from ..config.devices import device_and_dtype
from ..data.pairs import read_pairs
from ..policy.chat import encode_pair

PathLike = Union[str, Path]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def load_reward_model(model_dir: PathLike, dtype=None, device=None):
    """(model, tokenizer) from a saved reward-model directory: a one-output sequence classifier, frozen, in eval
    mode, on `device` (default: auto, a GPU when there is one) in `dtype` (default fp32, on a GPU too: scores are
    compared to each other, so they keep full precision unless a caller asks otherwise)."""

    path = Path(model_dir)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path}: not a saved model directory (no config.json); pass the model/ folder "
            f"`rlaif train reward` writes in its output directory"
        )
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


def sequence_rewards(reward_model, input_ids, attention_mask):
    """r(x, y) of every right-padded row, in fp32 (with gradients when the caller trains)."""
    return reward_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, 0].float()


def pair_rewards(reward_model, batch: dict):
    """(r_a, r_b) of a collated batch of pairs, in fp32 (with gradients when the caller trains): rows [all a; all
    b] (rlaif.train.data.collate), or shared-prefix rows [prompt, a, b], one pair or several packed per row
    (`collate_shared`), where the score head is read at each pair's a-last token and at its b-last one. Either way
    a response's score is read where its own row's is: at the last token of prompt + response that is not the pad
    token."""
    if "branch" not in batch:
        return sequence_rewards(reward_model, batch["input_ids"], batch["attention_mask"]).chunk(2)
    from ..models import prefix  # lazy: torch

    ids, plan = batch["input_ids"], prefix.PrefixPlan(batch["segment"], batch["branch"])
    # the score head over every position, as the model computes it inside its own forward (so DDP and peft see
    # an ordinary call); the model then reads one position per row itself, which is dropped here
    inner = getattr(reward_model, "module", reward_model)  # under DDP
    head = inner.score
    scores = []
    hook = head.register_forward_hook(lambda module, inputs, output: scores.append(output))
    try:
        prefix.forward(reward_model, ids, plan)
    finally:
        hook.remove()
    per_position = scores[0][..., 0].float().flatten()
    real = ids != inner.config.get_text_config().pad_token_id
    return per_position[plan.last(prefix.A, real)], per_position[plan.last(prefix.B, real)]


def score_sequences(reward_model, sequences: Sequence[list[int]], pad_id: int, batch_size: int) -> list[float]:
    """Scores of token-id sequences, `batch_size` at a time, each batch right-padded to its longest sequence."""
    import torch

    device = next(reward_model.parameters()).device
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            width = max(len(x) for x in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, x in enumerate(chunk):
                ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
                attention[i, : len(x)] = 1
            scores.extend(sequence_rewards(reward_model, ids.to(device), attention.to(device)).cpu().tolist())
    return scores


def score_pairs_file(
    model_dir: PathLike,
    pairs: PathLike,
    out: Optional[PathLike] = None,
    batch_size: int = 16,
    max_length: Optional[int] = None,
    format: Optional[str] = None,
    seed: int = 0,
) -> dict:
    """Score every pair of `pairs` (any input rlaif.data.pairs.read_pairs reads) and write one JSON line per pair to
    `out` (stdout when None). Pairs longer than `max_length` tokens (default: the model's context) are written
    with r_a = r_b = p_a = null and an error, and counted. Returns the counts and the human-label accuracy."""

    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    model, tokenizer = load_reward_model(model_dir)
    limit = max_length or getattr(model.config, "max_position_embeddings", None) or 4096
    counts = {"pairs": 0, "scored": 0, "too_long": 0, "human_pairs": 0, "human_correct": 0}

    def flush(batch: list, sink: TextIO) -> None:
        # one forward over [every a; every b], as training batches a pair
        seqs = [prompt + a for _, (prompt, a, _) in batch] + [prompt + b for _, (prompt, _, b) in batch]
        scores = score_sequences(model, seqs, tokenizer.pad_token_id, len(seqs))
        for (pair, _), a, b in zip(batch, scores[: len(batch)], scores[len(batch) :]):
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
            encoded = encode_pair(tokenizer, pair.prompt, pair.response_a, pair.response_b, limit, whole=True)
            if encoded is None:
                counts["too_long"] += 1
                sink.write(
                    json.dumps(
                        {"id": pair.id, "r_a": None, "r_b": None, "p_a": None, "error": f"longer than {limit} tokens"}
                    )
                    + "\n"
                )
                continue
            batch.append((pair, encoded))
            if len(batch) == batch_size:
                flush(batch, sink)
        if batch:
            flush(batch, sink)
    finally:
        if out is not None:
            sink.close()
    n = counts["human_pairs"]
    return {
        "pairs": counts["pairs"],
        "scored": counts["scored"],
        "too_long": counts["too_long"],
        "human_pairs": n,
        "human_accuracy": counts["human_correct"] / n if n else None,
    }
