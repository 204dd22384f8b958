"""Write verl's RL parquet file from HH-RLHF preference data, with what `rlaif_reward.py` needs in every row.

verl's own examples/data_preprocess/full_hh_rlhf.py writes the prompt as one user message holding the whole
"Human: … Assistant:" transcript and puts no prompt in `extra_info`; verl then calls compute_score with the
response only, so the judge would not know the question. This script writes, per pair:

    prompt         the conversation as chat messages (HH transcripts split into turns)
    reward_model   {"style": "model", "ground_truth": the human-chosen response}  (the reference, mode reference)
    extra_info     {"split", "index", "id", "prompt": the same messages, "reference": the same response}

Input is anything `rlaif label` reads (rlaif.data.pairs.read_pairs): Anthropic HH rows (chosen/rejected
transcripts), prompt/chosen/rejected rows such as Dahoas/full-hh-rlhf's, TRL preference rows; JSONL (.gz), JSON,
Parquet or a `datasets` save_to_disk folder. To get HH-RLHF with hub access, for example:

    python -c "import datasets; datasets.load_dataset('Anthropic/hh-rlhf', data_dir='harmless-base', \\
        split='train').to_json('hh-train.jsonl')"
    python examples/verl/preprocess_hh.py --input hh-train.jsonl --out ~/data/hh_rlaif --split train

A row without a known human choice gets no reference (the server then needs --reference-model); unreadable rows
are skipped and counted. Needs rlaif (this repository) and pyarrow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rlaif.data.pairs import read_pairs


def verl_rows(path: str, split: str, data_source: str) -> tuple[list[dict], int]:
    """The verl rows of every readable pair in `path`, and how many rows were skipped."""
    rows, skipped = [], 0
    for pair in read_pairs(path, skip_invalid=True):
        if pair.invalid:
            skipped += 1
            continue
        messages = [{"role": "user", "content": pair.prompt}] if isinstance(pair.prompt, str) else pair.prompt
        reference = {"a": pair.response_a, "b": pair.response_b}.get(pair.human_label)
        rows.append(
            {
                "data_source": data_source,
                "prompt": messages,
                "ability": "alignment",
                "reward_model": {"style": "model", "ground_truth": reference},
                "extra_info": {
                    "split": split,
                    "index": len(rows),
                    "id": pair.id,
                    "prompt": messages,
                    "reference": reference,
                },
            }
        )
    return rows, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="preference data rlaif reads (HH-RLHF JSONL, Parquet, ...)")
    parser.add_argument("--out", required=True, help="folder to write SPLIT.parquet into")
    parser.add_argument("--split", default="train", help="name of the split and of the file (default: train)")
    parser.add_argument("--data-source", default="hh_rlhf", help="the rows' data_source (default: hh_rlhf)")
    args = parser.parse_args()
    rows, skipped = verl_rows(args.input, args.split, args.data_source)
    if not rows:
        raise SystemExit(f"error: no readable pairs in {args.input} ({skipped} rows skipped)")
    out = Path(args.out).expanduser() / f"{args.split}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    print(f"wrote {len(rows)} rows to {out}" + (f" ({skipped} unreadable rows skipped)" if skipped else ""))


if __name__ == "__main__":
    main()
