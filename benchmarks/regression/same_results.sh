#!/usr/bin/env bash
# Did a change alter any result? A 3-step pretraining (multitask from ImageNet), 3-step
# classification and segmentation fine-tuning from it, and evaluate, on the bundled sample at
# 64 px, one thread; prints the sha256 of each metrics and predictions file and the content hash
# of each checkpoint (content_hash.py). Run it on the commit before and after a change and diff
# the two outputs: a refactoring must give identical lines. Use the same OUT (and decode cache)
# for both: the checkpoints and metrics record the paths they were written with, and the
# bundled sample's image paths (so the checkout's folder) enter splits_sha1 and predictions.csv:
# from two checkouts in different folders, compare with that folder's path replaced.
#
#   benchmarks/regression/same_results.sh OUT > before.txt      (from the repository root)
set -euo pipefail
OUT=${1:?OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=1 SSL_DERM_CACHE=${SSL_DERM_CACHE:-$OUT.cache}
S=${SSL:-.venv/bin/ssl-derm}
PY=${PY:-.venv/bin/python}
rm -rf "$OUT"; mkdir -p "$OUT"
$S pretrain --task multitask --init imagenet --max-steps 3 --image-size 64 --batch-size 16 --out "$OUT/pt" --no-progress > "$OUT/log.txt" 2>&1
$S finetune --init "$OUT/pt/ssl.ckpt" --max-steps 3 --image-size 64 --batch-size 16 --out "$OUT/ft" --no-progress >> "$OUT/log.txt" 2>&1
$S finetune --target segmentation --init "$OUT/pt/ssl.ckpt" --max-steps 3 --image-size 64 --batch-size 8 \
  --out "$OUT/seg" --no-progress >> "$OUT/log.txt" 2>&1
$S evaluate --checkpoint "$OUT/ft/model.ckpt" --split test --out "$OUT/ev" >> "$OUT/log.txt" 2>&1
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
cd "$OUT"
find . -name "metrics.json" -o -name "predictions*.csv" | sort | xargs sha256sum
"$PY" "$HERE/content_hash.py" $(find . -name "*.ckpt" | sort)
