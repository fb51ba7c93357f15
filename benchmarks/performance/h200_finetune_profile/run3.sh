#!/usr/bin/env bash
set -uo pipefail
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $OUT/gpu.txt 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl .whl_prof/*.whl || exit 1
cp benchmarks/performance/h200_finetune_profile/proto.py /tmp/proto.py
cd /tmp
s=$(date +%s)
PYTHONPATH=/tmp/site timeout 240 python3 /tmp/proto.py 224 64 > $OUT/proto.log 2>&1
echo "rc=$? wall_s=$(( $(date +%s) - s ))" | tee -a $OUT/proto.log
grep -vE "^\[W|USDT|ERROR:" $OUT/proto.log | tail -3
