#!/usr/bin/env bash
# The label regime of the SSL budget study: random, ImageNet and the SSL encoders chosen on the
# validation probe (INITS), fine-tuned at label fractions 0.03 and 0.1 with 5 seeds and at 1.0
# with 3 (the same seeds for every init), each init's recipe chosen on validation, test scored
# once per reported run (configs/benchmark/ham10000_cpu_labels.yaml; the v2 split).
#
#   benchmarks/ham10000/ssl_budget/labels.sh OUT [STATE]
#
# Resumable: a finished run (its metrics.json, run_key and split) is never redone; run it again
# after any interruption. After each pass the runs' compact state (metrics, predictions, config,
# split; no summary tables, which are test figures) is saved to STATE/labels, to commit.
# INITS: comma-separated (default random,imagenet: the baselines, which need no SSL choice).
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
CONFIG="$ROOT/benchmarks/ham10000/configs/benchmark/ham10000_cpu_labels.yaml"
mkdir -p "$OUT/split" "$STATE/labels"
SPLIT="$OUT/split/splits.csv"
[ -f "$SPLIT" ] || $PY "$ROOT/benchmarks/ham10000/tools/protocol_state.py" expand "$SPLIT_GZ" "$SPLIT"
stamp() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/wall.log"; }
state() { $PY "$ROOT/benchmarks/ham10000/tools/protocol_state.py" "$@" > /dev/null; }
for part in "low 0.03,0.1 5" "full 1.0 3"; do
  read -r name fractions seeds <<< "$part"
  [ -d "$STATE/labels/$name" ] && state restore "$STATE/labels/$name" "$OUT/$name"
  ( while sleep 600; do state save "$OUT/$name" "$STATE/labels/$name"; done ) &
  saver=$!
  start=$(date +%s)
  stamp "benchmark $name: fractions $fractions, $seeds seeds, inits $INITS"
  # its log holds test figures: left in OUT, not in STATE
  $SSL benchmark --config "$CONFIG" --data "$DATA" --splits "$SPLIT" --label-fractions "$fractions" \
    --seeds "$seeds" --inits "$INITS" --out "$OUT/$name" --no-progress >> "$OUT/$name.log" 2>&1
  stamp "benchmark $name done ($(( $(date +%s) - start )) s this pass)"
  kill $saver 2>/dev/null || true
  state save "$OUT/$name" "$STATE/labels/$name"
  cp "$OUT/wall.log" "$STATE/labels/wall.log"
done
