#!/usr/bin/env bash
# A/B of marina-registry binaries on one collection: fills a store once (benches/gc_fill.rs;
# GC_FILL_BLOBS, GC_FILL_REPOSITORIES as in benches/gc-scale.sh), then runs
# `marina-registry gc --dry-run --grace 0s` (plus GC_ARGS) with each binary in turn, ROUNDS
# times (default 3). A dry run changes nothing, so every run does the same work: it walks
# every repository, reads every record and link, lists every blob. Prints each run's wall time
# and, per binary, the median of its time divided by the first binary's in the same round.
#
#   bash benches/gc-ab.sh /tmp/marina-old target/release/marina-registry    # filesystem
#   GC_FILL_BLOBS=2000 GC_FILL_REPOSITORIES=500 S3_LATENCY_MS=20 \
#     bash scripts/with-s3.sh bash benches/gc-ab.sh OLD NEW                  # S3 (moto)
#
# With S3_ENDPOINT set (scripts/with-s3.sh) the store is S3 under a fresh prefix; with
# S3_LATENCY_MS the collections reach it through benches/tools/latency-proxy.py, which
# delays every request by that much (the fill goes straight to it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash benches/gc-ab.sh BINARY_A BINARY_B [...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d "${STORAGE_DIR:-/tmp}/marina-gc-ab.XXXXXX")
PROXY_PID=
trap '[ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

if [ -n "${S3_ENDPOINT:-}" ]; then
  curl -s -o /dev/null -X PUT "$S3_ENDPOINT/${S3_BUCKET:-marina-test}" || true
  export STORAGE_TYPE=s3 S3_PREFIX="gc-ab/$(date +%s)-$RANDOM"
  GC_ENDPOINT=$S3_ENDPOINT
  if [ -n "${S3_LATENCY_MS:-}" ]; then
    source benches/tools/latency-proxy.sh
    start_latency_proxy "$S3_ENDPOINT" "$S3_LATENCY_MS" "$WORK"
    PROXY_PID=$LATENCY_PROXY_PID
    GC_ENDPOINT=$LATENCY_ENDPOINT
  fi
else
  export STORAGE_TYPE=filesystem STORAGE_ROOT_DIRECTORY="$WORK/fs"
fi

if [ -n "${GC_FILL_BIN:-}" ]; then
  "$GC_FILL_BIN" | grep '^filled:'
else
  cargo bench --quiet --bench gc_fill 2>/dev/null | grep '^filled:'
fi
echo "# ROUNDS=$ROUNDS S3_LATENCY_MS=${S3_LATENCY_MS:-} GC_ARGS=${GC_ARGS:-}, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A ratios
for round in $(seq "$ROUNDS"); do
  first=
  for i in $(seq $#); do
    bin=${!i}
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    env ${GC_ENDPOINT:+S3_ENDPOINT=$GC_ENDPOINT} "$bin" gc --dry-run --grace 0s ${GC_ARGS:-} >"$WORK/gc.out" 2>"$WORK/gc.err" \
      || { cat "$WORK/gc.err" >&2; exit 1; }
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    echo "round $round binary $i ($bin): ${secs}s  $(tail -1 "$WORK/gc.out")"
    [ -n "$first" ] || first=$secs
    ratios[$i]="${ratios[$i]:-} $(awk -v a="$secs" -v b="$first" 'BEGIN { printf "%.3f", a / b }')"
  done
done
for i in $(seq 2 $#); do
  median=$(tr ' ' '\n' <<<"${ratios[$i]}" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  echo "binary $i (${!i}) time / binary 1's: median $median (rounds:${ratios[$i]})"
done
