#!/usr/bin/env bash
# What one short GPU lease can show of the GPU profile (../configs/*/ham10000_gpu.yaml), while
# the whole profile (benchmarks/ham10000/run.sh gpu) needs hours:
#  1. images/s of every stage at the profile's sizes (224 px, pretraining batch 256,
#     fine-tuning batch 64, bf16 autocast) against a plain PyTorch loop: bench-speed on the
#     bundled sample, which it repeats to fill the timed steps;
#  2. ImageNet and random init fine-tuned on DATA at label fraction 1.0, seed 0, with the
#     profile's fine-tuning config at its default recipe (encoder lr 3e-4; no selection, no
#     Grad-CAM), on the lesion-grouped split SPLITS.
# LIMIT (seconds, default 540) bounds the whole script: bench-speed gets at most 150 s of it,
# the benchmark what is left. A run the limit cuts off leaves no metrics.json and is not reported.
#
#   benchmarks/ham10000/studies/gpu_check.sh DATA SPLITS OUT [LIMIT]
#
# SSL (the ssl-derm command), SPEED_ARGS (bench-speed's sizes) and EXTRA (more benchmark flags)
# can be overridden; a CPU dry run on the bundled sample:
#   SPEED_ARGS="--quick --image-size 32 --steps 1 --no-archive-probe" EXTRA="--max-steps 2 --set min_steps=0" \
#     benchmarks/ham10000/studies/gpu_check.sh ssl_derm/sample_data/ham10000_sample "" runs/gpu-check-dry 600
set -uo pipefail
DATA=$1 SPLITS=$2 OUT=$3 LIMIT=${4:-540}
T0=$(date +%s)
SSL=${SSL:-ssl-derm}
HERE=$(cd "$(dirname "$0")/.." && pwd)  # benchmarks/ham10000: its configs and tools
SPEED_ARGS=${SPEED_ARGS:---image-size 224 --batch-size 256 --finetune-batch-size 64 --precision bf16-mixed --steps 30 --no-archive-probe}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"; } > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >> "$OUT/gpu.txt" 2>&1

start=$(date +%s)
# shellcheck disable=SC2086
timeout 150 $SSL bench-speed $SPEED_ARGS --out "$OUT/speed" --overwrite 2>&1 | tee "$OUT/speed.log"
echo "bench-speed rc=${PIPESTATUS[0]} wall_s=$(( $(date +%s) - start ))" | tee -a "$OUT/speed.log"

start=$(date +%s)
left=$(( T0 + LIMIT - start ))
if [ "$left" -lt 30 ]; then echo "benchmark: skipped, ${left} s of LIMIT left" | tee "$OUT/benchmark.log"; exit 0; fi
split=(); [ -n "$SPLITS" ] && split=(--splits "$SPLITS")
# shellcheck disable=SC2086
timeout "$left" $SSL benchmark --config "$HERE/configs/benchmark/ham10000_gpu.yaml" --data "$DATA" "${split[@]}" \
  --inits imagenet,random --seeds 1 --label-fractions 1.0 --select-on none --set cam_in_lesion=false \
  --out "$OUT/benchmark" --overwrite --no-progress ${EXTRA:-} 2>&1 | tee "$OUT/benchmark.log"
echo "benchmark rc=${PIPESTATUS[0]} wall_s=$(( $(date +%s) - start ))" | tee -a "$OUT/benchmark.log"
