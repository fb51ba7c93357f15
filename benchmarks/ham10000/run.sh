#!/usr/bin/env bash
# The HAM10000 benchmark protocol, end to end and resumable (run it again after any
# interruption: finished pretraining and fine-tuning runs are skipped, a half-done
# pretraining run resumes, and every table is rewritten from what is on disk).
#
#   benchmarks/ham10000/run.sh [PROFILE] [OUT]    PROFILE: cpu (default) or gpu
#
#  1. split     one lesion-grouped split (OUT/split/splits.csv) for every stage: no
#               validation or test image is pretrained or trained on (checked by content).
#  2. screen    every pretext task (TASKS), from random weights and continued from ImageNet,
#               at one declared budget per init (STEPS_SCRATCH, STEPS_IMAGENET steps of the
#               profile's batch), on the training split plus the unlabelled archive (its
#               copies of validation/test images dropped).
#  3. probe     frozen encoders on the *validation* split: kNN and linear probe, with
#               bootstrap intervals (tools/knn_probe.py; each encoder probed right after its
#               pretraining, its predictions kept in OUT/screening/probe_cache) -> OUT/screening/;
#               each run's validation curves (held-out pretext loss, kNN monitor per epoch:
#               tools/pretrain_curves.py) -> OUT/screening/curves.md.
#  4. choose    the best scratch encoder and the best CONTINUED ImageNet-continued ones by
#               validation linear probe, BatchNorm statistics re-estimated on training images
#               as fine-tuning will (tools/choose_inits.py) -> OUT/screening/chosen.json.
#  5. finetune  random, ImageNet and the chosen encoders: each init's recipe chosen on
#               validation (select_grid of the profile's config), trained to convergence
#               (early stopping on validation balanced accuracy), SEEDS seeds (the same for
#               every init), label FRACTIONS; test scored once. Paired differences to random
#               and ImageNet with 95% bootstrap intervals: OUT/benchmark/results.md, paired.csv.
#               Each run also scores test with the 8 dihedral views (the profile's tta: true):
#               TTA's gain per init with the same intervals, in the same results.md.
#  6. verdict   the targets, with the best SSL init chosen on validation
#               (tools/protocol_verdict.py) -> OUT/benchmark/verdict.md
#
# Across machines: the run folder OUT is not kept, so the small files a later session needs
# (the split, pretraining settings, wall times and encoder fingerprints, screening tables,
# every fine-tuning run's metrics.json, predictions and config) are saved to STATE (default
# benchmarks/ham10000/state for cpu, benchmarks/ham10000/gpu/state for gpu; commit it) after
# every stage and every 10 minutes, and restored from it first. A checkpoint needed again
# (probe, chosen init) is pretrained again, deterministically, and must match its recorded
# fingerprint (with the same number of torch threads: OMP_NUM_THREADS, 2 unless set, as the v2
# CPU runs had; 1 and 2 threads give different weights); a finished fine-tuning run is never redone (its run_key records its settings
# and its init's weights).
#
# Profiles (beside this script: configs/pretrain/ham10000_PROFILE.yaml,
# configs/benchmark/ham10000_PROFILE*.yaml):
#   cpu  96 px, fp32, 3 seeds, fractions 0.1 and 1.0, 300 pretraining steps per run
#   gpu  224 px, bf16 autocast, 5 seeds, fractions 0.03, 0.1 and 1.0, 3000 / 1500 steps
# Environment overrides: SEEDS, FRACTIONS, TASKS, STEPS_SCRATCH, STEPS_IMAGENET, CONTINUED,
# DATA, UNLABELED, STATE, SSL (the ssl-derm command), PY (its python), EXTRA (more benchmark flags).
# A proof on the bundled sample in a few minutes (STATE elsewhere: the default is the committed
# CPU state, which a proof must neither restore nor overwrite):
#   STATE=runs/protocol-sample-state \
#   DATA=ssl_derm/sample_data/ham10000_sample UNLABELED=ssl_derm/sample_data/isic_unlabeled_sample.zip \
#   TASKS="rotation context_restore" STEPS_SCRATCH=2 STEPS_IMAGENET=2 SEEDS=2 FRACTIONS=1.0 \
#   EXTRA="--max-steps 2 --set min_steps=0 --select-grid encoder_lr=0.0003,0.001" \
#   benchmarks/ham10000/run.sh cpu runs/protocol-sample
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # the CPU's results depend on the thread count
PROFILE=${1:-cpu}
OUT=${2:-runs/ham10000_$PROFILE}
DATA=${DATA:-../shared/data/ham10000}
UNLABELED=${UNLABELED:-../shared/data/isic_unlabeled.zip}
SSL=${SSL:-ssl-derm}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)  # benchmarks/ham10000: its tools, configs and state
case $PROFILE in
  cpu)
    SIZE=96; BENCH="$HERE/configs/benchmark/ham10000_cpu_converged.yaml"
    SEEDS=${SEEDS:-3}; FRACTIONS=${FRACTIONS:-0.1,1.0}
    STEPS_SCRATCH=${STEPS_SCRATCH:-300}; STEPS_IMAGENET=${STEPS_IMAGENET:-300} ;;
  gpu)
    SIZE=224; BENCH="$HERE/configs/benchmark/ham10000_gpu.yaml"
    SEEDS=${SEEDS:-5}; FRACTIONS=${FRACTIONS:-0.03,0.1,1.0}
    STEPS_SCRATCH=${STEPS_SCRATCH:-3000}; STEPS_IMAGENET=${STEPS_IMAGENET:-1500} ;;
  *) echo "profile $PROFILE: cpu or gpu" >&2; exit 2 ;;
