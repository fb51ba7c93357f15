#!/usr/bin/env bash
# Re-measures what the correctness fixes touched (benchmarks/ham10000/archive/ham10000_cpu_2026-11-23/README.md,
# "Corrected figures"), resumable like the benchmark script:
#   1. the rotation shortcut probe, old inputs vs current ones;
#   2. rotation pretraining from scratch and from ImageNet (same budget as the benchmark);
#   3. LP-FT for ImageNet with BatchNorm that trains after the frozen epoch, and with --freeze-bn;
#   4. classification on squashed vs centre-cropped images (ImageNet, plain recipe, all labels).
#
#   benchmarks/ham10000/studies/remeasure_corrections.sh [OUT]      (default runs/corrections)
#   env: SEEDS (2), EPOCHS (5: rotation pretraining epochs), DATA, UNLABELED, SSL, PY
set -euo pipefail
OUT=${1:-runs/corrections}
DATA=${DATA:-../shared/data/ham10000}
UNLABELED=${UNLABELED:-../shared/data/isic_unlabeled.zip}
SSL=${SSL:-ssl-derm}
PY=${PY:-python}
mkdir -p "$OUT/pretrain"
HERE=$(cd "$(dirname "$0")/.." && pwd)  # benchmarks/ham10000: its configs and tools

[ -f "$OUT/shortcut_probe.json" ] || $PY "$HERE/tools/shortcut_probe.py" --data "$DATA" --n 2000 --size 96 --out "$OUT/shortcut_probe.json"

source "$(dirname "$0")/pretrain_step.sh"
# Seeds: SEEDS=1 first (what one CPU session affords), then SEEDS=2 adds the second seed and
# skips the finished runs. EPOCHS: rotation pretraining epochs (5, the benchmark profile's budget).
SEEDS=${SEEDS:-2}
EPOCHS=${EPOCHS:-5}
B="$SSL benchmark --config $HERE/configs/benchmark/ham10000_cpu.yaml --data $DATA --no-progress --seeds $SEEDS"
pretrain rotation rotation random "$EPOCHS" 0.001
$B --inits imagenet --freeze-epochs 1 --out "$OUT/lpft-bn-trains"
$B --inits imagenet --freeze-epochs 1 --freeze-bn --out "$OUT/lpft-freeze-bn"
pretrain imagenet+rotation rotation imagenet "$EPOCHS" 0.0003
$B --inits imagenet --label-fractions 1.0 --out "$OUT/resize-crop"
$B --inits imagenet --label-fractions 1.0 --set resize=squash --out "$OUT/resize-squash"
