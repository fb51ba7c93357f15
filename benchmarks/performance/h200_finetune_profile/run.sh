#!/usr/bin/env bash
# Where fine-tuning's time goes on a GPU (prof_ft.py), at the GPU profile's sizes.
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/gpu.txt 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl .whl_prof/*.whl || exit 1
python3 -c "import torch; print('torch', torch.__version__)" >> $OUT/gpu.txt
cp benchmarks/performance/h200_finetune_profile/prof_ft.py /tmp/prof_ft.py
cd /tmp
s=$(date +%s)
PYTHONPATH=/tmp/site timeout 420 python3 /tmp/prof_ft.py 224 64 60 5 > $OUT/prof_ft.log 2>&1
echo "rc=$? wall_s=$(( $(date +%s) - s ))" | tee -a $OUT/prof_ft.log
grep -vE "^\[W|USDT|ERROR:" $OUT/prof_ft.log | tail -20
head -45 $OUT/prof_by_host.txt | cut -c1-150
