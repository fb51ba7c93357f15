#!/usr/bin/env bash
# What each fine-tuning recipe adds to ImageNet initialisation on HAM10000 (CPU profile:
# 96 px, ../configs/benchmark/ham10000_cpu.yaml), validation and test balanced accuracy, on one
# lesion-grouped split, against the plain recipe, same seeds. Resumable: finished runs are
# skipped. All fractions of every recipe first at 0.1, then at 1.0, so a cut-short run still
# compares every recipe at 0.1.
#
#   benchmarks/ham10000/studies/recipes_ham10000_cpu.sh [OUT]        (default runs/recipes)
#   then: python benchmarks/ham10000/studies/recipes_table.py OUT benchmarks/ham10000/recipes
#
# Environment: FRACTIONS ("0.1 1.0"), SEEDS (2), DATA, SSL.
set -euo pipefail
OUT=${1:-runs/recipes}
DATA=${DATA:-../shared/data/ham10000}
SSL=${SSL:-ssl-derm}
SEEDS=${SEEDS:-2}
FRACTIONS=${FRACTIONS:-0.1 1.0}
HERE=$(cd "$(dirname "$0")/.." && pwd)  # benchmarks/ham10000: its configs and tools

declare -A FLAGS=(
  [plain]=""
  [two_stage]="--two-stage"
  [mixup]="--mixup 0.2"
  [cutmix]="--cutmix 1.0"
  [ema]="--ema 0.98"
  [logit_adjust]="--logit-adjust 1.0 --class-weights none"
  [freeze_blocks]="--freeze-blocks 2"
)
ORDER="plain two_stage ema logit_adjust mixup cutmix freeze_blocks"

for frac in $FRACTIONS; do
  for recipe in $ORDER; do
    start=$(date +%s)
    # shellcheck disable=SC2086
    $SSL benchmark --config "$HERE/configs/benchmark/ham10000_cpu.yaml" --inits imagenet --seeds "$SEEDS" \
      --label-fractions "$frac" --data "$DATA" --out "$OUT/$recipe/fraction$frac" --no-progress ${FLAGS[$recipe]}
    echo "$recipe $frac $(( $(date +%s) - start ))" >> "$OUT/wall_s.txt"
  done
done
