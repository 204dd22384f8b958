#!/usr/bin/env bash
# Constitutional AI, both stages, for a real instruction model on one GPU (Bai et al. 2022):
#   supervised stage: the model answers red-team prompts, critiques and revises its answers under
#                     constitutions/harmless.yaml (2 rounds), and is fine-tuned on its final revisions;
#   RL stage:         the SFT model samples pairs, a capable judge labels them, DPO, win rate against the start.
# PROMPTS: any prompt file rlaif reads, e.g. Anthropic's hh-rlhf red-team or harmless-base data (its transcripts
# give the conversation to answer), downloaded beforehand. Not run in CI (no GPU there).
#   PROMPTS=path/to/harmless-base-train.jsonl.gz HELDOUT=path/to/heldout.jsonl bash examples/gpu/cai/run.sh
set -euo pipefail
HERE=examples/gpu/cai
OUT=runs/gpu-cai
: "${PROMPTS:?set PROMPTS to a prompt file}" "${HELDOUT:?set HELDOUT to held-out prompts}"

rlaif revise --prompts "$PROMPTS" --constitution constitutions/harmless.yaml --model "$HERE/reviser.yaml" \
             --config "$HERE/sampling.yaml" --out "$OUT/revisions" --rounds 2 --limit 20000
rlaif export --revisions "$OUT/revisions" --format sft --out "$OUT/sft.jsonl"
rlaif train sft --config "$HERE/sft.yaml"
rlaif generate --policy "$OUT/sft/model" --prompts "$PROMPTS" --n 2 --config "$HERE/sampling.yaml" \
               --out "$OUT/pairs.jsonl"
rlaif label --pairs "$OUT/pairs.jsonl" --constitution constitutions/harmless.yaml --judge judges/vllm.yaml \
            --out "$OUT/labels"
rlaif train dpo --config "$HERE/dpo.yaml"
rlaif eval winrate --policy "$OUT/dpo/model" --baseline Qwen/Qwen2.5-0.5B-Instruct --prompts "$HELDOUT" \
                   --judge judges/vllm.yaml --constitution constitutions/harmless.yaml --config "$HERE/sampling.yaml" \
                   --out "$OUT/winrate.json"
