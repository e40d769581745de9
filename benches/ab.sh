#!/usr/bin/env bash
# A/B of marina-registry binaries (two commits) on one regbench scenario, filesystem storage,
# alternating the binaries run by run. Per run: the scenario's figure, the registry's CPU time
# (user + system, from /proc) and the disk's completed write requests (/proc/diskstats) while
# regbench ran; at the end, per binary, the median of its figure divided by the first
# binary's in the same round. A ratio per round, not of medians: these machines' speed drifts
# by 2x within minutes, and both binaries of a round see the same drift.
#
#   bash benches/ab.sh /tmp/marina-old target/release/marina-registry
#   ROUNDS=8 ARGS="push-small -size 4KiB -n 2000 -conc 8" bash benches/ab.sh A B C
#   STORAGE=s3 bash scripts/with-s3.sh bash benches/ab.sh A B   # on the S3 server of with-s3.sh
#   S3_TLS=1 STORAGE=s3 bash scripts/with-s3.sh bash benches/ab.sh A B   # ... reached over HTTPS
#
# ARGS are regbench's arguments (default "push-manifest -n 1000 -conc 8"), FIGURE the field
# compared (default ops_per_s). STORAGE is `filesystem` (default) or `s3`: the S3_* variables
# of scripts/with-s3.sh, each run under a fresh S3_PREFIX (write_ios then counts the local
# disk, not the store's). With S3_TLS=1 the registries reach the store over HTTPS: a `socat`
# TLS proxy in front of it, with a certificate from a CA made for the run (trusted through
# SSL_CERT_FILE); the proxy's CPU is not the registry's. Like benches/e2e.sh, no file is deleted before the script
# exits (on ext4 without a journal, files deleted by one run slow the next run's creations).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ $# -ge 2 ] || { echo "usage: bash benches/ab.sh BINARY_A BINARY_B [...]" >&2; exit 2; }
if [ -z "${REGBENCH_SRC:-}" ]; then
  REGBENCH_SRC=$ROOT/../shared/tools/regbench
  [ -d "$REGBENCH_SRC" ] || REGBENCH_SRC=/work/shared/tools/regbench
fi
ROUNDS=${ROUNDS:-6}
ARGS=${ARGS:-push-manifest -n 1000 -conc 8}
FIGURE=${FIGURE:-ops_per_s}
STORAGE=${STORAGE:-filesystem}
case $STORAGE in
  filesystem) ;;
  s3)
    [ -n "${S3_ENDPOINT:-}" ] || { echo "STORAGE=s3 needs the S3_* variables (scripts/with-s3.sh)" >&2; exit 2; }
    curl -sf -X PUT "$S3_ENDPOINT/$S3_BUCKET" -o /dev/null || true # moto: create the bucket
    ;;
  *) echo "STORAGE must be filesystem or s3" >&2; exit 2 ;;
esac
ADDR=127.0.0.1:5103
WORK=$(mktemp -d /tmp/marina-ab.XXXXXX)
PID=
TLS_PID=
cleanup() {
  for p in "$PID" "$TLS_PID"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v go >/dev/null || { apt-get update -qq && apt-get install -y -qq golang-go >/dev/null; }
if [ "${S3_TLS:-0}" = 1 ]; then
  [ "$STORAGE" = s3 ] || { echo "S3_TLS=1 needs STORAGE=s3" >&2; exit 2; }
  command -v socat >/dev/null || { apt-get update -qq && apt-get install -y -qq socat >/dev/null; }
  ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  # shellcheck disable=SC2086 # ec is a list of arguments
  openssl req -x509 $ec -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 1 -subj "/CN=ab CA" 2>/dev/null
  # shellcheck disable=SC2086
  openssl req $ec -keyout "$WORK/tls.key" -out "$WORK/tls.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -out "$WORK/tls.pem" -days 1 -extfile <(echo "subjectAltName=IP:127.0.0.1") 2>/dev/null
  TLS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  socat "OPENSSL-LISTEN:$TLS_PORT,bind=127.0.0.1,reuseaddr,fork,cert=$WORK/tls.pem,key=$WORK/tls.key,verify=0" \
    "TCP:${S3_ENDPOINT#http://}" &
  TLS_PID=$!
  export S3_ENDPOINT="https://127.0.0.1:$TLS_PORT" SSL_CERT_FILE="$WORK/ca.pem"
  unset SSL_CERT_DIR
  for _ in $(seq 1 100); do curl -s -o /dev/null --cacert "$WORK/ca.pem" "$S3_ENDPOINT" && break; sleep 0.05; done
fi
(cd "$REGBENCH_SRC" && go build -o "$WORK/regbench" .)

DISK=$(lsblk -no PKNAME "$(df --output=source "$WORK" | tail -1)" 2>/dev/null || true)
[ -n "$DISK" ] || DISK=$(basename "$(df --output=source "$WORK" | tail -1)")
# Completed write requests of the disk holding $WORK (0 where /proc/diskstats has no such
# disk, as on an overlay or network file system).
writes() { awk -v d="$DISK" '$3 == d {n = $8} END {print n + 0}' /proc/diskstats; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

echo "# STORAGE=$STORAGE S3_TLS=${S3_TLS:-0} ROUNDS=$ROUNDS ARGS=\"$ARGS\" bash benches/ab.sh $*, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-6s %-32s %12s %8s %10s\n' round binary "$FIGURE" cpu_ms write_ios
declare -A FIG
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    data=$(mktemp -d "$WORK/data.XXXXXX")
    MARINA_LISTEN=$ADDR STORAGE_TYPE=$STORAGE STORAGE_ROOT_DIRECTORY="$data" \
      S3_PREFIX="ab-$(basename "$data")" RUST_LOG=warn "$bin" >"$WORK/marina.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 200); do curl -sf -o /dev/null "http://$ADDR/v2/" && break; sleep 0.05; done
    c0=$(cpu_ticks "$PID"); w0=$(writes)
    # shellcheck disable=SC2086 # ARGS is a list of arguments
    fig=$("$WORK/regbench" $ARGS -url "http://$ADDR" -seed "$round" -timeout 600s 2>>"$WORK/regbench.err" \
      | grep "^scenario=" | head -1 | tr ' ' '\n' | sed -n "s/^$FIGURE=//p")
    c1=$(cpu_ticks "$PID"); w1=$(writes)
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    find "$data" -type f -size +0 -exec truncate -s 0 {} + 2>/dev/null || true
    FIG[$round,$bin]=${fig:-0}
    printf '%-6s %-32s %12s %8s %10s\n' "$round" "$bin" "${fig:-ERR}" \
      "$(( (c1 - c0) * 1000 / TICK ))" "$((w1 - w0))"
  done
done
first=$1
for bin in "${@:2}"; do
  ratios=$(for round in $(seq 1 "$ROUNDS"); do
    python3 -c "a, b = float('${FIG[$round,$first]}'), float('${FIG[$round,$bin]}'); print(f'{b / a:.2f}' if a > 0 else 'nan')"
  done | tr '\n' ' ')
  median=$(printf '%s\n' $ratios | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
  echo "$bin / $first: median ${median}x (per round: $ratios)"
done
