#!/usr/bin/env bash
# Test-time augmentation's effect on test balanced accuracy (issue: predict/explain/...):
# ImageNet init (the plain-recipe models of studies/recipes_ham10000_cpu.sh) and the best
# self-supervised init of the screening (multitask from ImageNet, runs/screen/multitask/ssl.ckpt
# from studies/screen_pretext.sh), fine-tuned with the same plain recipe, 2 seeds, label
# fractions 0.1 and 1.0 (FRACTIONS). Resumable: finished fine-tunings are skipped.
#
#   benchmarks/ham10000/studies/tta_gain.sh [RECIPES] [SSL_INIT] [OUT]
set -euo pipefail
RECIPES=${1:-runs/recipes}
SSL_INIT=${2:-runs/screen/multitask/ssl.ckpt}
OUT=${3:-runs/tta}
DATA=${DATA:-../shared/data/ham10000}
SSL=${SSL:-ssl-derm}
PY=${PY:-python}
FRACTIONS=${FRACTIONS:-0.1 1.0}
HERE=$(cd "$(dirname "$0")/.." && pwd)  # benchmarks/ham10000: its configs and tools
for frac in $FRACTIONS; do
  $SSL benchmark --config "$HERE/configs/benchmark/ham10000_cpu.yaml" --inits "$SSL_INIT" --seeds 2 \
    --label-fractions "$frac" --data "$DATA" --out "$OUT/fraction$frac" --no-progress --resume
done
$PY "$HERE/studies/tta_gain.py" --data "$DATA" \
  --models "$RECIPES"/plain/fraction*/runs/imagenet/*/seed*/model.ckpt "$OUT"/fraction*/runs/*/*/seed*/model.ckpt \
  --out "$HERE/tta"