esac
PRETRAIN="$HERE/configs/pretrain/ham10000_$PROFILE.yaml"
TASKS=${TASKS:-rotation context_restore simclr byol moco multitask}
CONTINUED=${CONTINUED:-2}
if [ "$PROFILE" = cpu ]; then STATE=${STATE:-$HERE/state}; else STATE=${STATE:-$HERE/gpu/state}; fi
mkdir -p "$OUT/screening"
stamp() { echo "$(date -u +%FT%TZ) $*" >> "$OUT/wall.log"; }
# the state leaves out the test summaries (results.md, paired.csv, ...) until every run is in
save() { $PY "$HERE/tools/protocol_state.py" save "$OUT" "$STATE" "$@" > /dev/null; }
$PY "$HERE/tools/protocol_state.py" restore "$STATE" "$OUT"
( while sleep 600; do save; done ) &
SAVER=$!
trap 'kill $SAVER 2>/dev/null; save' EXIT

# 1. split
SPLIT="$OUT/split/splits.csv"
[ -f "$SPLIT" ] || $SSL data split "$DATA" --out "$OUT/split" --overwrite

# 2. screen: NAME = init+task (scratch runs are named after the task alone)
# pretrain NAME TASK INIT STEPS LR: one resumable pretraining run; DONE records its settings and
# encoder_sha256 its weights. A run whose ssl.ckpt is gone (another machine) is pretrained again
# only when NEED is set, and must come out identical.
curves() {  # each finished run's validation curves, kept in its curves.csv; a diagnostic, never fatal
  $PY "$HERE/tools/pretrain_curves.py" "$OUT/pretrain" || echo "pretrain_curves.py failed; no curves table" >&2
}
fingerprint() { $PY -c "import sys; from ssl_derm.checkpoint import weights_fingerprint as f; print(f(sys.argv[1]))" "$1"; }
pretrain() {
  local name=$1 task=$2 init=$3 steps=$4 lr=$5 dir="$OUT/pretrain/$1"
  local settings="profile=$PROFILE steps=$steps lr=$lr size=$SIZE"
  if [ -f "$dir/DONE" ] && [ "$(cat "$dir/DONE")" = "$settings" ]; then
    if [ -f "$dir/ssl.ckpt" ] || [ -z "${NEED:-}" ]; then return; fi
    echo "pretrain $name: its checkpoint is not on this machine, pretraining it again"
  fi
  local again=--overwrite
  [ -f "$dir/checkpoints/last.ckpt" ] && [ ! -f "$dir/DONE" ] && again=--resume
  # --overwrite empties the folder: keep what it recorded, to check the new weights against
  local recorded="" wall=""
  [ -f "$dir/encoder_sha256" ] && recorded=$(cat "$dir/encoder_sha256")
  [ -f "$dir/wall_s" ] && [ -f "$dir/DONE" ] && wall=$(cat "$dir/wall_s")
  local start; start=$(date +%s)
  $SSL pretrain --config "$PRETRAIN" --task "$task" --init "$init" --max-steps "$steps" --lr "$lr" \
    --image-size "$SIZE" --data "$DATA" --splits "$SPLIT" --unlabeled "$UNLABELED" --out "$dir" $again --no-progress
  local sha; sha=$(fingerprint "$dir/ssl.ckpt")
  if [ -n "$recorded" ] && [ "$recorded" != "$sha" ]; then
    echo "pretrain $name: pretrained again, but its weights differ from the recorded ones; the finished" \
      "fine-tuning runs of this init will be redone" >&2
  elif [ -n "$recorded" ]; then
    echo "pretrain $name: pretrained again, the same weights as recorded ($sha)"
  fi
  echo "$sha" > "$dir/encoder_sha256"
  echo "${wall:-$(( $(date +%s) - start ))}" > "$dir/wall_s"  # the first pretraining's time
  echo "$settings" > "$dir/DONE"
  stamp "pretrained $name ($steps steps, $(( $(date +%s) - start )) s)"
  curves > /dev/null
  probe "$dir/ssl.ckpt"  # probed at once: its predictions are kept, the checkpoint need not be
  save
}
CACHE="$OUT/screening/probe_cache"
# probe INIT...: frozen-encoder kNN and linear probe on the validation split, into CACHE
probe() {
  $PY "$HERE/tools/knn_probe.py" --data "$DATA" --splits "$SPLIT" --image-size "$SIZE" --inits "$@" --cache "$CACHE"
}
screen() {  # every task from both inits; NEED=1 also pretrains again what this machine lacks
  ckpts=(); names=()
  for init in random imagenet; do
    local steps=$STEPS_SCRATCH lr=0.001
    if [ "$init" = imagenet ]; then steps=$STEPS_IMAGENET; lr=0.0003; fi  # gentler: keep what ImageNet taught
    for task in $TASKS; do
      local name=$task; [ "$init" = imagenet ] && name="imagenet+$task"
      ckpts+=("$OUT/pretrain/$name/ssl.ckpt"); names+=("$name $task $init $steps $lr")
      pretrain "$name" "$task" "$init" "$steps" "$lr"
    done
  done
}
screen

