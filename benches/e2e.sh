#!/usr/bin/env bash
# End-to-end benchmark: marina-registry against CNCF Distribution (Debian's docker-registry,
# 2.8.x) side by side on 127.0.0.1, both with filesystem storage, driven by the shared
# `regbench` tool with the same scenarios in alternation. Prints one line per scenario with
# both figures and the ratio marina/distribution, then peak RSS figures and the machine's
# single-core SHA-256 rate for reference.
#
#   bash benches/e2e.sh                  # installs golang-go and docker-registry if missing
#   SCENARIOS="push-mono pull" bash benches/e2e.sh
#   REPEAT=5 bash benches/e2e.sh         # runs per scenario and server (default 3; medians)
#   MARINA_BIN=/tmp/marina-old bash benches/e2e.sh   # a binary built elsewhere (A/B of commits)
#   STORAGE_DIR=/dev/shm bash benches/e2e.sh   # both servers' storage on tmpfs: no disk
#   bash benches/e2e.sh | tee benches/results/e2e-latest.txt && python3 benches/e2e-chart.py
#                                        # record the figures and redraw docs/e2e.svg
#
# Each scenario runs REPEAT times per server, alternating Distribution and marina, each run on
# a freshly started server with empty storage; the figures printed are the medians (the
# machines this runs on are shared and noisy), the ratio is median/median.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# regbench's sources: beside the project checkout (../shared), or the workplace's copy for a
# clone made elsewhere.
if [ -z "${REGBENCH_SRC:-}" ]; then
  REGBENCH_SRC=$ROOT/../shared/tools/regbench
  [ -d "$REGBENCH_SRC" ] || REGBENCH_SRC=/work/shared/tools/regbench
fi
REPEAT=${REPEAT:-3}
WORK=$(mktemp -d "${STORAGE_DIR:-/tmp}/marina-e2e.XXXXXX")
MARINA_ADDR=127.0.0.1:5101
DIST_ADDR=127.0.0.1:5102
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v go >/dev/null || ! command -v docker-registry >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq golang-go docker-registry >/dev/null
fi
# Debian's package starts its own service on :5000; we run our own instances only.
(cd "$REGBENCH_SRC" && go build -o "$WORK/regbench" .)
# MARINA_BIN=/path/to/marina-registry benchmarks a binary built elsewhere (an A/B of two
# commits); by default the checkout's release build.
if [ -z "${MARINA_BIN:-}" ]; then
  cargo build --release --quiet --bin marina-registry
  MARINA_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/marina-registry
fi

wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$1/v2/" && return 0; sleep 0.05; done; echo "server $1 did not start" >&2; return 1; }

# Every run gets a fresh, empty storage directory. Once its server stopped, the files' data
# is discarded (truncated to 0 bytes, which drops their dirty pages without writing them
# back, and frees the disk space), but no file is deleted before the script exits. Both
# matter on this project's machines (ext4 without a journal): gigabytes of writeback left
# by one run slowed the fsyncs of the next ~2x, and deleting tens of thousands of files
# slowed the next runs' file creations up to 4x (the inode allocator skips inodes freed in
# the last 60-300 s: `recently_deleted` led the kernel profile).
fresh_dir() { mktemp -d "$WORK/$1.XXXXXX"; }
discard_data() { find "$1" -type f -size +0 -exec truncate -s 0 {} + 2>/dev/null || true; }

start_marina() {
  MARINA_DATA=$(fresh_dir marina-data)
  MARINA_LISTEN=$MARINA_ADDR STORAGE_TYPE=filesystem STORAGE_ROOT_DIRECTORY="$MARINA_DATA" RUST_LOG=warn \
    "$MARINA_BIN" >"$WORK/marina.log" 2>&1 &
  MARINA_PID=$!; PIDS+=("$MARINA_PID"); wait_up $MARINA_ADDR
}
stop_marina() { kill "$MARINA_PID" 2>/dev/null || true; wait "$MARINA_PID" 2>/dev/null || true; discard_data "$MARINA_DATA"; }
start_dist() {
  DIST_DATA=$(fresh_dir dist-data)
  cat >"$WORK/dist.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $DIST_DATA}
  delete: {enabled: true}
http: {addr: $DIST_ADDR}
YML
  docker-registry serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
  DIST_PID=$!; PIDS+=("$DIST_PID"); wait_up $DIST_ADDR
}
stop_dist() { kill "$DIST_PID" 2>/dev/null || true; wait "$DIST_PID" 2>/dev/null || true; discard_data "$DIST_DATA"; }

