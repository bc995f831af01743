#!/usr/bin/env bash
# One accelerator session, as it was run for docs/results.md ("Measured on a GPU"): the launch-bound
# step (benchmarks/step_overhead.py), the plateau-escape study's sweep (experiments.escape train) and
# the multi-seed suite (experiments.suite --seeds). Each step has its own time limit, so one that
# overruns leaves the others their time; everything lands in $OUT/gpu.tar.gz.
#
#   OUT=/tmp/out VGJAX_DATA_DIR=... bash benchmarks/gpu_session.sh
#
# Sizes (environment): STEP_POINTS, STEP_EPOCHS, ESC_DEPTH, ESC_BATCH, ESC_STD, ESC_SEEDS,
# ESC_EPOCHS, SUITE_SEEDS, SUITE_EPOCHS, TRAIN_LIMIT (a small number tries the script on a CPU),
# and the limits STEP_S, ESC_S, SUITE_S in seconds.
set -u
OUT=${OUT:?set OUT}
W=$OUT/gpu
mkdir -p "$W"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PY:-python3}
LIMIT=()
[ -n "${TRAIN_LIMIT:-}" ] && LIMIT=(--train-limit "$TRAIN_LIMIT")
log() { echo "== $(date +%T) $*" | tee -a "$W/session.log"; }

log "device"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true) >>"$W/session.log"
$PY -c "import jax, flax, optax; print(jax.devices(), jax.__version__, flax.__version__, optax.__version__)" \
    >>"$W/session.log" 2>&1

log "step overhead"
timeout "${STEP_S:-120}" $PY benchmarks/step_overhead.py --points "${STEP_POINTS:-1x1,1x4,1x16,8x1,8x8,64x1,64x8}" \
    --epochs "${STEP_EPOCHS:-3}" --train-limit "${TRAIN_LIMIT:-60000}" "--xla-flags=--xla_gpu_enable_command_buffer=" \
    --json "$W/step_overhead.json" >"$W/step_overhead.txt" 2>&1
echo "exit $?" >>"$W/step_overhead.txt"
# the unroll of the fastest 8-member point (1 when the benchmark did not finish)
UNROLL=$($PY -c "
import json
rows = [r for r in json.load(open('$W/step_overhead.json'))['rows'] if r['members'] == 8 and 'xla_flags' not in r]
print(min(rows, key=lambda r: r['member_step_us'])['unroll'])" 2>/dev/null || echo 1)
log "unroll $UNROLL"

log "escape sweep"
timeout "${ESC_S:-240}" $PY -m experiments.escape train --out "$W/escape" --depth "${ESC_DEPTH:-3,4,5,6,7}" \
    --batch-size "${ESC_BATCH:-128,512}" --init-std "${ESC_STD:-0.05,0.1,0.2}" --seeds "${ESC_SEEDS:-16}" \
    --epochs "${ESC_EPOCHS:-300}" --unroll "$UNROLL" "${LIMIT[@]}" >"$W/escape.log" 2>&1
echo "exit $?" >>"$W/escape.log"

log "multi-seed suite"
timeout "${SUITE_S:-200}" $PY -m experiments.suite --seeds "${SUITE_SEEDS:-8}" --include-optimizers \
    --epochs "${SUITE_EPOCHS:-30}" --unroll "$UNROLL" --out "$W/suite" "${LIMIT[@]}" >"$W/suite.log" 2>&1
echo "exit $?" >>"$W/suite.log"

log "done"
tar -czf "$OUT/gpu.tar.gz" -C "$OUT" gpu && rm -rf "$W"
