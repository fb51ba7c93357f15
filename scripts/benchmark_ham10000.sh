#!/usr/bin/env bash
# The HAM10000 benchmark protocol, end to end and resumable (run it again after any
# interruption: finished pretraining and fine-tuning runs are skipped, a half-done
# pretraining run resumes, and every table is rewritten from what is on disk).
#
#   scripts/benchmark_ham10000.sh [PROFILE] [OUT]    PROFILE: cpu (default) or gpu
#
#  1. split     one lesion-grouped split (OUT/split/splits.csv) for every stage: no
#               validation or test image is pretrained or trained on (checked by content).
#  2. screen    every pretext task (TASKS), from random weights and continued from ImageNet,
#               at one declared budget per init (STEPS_SCRATCH, STEPS_IMAGENET steps of the
#               profile's batch), on the training split plus the unlabelled archive (its
#               copies of validation/test images dropped).
#  3. probe     frozen encoders on the *validation* split: kNN and linear probe, with
#               bootstrap intervals (scripts/knn_probe.py) -> OUT/screening/.
#  4. choose    the best scratch encoder and the best CONTINUED ImageNet-continued ones by
#               validation linear probe, BatchNorm statistics re-estimated on training images
#               as fine-tuning will (scripts/choose_inits.py) -> OUT/screening/chosen.json.
#  5. finetune  random, ImageNet and the chosen encoders: each init's recipe chosen on
#               validation (select_grid of the profile's config), trained to convergence
#               (early stopping on validation balanced accuracy), SEEDS seeds (the same for
#               every init), label FRACTIONS; test scored once. Paired differences to random
#               and ImageNet with 95% bootstrap intervals: OUT/benchmark/results.md, paired.csv.
#  6. TTA       every fine-tuned model with and without the 8 dihedral views -> OUT/tta.md.
#
# Profiles (configs/pretrain/ham10000_PROFILE.yaml, configs/benchmark/ham10000_PROFILE*.yaml):
#   cpu  96 px, fp32, 3 seeds, fractions 0.1 and 1.0, 300 pretraining steps per run
#   gpu  224 px, bf16 autocast, 5 seeds, fractions 0.03, 0.1 and 1.0, 3000 / 1500 steps
# Environment overrides: SEEDS, FRACTIONS, TASKS, STEPS_SCRATCH, STEPS_IMAGENET, CONTINUED,
# DATA, UNLABELED, SSL (the ssl-derm command), PY (its python), EXTRA (more benchmark flags).
# A proof on the bundled sample in a few minutes:
#   DATA=ssl_derm/sample_data/ham10000_sample UNLABELED=ssl_derm/sample_data/isic_unlabeled_sample.zip \
#   TASKS="rotation context_restore" STEPS_SCRATCH=2 STEPS_IMAGENET=2 SEEDS=2 FRACTIONS=1.0 \
#   EXTRA="--max-steps 2 --set min_steps=0 --select-grid encoder_lr=0.0003,0.001" \
#   scripts/benchmark_ham10000.sh cpu runs/protocol-sample
set -euo pipefail
PROFILE=${1:-cpu}
OUT=${2:-runs/ham10000_$PROFILE}
DATA=${DATA:-../shared/data/ham10000}
UNLABELED=${UNLABELED:-../shared/data/isic_unlabeled.zip}
SSL=${SSL:-ssl-derm}
PY=${PY:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $PROFILE in
  cpu)
    SIZE=96; BENCH="$ROOT/configs/benchmark/ham10000_cpu_converged.yaml"
    SEEDS=${SEEDS:-3}; FRACTIONS=${FRACTIONS:-0.1,1.0}
    STEPS_SCRATCH=${STEPS_SCRATCH:-300}; STEPS_IMAGENET=${STEPS_IMAGENET:-300} ;;
  gpu)
    SIZE=224; BENCH="$ROOT/configs/benchmark/ham10000_gpu.yaml"
    SEEDS=${SEEDS:-5}; FRACTIONS=${FRACTIONS:-0.03,0.1,1.0}
    STEPS_SCRATCH=${STEPS_SCRATCH:-3000}; STEPS_IMAGENET=${STEPS_IMAGENET:-1500} ;;
  *) echo "profile $PROFILE: cpu or gpu" >&2; exit 2 ;;
