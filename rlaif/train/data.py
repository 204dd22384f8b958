"""Preference data for training: label records → `Preference`s (the feedback source seam) → token ids → padded
batches, keeping the soft preference p_a of every pair. Batches are laid out [all a responses; all b responses],
or, with prefix sharing, one row per pair, [prompt, a, b] (rlaif.models.prefix).

Prompts and responses are encoded by rlaif.policy.chat (the tokenizer's chat template when it has one), as
sampling and reward-model scoring encode them. The order of pairs per step is a function of the step alone.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch

from ..data.labels import read_labels
from ..feedback.sources import load_feedback
from ..models.prefix import packed_rows
from ..numbers import label_problem
from ..policy.chat import encode_pair
from ..records import HUMAN_P

HUMAN_CODE = {"a": 1, "b": 0}
# how a batch lays out its pairs: two rows per pair ([all a; all b]), one shared-prefix row per pair, or each
# micro-batch's shared rows packed into one row (rlaif.train.models.share_prefix decides)
Layout = Literal["two", "shared", "packed"]


@dataclass
class Preference:
    """One pair and how strongly response a is preferred (p_a in [0, 1])."""

    id: str
    prompt: object  # str or list of chat messages
    response_a: str
    response_b: str
    p_a: float
    human_label: Optional[str] = None  # "a" / "b" when a human choice is known


@dataclass
class FeedbackData:
    train: list[Preference]
    eval: list[Preference]
    counts: dict = field(default_factory=dict)  # pairs left out, by reason


def _usable(record: dict, soft: bool, min_margin: Optional[float]) -> tuple[Optional[Preference], str]:
    # the readers checked every record they read; this is the last gate before a number becomes a training target
    # (records a source builds in memory, as the mixed source's combined human labels, pass it too)
    if (problem := label_problem(record)) is not None:
        raise ValueError(f"feedback pair {record.get('id')!r}: {problem}")
    if record["status"] != "ok":
        return None, "failed"
    p = record["p_a"] if record.get("p_a") is not None else HUMAN_P[record["label"]]  # a person's hard choice
    too_close = abs(p - 0.5) <= min_margin if min_margin is not None else record.get("label") == "tie"
    if too_close:
        return None, "tie"
    if not soft:
        p = 1.0 if p > 0.5 else 0.0
    human = record.get("human_label")
    if record.get("source") == "human" and record.get("label") in HUMAN_CODE:
        human = record["label"]
    return Preference(
        record["id"],
        record["prompt"],
        record["response_a"],
        record["response_b"],
        float(p),
        human if human in HUMAN_CODE else None,
    ), "ok"


def _pairs(records, pairs_config, counts: dict) -> list[Preference]:
    out, seen = [], set()
    for record in records:
        # one training pair per pair id (per annotator for human labels kept one per annotator): a pair read
        # twice, e.g. from two label files, would be trained on twice, perhaps with opposite labels
        identity = (record.get("id"), record.get("annotator") if record.get("source") == "human" else None)
        if identity in seen:
            raise ValueError(f"feedback: pair {record.get('id')!r} comes twice; train on one record per pair")
        seen.add(identity)
        pref, why = _usable(record, pairs_config.soft, pairs_config.min_margin)
        if pref is None:
            counts[why] = counts.get(why, 0) + 1
        else:
            out.append(pref)
    return out


def read_feedback(feedback, pairs_config, seed: int = 0, write_queue: bool = True, also=None) -> FeedbackData:
    """Training and held-out preferences: label records from the feedback source (`rlaif.feedback`: AI, human
    or mixed), and from a second source `also` = (name, source) if given (the loop's late human answers, counted
    under `name`), failed pairs and ties left out, split by `pairs_config`. A pair both sources give is refused,
    never trained on twice."""

    stats: dict = {}
    counts: dict = {}
    records = load_feedback(feedback, stats, write_queue)
    if also is not None:
        records = itertools.chain(records, load_feedback(also[1], stats.setdefault(also[0], {})))
    train = _pairs(records, pairs_config, counts)
    if pairs_config.eval_paths:
        held_out = _pairs((r for path in pairs_config.eval_paths for r in read_labels(path)), pairs_config, {})
    else:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        chosen = set(order[: int(round(len(train) * pairs_config.eval_fraction))])
        held_out = [p for i, p in enumerate(train) if i in chosen]
        train = [p for i, p in enumerate(train) if i not in chosen]
    if not train:
        raise ValueError(f"no usable {feedback.source} preferences (read {stats}, left out {counts})")
    return FeedbackData(train, held_out, {**stats, "left_out": counts})


# -- token ids and batches ---------------------------------------------------------------------------------------
@dataclass
class EncodedPair:
    prompt_ids: list[int]
    a_ids: list[int]
    b_ids: list[int]
    p_a: float
    human: int  # 1: a, 0: b, -1: unknown


def encode_pairs(tokenizer, prefs: list[Preference], max_length: int, whole: bool) -> tuple[list[EncodedPair], int]:
    """Encode pairs (rlaif.policy.chat.encode_pair); returns them and how many were left out for length. `whole`:
    a pair must fit entirely (reward models read the last token); otherwise only the prompt must fit and
    responses are cut."""
    out, dropped = [], 0
    for p in prefs:
        encoded = encode_pair(tokenizer, p.prompt, p.response_a, p.response_b, max_length, whole)
        if encoded is None:
            dropped += 1
            continue
        out.append(EncodedPair(*encoded, p.p_a, HUMAN_CODE.get(p.human_label, -1)))
    return out, dropped


def pad_rows(rows: list[tuple[list[int], list[int]]], pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """(prompt ids, response ids) rows as a right-padded batch: input_ids, attention_mask, and `completion_mask`
    marking response tokens. Sequences longer than max_length keep their start."""
    seqs = [(prompt + response)[:max_length] for prompt, response in rows]
    masks = [([0] * len(prompt) + [1] * len(response))[:max_length] for prompt, response in rows]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    completion = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        input_ids[i, : len(s)] = torch.tensor(s)
        attention[i, : len(s)] = 1
        completion[i, : len(m)] = torch.tensor(m)
    return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


def collate(pairs: list[EncodedPair], pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded [2B, L] batch: rows 0..B-1 are prompt+a, rows B..2B-1 prompt+b (see pad_rows), with each
    pair's p_a and known human choice."""
    rows = [(p.prompt_ids, p.a_ids) for p in pairs] + [(p.prompt_ids, p.b_ids) for p in pairs]
    return {**pad_rows(rows, pad_id, max_length), **_labels(pairs)}


