#!/usr/bin/env bash
# One GPU lease for the fused augmentation (docs/PERFORMANCE.md): its time per batch against
# kornia's recipes at 224 px (batch 64 for fine-tuning, 256 for pretraining), then bench-speed at
# the GPU profile's sizes (224 px, bf16, pretraining batch 256, fine-tuning batch 64) with the fused
# recipes (--augmentation fused) and as shipped (kornia), each stage against its plain loop, with
# the shares of a step in views and in data movement. Writes everything to $OUT; under 10 minutes.
#
# Prepare here: the wheels the device lacks in .whl/ (as for benchmarks/ham10000/gpu/), then
#   run(command="benchmarks/performance/gpu_fused_check.sh", carry=[".whl"], timeout_s=600)
# Not yet run on a GPU.
set -uo pipefail
T0=$(date +%s)
rm -rf /tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
# the package from this checkout, laid out as pyproject.toml's package-dir maps it
cp -r ssl_derm /tmp/site/ssl_derm && for p in pretext finetune commands; do cp -r $p /tmp/site/ssl_derm/$p; done
export PYTHONPATH=/tmp/site SSL_DERM_CACHE=/tmp/cache PYTHONUNBUFFERED=1
R=$PWD; cd /tmp  # not the checkout: python3 -m would import its ./ssl_derm, laid out otherwise
python3 -c "import torch; print('torch', torch.__version__)" >> "$OUT/gpu.txt"
for batch in 64 256; do
  timeout 120 python3 "$R/benchmarks/performance/fused_augment.py" --device cuda --size 224 --batch $batch \
    --repeats 30 >> "$OUT/fused_augment.txt" 2>&1
done
# bench-speed at the GPU profile's sizes with each recipe (fused first: the figure still missing),
# the decoded images held on the GPU (data_on_device auto); each gets half the time left
for aug in fused kornia; do
  S=$(date +%s) share=2
  [ $aug = kornia ] && share=1
  timeout $(( (570 - (S - T0)) / share )) python3 -m ssl_derm bench-speed --image-size 224 \
    --precision bf16-mixed --batch-size 256 --finetune-batch-size 64 --steps 30 --no-archive-probe \
    --augmentation $aug --out /tmp/bench_$aug --overwrite > "$OUT/bench_speed_$aug.txt" 2>&1
  echo "bench_speed_rc=$? total_s=$(( $(date +%s) - T0 ))" >> "$OUT/bench_speed_$aug.txt"
  cp /tmp/bench_$aug/speed.json "$OUT/speed_$aug.json" 2>/dev/null
done
exit 0
