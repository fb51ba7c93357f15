#!/usr/bin/env bash
# The SSL budget curve of the HAM10000 CPU profile: pretext tasks continued from ImageNet at
# increasing numbers of images seen, each budget its own run with its warm-up + cosine schedule
# sized to it (max_steps = budget / batch 64), the rest of the v2 screen's settings unchanged
# (benchmarks/ham10000/configs/pretrain/ham10000_cpu.yaml, 96 px, lr 3e-4, the v2 split, the
# training split plus the unlabelled archive, its copies of validation/test images dropped by
# content). The v2 screen's 300-step runs (19,200 images) are the curve's first point.
#
#   benchmarks/ham10000/ssl_budget/run.sh OUT [STATE]    run RUNS in order, probing each checkpoint
#   (STATE defaults to the state/ folder beside this script)
#
# Resumable: a finished run (DONE) is skipped, a half-done one resumes from its last.ckpt, also
# on another machine: `run.sh carry OUT [STATE]` copies each unfinished run's last.ckpt to
# STATE/carry/NAME.last.ckpt (to commit at the end of a session; about 65 MB for MoCo), and a
# run whose folder lacks one resumes from the carried copy. A finished run's copy is removed.
# After every run its compact state (config with paths relative to the repository, validation
# curves, weights fingerprint, wall time, the frozen probe's validation predictions) is copied
# to STATE, to commit. Validation split only: nothing here scores the test split.
#
# Environment: RUNS ("task:steps ..."), DATA, UNLABELED, SPLIT (a gzipped splits.csv), SSL, PY.
set -euo pipefail
if [ "${1:-}" = carry ]; then  # carry OUT [STATE]: the unfinished runs' last.ckpt into STATE/carry
  OUT=${2:?OUT} HERE=$(cd "$(dirname "$0")" && pwd)
  STATE=${3:-$HERE/state}
  mkdir -p "$STATE/carry"
  for last in "$OUT"/pretrain/*/checkpoints/last.ckpt; do
    dir=$(dirname "$(dirname "$last")")
    [ -f "$last" ] && [ ! -f "$dir/DONE" ] && cp "$last" "$STATE/carry/$(basename "$dir").last.ckpt" \
      && echo "carried $(basename "$dir") -> $STATE/carry/$(basename "$dir").last.ckpt"
  done
  exit 0
fi
OUT=${1:?OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
STATE=${2:-$HERE/state}
DATA=${DATA:-../shared/data/ham10000}
UNLABELED=${UNLABELED:-../shared/data/isic_unlabeled.zip}
SPLIT_GZ=${SPLIT:-$ROOT/benchmarks/ham10000/state/split/splits.csv.gz}
RUNS=${RUNS:-moco:1250 moco:5000 simclr:1250 multitask:1250}
SSL=${SSL:-ssl-derm}
PY=${PY:-python}
mkdir -p "$OUT/split" "$OUT/pretrain" "$STATE"
SPLIT="$OUT/split/splits.csv"
[ -f "$SPLIT" ] || $PY "$ROOT/benchmarks/ham10000/tools/protocol_state.py" expand "$SPLIT_GZ" "$SPLIT"
# the wall log goes on from the committed one (a fresh OUT on another machine)
[ -f "$OUT/wall.log" ] || [ ! -f "$STATE/wall.log" ] || cp "$STATE/wall.log" "$OUT/wall.log"
stamp() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/wall.log"; }

save() {  # compact state of run $1, paths made relative to the repository root
  local name=$1 dir="$OUT/pretrain/$1" dest="$STATE/pretrain/$1"
  mkdir -p "$dest"
  sed -e "s#$ROOT/##g" -e "s#$(cd "$ROOT/.." && pwd)/#../#g" "$dir/config.yaml" > "$dest/config.yaml"
  for f in curves.csv encoder_sha256 wall_s DONE duplicates.txt; do
    [ -f "$dir/$f" ] && cp "$dir/$f" "$dest/"
  done
  [ -f "$OUT/probe_cache/$name.json" ] && mkdir -p "$STATE/probe_cache" && cp "$OUT/probe_cache/$name.json" "$STATE/probe_cache/"
  cp "$OUT/wall.log" "$STATE/wall.log"
}

for run in $RUNS; do
  task=${run%%:*} steps=${run##*:}
  name="imagenet+${task}_$((steps * 64 / 1000))k" dir="$OUT/pretrain/imagenet+${task}_$((steps * 64 / 1000))k"
  if [ ! -f "$dir/DONE" ] && [ ! -f "$dir/checkpoints/last.ckpt" ] && [ -f "$STATE/carry/$name.last.ckpt" ]; then
    mkdir -p "$dir/checkpoints" && cp "$STATE/carry/$name.last.ckpt" "$dir/checkpoints/last.ckpt"
    stamp "pretrain $name: resuming from the carried last.ckpt"
  fi
  if [ ! -f "$dir/DONE" ]; then
    again=--overwrite
    [ -f "$dir/checkpoints/last.ckpt" ] && again=--resume
    start=$(date +%s)
    stamp "pretrain $name: $steps steps ($again)"
    $SSL pretrain --config "$ROOT/benchmarks/ham10000/configs/pretrain/ham10000_cpu.yaml" --task "$task" --init imagenet \
      --max-steps "$steps" --epochs 100000 --lr 0.0003 --image-size 96 --data "$DATA" --splits "$SPLIT" \
      --unlabeled "$UNLABELED" --out "$dir" $again --no-progress
    $PY -c "import sys; from ssl_derm.checkpoint import weights_fingerprint as f; print(f(sys.argv[1]))" \
      "$dir/ssl.ckpt" > "$dir/encoder_sha256"
    prev=0; [ -f "$dir/wall_s" ] && prev=$(cat "$dir/wall_s")
    echo $(( prev + $(date +%s) - start )) > "$dir/wall_s"
    echo "steps=$steps batch=64 lr=0.0003 size=96 threads=${OMP_NUM_THREADS:-default}" > "$dir/DONE"
    stamp "pretrained $name ($(cat "$dir/wall_s") s)"
    rm -f "$STATE/carry/$name.last.ckpt"  # finished: its copy is no longer needed
  fi
  if [ ! -f "$OUT/probe_cache/$name.json" ]; then
    $PY "$ROOT/benchmarks/ham10000/tools/pretrain_curves.py" "$OUT/pretrain" > /dev/null || true
    start=$(date +%s)
    $PY "$ROOT/benchmarks/ham10000/tools/knn_probe.py" --data "$DATA" --splits "$SPLIT" --inits "$dir/ssl.ckpt" --cache "$OUT/probe_cache"
    stamp "probed $name ($(( $(date +%s) - start )) s)"
  fi
  save "$name"
done
