#!/usr/bin/env bash
# What metrics and notifications cost: the same marina-registry binary, side by side in one
# run, with them off, with metrics on (--metrics-listen, scraped every second as Prometheus
# would), and with metrics and notifications on (one endpoint with the default settings: the
# sink benches/tools/notification-sink.rs, which answers 200 to every POST and discards the
# body), and with metrics and that endpoint for changes only (`ignore.actions = ["pull"]`),
# on the scenarios that are most sensitive to per-request overhead.
#
#   bash benches/observe-cost.sh                  # REPEAT=5 runs per scenario and setting
#   REPEAT=3 SCENARIOS="head-blob" bash benches/observe-cost.sh
#   BASELINE_BIN=/tmp/marina-registry-old bash benches/observe-cost.sh   # also an older binary
#   MARINA_BIN=/tmp/marina-registry-new bash benches/observe-cost.sh     # a binary built elsewhere
#
# Runs alternate between the settings (off, metrics, metrics+notify, changes, off, ...), each on a
# freshly started server with empty filesystem storage. Two figures per setting, both
# medians over the runs:
#   - throughput (operations per second); cost = 1 - median(setting) / median(off);
#   - the registry's CPU time per operation (user + system, from /proc, over the whole run);
#     cost = median(setting) / median(off) - 1. On a shared machine this one moves far less
#     than throughput: other processes take CPU away from a run, not CPU time per request.
#     With notifications on, the sink's CPU per operation is shown beside it (it shares the
#     machine, and so the throughput, but is not the registry's cost).
# After each run with notifications, the events the registry counted (queued, delivered,
# dropped) and those the sink received are checked against each other; the totals are
# printed at the end. Needs what benches/e2e.sh needs (it installs golang-go for regbench if
# missing).
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
cargo build --release --quiet --example notification-sink
# MARINA_BIN=/path/to/marina-registry measures a binary built elsewhere; by default the
# checkout's release build.
if [ -z "${MARINA_BIN:-}" ]; then
  cargo build --release --quiet --bin marina-registry
  MARINA_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/marina-registry
fi
BIN=$MARINA_BIN
SINK_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/notification-sink
TICKS=$(getconf CLK_TCK)

"$SINK_BIN" "$SINK_ADDR" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!; PIDS+=("$SINK_PID")
cat >"$WORK/notify.toml" <<TOML
[[notifications.endpoints]]
name = "bench"
url = "http://$SINK_ADDR/events"
TOML
# The same endpoint for changes only (what a CI trigger or a scanner needs): pulls ignored.
sed 's/^url = .*/&\nignore = { actions = ["pull"] }/' "$WORK/notify.toml" >"$WORK/notify-changes.toml"