# 3. probe on validation: every screened encoder was probed as it was pretrained; one that
# was not (interrupted between the two) is pretrained again if need be, then probed
for spec in "${names[@]}"; do
  read -r name task init steps lr <<< "$spec"
  [ -f "$CACHE/$name.json" ] || NEED=1 pretrain "$name" "$task" "$init" "$steps" "$lr"  # (pretrain probes)
  [ -f "$CACHE/$name.json" ] || probe "$OUT/pretrain/$name/ssl.ckpt"  # its checkpoint was there, unprobed
done
PROBE="$OUT/screening/probe.json"
$PY "$HERE/tools/knn_probe.py" --data "$DATA" --splits "$SPLIT" --image-size "$SIZE" \
  --inits imagenet random "${ckpts[@]}" --cache "$CACHE" --out "$PROBE"
scratch=(); for c in "${ckpts[@]}"; do case $c in */imagenet+*) ;; *) scratch+=("$c") ;; esac; done
$PY "$HERE/tools/knn_probe.py" --data "$DATA" --splits "$SPLIT" --image-size "$SIZE" \
  --inits random "${scratch[@]}" --cache "$CACHE" --out "$OUT/screening/probe_vs_random.json"  # scratch vs random
save
ln -sfn ../pretrain "$OUT/screening/pretrain"  # screen_table.py reads each run's wall_s there
$PY "$HERE/tools/screen_table.py" "$OUT/screening" > "$OUT/screening/screening.md"
curves > "$OUT/screening/curves.md"  # did the budget suffice?

# 4. choose on validation
chosen=$($PY "$HERE/tools/choose_inits.py" "$PROBE" --checkpoints "${ckpts[@]}" --scratch 1 \
  --continued "$CONTINUED" --record "$OUT/screening/chosen.json")
stamp "chose $chosen"
for spec in "${names[@]}"; do  # the chosen checkpoints must be on this machine
  read -r name task init steps lr <<< "$spec"
  case ",$chosen," in *",$OUT/pretrain/$name/ssl.ckpt,"*) NEED=1 pretrain "$name" "$task" "$init" "$steps" "$lr" ;; esac
done
save

# 5. fine-tune: recipes chosen on validation, test scored once
start=$(date +%s)
# shellcheck disable=SC2086
$SSL benchmark --config "$BENCH" --data "$DATA" --splits "$SPLIT" --image-size "$SIZE" \
  --seeds "$SEEDS" --label-fractions "$FRACTIONS" --inits "random,imagenet,$chosen" \
  --out "$OUT/benchmark" --no-progress ${EXTRA:-}
stamp "benchmark ($(( $(date +%s) - start )) s this pass)"
# 6. the targets: met, missed, or not all runs in yet (the best SSL init chosen on validation)
if $PY "$HERE/tools/protocol_verdict.py" "$OUT/benchmark" --seeds "$SEEDS" --out "$OUT/benchmark/verdict.json" \
  > "$OUT/benchmark/verdict.md.part"; then
  mv "$OUT/benchmark/verdict.md.part" "$OUT/benchmark/verdict.md"
else
  rm -f "$OUT/benchmark/verdict.md.part"; echo "protocol_verdict.py failed; no verdict table" >&2
fi
save --with-summaries  # the benchmark returned: every run is in (set -e stops the script otherwise)

echo "results: $OUT/benchmark/results.md (with TTA), verdict.md, $OUT/screening/screening.md; state: $STATE (commit it)"