esac
PRETRAIN="$ROOT/configs/pretrain/ham10000_$PROFILE.yaml"
TASKS=${TASKS:-rotation context_restore simclr byol moco multitask}
CONTINUED=${CONTINUED:-2}
mkdir -p "$OUT/screening"
stamp() { echo "$(date -u +%FT%TZ) $*" >> "$OUT/wall.log"; }

# 1. split
SPLIT="$OUT/split/splits.csv"
[ -f "$SPLIT" ] || $SSL data split "$DATA" --out "$OUT/split" --overwrite

# 2. screen: NAME = init+task (scratch runs are named after the task alone)
ckpts=()
for init in random imagenet; do
  steps=$STEPS_SCRATCH; lr=0.001
  if [ "$init" = imagenet ]; then steps=$STEPS_IMAGENET; lr=0.0003; fi  # gentler: keep what ImageNet taught
  for task in $TASKS; do
    name=$task; [ "$init" = imagenet ] && name="imagenet+$task"
    dir="$OUT/pretrain/$name"
    ckpts+=("$dir/ssl.ckpt")
    settings="profile=$PROFILE steps=$steps lr=$lr size=$SIZE"
    if [ -f "$dir/DONE" ] && [ "$(cat "$dir/DONE")" = "$settings" ]; then continue; fi
    again=--overwrite
    [ -f "$dir/checkpoints/last.ckpt" ] && [ ! -f "$dir/DONE" ] && again=--resume
    start=$(date +%s)
    $SSL pretrain --config "$PRETRAIN" --task "$task" --init "$init" --max-steps "$steps" --lr "$lr" \
      --image-size "$SIZE" --data "$DATA" --splits "$SPLIT" --unlabeled "$UNLABELED" --out "$dir" $again --no-progress
    echo $(( $(date +%s) - start )) > "$dir/wall_s"
    echo "$settings" > "$dir/DONE"
    stamp "pretrained $name ($steps steps, $(cat "$dir/wall_s") s)"
  done
done

# 3. probe on validation (once per set of screened checkpoints)
PROBE="$OUT/screening/probe.json"
if [ ! -f "$PROBE" ] || [ -n "$(find "$OUT/pretrain" -name DONE -newer "$PROBE")" ]; then
  $PY "$ROOT/scripts/knn_probe.py" --data "$DATA" --splits "$SPLIT" --image-size "$SIZE" \
    --inits imagenet random "${ckpts[@]}" --out "$PROBE"
  stamp "probed ${#ckpts[@]} encoders"
fi
ln -sfn ../pretrain "$OUT/screening/pretrain"  # screen_table.py reads each run's wall_s there
$PY "$ROOT/scripts/screen_table.py" "$OUT/screening" > "$OUT/screening/screening.md"

# 4. choose on validation
chosen=$($PY "$ROOT/scripts/choose_inits.py" "$PROBE" --checkpoints "${ckpts[@]}" --scratch 1 \
  --continued "$CONTINUED" --record "$OUT/screening/chosen.json")
stamp "chose $chosen"

# 5. fine-tune: recipes chosen on validation, test scored once
start=$(date +%s)
# shellcheck disable=SC2086
$SSL benchmark --config "$BENCH" --data "$DATA" --splits "$SPLIT" --image-size "$SIZE" \
  --seeds "$SEEDS" --label-fractions "$FRACTIONS" --inits "random,imagenet,$chosen" \
  --out "$OUT/benchmark" --no-progress ${EXTRA:-}
stamp "benchmark ($(( $(date +%s) - start )) s this pass)"

# 6. test-time augmentation of every fine-tuned model (the runs listed in results.csv)
mapfile -t models < <($PY -c "import pandas as pd, sys; t = pd.read_csv(sys.argv[1]); \
print('\n'.join(sys.argv[2] + '/' + t['run'] + '/model.ckpt'))" "$OUT/benchmark/results.csv" "$OUT/benchmark")
if [ ! -f "$OUT/tta.md" ] || [ "$OUT/benchmark/results.csv" -nt "$OUT/tta.md" ]; then
  $PY "$ROOT/scripts/tta_gain.py" --data "$DATA" --models "${models[@]}" --out "$OUT/tta"
  stamp "tta"
fi
echo "results: $OUT/benchmark/results.md, $OUT/screening/screening.md, $OUT/tta.md"
