#!/usr/bin/env bash
# Garbage collection at scale: a store of GC_FILL_BLOBS blobs (default 10 000) in images whose
# layers are shared across 20 repositories, half of the images deleted, then
# `marina-registry gc --grace 0s`: the bytes stored before and after (the difference must be
# exactly the bytes only deleted images referenced), the collection's time and peak memory.
# On the filesystem (a temporary directory) and, with S3_ENDPOINT set (scripts/with-s3.sh
# sets it), on S3 under a fresh prefix of S3_BUCKET.
#
#   bash benches/gc-scale.sh                          # filesystem only
#   bash scripts/with-s3.sh bash benches/gc-scale.sh  # filesystem and S3 (moto)
#   GC_FILL_BLOBS=50000 bash benches/gc-scale.sh
#   GC_FILL_BLOBS=2000 GC_FILL_REPOSITORIES=500 S3_LATENCY_MS=10 \
#     bash scripts/with-s3.sh bash benches/gc-scale.sh   # many repositories, a remote store
#
# SKIP_FILESYSTEM=1 measures S3 only. GC_FILL_REPOSITORIES (default 20) spreads the images over that many repositories.
# S3_LATENCY_MS puts benches/tools/latency-proxy.py in front of the S3 server for the
# collection (not the fill), delaying each request by that much: what a collection waits for
# on a store with AWS S3's round trips instead of moto's on loopback.
#
# Prints per backend:
#   <backend>: blobs=… before_bytes=… after_bytes=… reclaimed_bytes=… expected_bytes=… exact=yes
#              gc: manifests=… blobs=… bytes=… uploads=… in …s  cpu=…s peak_rss=… MiB
# (cpu: the collection's user + system CPU time; its wall time on a busy machine follows the
# load, its CPU time much less.)
set -euo pipefail
cd "$(dirname "$0")/.."
export GC_FILL_BLOBS=${GC_FILL_BLOBS:-10000}
WORK=$(mktemp -d "${STORAGE_DIR:-/tmp}/marina-gc-scale.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# MARINA_BIN and GC_FILL_BIN run prebuilt binaries instead (e.g. copies, while the tree changes).
if [ -z "${MARINA_BIN:-}" ]; then
  cargo build --release --quiet --bin marina-registry
  MARINA_BIN=${CARGO_TARGET_DIR:-target}/release/marina-registry
fi
BIN=$MARINA_BIN
if [ -n "${GC_FILL_BIN:-}" ]; then
  fill() { "$GC_FILL_BIN" 2>/dev/null | grep -E '^(filled|stored):'; }
else
  fill() { cargo bench --quiet --bench gc_fill 2>/dev/null | grep -E '^(filled|stored):'; }
fi
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

run() {
  local backend=$1
  local filled before gc_line after rss
  filled=$(fill)
  before=$(GC_FILL_MEASURE=1 fill)
  /usr/bin/time -f 'peak_rss_kb=%M user_s=%U sys_s=%S' -o "$WORK/time" \
    env ${GC_ENDPOINT:+S3_ENDPOINT=$GC_ENDPOINT} "$BIN" gc --grace 0s >"$WORK/gc.out" 2>"$WORK/gc.err" \
    || { cat "$WORK/gc.err" >&2; exit 1; }
  gc_line=$(tail -1 "$WORK/gc.out")
  after=$(GC_FILL_MEASURE=1 fill)
  rss=$(field peak_rss_kb <"$WORK/time")
  # CPU time as well as the wall time: on a shared machine the wall time follows the load.
  cpu=$(awk -v u="$(field user_s <"$WORK/time")" -v s="$(field sys_s <"$WORK/time")" 'BEGIN { printf "%.2f", u + s }')
  local b a e
  b=$(field bytes <<<"$before"); a=$(field bytes <<<"$after"); e=$(field reclaimable_bytes <<<"$filled")
  local exact=no; [ $((b - a)) -eq "$e" ] && exact=yes
  echo "$backend: blobs=$(field blobs <<<"$before") before_bytes=$b after_bytes=$a reclaimed_bytes=$((b - a)) expected_bytes=$e exact=$exact"
  echo "    $gc_line  cpu=${cpu}s peak_rss=$((rss / 1024)) MiB   ($filled)"
  [ "$exact" = yes ]
}

if [ "${SKIP_FILESYSTEM:-}" != 1 ]; then
  STORAGE_TYPE=filesystem STORAGE_ROOT_DIRECTORY="$WORK/fs" run filesystem
  rm -rf "$WORK/fs"
fi

if [ -n "${S3_ENDPOINT:-}" ]; then
  curl -s -o /dev/null -X PUT "$S3_ENDPOINT/${S3_BUCKET:-marina-test}" || true
  if [ -n "${S3_LATENCY_MS:-}" ]; then
    source benches/tools/latency-proxy.sh
    start_latency_proxy "$S3_ENDPOINT" "$S3_LATENCY_MS" "$WORK"
    trap 'kill "$LATENCY_PROXY_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
    GC_ENDPOINT=$LATENCY_ENDPOINT
  fi
  STORAGE_TYPE=s3 S3_PREFIX="gc-scale/$(date +%s)-$RANDOM" run s3
else
  echo "s3: skipped (S3_ENDPOINT not set; run through scripts/with-s3.sh)"
fi