def _labels(pairs: list[EncodedPair]) -> dict[str, torch.Tensor]:
    return {
        "p_a": torch.tensor([p.p_a for p in pairs], dtype=torch.float32),
        "human": torch.tensor([p.human for p in pairs], dtype=torch.long),
    }


def collate_shared(pairs: list[EncodedPair], pad_id: int, max_length: int, packed: bool = False) -> dict:
    """Right-padded batch of shared-prefix rows, [prompt, a, b]: the prompt once, then each response cut where
    `pad_rows` cuts it in its own row (at max_length − len(prompt)). One row per pair, [B, L]; `packed`: the
    pairs one after another in one row, [1, total], with no padding. `segment` and `branch` are the rows' plan
    (rlaif.models.prefix.PrefixPlan); `attention_mask` marks the real tokens."""
    parts = []
    for p in pairs:
        prompt = p.prompt_ids[:max_length]
        room = max_length - len(prompt)
        parts.append((prompt, p.a_ids[:room], p.b_ids[:room]))
    rows = [parts] if packed else [[pair] for pair in parts]
    width = max(sum(len(x) for pair in row for x in pair) for row in rows)
    plan = packed_rows([[tuple(map(len, pair)) for pair in row] for row in rows], width)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids = [t for pair in row for x in pair for t in x]
        input_ids[i, : len(ids)] = torch.tensor(ids)
    return {
        "input_ids": input_ids,
        "attention_mask": (plan.segment >= 0).long(),
        "segment": plan.segment,
        "branch": plan.branch,
        **_labels(pairs),
    }


def pair_batch(
    pairs: list[EncodedPair], idx: list[int], pad_id: int, max_length: int, device, layout: Layout = "two"
) -> dict[str, torch.Tensor]:
    """The pairs `idx` laid out as `layout` says (`collate`, or `collate_shared`, packed or not), on `device`."""
    chosen = [pairs[i] for i in idx]
    if layout == "two":
        batch = collate(chosen, pad_id, max_length)
    else:
        batch = collate_shared(chosen, pad_id, max_length, packed=layout == "packed")
    return {k: v.to(device) for k, v in batch.items()}


# -- order -------------------------------------------------------------------------------------------------------
def step_indices(step: int, n: int, global_batch: int, seed: int, what: str = "pairs") -> list[int]:
    """The items (`what`: pairs, examples) of optimizer step `step` (0-based): epochs are seeded permutations cut
    into whole global batches, so any step's batch is known without replaying the ones before it (exact resume)."""
    per_epoch = n // global_batch
    if per_epoch == 0:
        raise ValueError(
            f"{n} training {what} are fewer than one global batch of {global_batch} (batch_size x "
            f"grad_accum x processes)"
        )
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return order[k * global_batch : (k + 1) * global_batch]


def micro_batches(indices: list[int], rank: int, world: int, grad_accum: int) -> list[list[int]]:
    """This process's micro-batches of one global batch: `grad_accum` equal slices, strided over processes."""
    mine = indices[rank::world]
    size = len(mine) // grad_accum
    return [mine[j * size : (j + 1) * size] for j in range(grad_accum)]
