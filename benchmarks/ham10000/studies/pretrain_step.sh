# Sourced by benchmark_ham10000_cpu.sh and remeasure_corrections.sh: one resumable pretraining run
# of the HAM10000 CPU profile. Needs OUT, SSL, DATA, UNLABELED and HERE (benchmarks/ham10000).  pretrain NAME TASK INIT EPOCHS LR  (NAME may hold a folder:
# pretrain-ablation/NAME goes to $OUT/pretrain-ablation/NAME, a plain NAME to $OUT/pretrain/NAME).
pretrain() {
  local dir="$OUT/pretrain/$1"
  case $1 in */*) dir="$OUT/$1";; esac
  if [ -f "$dir/DONE" ]; then echo "pretrain $1: done"; return; fi
  local again=--overwrite
  [ -f "$dir/checkpoints/last.ckpt" ] && again=--resume
  $SSL pretrain --config "$HERE/configs/pretrain/ham10000_cpu.yaml" --task "$2" --init "$3" --epochs "$4" --lr "$5" \
    --data "$DATA" --unlabeled "$UNLABELED" --out "$dir" $again --no-progress
  touch "$dir/DONE"
}
