#!/usr/bin/env bash
# Instructions per operation of AnyDriver against the concrete in-memory driver, counted by
# valgrind's callgrind (deterministic, unlike timings on a shared machine). Installs valgrind
# if missing. Prints one line per operation with both counts and the overhead.
#
#   bash benches/dispatch-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
cargo build --release --quiet --bench dispatch_instructions
BIN=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/dispatch_instructions-* | grep -v '\.d$' | head -1)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
LOW=1000
HIGH=11000
total() { # driver operation variant iterations -> instructions of the whole run
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN" "$@" >/dev/null 2>"$OUT/log"
  sed -n 's/^summary: //p' "$OUT/cg.out"
}
per_op() { # driver operation variant -> instructions per operation
  local low high
  low=$(total "$1" "$2" "$3" $LOW)
  high=$(total "$1" "$2" "$3" $HIGH)
  echo $(( (high - low) / (HIGH - LOW) ))
}
printf '%-11s %-10s %12s %12s %10s\n' driver operation concrete AnyDriver overhead
for driver in inmemory filesystem; do
  for op in stat get_4KiB; do
    c=$(per_op $driver $op concrete)
    a=$(per_op $driver $op any)
    printf '%-11s %-10s %12s %12s %9s%%\n' "$driver" "$op" "$c" "$a" \
      "$(python3 -c "print(f'{($a - $c) / $c * 100:+.2f}')")"
  done
done
