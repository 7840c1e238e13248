#!/usr/bin/env bash
# `make instructions`: instructions per event (callgrind), rulehost and rulehost-native, on
# the first 10k and 20k events of bench-data/ ((20k - 10k) / 10k, so startup and loading
# cancel out), `--threads 1`, with the 2-rule and 50-rule sets `make bench` uses.
# Instruction counts repeat run to run (the parser's hash seeds move them by about 0.3k),
# unlike wall time on a shared VM. Usage: scripts/instructions.sh RULEHOST NATIVE
set -euo pipefail
rulehost=$1 native=$2
root=$(cd "$(dirname "$0")/.." && pwd)
data=$root/bench-data/databricks-1m.jsonl
[ -f "$data" ] || { echo "instructions: run \`make bench\` first (it generates $data)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -n 10000 "$data" > "$work/10k.jsonl"
head -n 20000 "$data" > "$work/20k.jsonl"
python3 -c "
import sys; sys.path.insert(0, '$root/scripts'); import bench
from pathlib import Path
bench.write_rule_folders(Path('$work'))"
# Code compiled under valgrind differs (it hides some CPU features): its own cache.
export RULEHOST_CACHE_DIR=$work/cache

count() { # label, out prefix, command...
  local label=$1 out=$2; shift 2
  local n
  for n in 10k 10k 20k; do # the first 10k run fills the cache
    valgrind --tool=callgrind --callgrind-out-file="$out.$n" "$@" "$work/$n.jsonl" \
      > /dev/null 2> "$out.$n.err" || true
  done
  local a b
  a=$(grep -m1 '^summary:' "$out.10k" | cut -d' ' -f2)
  b=$(grep -m1 '^summary:' "$out.20k" | cut -d' ' -f2)
  printf '%-20s %6.1fk instructions per event\n' "$label" "$(python3 -c "print(($b - $a) / 1e7)")"
}

for rules in rules-2 rules-50; do
  count "rulehost, ${rules#rules-} rules" "$work/rh-$rules" \
    "$rulehost" eval --rules "$work/$rules" --threads 1
  count "native, ${rules#rules-} rules" "$work/nat-$rules" \
    "$native" --rules "$work/$rules" --threads 1
done
