#!/usr/bin/env bash
# Screening of every pretext task at one budget: each continues from ImageNet weights on
# the HAM10000 benchmark pool (training split + the unlabelled archive, its copies of
# validation/test images dropped) for the same number of steps and batch size, then the
# frozen encoders are scored on the *validation* split with the kNN monitor and a linear
# probe (tools/knn_probe.py), next to ImageNet itself.  Resumable: run it again after an
# interruption; finished runs are skipped, a half-done one resumes.
#
#   benchmarks/ham10000/studies/screen_pretext.sh [OUT]        (default runs/screen)
#
# Environment: STEPS (150), LR (0.0003), TASKS (every registered task), DATA, UNLABELED, SSL.
set -euo pipefail
OUT=${1:-runs/screen}
STEPS=${STEPS:-150}
LR=${LR:-0.0003}
DATA=${DATA:-../shared/data/ham10000}
UNLABELED=${UNLABELED:-../shared/data/isic_unlabeled.zip}
SSL=${SSL:-ssl-derm}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)  # benchmarks/ham10000: its configs and tools
TASKS=${TASKS:-$($PY -c 'from ssl_derm.pretext import task_names; print(" ".join(task_names()))')}
mkdir -p "$OUT"

inits=(imagenet)
for task in $TASKS; do
  dir="$OUT/$task"
  inits+=("$dir/ssl.ckpt")
  settings="steps=$STEPS lr=$LR data=$DATA unlabeled=$UNLABELED"
  if [ -f "$dir/DONE" ] && [ "$(cat "$dir/DONE")" = "$settings" ]; then echo "screen $task: done"; continue; fi
  again=--overwrite
  [ -f "$dir/checkpoints/last.ckpt" ] && [ ! -f "$dir/DONE" ] && again=--resume  # (a DONE of other settings: redo)
  start=$(date +%s)
  $SSL pretrain --config "$HERE/configs/pretrain/ham10000_cpu.yaml" --task "$task" --init imagenet --max-steps "$STEPS" \
    --lr "$LR" --data "$DATA" --unlabeled "$UNLABELED" --out "$dir" $again --no-progress
  echo $(( $(date +%s) - start )) > "$dir/wall_s"
  echo "$settings" > "$dir/DONE"
done

first=$(echo $TASKS | cut -d' ' -f1)
$PY "$HERE/tools/knn_probe.py" --data "$DATA" --splits "$OUT/$first/splits.csv" --inits "${inits[@]}" --out "$OUT/probe.json"