# CPU time (user + system) of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# A counter of the sink (requests, bytes, events) or of the registry's /metrics.
sink_count() { curl -sf "http://$SINK_ADDR/" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
events_total() { curl -sf "http://$METRICS_ADDR/metrics" | awk -v s="marina_notification_events_total{endpoint=\"bench\",outcome=\"$1\"}" '$1 == s {print $2}'; }

wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$1" && return 0; sleep 0.05; done; echo "server $1 did not start" >&2; return 1; }

start() { # setting
  DATA=$(mktemp -d "$WORK/data.XXXXXX")
  local args=(--listen "$ADDR" --storage filesystem --root-directory "$DATA")
  case $1 in
    metrics) args+=(--metrics-listen "$METRICS_ADDR") ;;
    notify) args+=(--metrics-listen "$METRICS_ADDR" --config "$WORK/notify.toml") ;;
    changes) args+=(--metrics-listen "$METRICS_ADDR" --config "$WORK/notify-changes.toml") ;;
  esac
  local bin=$BIN
  [ "$1" = baseline ] && bin=$BASELINE_BIN
  RUST_LOG=warn "$bin" "${args[@]}" >"$WORK/marina.log" 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_up "$ADDR/v2/"
  SCRAPER=""
  if [ "$1" != off ] && [ "$1" != baseline ]; then
    (while sleep 1; do curl -sf -o /dev/null "http://$METRICS_ADDR/metrics" || true; done) &
    SCRAPER=$!; PIDS+=("$SCRAPER")
  fi
}
stop() {
  [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null || true
  # The registry lets queued events go out when it stops (SIGTERM).
  kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true
  find "$DATA" -type f -size +0 -exec truncate -s 0 {} + 2>/dev/null || true
}

field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
cost() { python3 -c "print(f'{(1 - float(\"$2\") / float(\"$1\")) * 100:+.1f}%')"; }
cpu_cost() { python3 -c "print(f'{(float(\"$2\") / float(\"$1\") - 1) * 100:+.1f}%')"; }

SCEN=(
  "head-blob-c16|head-blob -conc 16 -duration 10s|ops"
  "get-manifest-c16|get-manifest -conc 16 -duration 10s|ops"
  "push-small-2000x4KiB-c8|push-small -size 4KiB -n 2000 -conc 8|n"
)
echo "# REPEAT=$REPEAT bash benches/observe-cost.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), load $(cut -d' ' -f1-3 /proc/loadavg)"
SETTINGS=(off metrics notify changes)
[ -n "${BASELINE_BIN:-}" ] && SETTINGS+=(baseline)
printf '%-24s %9s %9s %9s %8s %8s | %6s %6s %6s %7s %7s %6s\n' scenario off metrics +notify "cost(m)" "cost(m+n)" \
  "cpu:off" metrics +notify "cost(m)" "cost(m+n)" sink
QUEUED=0; DELIVERED=0; DROPPED=0
for s in "${SCEN[@]}"; do
  IFS='|' read -r name args ops_field <<<"$s"
  if [ -n "${SCENARIOS:-}" ] && ! grep -qw -- "${args%% *}" <<<"$SCENARIOS"; then continue; fi
  declare -A runs=([off]="" [metrics]="" [notify]="" [changes]="" [baseline]="")
  declare -A cpus=([off]="" [metrics]="" [notify]="" [changes]="" [baseline]="")
  sink_cpus=""
  for _ in $(seq 1 "$REPEAT"); do
    for setting in "${SETTINGS[@]}"; do
      start "$setting"
      sink_before=$(cpu_ticks "$SINK_PID"); events_before=$(sink_count events)
      line=$("$WORK/regbench" $args -url "http://$ADDR" -seed 42 -timeout 600s 2>>"$WORK/regbench.err" | grep "^scenario=" | head -1)
      ticks=$(cpu_ticks "$PID")
      if [ "$setting" = notify ]; then
        queued=$(events_total queued); dropped=$(events_total dropped)
      fi
      stop
      v=$(field ops_per_s <<<"$line"); ops=$(field "$ops_field" <<<"$line")
      runs[$setting]="${runs[$setting]} $v"
      cpus[$setting]="${cpus[$setting]} $(python3 -c "print(f'{$ticks / $TICKS / $ops * 1e6:.2f}')")"
      if [ "$setting" = notify ]; then
        # Every event the registry queued arrived (it sends what is queued when it stops).
        received=$(( $(sink_count events) - events_before ))
        QUEUED=$((QUEUED + ${queued%.*})); DROPPED=$((DROPPED + ${dropped%.*})); DELIVERED=$((DELIVERED + received))
        [ "$received" = "${queued%.*}" ] || echo "warning: $name: the registry queued ${queued%.*} events, the sink received $received" >&2
        sink_cpus="$sink_cpus $(python3 -c "print(f'{($(cpu_ticks "$SINK_PID") - $sink_before) / $TICKS / $ops * 1e6:.2f}')")"
      fi
    done
  done
  off=$(median ${runs[off]}); m=$(median ${runs[metrics]}); n=$(median ${runs[notify]})
  coff=$(median ${cpus[off]}); cm=$(median ${cpus[metrics]}); cn=$(median ${cpus[notify]})
  printf '%-24s %9s %9s %9s %8s %8s | %6s %6s %6s %7s %7s %6s\n' "$name" "$off" "$m" "$n" \
    "$(cost "$off" "$m")" "$(cost "$off" "$n")" "$coff" "$cm" "$cn" "$(cpu_cost "$coff" "$cm")" "$(cpu_cost "$coff" "$cn")" "$(median $sink_cpus)"
  printf '  runs ops/s: off%s; metrics%s; notify%s\n' "${runs[off]}" "${runs[metrics]}" "${runs[notify]}"
  printf '  runs registry CPU us/op: off%s; metrics%s; notify%s; sink (notify runs)%s\n' "${cpus[off]}" "${cpus[metrics]}" "${cpus[notify]}" "$sink_cpus"
  c=$(median ${runs[changes]}); cc=$(median ${cpus[changes]})
  printf '  metrics + notifications of changes only (ignore.actions = ["pull"]): %s ops/s (%s), %s CPU us/op (%s); runs%s; CPU%s\n' \
    "$c" "$(cost "$off" "$c")" "$cc" "$(cpu_cost "$coff" "$cc")" "${runs[changes]}" "${cpus[changes]}"
  if [ -n "${BASELINE_BIN:-}" ]; then
    b=$(median ${runs[baseline]}); cb=$(median ${cpus[baseline]})
    printf '  baseline binary %s: %s ops/s, %s CPU us/op; off vs baseline %s (ops/s), %s (CPU); runs%s; CPU%s\n' "$BASELINE_BIN" "$b" "$cb" \
      "$(cost "$b" "$off")" "$(cpu_cost "$cb" "$coff")" "${runs[baseline]}" "${cpus[baseline]}"
  fi
done
echo "events: queued $QUEUED, dropped $DROPPED (queue full), received by the sink $DELIVERED"
kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null || true
cat "$WORK/sink.log"
