#!/usr/bin/env bash
# The training check before `augmentation: fused` may become the default: the same runs as
# today's (kornia) ones, with `--augmentation fused`, scored on the validation split only.
#   - fine-tuning: v2's ImageNet run at label fraction 1.0, seed 0, its chosen recipe
#     (benchmarks/ham10000/state/benchmark/runs/imagenet/fraction1/seed0/config.yaml), test not scored;
#   - pretraining: each task's 300-step run of the v2 screen from ImageNet (its committed config),
#     probed like the screen (knn_probe.py) and paired against the screen's cached predictions.
#
#   benchmarks/performance/fused_training_check.sh OUT     (TASKS="moco rotation ..." to pick)
#
# AUG=kornia pretrains with today's recipe instead and skips the fine-tuning run (runs imagenet+TASK_kornia, writes
# OUT/probe_TASK_kornia.json): the same config again, so its distance to the screen's run is the
# run-to-run spread of a probe (another machine, thread or library build gives another trajectory).
#
# One torch thread; resumable per task (a finished ssl.ckpt is probed, not redone). Writes
# OUT/finetune/metrics.json and OUT/probe_TASK.json; nothing here reads the test split.
set -euo pipefail
OUT=${1:?OUT}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SSL=${SSL:-ssl-derm} PY=${PY:-python}
DATA=${DATA:-../shared/data/ham10000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
B=$ROOT/benchmarks/ham10000
mkdir -p "$OUT/cache"
SPLIT="$OUT/splits.csv"
[ -f "$SPLIT" ] || $PY "$B/tools/protocol_state.py" expand "$B/state/split/splits.csv.gz" "$SPLIT"
cp "$B"/state/screening/probe_cache/*.json "$OUT/cache/"  # the screen's (kornia) predictions, never rewritten here
AUG=${AUG:-fused}
suffix=$([ "$AUG" = fused ] || echo "_$AUG")
if [ "$AUG" = fused ] && [ ! -f "$OUT/finetune/metrics.json" ]; then
  sed -e 's#^score_test: true#score_test: false#' "$B/state/benchmark/runs/imagenet/fraction1/seed0/config.yaml" > "$OUT/finetune.yaml"
  $SSL finetune --config "$OUT/finetune.yaml" --data "$DATA" --splits "$SPLIT" --out "$OUT/finetune" \
    --augmentation fused --overwrite --no-progress
fi
for task in ${TASKS:-moco rotation context_restore byol simclr multitask}; do
  run="$OUT/pretrain/imagenet+${task}_$AUG"
  [ -f "$run/ssl.ckpt" ] || $SSL pretrain --config "$B/state/pretrain/imagenet+$task/config.yaml" --data "$DATA" \
    --splits "$SPLIT" --out "$run" --augmentation "$AUG" --overwrite --no-progress
  # the screen's checkpoint is not on disk: its cached predictions stand in for it (named by its folder)
  $PY "$B/tools/knn_probe.py" --data "$DATA" --splits "$SPLIT" --cache "$OUT/cache" \
    --inits "runs/ham10000_cpu/pretrain/imagenet+$task/ssl.ckpt" "$run/ssl.ckpt" --out "$OUT/probe_$task$suffix.json"
done
