#!/usr/bin/env bash
# One GPU lease of the SSL budget study: continue ImageNet's weights with TASK (default moco) for
# IMAGES images seen (default 5,120,000 = 10,000 steps of 512) at SIZE px (default 96), bf16
# autocast, on the v2 split's training part plus the unlabelled archive (its copies of validation and
# test images dropped by content), lr scaled to the batch (3e-4 x BATCH/64, the CPU runs' rate per
# image). Writes $OUT/ssl.ckpt (the encoder and its seen_images, to bring back and probe on the
# CPU like every other checkpoint; it comes back as two files, see the end), the log and wall
# times with images/s. No held-out loss or kNN
# monitor (a validation pass every 11-step epoch would cost more than the training): the CPU
# probes score the checkpoint on the validation split afterwards; test is never touched.
#
# Prepare here (ignored by git, carried to the device):
#   echo /.whl/ >> .git/info/exclude; echo /.gpu_data/ >> .git/info/exclude
#   pip download the wheels the device lacks into .whl/ (see the device tool's notes)
#   python benchmarks/ham10000/gpu/pack_pool.py --data ../shared/data/ham10000 \
#     --unlabeled ../shared/data/isic_unlabeled.zip --out .gpu_data
#   (the training images and the archive less its copies of validation/test images, 29 MB: all
#   of HAM10000 would not fit in the 64 MiB that travels)
# Run (inside one 10-minute call):
#   run(command="benchmarks/ham10000/gpu/ssl_budget_gpu.sh", carry=[".whl", ".gpu_data"], timeout_s=600)
# A run cut short by the lease still leaves the last epoch's ssl.ckpt in $OUT (its global_step
# says how far it got; its schedule was sized to IMAGES, so say so if it is used).
set -uo pipefail
T0=$(date +%s)
TASK=${TASK:-moco}
SIZE=${SIZE:-96}
BATCH=${BATCH:-512}
IMAGES=${IMAGES:-5120000}
STEPS=$(( IMAGES / BATCH ))
LR=$(python3 -c "print(3e-4 * $BATCH / 64)")
rm -rf /tmp/site /tmp/run /tmp/d
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
# the package from this checkout, laid out as pyproject.toml's package-dir maps it
cp -r ssl_derm /tmp/site/ssl_derm && for p in pretext finetune commands; do cp -r $p /tmp/site/ssl_derm/$p; done
export PYTHONPATH=/tmp/site SSL_DERM_CACHE=/tmp/cache PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__)" >> "$OUT/gpu.txt"
mkdir -p /tmp/d && tar xzf .gpu_data/train_images.tgz -C /tmp/d && cp .gpu_data/pool_archive.zip /tmp/d/
sed "s#^images/#/tmp/d/images/#" .gpu_data/splits_train.csv > /tmp/d/splits.csv
R=$PWD; cd /tmp  # not the checkout: python3 -m would import its ./ssl_derm, laid out otherwise
echo "setup_s=$(( $(date +%s) - T0 )) task=$TASK size=$SIZE batch=$BATCH steps=$STEPS lr=$LR" | tee "$OUT/wall.txt"
S=$(date +%s)
timeout $(( 570 - (S - T0) )) python3 -m ssl_derm pretrain --config "$R/benchmarks/ham10000/configs/pretrain/ham10000_gpu.yaml" \
  --task "$TASK" --init imagenet --image-size "$SIZE" --batch-size "$BATCH" --max-steps "$STEPS" --epochs 100000 \
  --lr "$LR" --precision bf16-mixed --data /tmp/d --splits /tmp/d/splits.csv \
  --unlabeled /tmp/d/pool_archive.zip --set holdout_fraction=0 --out /tmp/run --no-progress > "$OUT/log.txt" 2>&1
echo "pretrain_rc=$? pretrain_s=$(( $(date +%s) - S ))" | tee -a "$OUT/wall.txt"
cp /tmp/run/config.yaml "$OUT/" 2>/dev/null
# ssl.ckpt in two files (each returned file is capped at 16 MiB): the encoder and its metadata
# (encoder.pt, about 12 MB; the projection head stays behind) and the images it saw (seen.pt,
# about 7 MB). Put back together here, exactly:
#   python -c "import torch; c = torch.load('encoder.pt', weights_only=True); \
#     c.update(torch.load('seen.pt', weights_only=True)); torch.save(c, 'ssl.ckpt')"
python3 -c "
import torch
c = torch.load('/tmp/run/ssl.ckpt', map_location='cpu', weights_only=True)
c = {k: v for k, v in c.items() if not k.endswith('_state_dict') or k == 'encoder_state_dict'}
torch.save({'seen_images': c.pop('seen_images')}, '$OUT/seen.pt')
torch.save(c, '$OUT/encoder.pt')
seen = c['global_step'] * $BATCH
print(f'global_step={c[\"global_step\"]} images_seen={seen} images_per_s={seen / max(1, $(date +%s) - $S):.0f}')
" | tee -a "$OUT/wall.txt"
echo "total_s=$(( $(date +%s) - T0 ))" | tee -a "$OUT/wall.txt"
