#!/usr/bin/env bash
# The main job on the bundled real sample (316 HAM10000 images + 64 unlabelled
# ISIC images): inspect -> context-restoration pretraining -> benchmark of
# random vs ImageNet vs SSL initialisation -> the comparison table.
# A few minutes on a 2-core CPU.  Usage: examples/demo.sh [OUT]  (default runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
SSL=${SSL:-.venv/bin/ssl-derm}
SAMPLE=ssl_derm/sample_data
export SSL_DERM_CACHE=${SSL_DERM_CACHE:-$OUT/.decode-cache}

$SSL data inspect "$SAMPLE/ham10000_sample"
$SSL pretrain --task context_restore --data "$SAMPLE/ham10000_sample" --unlabeled "$SAMPLE/isic_unlabeled_sample.zip" \
  --image-size 64 --batch-size 32 --epochs 4 --out "$OUT/pretrain" --overwrite --no-progress
$SSL benchmark --inits "random,imagenet,$OUT/pretrain/ssl.ckpt" --data "$SAMPLE/ham10000_sample" \
  --image-size 64 --batch-size 32 --epochs 4 --seeds 1 --label-fractions 0.5,1.0 \
  --out "$OUT/benchmark" --overwrite --no-progress
echo
echo "TensorBoard: .venv/bin/tensorboard --logdir $OUT"
