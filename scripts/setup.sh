#!/usr/bin/env bash
# Create .venv (if missing) and install hwnas with its test, Ray, Optuna-peer, FP16 and mobile-runtime
# (ExecuTorch, LiteRT) extras, in one resolve. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import hwnas, pytest, ray, optuna, onnxconverter_common, executorch, ai_edge_litert" >/dev/null 2>&1; then
  # The CPU wheel of torch 2.13.0 first, so that nothing pulls a multi-GB CUDA build.
  pip install --quiet --disable-pip-version-check "torch==2.13.0"
  pip install --quiet --disable-pip-version-check -e ".[dev,ray,peers,fp16,executorch,litert]"
fi
