#!/usr/bin/env bash
# The label regime of the SSL budget study: random, ImageNet and the SSL encoders chosen on the
# validation probe (INITS), fine-tuned at label fractions 0.03 and 0.1 with 5 seeds and at 1.0
# with 3 (the same seeds for every init), each init's recipe chosen on validation, test scored
# once per reported run (the v2 split).
#
#   benchmarks/ham10000/ssl_budget/labels.sh OUT [STATE]
#
# Three parts, run in this order:
#   low   0.03, 5 seeds, configs/benchmark/ham10000_cpu_labels.yaml (validated every 25 steps)
#   mid   0.1,  5 seeds, configs/benchmark/ham10000_cpu_converged.yaml (the v2 profile)
#   full  1.0,  3 seeds, the v2 profile
# mid and full run the v2 benchmark's profile, so v2's finished runs of the same inits (random,
# imagenet, imagenet+multitask: seeds 0-2 at 0.1, all of 1.0) are restored from its state and
# count as they are (a run is reused only when its run key, i.e. every setting and the init's
# weights, and its split match); only what v2 lacks runs here.
#
# Resumable: a finished run (its metrics.json, run_key and split) is never redone, and the run in
# progress continues from its last.ckpt in OUT (same run_key, split and data settings); run it
# again after any interruption. The runs' compact state (metrics, predictions, config, split; no
# summary tables, which are test figures) is saved to STATE/labels every 10 minutes and after
# each part, leaving out the files identical to v2's state. PARTS picks parts (default "low mid full").
# INITS: comma-separated (default random,imagenet: the baselines, which need no SSL choice).
# BLIND (default --blind): the benchmark prints validation scores only and writes no test table;
# score.sh sets it empty, once, at the end.
set -euo pipefail
OUT=${1:?OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
STATE=${2:-$HERE/state}
DATA=${DATA:-../shared/data/ham10000}
SPLIT_GZ=${SPLIT:-$ROOT/benchmarks/ham10000/state/split/splits.csv.gz}
INITS=${INITS:-random,imagenet}
SSL=${SSL:-ssl-derm}
PY=${PY:-python}
CONFIGS="$ROOT/benchmarks/ham10000/configs/benchmark"
V2="$ROOT/benchmarks/ham10000/state/benchmark"
PARTS=${PARTS:-low mid full}
BLIND=${BLIND---blind}
mkdir -p "$OUT/split" "$STATE/labels"
SPLIT="$OUT/split/splits.csv"
[ -f "$SPLIT" ] || $PY "$ROOT/benchmarks/ham10000/tools/protocol_state.py" expand "$SPLIT_GZ" "$SPLIT"
# the wall log goes on from the committed one (a fresh OUT on another machine)
[ -f "$OUT/wall.log" ] || [ ! -f "$STATE/labels/wall.log" ] || cp "$STATE/labels/wall.log" "$OUT/wall.log"
stamp() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/wall.log"; }
state() { $PY "$ROOT/benchmarks/ham10000/tools/protocol_state.py" "$@" > /dev/null; }
keep() {  # save part $1's state, without the files v2's state already holds
  # saved aside first and v2's files dropped there, so that a v2 run restored into this OUT never
  # overwrites this study's run of the same path that another process saved into STATE
  local aside
  aside=$(mktemp -d)
  state save "$OUT/$1" "$aside"
  (cd "$aside" && find . -type f | while read -r f; do
    if [ -f "$V2/$f" ] && { cmp -s "$f" "$V2/$f" || { [[ $f == *.gz ]] && zcmp -s "$f" "$V2/$f"; }; }; then rm "$f"; fi
  done; find . -type d -empty -delete)
  mkdir -p "$STATE/labels/$1" && cp -a "$aside/." "$STATE/labels/$1/" && rm -rf "$aside"
}
declare -A PART=(
  [low]="0.03 5 ham10000_cpu_labels.yaml"
  [mid]="0.1 5 ham10000_cpu_converged.yaml"
  [full]="1.0 3 ham10000_cpu_converged.yaml"
)
for name in $PARTS; do
  read -r fractions seeds config <<< "${PART[$name]}"
  CONFIG="$CONFIGS/$config"
  # this study's own runs first: restore never overwrites, so a run redone here wins over v2's copy
  [ -d "$STATE/labels/$name" ] && state restore "$STATE/labels/$name" "$OUT/$name"
  [ "$name" != low ] && state restore "$V2" "$OUT/$name"
  ( while sleep 600; do keep "$name"; done ) &
  saver=$!
  start=$(date +%s)
  stamp "benchmark $name: fractions $fractions, $seeds seeds, inits $INITS"
  # its log stays in OUT, not in STATE; a blind pass logs apart, so its log holds no test figure
  log="$OUT/$name${BLIND:+.blind}.log"
  $SSL benchmark --config "$CONFIG" --data "$DATA" --splits "$SPLIT" --label-fractions "$fractions" \
    --seeds "$seeds" --inits "$INITS" --out "$OUT/$name" --no-progress $BLIND >> "$log" 2>&1
  stamp "benchmark $name done ($(( $(date +%s) - start )) s this pass)"
  kill $saver 2>/dev/null || true
  keep "$name"
  cp "$OUT/wall.log" "$STATE/labels/wall.log"
done
