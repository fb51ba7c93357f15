#!/usr/bin/env bash
# The tutorial (docs/tutorial.md) on the bundled real sample: pretrain -> fine-tune ->
# evaluate -> predict -> explain -> embed -> export, then the pictures it shows are copied
# into docs/tutorial/. About 10 minutes on a 2-core CPU.
#
#   examples/tutorial.sh [OUT]      (default runs/tutorial)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/tutorial}
SSL=${SSL:-.venv/bin/ssl-derm}
SAMPLE=ssl_derm/sample_data
ZIP=$SAMPLE/isic_unlabeled_sample.zip
export SSL_DERM_CACHE=${SSL_DERM_CACHE:-$OUT/.decode-cache}
run() { echo "+ ssl-derm $*"; $SSL "$@"; }

run pretrain --task context_restore --init imagenet --data "$SAMPLE/ham10000_sample" --unlabeled "$ZIP" --image-size 96 --batch-size 32 \
  --max-steps 150 --out "$OUT/cr" --overwrite --no-progress
run finetune --init "$OUT/cr/ssl.ckpt" --epochs 15 --batch-size 32 --out "$OUT/ft" --overwrite --no-progress
run evaluate --checkpoint "$OUT/ft/model.ckpt" --tta --out "$OUT/evaluate" --overwrite
run predict --checkpoint "$OUT/ft/model.ckpt" --data "$ZIP" --tta --out "$OUT/predict" --overwrite --no-progress
run explain --checkpoint "$OUT/ft/model.ckpt" --split test --n 16 --out "$OUT/explain" --overwrite --no-progress
run embed --checkpoint "$OUT/cr/ssl.ckpt" --unlabeled "$ZIP" --method tsne --out "$OUT/embed" --overwrite --no-progress
mkdir -p "$OUT/export"
run export --checkpoint "$OUT/ft/model.ckpt" --format onnx --out "$OUT/export/model.onnx" --overwrite
run export --checkpoint "$OUT/cr/ssl.ckpt" --format safetensors --out "$OUT/export/encoder.safetensors" --overwrite

mkdir -p docs/tutorial
cp "$OUT/embed/tsne_by_label.png" "$OUT/embed/tsne_by_source.png" docs/tutorial/
cp "$(ls "$OUT"/explain/images/*.png | head -1)" docs/tutorial/explain_worst_mistake.png
cp "$(ls -S "$OUT"/explain/grid_*.png | head -1)" docs/tutorial/explain_grid.png
echo "pictures copied to docs/tutorial/"
