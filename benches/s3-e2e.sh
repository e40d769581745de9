#!/usr/bin/env bash
# Issue 4 figures: marina-registry on S3 (a local moto server) pushing a 1 GiB blob
# monolithically and in 1 MiB chunks, with the server's peak RSS for each.
#
#   bash benches/s3-e2e.sh            # SIZE=256MiB bash benches/s3-e2e.sh for a quicker run
#
# Compare with a direct aws-sdk-s3 multipart upload of the same size to the same kind of
# server:
#   S3_BENCH_MIB=1024 S3_BENCH_MODE=sdk cargo test --release --all-features --test s3 \
#     push_throughput -- --ignored --nocapture    # (with the S3_* variables of start-moto.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1GiB}
WORK=$(mktemp -d /tmp/marina-s3e2e.XXXXXX)
(cd ../shared/tools/regbench && go build -o "$WORK/regbench" .)
cargo build --release --quiet --bin marina-registry
moto_env=$(bash scripts/start-moto.sh); eval "$moto_env"
trap 'kill "$MOTO_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
curl -sf -X PUT "$S3_ENDPOINT/$S3_BUCKET" -o /dev/null || true
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

run() { # label regbench-args
  STORAGE_TYPE=s3 S3_PREFIX="e2e-$1-$$" MARINA_LISTEN=127.0.0.1:$PORT RUST_LOG=warn \
    target/release/marina-registry >"$WORK/marina.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
  local line; line=$("$WORK/regbench" $2 -url "http://127.0.0.1:$PORT" -seed 3 -timeout 900s 2>/dev/null | grep '^scenario=')
  local kb; kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$1: $(tr ' ' '\n' <<<"$line" | grep -E '^(MBps|secs|errors)=' | tr '\n' ' ')peak_rss=$((kb / 1024))MiB"
}
run mono "push-mono -size $SIZE -n 1 -conc 1"
run chunked-1MiB "push-chunked -size $SIZE -chunk 1MiB"
