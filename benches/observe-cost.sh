#!/usr/bin/env bash
# What metrics and notifications cost: the same marina-registry binary, side by side in one
# run, with them off, with metrics on (--metrics-listen, scraped every second as Prometheus
# would), and with metrics and notifications on (one endpoint, a local sink answering 200 to
# every POST), on the scenarios that are most sensitive to per-request overhead.
#
#   bash benches/observe-cost.sh                  # REPEAT=5 runs per scenario and setting
#   REPEAT=3 SCENARIOS="head-blob" bash benches/observe-cost.sh
#   BASELINE_BIN=/tmp/marina-registry-old bash benches/observe-cost.sh   # also an older binary
#
# Runs alternate between the settings (off, metrics, metrics+notify, off, ...), each on a
# freshly started server with empty filesystem storage; the figures printed are medians, and
# the cost is 1 - median(setting) / median(off). Needs what benches/e2e.sh needs (it installs
# golang-go for regbench if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ -z "${REGBENCH_SRC:-}" ]; then
  REGBENCH_SRC=$ROOT/../shared/tools/regbench
  [ -d "$REGBENCH_SRC" ] || REGBENCH_SRC=/work/shared/tools/regbench
fi
REPEAT=${REPEAT:-5}
WORK=$(mktemp -d "${STORAGE_DIR:-/tmp}/marina-observe.XXXXXX")
ADDR=127.0.0.1:5111
METRICS_ADDR=127.0.0.1:5112
SINK_ADDR=127.0.0.1:5113
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v go >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
fi
(cd "$REGBENCH_SRC" && go build -o "$WORK/regbench" .)
cargo build --release --quiet --bin marina-registry
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/marina-registry

python3 benches/notification-sink.py "$SINK_ADDR" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!; PIDS+=("$SINK_PID")
cat >"$WORK/notify.toml" <<TOML
[[notifications.endpoints]]
name = "bench"
url = "http://$SINK_ADDR/events"
TOML

wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$1" && return 0; sleep 0.05; done; echo "server $1 did not start" >&2; return 1; }

start() { # setting
  DATA=$(mktemp -d "$WORK/data.XXXXXX")
  local args=(--listen "$ADDR" --storage filesystem --root-directory "$DATA")
  case $1 in
    metrics) args+=(--metrics-listen "$METRICS_ADDR") ;;
    notify) args+=(--metrics-listen "$METRICS_ADDR" --config "$WORK/notify.toml") ;;
  esac
  local bin=$BIN
  [ "$1" = baseline ] && bin=$BASELINE_BIN
  RUST_LOG=warn "$bin" "${args[@]}" >"$WORK/marina.log" 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_up "$ADDR/v2/"
  SCRAPER=""
  if [ "$1" = metrics ] || [ "$1" = notify ]; then
    (while sleep 1; do curl -sf -o /dev/null "http://$METRICS_ADDR/metrics" || true; done) &
    SCRAPER=$!; PIDS+=("$SCRAPER")
  fi
}
stop() {
  [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null || true
  kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true
  find "$DATA" -type f -size +0 -exec truncate -s 0 {} + 2>/dev/null || true
}

field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
cost() { python3 -c "print(f'{(1 - float(\"$2\") / float(\"$1\")) * 100:+.1f}%')"; }

SCEN=(
  "head-blob-c16|head-blob -conc 16 -duration 10s|ops_per_s"
  "get-manifest-c16|get-manifest -conc 16 -duration 10s|ops_per_s"
  "push-small-2000x4KiB-c8|push-small -size 4KiB -n 2000 -conc 8|ops_per_s"
)
echo "# REPEAT=$REPEAT bash benches/observe-cost.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
SETTINGS=(off metrics notify)
[ -n "${BASELINE_BIN:-}" ] && SETTINGS+=(baseline)
printf '%-26s %12s %12s %12s %9s %9s\n' scenario off metrics +notify "cost(m)" "cost(m+n)"
for s in "${SCEN[@]}"; do
  IFS='|' read -r name args unit <<<"$s"
  if [ -n "${SCENARIOS:-}" ] && ! grep -qw -- "${args%% *}" <<<"$SCENARIOS"; then continue; fi
  declare -A runs=([off]="" [metrics]="" [notify]="" [baseline]="")
  for _ in $(seq 1 "$REPEAT"); do
    for setting in "${SETTINGS[@]}"; do
      start "$setting"
      v=$("$WORK/regbench" $args -url "http://$ADDR" -seed 42 -timeout 600s 2>>"$WORK/regbench.err" | grep "^scenario=" | head -1 | field "$unit")
      stop
      runs[$setting]="${runs[$setting]} $v"
    done
  done
  off=$(median ${runs[off]}); m=$(median ${runs[metrics]}); n=$(median ${runs[notify]})
  printf '%-26s %12s %12s %12s %9s %9s  runs off%s; metrics%s; notify%s\n' "$name" "$off" "$m" "$n" \
    "$(cost "$off" "$m")" "$(cost "$off" "$n")" "${runs[off]}" "${runs[metrics]}" "${runs[notify]}"
  if [ -n "${BASELINE_BIN:-}" ]; then
    b=$(median ${runs[baseline]})
    printf '%-26s baseline binary %s: %s, off vs baseline %s; runs%s\n' "$name" "$BASELINE_BIN" "$b" "$(cost "$b" "$off")" "${runs[baseline]}"
  fi
done
kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null || true
cat "$WORK/sink.log"