field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }

# name | regbench arguments | figure to compare
SCEN=(
  "push-mono-4x256MiB|push-mono -size 256MiB -n 4 -conc 1|MBps"
  "push-chunked-256MiB-1MiB|push-chunked -size 256MiB -chunk 1MiB|MBps"
  "push-chunked-256MiB-8MiB|push-chunked -size 256MiB -chunk 8MiB|MBps"
  "pull-4x256MiB-c1|pull -size 256MiB -n 4 -conc 1|MBps"
  "pull-4x256MiB-c4|pull -size 256MiB -n 4 -conc 4|MBps"
  "head-blob-c16|head-blob -conc 16 -duration 10s|ops_per_s"
  "get-manifest-c16|get-manifest -conc 16 -duration 10s|ops_per_s"
  "push-small-2000x4KiB-c8|push-small -size 4KiB -n 2000 -conc 8|ops_per_s"
  "push-manifest-500-c8|push-manifest -n 500 -conc 8|ops_per_s"
  "mixed-push|mixed -mixed-verify=false|push_MBps"
  "mixed-pull|mixed -mixed-verify=false|pull_MBps"
)
FILTER=${SCENARIOS:-}

run_one() { # url args
  "$WORK/regbench" $2 -url "http://$1" -seed 42 -timeout 600s 2>>"$WORK/regbench.err" | grep "^scenario=" | head -1
}

echo "# REPEAT=$REPEAT${SCENARIOS:+ SCENARIOS=\"$SCENARIOS\"}${STORAGE_DIR:+ STORAGE_DIR=$STORAGE_DIR} bash benches/e2e.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
printf '%-28s %14s %14s %8s  %s\n' scenario marina distribution ratio unit
for s in "${SCEN[@]}"; do
  IFS='|' read -r name args unit <<<"$s"
  if [ -n "$FILTER" ] && ! grep -qw -- "${args%% *}" <<<"$FILTER"; then continue; fi
  ds=(); ms=()
  for _ in $(seq 1 "$REPEAT"); do
    start_dist; ds+=("$(run_one $DIST_ADDR "$args" | field "$unit")"); stop_dist
    start_marina; ms+=("$(run_one $MARINA_ADDR "$args" | field "$unit")"); stop_marina
  done
  d=$(median "${ds[@]}"); m=$(median "${ms[@]}")
  ratio=$(python3 -c "print(f'{float(\"$m\")/float(\"$d\"):.2f}x' if '$d' and float('$d')>0 else 'n/a')" 2>/dev/null || echo n/a)
  printf '%-28s %14s %14s %8s  %-10s runs marina %s, distribution %s\n' "$name" "${m:-ERR}" "${d:-ERR}" \
    "$ratio" "$unit" "$(IFS=/; echo "${ms[*]}")" "$(IFS=/; echo "${ds[*]}")"
done

peak_rss() { # args -> prints peak RSS (MiB) of a fresh marina while regbench runs them
  start_marina
  "$WORK/regbench" $1 -url "http://$MARINA_ADDR" -seed 7 -timeout 900s >/dev/null 2>>"$WORK/regbench.err"
  local kb; kb=$(awk '/VmHWM/ {print $2}' /proc/$MARINA_PID/status)
  stop_marina
  echo "$((kb / 1024))"
}
if [ -z "$FILTER" ] || grep -qw rss <<<"$FILTER"; then
  echo "peak RSS, 2 GiB monolithic push:        $(peak_rss 'push-mono -size 2GiB -n 1 -conc 1') MiB"
  echo "peak RSS, 16 concurrent 64 MiB pushes:   $(peak_rss 'push-mono -size 64MiB -n 16 -conc 16') MiB"
fi
echo "single-core SHA-256 (openssl speed -evp sha256 -bytes 1048576):"
openssl speed -seconds 3 -evp sha256 -bytes 1048576 2>/dev/null | tail -1
