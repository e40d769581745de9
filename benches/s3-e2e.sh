#!/usr/bin/env bash
# marina-registry on S3 against CNCF Distribution 2.8 (Debian's docker-registry) on S3, side by
# side on one local S3 server, driven by the shared `regbench` tool, alternating servers;
# each run on a fresh server under a fresh key prefix. Distribution runs in its fastest
# setting for these scenarios: in-memory blob descriptor cache, redirects off.
#
#   bash benches/s3-e2e.sh                          # REPEAT=2 runs per scenario and server
#   SCENARIOS="head-blob get-manifest" bash benches/s3-e2e.sh
#   S3_SERVER=garage bash benches/s3-e2e.sh         # on Garage instead of moto
#   SIZE=1GiB SCENARIOS=rss bash benches/s3-e2e.sh  # marina alone: peak RSS of big pushes
#   MARINA_BIN=/tmp/marina-registry bash benches/s3-e2e.sh   # a binary built before
#   MARINA_ENV="S3_PART_SIZE=16777216" bash benches/s3-e2e.sh  # marina's settings for the runs
#
# S3_SERVER: `moto` (default; scripts/start-moto.sh) or `garage` (Garage 2.5 single node,
# ../shared/tools/s3/start-garage.sh, which builds it on first use: ~20 min). Below each
# scenario's line, per run: the CPU seconds of each registry and of the S3 server while it
# ran, and their sum (what a scenario costs, which the machine's load changes far less than
# it changes throughput); and the S3 requests each registry sent, by operation and kind of
# object (`blob`: a blob's data; `upload`: an upload's objects; `meta`: links, tags,
# records), from the server's request log.
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
S3_SERVER=${S3_SERVER:-moto}
STORE_LOG=
case $S3_SERVER in
  moto)
    STORE_LOG=$WORK/moto.log
    moto_env=$(MOTO_LOG=$STORE_LOG bash scripts/start-moto.sh); eval "$moto_env"
    STORE_PID=$MOTO_PID; PIDS+=("$STORE_PID")
    curl -sf -X PUT "$S3_ENDPOINT/$S3_BUCKET" -o /dev/null || true
    ;;
  garage)
    tools=$ROOT/../shared/tools/s3; [ -d "$tools" ] || tools=/work/shared/tools/s3
    mkdir -p "$WORK/garage"
    # Garage logs every request at `info` (address, method, URI): the request counts.
    garage_env=$(GARAGE_WORK=$WORK/garage RUST_LOG=garage=warn,garage_api_common=info \
      bash "$tools/start-garage.sh")
    STORE_LOG=$WORK/garage/server.log
    eval "$garage_env"
    STORE_PID=$S3_TEST_SERVER_PID; PIDS+=("$STORE_PID")
    export S3_ENDPOINT=$S3_TEST_ENDPOINT S3_BUCKET=$S3_TEST_BUCKET S3_REGION=$S3_TEST_REGION \
      S3_FORCE_PATH_STYLE=true AWS_ACCESS_KEY_ID=$S3_TEST_ACCESS_KEY \
      AWS_SECRET_ACCESS_KEY=$S3_TEST_SECRET_KEY
    ;;
  *) echo "S3_SERVER must be moto or garage" >&2; exit 2 ;;
esac
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MARINA_ADDR=127.0.0.1:$(free_port)
DIST_ADDR=127.0.0.1:$(free_port)
RUN=0

