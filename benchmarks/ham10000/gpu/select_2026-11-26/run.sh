#!/usr/bin/env bash
# The GPU profile's recipe selection for ImageNet init at label fraction 1.0, validation only:
# the six points of benchmarks/ham10000/configs/benchmark/ham10000_gpu.yaml's select_grid (encoder lr 1e-4, 3e-4,
# 1e-3, each plain and LP-FT with 2 frozen epochs) on the selection seed, as
# `ssl-derm benchmark --select-on val` runs them, on the CPU protocol's lesion-grouped split.
# Three benchmark processes share the GPU, one per encoder lr (two points each), so the six
# fit in one lease; each is stopped the moment its selection.json is written, before any
# reported seed starts: test is never scored.
# The grid's edge extension (select_extend) is not automatic here: LRS (encoder lrs, one
# process each) and FREEZE (frozen epochs) override the grid, and the lease's second call ran
# the edge steps with LRS="0.00333 0.0111" FREEZE=0 (the rule counts 0.0111 only if 0.00333 wins).
set -uo pipefail
T0=$(date +%s)
rm -rf /tmp/site /tmp/sel  # a warm machine keeps them from an earlier call
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/gpu.txt 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
# the package from this checkout, laid out as pyproject.toml's package-dir maps it
cp -r ssl_derm /tmp/site/ssl_derm && for p in pretext finetune commands; do cp -r $p /tmp/site/ssl_derm/$p; done
export PYTHONPATH=/tmp/site SSL_DERM_CACHE=/tmp/cache PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__)" >> $OUT/gpu.txt
mkdir -p /tmp/d && tar xzf .gpu_data/ham10000.tgz -C /tmp/d
python3 -c "
import gzip, sys
t = gzip.open('benchmarks/ham10000/state/split/splits.csv.gz', 'rt').read()
open('/tmp/d/splits.csv', 'w').write(t.replace('../shared/data/ham10000', '/tmp/d/ham10000'))"
# decode the 8,017 images at 224 px once, into the cache the three processes share
python3 -c "
from ssl_derm.data.labeled import prepare_labeled
prepare_labeled('/tmp/d/ham10000', 224, splits='/tmp/d/splits.csv', cache_dir='/tmp/cache', progress=False)"
R=$PWD; cd /tmp  # not the checkout: python3 -m would import its ./ssl_derm, laid out otherwise
echo "setup_s=$(( $(date +%s) - T0 ))" | tee $OUT/wall.txt
S=$(date +%s)
for lr in ${LRS:-0.0001 0.0003 0.001}; do
  o=/tmp/sel/lr$lr
  python3 -m ssl_derm benchmark --config $R/benchmarks/ham10000/configs/benchmark/ham10000_gpu.yaml --data /tmp/d/ham10000 \
    --splits /tmp/d/splits.csv --inits imagenet --seeds 1 --label-fractions 1.0 --select-on val \
    --select-grid "encoder_lr=$lr;freeze_epochs=${FREEZE:-0,2}" --select-extend 0 --budget-doublings 0 \
    --set cam_in_lesion=false --set tta=false --out $o --no-progress > $OUT/log_lr$lr.txt 2>&1 &
  pid=$!
  ( while [ ! -f $o/runs/imagenet/fraction1/selection.json ] && kill -0 $pid 2>/dev/null; do sleep 1; done
    kill $pid 2>/dev/null; echo "lr $lr: stopped after selection at $(( $(date +%s) - S )) s" >> $OUT/wall.txt ) &
done
wait
tar czf $OUT/select_runs.tgz -C /tmp/sel --exclude='*.ckpt' --exclude=tensorboard .
for f in /tmp/sel/*/runs/imagenet/fraction1/select/*/metrics.json; do
  python3 -c "
import json, sys; m = json.load(open(sys.argv[1]))
print(sys.argv[1].split('/')[-2], 'validation BA %.3f' % m['best_epoch_val_balanced_accuracy'], 'epoch', m['best_epoch'], 'of', m['epochs_run'], 'budget', m['epochs_budget'], m['split'])" $f
done | tee $OUT/summary.txt
grep -h "test" $OUT/log_lr*.txt | head -3  # each should read "(test not scored)"
echo "total_s=$(( $(date +%s) - T0 ))" | tee -a $OUT/wall.txt
