#!/usr/bin/env bash
# The GPU paths, on a machine with a CUDA GPU and rlaif importable (CI has no GPU; this is run by hand):
#   gpu-tests     tests/gpu: the judge in bf16 on the GPU against fp32 on the CPU, shared-prefix training rows against
#                 two rows per pair (fp32 and bf16), the revise chain's kept KV cache on
#                 the GPU, reward/DPO/SFT in bf16 mixed precision learning, PPO
#   cai           examples/tiny/cai end to end (revise → SFT → generate → label → DPO → win rate) on the GPU
#   bench-*       benchmarks/bench_revise.py (fp32 and bf16), bench_label.py and bench_train.py on the GPU
# The benchmarks run a model with SHAPE's architecture and random weights (a model's speed depends on its shapes,
# not its weights): SHAPE is a folder with config.json and the tokenizer files, by default the embedded judge's
# converted copy under ~/.cache/rlaif/models. Each step's log goes to LOGS (default runs/gpu-check), its tail to
# stdout.
#   SHAPE=path/to/model-folder bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${LOGS:-runs/gpu-check}
HH=${HH:-../shared/data/hh-rlhf-harmless-test.jsonl.gz}  # held-out prompts and pairs for the benchmarks
SHAPE=${SHAPE:-$(ls -d "${RLAIF_CACHE:-$HOME/.cache/rlaif}"/models/SmolLM2-135M-Instruct* 2>/dev/null | head -1)}
RANDOM_MODEL=${RANDOM_MODEL:-/tmp/rlaif-gpu-check/model}
mkdir -p "$LOGS" "$(dirname "$RANDOM_MODEL")"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 RLAIF="$PY -m rlaif.cli"
failed=0

step() {  # step NAME SECONDS COMMAND...: run COMMAND under a time limit, its log in LOGS/NAME.log
  local name=$1 limit=$2 started=$SECONDS rc
  shift 2
  echo "== $name"
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  echo "   exit $rc after $((SECONDS - started)) s"
  tail -n "${TAIL:-20}" "$LOGS/$name.log" | cut -c1-400
  [ "$rc" = 0 ] || failed=1
}

nvidia-smi -L
$PY -c "import torch, transformers, rlaif; print('torch', torch.__version__, '| transformers', transformers.__version__,
'| rlaif', rlaif.__version__, '|', torch.cuda.get_device_name(0))" || exit 2

step gpu-tests 200 $PY -m pytest -q -p no:cacheprovider -m gpu tests/gpu

if [ -n "$SHAPE" ] && [ -f "$SHAPE/config.json" ]; then
  $PY - "$SHAPE" "$RANDOM_MODEL" <<'EOF'
import shutil, sys
from pathlib import Path
import torch, transformers
shape, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(0)
transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(shape)).save_pretrained(out)
for f in shape.iterdir():
    if f.name != "config.json" and not f.name.endswith((".safetensors", ".bin")):
        shutil.copy(f, out / f.name)
EOF
  for dtype in float32 bfloat16; do
    printf 'backend: transformers\nmodel: %s\ndevice: cuda\ndtype: %s\nbatch_size: 8\nmax_length: 4096\n' \
      "$RANDOM_MODEL" "$dtype" >"$(dirname "$RANDOM_MODEL")/$dtype.yaml"
  done
  TAIL=12 step bench-revise-fp32 90 $PY benchmarks/bench_revise.py --model "$(dirname "$RANDOM_MODEL")/float32.yaml" \
    -n 16 --max-new-tokens 48 --prompts "$HH"
  TAIL=12 step bench-revise-bf16 90 $PY benchmarks/bench_revise.py --model "$(dirname "$RANDOM_MODEL")/bfloat16.yaml" \
    -n 16 --max-new-tokens 48 --arms 2,3 --prompts "$HH"
  TAIL=16 step bench-label 90 $PY benchmarks/bench_label.py --judge "$(dirname "$RANDOM_MODEL")/bfloat16.yaml" \
    --skip-memory --pairs "$HH"
  # issue 20: DPO with shared-prefix rows against two rows per pair and TRL, SmolLM2's shape, HH rows, on the GPU
  TAIL=16 step bench-train-prefix 150 $PY benchmarks/bench_train.py --shape smollm2 --data hh --methods dpo \
    --rounds 1 --steps 6 --warmup 1 --memory-steps 2 --hh "$HH"
else
  echo "== benchmarks skipped: no SHAPE folder (set SHAPE to a model folder with config.json and a tokenizer)"
  failed=1
fi

# examples/tiny/cai/run.sh calls `python`: the one given here
mkdir -p /tmp/rlaif-gpu-check/bin
printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v "$PY")" >/tmp/rlaif-gpu-check/bin/python
chmod +x /tmp/rlaif-gpu-check/bin/python
TAIL=12 PATH=/tmp/rlaif-gpu-check/bin:$PATH step cai 100 bash examples/tiny/cai/run.sh
TAIL=16 step bench-train 90 $PY benchmarks/bench_train.py --steps 10 --rounds 1 --skip-defaults
exit $failed