wait_up() { for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$1/v2/" && return 0; sleep 0.05; done; echo "server $1 did not start" >&2; return 1; }
start_marina() { # extra environment assignments...
  RUN=$((RUN + 1))
  # shellcheck disable=SC2086 # MARINA_ENV: assignments split on blanks
  env STORAGE_TYPE=s3 S3_PREFIX="e2e-marina-$$-$RUN-$RANDOM" MARINA_LISTEN=$MARINA_ADDR RUST_LOG=warn ${MARINA_ENV:-} "$@" \
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
sub() { python3 -c "print(f'{$1 - $2:.2f}')"; }
log_lines() { if [ -n "$STORE_LOG" ]; then wc -l <"$STORE_LOG"; else echo 0; fi; }
# The S3 server's request log (lines after $1) -> S3 requests by operation and kind of object.
s3_ops() {
  [ -n "$STORE_LOG" ] || { echo "n/a"; return; }
  tail -n +"$(($1 + 1))" "$STORE_LOG" | python3 -c '
import collections, re, sys
ops = collections.Counter()
for line in sys.stdin:
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # werkzeug colours some status codes
    if "in response to" in line:  # Garage logs a failed request a second time
        continue
    m = re.search(r"\b(GET|PUT|POST|DELETE|HEAD) (/\S*)", line)
    if not m:
        continue
    method, url = m.groups()
    path, _, query = url.partition("?")
    q = {p.split("=")[0] for p in query.split("&") if p}
    op = {
        "PUT": "UploadPart" if "partNumber" in q else "PutObject",
        "POST": "CreateMultipart" if "uploads" in q else "Complete" if "uploadId" in q
        else "DeleteObjects" if "delete" in q else "POST",
        "DELETE": "Abort" if "uploadId" in q else "DeleteObject",
        "HEAD": "HeadObject",
        "GET": "ListParts" if "uploadId" in q else "ListMultipart" if "uploads" in q
        else "List" if q & {"list-type", "prefix", "delimiter"} else "GetObject",
    }[method]
    kind = "blob" if "/blobs/" in path else "upload" if "upload" in path else "meta"
    ops[f"{op}@{kind}"] += 1
print(" ".join(f"{k}={v}" for k, v in sorted(ops.items())), f"total={sum(ops.values())}")'
}
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
echo "# REPEAT=$REPEAT${SCENARIOS:+ SCENARIOS=\"$SCENARIOS\"} S3_SERVER=$S3_SERVER bash benches/s3-e2e.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $S3_SERVER on 127.0.0.1, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-26s %12s %14s %8s %6s  %s\n' scenario marina distribution ratio goal unit
for s in "${SCEN[@]}"; do
  IFS='|' read -r name args unit goal <<<"$s"
  wanted "${args%% *}" || continue
  ds=(); ms=(); dcpu=(); mcpu=(); dstore=(); mstore=()
  for _ in $(seq 1 "$REPEAT"); do
    for who in dist marina; do
      "start_$who"
      [ $who = dist ] && addr=$DIST_ADDR || addr=$MARINA_ADDR
      r0=$(cpu_secs "$PID"); s0=$(cpu_secs "$STORE_PID"); l0=$(log_lines)
      figure=$(run_one "$addr" "$args" | field "$unit")
      rcpu=$(sub "$(cpu_secs "$PID")" "$r0"); scpu=$(sub "$(cpu_secs "$STORE_PID")" "$s0")
      ops=$(s3_ops "$l0"); stop
      if [ $who = dist ]; then ds+=("$figure"); dcpu+=("$rcpu"); dstore+=("$scpu"); dops=$ops
      else ms+=("$figure"); mcpu+=("$rcpu"); mstore+=("$scpu"); mops=$ops; fi
    done
  done
  d=$(median "${ds[@]}"); m=$(median "${ms[@]}")
  ratio=$(python3 -c "print(f'{float(\"$m\")/float(\"$d\"):.2f}x')" 2>/dev/null || echo n/a)
  printf '%-26s %12s %14s %8s %5sx  %-10s runs marina %s, distribution %s\n' "$name" "${m:-ERR}" \
    "${d:-ERR}" "$ratio" "$goal" "$unit" "$(IFS=/; echo "${ms[*]}")" "$(IFS=/; echo "${ds[*]}")"
  # Per run, or per operation for the scenarios that run for a fixed time (`-duration`).
  secs=$(sed -n 's/.*-duration \([0-9]*\)s.*/\1/p' <<<"$args")
  work=$(python3 -c "
secs = float('${secs:-0}')
def cost(cpu, store, figures):
    per = sorted((a + b) / (f * secs if secs else 1) for a, b, f in zip(cpu, store, figures))
    return per[(len(per) - 1) // 2]
m = cost([$(IFS=,; echo "${mcpu[*]}")], [$(IFS=,; echo "${mstore[*]}")], [$(IFS=,; echo "${ms[*]}")])
d = cost([$(IFS=,; echo "${dcpu[*]}")], [$(IFS=,; echo "${dstore[*]}")], [$(IFS=,; echo "${ds[*]}")])
unit, k = ('µs per operation', 1e6) if secs else ('s per run', 1)
print(f'{m * k:.2f} against {d * k:.2f} {unit}: {d / max(m, 1e-9):.2f}x less')" 2>/dev/null || echo n/a)
  echo "  CPU s per run: marina $(IFS=/; echo "${mcpu[*]}"), its $S3_SERVER $(IFS=/; echo "${mstore[*]}");" \
    "distribution $(IFS=/; echo "${dcpu[*]}"), its $S3_SERVER $(IFS=/; echo "${dstore[*]}")"
  echo "  CPU of registry and $S3_SERVER together (median): marina $work"
  echo "  S3 requests (last run): marina $mops"
  echo "  S3 requests (last run): distribution $dops"
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
echo "# done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
