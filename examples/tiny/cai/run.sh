#!/usr/bin/env bash
# Constitutional AI, both stages, on this CPU in a few minutes with tiny models (Bai et al. 2022):
#   supervised stage: revise → SFT on the final revisions;
#   RL stage:         the SFT policy samples pairs → the judge labels them → DPO → win rate against the start.
# The reviser (reviser.yaml) and the judge (judges/rule-keyword.yaml) are rules that both prefer replies saying
# "please", so every stage's effect is known and measurable. Run from the repository root:
#   bash examples/tiny/cai/run.sh
# Everything goes to runs/tiny-cai/; each step resumes if run again.
set -euo pipefail
HERE=examples/tiny/cai
OUT=runs/tiny-cai
RLAIF="${RLAIF:-rlaif}"

python "$HERE/start.py" "$OUT/start"
$RLAIF revise --prompts "$HERE/prompts.jsonl" --constitution "$HERE/constitution.yaml" --model "$HERE/reviser.yaml" \
              --config "$HERE/sampling.yaml" --out "$OUT/revisions" --rounds 2
$RLAIF export --revisions "$OUT/revisions" --format sft --out "$OUT/sft.jsonl"
$RLAIF train sft --config "$HERE/sft.yaml"
$RLAIF generate --policy "$OUT/sft/model" --prompts "$HERE/prompts.jsonl" --n 2 --config "$HERE/sampling.yaml" \
                --out "$OUT/pairs.jsonl"
$RLAIF label --pairs "$OUT/pairs.jsonl" --constitution "$HERE/constitution.yaml" --judge judges/rule-keyword.yaml \
             --out "$OUT/labels"
$RLAIF train dpo --config "$HERE/dpo.yaml"
$RLAIF eval winrate --policy "$OUT/dpo/model" --baseline "$OUT/start" --prompts "$HERE/heldout.jsonl" \
                    --judge judges/rule-keyword.yaml --constitution "$HERE/constitution.yaml" --n-samples 4 \
                    --config "$HERE/sampling.yaml" --out "$OUT/winrate.json"
