#!/usr/bin/env bash
# The first HAM10000 benchmark (archived: benchmarks/ham10000/archive/ham10000_cpu_2026-11-23), kept so
# its figures can be reproduced; the benchmark is now benchmarks/ham10000/run.sh (the protocol).
#
# The HAM10000 CPU benchmark, end to end and resumable: run it again after an
# interruption and it continues where it stopped (finished pretraining runs and
# finished fine-tuning runs are skipped; a half-done pretraining run resumes).
#
#   benchmarks/ham10000/studies/benchmark_ham10000_cpu.sh [OUT]      (default runs/ham10000_cpu)
#
# Environment: DATA, UNLABELED, SSL (the ssl-derm command), ABLATION=0 to skip the
# fine-tuning recipe ablation at the end.
set -euo pipefail
OUT=${1:-runs/ham10000_cpu}
DATA=${DATA:-../shared/data/ham10000}
UNLABELED=${UNLABELED:-../shared/data/isic_unlabeled.zip}
SSL=${SSL:-ssl-derm}
mkdir -p "$OUT/pretrain"
HERE=$(cd "$(dirname "$0")/.." && pwd)  # benchmarks/ham10000: its configs and tools

source "$(dirname "$0")/pretrain_step.sh"

pretrain rotation rotation random 5 0.001
pretrain context_restore context_restore random 2 0.001
# Continued from ImageNet weights: a gentler learning rate keeps what ImageNet taught.
pretrain imagenet+rotation rotation imagenet 5 0.0003
pretrain imagenet+context_restore context_restore imagenet 2 0.0003

P="$OUT/pretrain"
$SSL benchmark --config "$HERE/configs/benchmark/ham10000_cpu.yaml" --data "$DATA" --out "$OUT/benchmark" --no-progress \
  --inits "random,imagenet,$P/rotation/ssl.ckpt,$P/context_restore/ssl.ckpt,$P/imagenet+rotation/ssl.ckpt,$P/imagenet+context_restore/ssl.ckpt"

# Ablations (ABLATION=0 skips them, about 1 h):
# 1. fine-tuning recipe: linear-probe warm-up then full fine-tuning (LP-FT), for ImageNet
#    and the two ImageNet-started SSL inits: the head trains on the frozen encoder (BatchNorm
#    statistics kept) for 1 of 3 epochs at label fraction 1.0, which min_steps stretches
#    with the epochs to 3 of 10 at 0.1;
# 2. pretraining length: context restoration from ImageNet for 6 epochs instead of 2.
if [ "${ABLATION:-1}" = 1 ]; then
  $SSL benchmark --config "$HERE/configs/benchmark/ham10000_cpu.yaml" --freeze-epochs 1 --data "$DATA" --out "$OUT/benchmark-lpft" \
    --no-progress --inits "imagenet,$P/imagenet+rotation/ssl.ckpt,$P/imagenet+context_restore/ssl.ckpt"
  pretrain pretrain-ablation/imagenet+context_restore-6ep context_restore imagenet 6 0.0003
  $SSL benchmark --config "$HERE/configs/benchmark/ham10000_cpu.yaml" --data "$DATA" --out "$OUT/benchmark-cr6ep" \
    --no-progress --inits "$OUT/pretrain-ablation/imagenet+context_restore-6ep/ssl.ckpt"
fi
