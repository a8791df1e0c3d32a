#!/usr/bin/env bash
# Set up (idempotently) and open JupyterLab on the notebooks, starting with the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ROOT_FLAG=""
if [ "$(id -u)" = "0" ]; then ROOT_FLAG="--allow-root"; fi   # JupyterLab refuses root without it
exec .venv/bin/jupyter lab $ROOT_FLAG --notebook-dir=notebooks --ip="${LAB_IP:-127.0.0.1}" \
  --port="${LAB_PORT:-8888}" "${@}" 01_quickstart.ipynb
