#!/usr/bin/env bash
# marina-registry on S3 against CNCF Distribution 2.8 (Debian's docker-registry) on S3, side by
# side on one local moto server, driven by the shared `regbench` tool, alternating servers;
# each run on a fresh server under a fresh key prefix. Distribution runs in its fastest
# setting for these scenarios: in-memory blob descriptor cache, redirects off.
#
#   bash benches/s3-e2e.sh                          # REPEAT=2 runs per scenario and server
#   SCENARIOS="head-blob get-manifest" bash benches/s3-e2e.sh
#   SIZE=1GiB SCENARIOS=rss bash benches/s3-e2e.sh  # marina alone: peak RSS of big pushes
#   MARINA_BIN=/tmp/marina-registry bash benches/s3-e2e.sh   # a binary built before
#
# Then marina alone: a pull with S3_REDIRECT=true (the registry's CPU time per pulled GiB,
# against the same pull served through it), and peak RSS of a monolithic and a chunked push
# of SIZE (default 256MiB).
#
# Compare with a direct aws-sdk-s3 multipart upload of the same size to the same kind of
# server:
#   S3_BENCH_MIB=1024 S3_BENCH_MODE=sdk cargo test --release --all-features --test s3 \
#     push_throughput -- --ignored --nocapture    # (with the S3_* variables of start-moto.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ -z "${REGBENCH_SRC:-}" ]; then
  REGBENCH_SRC=$ROOT/../shared/tools/regbench
  [ -d "$REGBENCH_SRC" ] || REGBENCH_SRC=/work/shared/tools/regbench
fi
REPEAT=${REPEAT:-2}
SIZE=${SIZE:-256MiB}
FILTER=${SCENARIOS:-}
WORK=$(mktemp -d /tmp/marina-s3e2e.XXXXXX)
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
(cd "$REGBENCH_SRC" && go build -o "$WORK/regbench" .)
if [ -z "${MARINA_BIN:-}" ]; then # MARINA_BIN=path: a binary already built, no cargo build
  cargo build --release --quiet --bin marina-registry
  MARINA_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/marina-registry
fi
moto_env=$(bash scripts/start-moto.sh); eval "$moto_env"; PIDS+=("$MOTO_PID")
curl -sf -X PUT "$S3_ENDPOINT/$S3_BUCKET" -o /dev/null || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MARINA_ADDR=127.0.0.1:$(free_port)
DIST_ADDR=127.0.0.1:$(free_port)
RUN=0

wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$1/v2/" && return 0; sleep 0.05; done; echo "server $1 did not start" >&2; return 1; }
start_marina() { # extra environment assignments...
  RUN=$((RUN + 1))
  env STORAGE_TYPE=s3 S3_PREFIX="e2e-marina-$$-$RUN-$RANDOM" MARINA_LISTEN=$MARINA_ADDR RUST_LOG=warn "$@" \
    "$MARINA_BIN" >"$WORK/marina.log" 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_up "$MARINA_ADDR"
}
start_dist() {
  RUN=$((RUN + 1))
  cat >"$WORK/dist.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  s3:
    regionendpoint: $S3_ENDPOINT
    bucket: $S3_BUCKET
    region: $S3_REGION
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    secure: false
    v4auth: true
    rootdirectory: /e2e-dist-$$-$RUN
  cache: {blobdescriptor: inmemory}
  redirect: {disable: true}
  delete: {enabled: true}
http: {addr: $DIST_ADDR}
YML
  # Distribution panics on S3 when AWS_CA_BUNDLE is set.
  env -u AWS_CA_BUNDLE docker-registry serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_up "$DIST_ADDR"
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
cpu_secs() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
run_one() { # addr args
  "$WORK/regbench" $2 -url "http://$1" -seed 42 -timeout 900s 2>>"$WORK/regbench.err" | grep "^scenario=" | head -1
}
wanted() { [ -z "$FILTER" ] || grep -qw -- "$1" <<<"$FILTER"; }

# name | regbench arguments | figure compared | goal (marina/distribution)
SCEN=(
  "head-blob-c16|head-blob -conc 16 -duration 10s|ops_per_s|3"
  "get-manifest-c16|get-manifest -conc 16 -duration 10s|ops_per_s|5"
  "push-mono-2x128MiB|push-mono -size 128MiB -n 2 -conc 1|MBps|3"
  "push-small-300x4KiB-c8|push-small -size 4KiB -n 300 -conc 8|ops_per_s|3"
)
echo "# REPEAT=$REPEAT${SCENARIOS:+ SCENARIOS=\"$SCENARIOS\"} bash benches/s3-e2e.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), moto on 127.0.0.1"
printf '%-26s %12s %14s %8s %6s  %s\n' scenario marina distribution ratio goal unit
for s in "${SCEN[@]}"; do
  IFS='|' read -r name args unit goal <<<"$s"
  wanted "${args%% *}" || continue
  ds=(); ms=()
  for _ in $(seq 1 "$REPEAT"); do
    start_dist; ds+=("$(run_one "$DIST_ADDR" "$args" | field "$unit")"); stop
    start_marina; ms+=("$(run_one "$MARINA_ADDR" "$args" | field "$unit")"); stop
  done
  d=$(median "${ds[@]}"); m=$(median "${ms[@]}")
  ratio=$(python3 -c "print(f'{float(\"$m\")/float(\"$d\"):.2f}x')" 2>/dev/null || echo n/a)
  printf '%-26s %12s %14s %8s %5sx  %-10s runs marina %s, distribution %s\n' "$name" "${m:-ERR}" \
    "${d:-ERR}" "$ratio" "$goal" "$unit" "$(IFS=/; echo "${ms[*]}")" "$(IFS=/; echo "${ds[*]}")"
done

# A pull of 4 x 256 MiB (1 GiB): the registry's CPU seconds for it, served through the registry
# and redirected. regbench pushes the blobs first (untimed), so the CPU of the same push alone,
# on a fresh server, is subtracted.
server_cpu() { # extra-env regbench-args -> CPU seconds of a fresh marina for the run
  start_marina $1
  local before after; before=$(cpu_secs "$PID")
  run_one "$MARINA_ADDR" "$2" >"$WORK/line" # read by the caller (this runs in a subshell)
  after=$(cpu_secs "$PID"); stop
  python3 -c "print(f'{$after - $before:.2f}')"
}
if wanted pull; then
  for redirect in false true; do
    total=$(server_cpu S3_REDIRECT=$redirect "pull -size 256MiB -n 4 -conc 1")
    mbps=$(field MBps <"$WORK/line")
    push=$(server_cpu S3_REDIRECT=$redirect "push-mono -size 256MiB -n 4 -conc 1")
    echo "pull 4x256MiB S3_REDIRECT=$redirect: $mbps MB/s; registry CPU per pulled GiB $(python3 -c "print(f'{$total - $push:.2f}')") s (pull run $total s - push alone $push s)"
  done
fi

# Peak RSS of marina for big pushes.
if wanted rss; then
  for mode in "push-mono -size $SIZE -n 1 -conc 1" "push-chunked -size $SIZE -chunk 1MiB"; do
    start_marina
    line=$(run_one "$MARINA_ADDR" "$mode")
    kb=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status"); stop
    echo "${mode%% *} $SIZE: $(field MBps <<<"$line") MB/s, peak RSS $((kb / 1024)) MiB"
  done
fi
