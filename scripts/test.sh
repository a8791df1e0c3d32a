#!/usr/bin/env bash
# Set up (idempotently) and run the whole suite: unit and statistical tests, the notebooks (nbmake)
# and the real-browser test (Debian's chromium, installed here when apt is available); pytest lists
# the 15 slowest tests at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing Debian's chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "[test] could not install chromium: the browser test will be skipped"
  else
    echo "[test] /usr/bin/chromium is missing and apt is not usable: the browser test will be skipped"
  fi
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# GPU-marked tests need a CUDA device: without one they are deselected here (not skipped), and
# scripts/gpu_check.sh runs them on a GPU machine.
GPU_FILTER=()
if ! .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "[test] no CUDA device: deselecting the GPU-marked tests (run scripts/gpu_check.sh on a GPU machine)"
  GPU_FILTER=(-m "not gpu")
fi
exec .venv/bin/python -m pytest tests notebooks --nbmake --nbmake-timeout=900 -p no:cacheprovider --durations=15 \
  "${GPU_FILTER[@]}" "$@"
