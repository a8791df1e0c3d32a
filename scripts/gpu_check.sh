#!/usr/bin/env bash
# GPU check, one command on a CUDA machine: the GPU-marked tests (pytest -m gpu), every --gpu
# benchmark of the project (LLaDA-8B step, mdlm-owt DiT step, sampling throughput) and a handful of
# Countdown problems of the Table-3 protocol (benchmarks/reproduce_llada.py: the baseline, ReMDM-LLaDA
# and the Rescore strategy on the same problems and seeds), each under its own timeout, all within 8 minutes; then a markdown
# report with each command's status, time and output: $OUT/gpu_report.md when $OUT is set, else
# runs/gpu_report.md.
#
# The Countdown run uses LLaDA-8B-Instruct when $LLADA_MODEL names its folder (or a hub id already in
# the local cache: the check runs offline); otherwise the tiny random LLaDA checkpoint on CUDA, which
# checks the pipeline, not the scores. With several GPUs it runs under torchrun, one rank per GPU.
#
#     bash scripts/gpu_check.sh            # exit 0 when everything passed, 1 otherwise
#
# Without a CUDA device it says so and exits 2 at once. Python: $PYTHON, else .venv/bin/python,
# else python3 (it needs torch with CUDA and the project's dependencies).
set -uo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ -n "${OUT:-}" ]; then REPORT="$OUT/gpu_report.md"; else REPORT="runs/gpu_report.md"; fi

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  echo "gpu_check: no CUDA device here ($PY: torch.cuda.is_available() is False, or torch is missing)." >&2
  echo "gpu_check: run it on a machine with an NVIDIA GPU; nothing was checked and no report was written." >&2
  exit 2
fi

BUDGET=480                      # seconds for all commands together (8 minutes)
START=$SECONDS
LOGS=$(mktemp -d)
SUMMARY="$LOGS/summary.md"
DETAILS="$LOGS/details.md"
: > "$SUMMARY"; : > "$DETAILS"
FAILED=0
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# run NAME CAP_SECONDS COMMAND...: at most CAP seconds, and never past the overall budget
run() {
  local name=$1 cap=$2; shift 2
  local left=$((BUDGET - (SECONDS - START)))
  local limit=$(( cap < left ? cap : left ))
  local log="$LOGS/$name.log" status rc t0 took
  if [ "$limit" -lt 15 ]; then
    echo "| $name | not run (8-minute budget spent) | 0 s |" >> "$SUMMARY"
    FAILED=1
    return
  fi
  echo "[gpu_check] $name (limit ${limit} s): $*"
  t0=$SECONDS
  timeout -k 10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  took=$((SECONDS - t0))
  case $rc in
    0) status="passed" ;;
    124|137) status="**timed out** after ${limit} s"; FAILED=1 ;;
    *) status="**failed** (exit $rc)"; FAILED=1 ;;
  esac
  echo "[gpu_check] $name: $status in ${took} s"
  echo "| $name | $status | ${took} s |" >> "$SUMMARY"
  {
    echo "## $name"
    echo
    echo "\`$*\` -- $status in ${took} s (limit ${limit} s)"
    echo
    echo '```text'
    tail -n 80 "$log"
    echo '```'
    echo
  } >> "$DETAILS"
}

# dit_step.py takes --gpu when it has one; otherwise its CUDA run is --device cuda
DIT_ARGS=(--gpu)
NOTE=""
if ! "$PY" benchmarks/dit_step.py --help 2>/dev/null | grep -q -- '--gpu'; then
  DIT_ARGS=(--device cuda)
  NOTE="benchmarks/dit_step.py has no --gpu flag; its CUDA run is \`--device cuda\` (CUDA is its default when present)."
fi

# only the test files that hold GPU-marked tests: collecting the others needs the notebook and
# import-checking dependencies (plotly, traitlets, grimp), which a bare CUDA image may lack
mapfile -t GPU_TESTS < <(grep -l -E 'pytest\.mark\.gpu|mark\.gpu' tests/test_*.py)
if [ "${#GPU_TESTS[@]}" -eq 0 ]; then
  echo "| pytest -m gpu | **failed**: no test file under tests/ has a GPU-marked test | 0 s |" >> "$SUMMARY"
  FAILED=1
else
  run "pytest -m gpu" 90 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider "${GPU_TESTS[@]}"
fi
run "llada_step --gpu" 150 "$PY" benchmarks/llada_step.py --gpu
run "dit_step (cuda)" 80 "$PY" benchmarks/dit_step.py "${DIT_ARGS[@]}"

# reproduce_llada: 8 Countdown problems x 2 answers, one seed: the baseline, ReMDM-LLaDA and Rescore
if [ -n "${LLADA_MODEL:-}" ]; then LLADA_ARGS=(--model "$LLADA_MODEL"); else LLADA_ARGS=(--quick); fi
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 1)
if [ "${NGPU:-1}" -gt 1 ]; then
  LAUNCH=("$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU")
else
  LAUNCH=("$PY")
fi
run "reproduce_llada countdown" 120 "${LAUNCH[@]}" benchmarks/reproduce_llada.py "${LLADA_ARGS[@]}" \
  --device cuda --samplers llada,remdm-llada,rescore --no-truthfulqa --limit 8 --repeats 2 --seeds 0
run "throughput --gpu" 240 "$PY" benchmarks/throughput.py --gpu --repeats 1

GPU=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null)
VERSIONS=$("$PY" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")' 2>/dev/null)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown")
mkdir -p "$(dirname "$REPORT")"
TMP="$REPORT.tmp.$$"
{
  echo "# GPU check"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT (plus uncommitted changes, if any), $GPU, $VERSIONS;"
  echo "$((SECONDS - START)) s of the ${BUDGET} s budget."
  echo
  [ -n "$NOTE" ] && { echo "Note: $NOTE"; echo; }
  echo "| command | status | time |"
  echo "|---|---|---|"
  cat "$SUMMARY"
  echo
  cat "$DETAILS"
} > "$TMP" && mv -f "$TMP" "$REPORT"
rm -rf "$LOGS"
echo "[gpu_check] report: $REPORT"
exit $FAILED
