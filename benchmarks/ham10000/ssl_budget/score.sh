#!/usr/bin/env bash
# The SSL budget study's test scoring: once, at the end, after every label-regime run is in.
# Written before any test figure of the study was read, so that the end is one command.
#
#   benchmarks/ham10000/ssl_budget/score.sh OUT
#
# 1. Each part of the label regime (0.03, 0.1, 1.0) is reported with all four inits: labels.sh
#    with random, ImageNet and the two SSL inits of state/labels/choice.json (chosen on the
#    validation probe). Every run is restored from state/labels and v2's state; a run still
#    missing is trained first, so this also finishes the protocol. Not blind: the parts' test
#    tables are written here, for the first time.
# 2. tools/budget_verdict.py checks the targets against the three parts' paired tables:
#    OUT/verdict.md and OUT/verdict.json.
# 3. tools/fraction_probe.py scores the frozen-encoder linear probe of the same inits on the
#    test split at each fraction (5 label draws, the fine-tuning runs' own): OUT/fraction_probe_test.json,
#    its predictions kept in state/fraction_probe/test.
# Same environment as labels.sh (SSL, PY, DATA; one torch thread per process is how it ran).
set -euo pipefail
OUT=${1:?OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
STATE=${STATE:-$HERE/state}
DATA=${DATA:-../shared/data/ham10000}
PY=${PY:-python}
CHOICE="$STATE/labels/choice.json"
# the inits as --inits names them: the baselines, then the chosen SSL encoders
SSL_INITS=$($PY -c 'import json,sys; c=json.load(open(sys.argv[1])); print(",".join(c["inits"][n] for n in (c["best"], c["second"])))' "$CHOICE")
INITS="random,imagenet,$SSL_INITS"
mkdir -p "$OUT"
echo "score: inits $INITS" | tee -a "$OUT/score.log"
INITS=$INITS PARTS="low mid full" BLIND="" "$HERE/labels.sh" "$OUT" "$STATE"
$PY "$ROOT/benchmarks/ham10000/tools/budget_verdict.py" --choice "$CHOICE" \
  "$OUT/low" "$OUT/mid" "$OUT/full" --out "$OUT/verdict.json" | tee "$OUT/verdict.md"
$PY "$ROOT/benchmarks/ham10000/tools/fraction_probe.py" --data "$DATA" --splits "$OUT/split/splits.csv" \
  --inits imagenet random ${SSL_INITS//,/ } --fractions 0.03 0.1 1.0 --seeds 5 --split test \
  --cache "$STATE/fraction_probe" --out "$OUT/fraction_probe_test.json"
echo "score: done; the verdict in $OUT/verdict.md" | tee -a "$OUT/score.log"
