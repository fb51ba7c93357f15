#!/usr/bin/env bash
# Lesion segmentation benchmark on HAM10000, CPU profile, end to end and resumable: run it
# again after an interruption and it continues where it stopped (finished pretraining runs
# and finished fine-tuning runs are skipped; a half-done pretraining run resumes).
#
#   benchmarks/ham10000/studies/segmentation_ham10000_cpu.sh [OUT] [CR_SCRATCH] [CR_IMAGENET]
#
# OUT          run folder (default runs/segmentation_ham10000_cpu)
# CR_SCRATCH   a context-restoration ssl.ckpt pretrained from random weights; when not given
#              (argument or env var), pretrained into OUT/pretrain/context_restore
# CR_IMAGENET  one continued from ImageNet weights; default OUT/pretrain/imagenet+context_restore
#
# Inits compared: random, imagenet, and each context-restoration checkpoint twice: encoder only
# (PATH:encoder, named context_restore / imagenet+context_restore) and encoder + restored U-Net
# decoder (PATH:decoder, named ...+decoder). Label fractions 0.1 and 1.0, 2 seeds, 64 px, the
# fine-tuning settings of ../configs/benchmark/ham10000_cpu.yaml (class weights and focal loss do
# not apply to segmentation). Pretraining and fine-tuning share one lesion-grouped split
# (OUT/split/splits.csv), so no validation or test image is pretrained on; checkpoints given
# from elsewhere must have been pretrained on that split (seed 0, 0.7/0.15/0.15: the default),
# or the benchmark refuses them before its first run.
#
# Across machines: the small files a later session needs (split, pretraining settings, every
# fine-tuning run's metrics.json and config) are saved to STATE (default
# benchmarks/ham10000/segmentation_state; commit it) every 10 minutes and at the end,
# and restored from it first; a pretraining checkpoint that is not on this machine is
# pretrained again (deterministic on a CPU), and a run whose init weights differ is redone.
#
# Environment: DATA, UNLABELED, STATE, SSL (the ssl-derm command), PY (its python); for a quick
# proof on small data:
#   IMAGE_SIZE (64), SEEDS (2), FRACTIONS (0.1,1.0), PRETRAIN_EPOCHS_SCRATCH (2),
#   PRETRAIN_EPOCHS_IMAGENET (2), PRETRAIN_MAX_STEPS (-1: epochs decide), MAX_STEPS (-1),
#   EXTRA (more benchmark flags, e.g. "--batch-size 16 --set min_steps=0")
# e.g. the bundled sample in a few minutes (STATE elsewhere, not the committed one):
#   STATE=runs/seg-sample-state \
#   DATA=ssl_derm/sample_data/ham10000_sample UNLABELED=ssl_derm/sample_data/isic_unlabeled_sample.zip \
#   IMAGE_SIZE=64 SEEDS=1 FRACTIONS=0.5,1.0 PRETRAIN_MAX_STEPS=2 MAX_STEPS=2 \
#   EXTRA="--batch-size 16 --set min_steps=0" benchmarks/ham10000/studies/segmentation_ham10000_cpu.sh runs/seg-sample
set -euo pipefail
OUT=${1:-runs/segmentation_ham10000_cpu}
CR_SCRATCH=${2:-${CR_SCRATCH:-}}
CR_IMAGENET=${3:-${CR_IMAGENET:-}}
DATA=${DATA:-../shared/data/ham10000}
UNLABELED=${UNLABELED:-../shared/data/isic_unlabeled.zip}
SSL=${SSL:-ssl-derm}
IMAGE_SIZE=${IMAGE_SIZE:-64}
SEEDS=${SEEDS:-2}
FRACTIONS=${FRACTIONS:-0.1,1.0}
PRETRAIN_MAX_STEPS=${PRETRAIN_MAX_STEPS:--1}
MAX_STEPS=${MAX_STEPS:--1}
EXTRA=${EXTRA:-}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)  # benchmarks/ham10000: its configs and tools
STATE=${STATE:-$HERE/segmentation_state}
mkdir -p "$OUT"
save() { $PY "$HERE/tools/protocol_state.py" save "$OUT" "$STATE" > /dev/null; }
$PY "$HERE/tools/protocol_state.py" restore "$STATE" "$OUT"
( while sleep 600; do save; done ) &
SAVER=$!
trap 'kill $SAVER 2>/dev/null; save' EXIT

# One lesion-grouped split for pretraining and fine-tuning (the default one: seed 0).
SPLIT="$OUT/split/splits.csv"
if [ ! -f "$SPLIT" ]; then
  $SSL data split "$DATA" --out "$OUT/split" --overwrite
fi

# pretrain NAME INIT EPOCHS LR: context restoration on the split's training images plus the
# unlabelled archive (its copies of validation/test images are dropped), resumable.
pretrain() {
  local dir="$OUT/pretrain/$1"
  if [ -f "$dir/DONE" ] && [ -f "$dir/ssl.ckpt" ]; then echo "pretrain $1: done"; return; fi
  local again=--overwrite
  [ -f "$dir/checkpoints/last.ckpt" ] && again=--resume
  $SSL pretrain --config "$HERE/configs/pretrain/ham10000_cpu.yaml" --task context_restore --init "$2" \
    --epochs "$3" --lr "$4" --max-steps "$PRETRAIN_MAX_STEPS" --image-size "$IMAGE_SIZE" \
    --data "$DATA" --splits "$SPLIT" --unlabeled "$UNLABELED" --out "$dir" $again --no-progress
  touch "$dir/DONE"
  save
}

if [ -z "$CR_SCRATCH" ]; then
  pretrain context_restore random "${PRETRAIN_EPOCHS_SCRATCH:-2}" 0.001
  CR_SCRATCH="$OUT/pretrain/context_restore/ssl.ckpt"
fi
if [ -z "$CR_IMAGENET" ]; then
  # continued from ImageNet weights: a gentler learning rate keeps what ImageNet taught
  pretrain imagenet+context_restore imagenet "${PRETRAIN_EPOCHS_IMAGENET:-2}" 0.0003
  CR_IMAGENET="$OUT/pretrain/imagenet+context_restore/ssl.ckpt"
fi

# Finished fine-tuning runs are skipped on a re-run; results.csv, results.md and
# label_efficiency.png (Dice) are rewritten after every run.
# shellcheck disable=SC2086
$SSL benchmark --target segmentation --config "$HERE/configs/benchmark/ham10000_cpu.yaml" \
  --data "$DATA" --splits "$SPLIT" --image-size "$IMAGE_SIZE" \
  --seeds "$SEEDS" --label-fractions "$FRACTIONS" --max-steps "$MAX_STEPS" \
  --inits "random,imagenet,$CR_SCRATCH:encoder,$CR_SCRATCH:decoder,$CR_IMAGENET:encoder,$CR_IMAGENET:decoder" \
  --out "$OUT/benchmark" --no-progress $EXTRA
echo "results: $OUT/benchmark/results.md"
