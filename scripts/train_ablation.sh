#!/usr/bin/env bash
# The paper's unit ablation on SynthOcc (README_training.md): FP (flashocc_edge) vs BiSR-Conv vs BDC-V1/V2/V3,
# equal budget (same data, seed, steps, schedule), each evaluated on the held-out set (seed 123, all 32 frames).
# Usage: scripts/train_ablation.sh [unit ...]   (default: all five)   env: STEPS, DATA, HELDOUT, OUT
set -euo pipefail
cd "$(dirname "$0")/.."
BDC=.venv/bin/bdc-occ
STEPS=${STEPS:-500}
DATA=${DATA:-data/synth_train}
HELDOUT=${HELDOUT:-data/synth_heldout}
OUT=${OUT:-runs/ablation}
GUARD_MIN=${GUARD_MIN:-120}  # safety stop per run; the budget is STEPS (equal for every unit)
export OMP_NUM_THREADS=1   # 1 thread: on a shared 2-core machine 2 threads were 4-10x slower per step
declare -A CONFIGS=(
  [fp]=config/models/flashocc_edge.yaml
  [bisr]=config/models/ablation/bisr_edge.yaml
  [bdc_v1]=config/models/ablation/bdc_v1_edge.yaml
  [bdc_v2]=config/models/ablation/bdc_v2_edge.yaml
  [bdc_v3]=config/models/bdc_occ_edge.yaml
)
UNITS=("$@")
[ ${#UNITS[@]} -gt 0 ] || UNITS=(bdc_v3 fp bisr bdc_v1 bdc_v2)
for unit in "${UNITS[@]}"; do
  cfg=${CONFIGS[$unit]}
  run="$OUT/$unit"
  [ -f "$run/final.safetensors" ] || $BDC train --config "$cfg" --data "$DATA" --split all --out "$run" \
      --epochs 100 --max-steps "$STEPS" --batch-size 1 --lr 2e-3 --warmup-steps 20 --lr-schedule cosine \
      --class-weighting log --time-budget-min "$GUARD_MIN" --ema-decay 0.99 --ema-ramp 100 --workers 0 --threads 1 --seed 0
  $BDC eval --config "$cfg" --checkpoint "$run/final.safetensors" --data "$HELDOUT" --split all \
      --json "$run/heldout_all.json" --pictures 2
  $BDC complexity --config "$cfg" --json > "$run/complexity.json"
done
