#!/usr/bin/env bash
# Idempotent set-up: a local virtual environment in .venv with the explorer and its tools.
# - No GPU (no working nvidia-smi): the CPU build of torch, so pip never pulls a multi-GB CUDA build.
# - GPU: the default PyPI build of torch (CUDA). Override either with TORCH_SPEC / TORCH_INDEX_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    $PIP install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] GPU found: installing the CUDA build of $TORCH_SPEC from PyPI"
    $PIP install "$TORCH_SPEC"
  else
    echo "[setup] no GPU: installing the CPU build of $TORCH_SPEC"
    # a CPU wheel already on this machine (pip's find-links), else PyTorch's CPU index
    WHEELS="$(mktemp -d)"
    if $PIP download --no-deps --no-index -d "$WHEELS" "$TORCH_SPEC" >/dev/null 2>&1 \
        && ls "$WHEELS"/torch-*.whl >/dev/null 2>&1; then
      $PIP install "$WHEELS"/torch-*.whl
    else
      $PIP install "$TORCH_SPEC" --index-url https://download.pytorch.org/whl/cpu \
                                 --extra-index-url https://pypi.org/simple
    fi
    rm -rf "$WHEELS"
  fi
fi

# reinstall the package only when its declared dependencies changed
STAMP=.venv/.explorer-setup-stamp
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  $PIP install -e ".[notebook,metrics,test]"
  echo "$WANT" > "$STAMP"
fi
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ReMDM Explorer)" >/dev/null
echo "[setup] ready: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")')"
