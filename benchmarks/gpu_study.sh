#!/usr/bin/env bash
# One accelerator session (~10 minutes) for the study as one program (docs/design.md, "Methods as
# data"): the profile of one step (benchmarks/step_profile.py: kernels per step and their times, for
# today's sweep program and the one program, at 1 and 128 members), the per-step cost at 1 and 128
# members (benchmarks/step_overhead.py), the study × 8 seeds both ways at a short budget in the
# same call (benchmarks/study_program.py --epochs 20: one program against today's programs), then
# the full protocol × 8 seeds by the one-program path (the staged schedule and the optimizer
# exercise as their own programs). Each step has its own time limit, so one that overruns leaves
# the others their time; everything lands in $OUT/gpu_study.tar.gz.
#
#   OUT=/tmp/out VGJAX_DATA_DIR=... bash benchmarks/gpu_study.sh
#
# Sizes (environment): SEEDS (8), SHORT_EPOCHS (20), FULL_EPOCHS (300), PROFILE_MEMBERS (1,128),
# PROFILE_STEPS (20), METHODS (default: the whole study with the optimizer exercise), STEP_POINTS (1x1,128x1), STEP_EPOCHS (2), TRAIN_LIMIT (a small number tries
# the script on a CPU; unset: all 60,000 images), and the limits PROFILE_S, STEP_S, SHORT_S, FULL_S
# in seconds (60, 60, 150, 330: 10 minutes with the start).
set -u
OUT=${OUT:?set OUT}
W=$OUT/gpu_study
mkdir -p "$W"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PY:-python3}
LIMIT=()
[ -n "${TRAIN_LIMIT:-}" ] && LIMIT=(--train-limit "$TRAIN_LIMIT")
SEEDS=${SEEDS:-8}
STUDY=(--include-optimizers)
[ -n "${METHODS:-}" ] && STUDY=(--methods "$METHODS")
log() { echo "== $(date +%T) $*" | tee -a "$W/session.log"; }
step() {  # step NAME LIMIT_S COMMAND...: output to $W/NAME.txt, its exit status at the end
  local name=$1 limit=$2; shift 2
  log "$name (limit ${limit}s)"
  timeout "$limit" "$@" >"$W/$name.txt" 2>&1
  echo "exit $?" >>"$W/$name.txt"
}

log "device"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true) >>"$W/session.log"
$PY -c "import jax, flax, optax; print(jax.devices(), jax.__version__, flax.__version__, optax.__version__)" \
    >>"$W/session.log" 2>&1

step step_profile "${PROFILE_S:-60}" $PY benchmarks/step_profile.py --members "${PROFILE_MEMBERS:-1,128}" --multi \
    --steps "${PROFILE_STEPS:-20}" --out "$W/traces" --json "$W/step_profile.json"
step step_overhead "${STEP_S:-60}" $PY benchmarks/step_overhead.py --points "${STEP_POINTS:-1x1,128x1}" \
    --epochs "${STEP_EPOCHS:-2}" --train-limit "${TRAIN_LIMIT:-60000}" --json "$W/step_overhead.json"
step study_short "${SHORT_S:-150}" $PY benchmarks/study_program.py --seeds "$SEEDS" --epochs "${SHORT_EPOCHS:-20}" \
    "${STUDY[@]}" "${LIMIT[@]}" --json "$W/study_short.json"
step study_full "${FULL_S:-330}" $PY benchmarks/study_program.py --seeds "$SEEDS" --epochs "${FULL_EPOCHS:-300}" \
    "${STUDY[@]}" --paths one "${LIMIT[@]}" --json "$W/study_full.json"

log "done"
find "$W/traces" -name '*.xplane.pb' -delete 2>/dev/null  # kept: the Perfetto traces and step_profile.json
tar -czf "$OUT/gpu_study.tar.gz" -C "$OUT" gpu_study && rm -rf "$W"
