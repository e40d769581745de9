#!/usr/bin/env bash
# What access control and TLS cost: head-blob and get-manifest against six registries side by
# side in one run (in-memory storage, all on 127.0.0.1): {plain HTTP, TLS} x {no auth, HTTP
# Basic (htpasswd), bearer tokens from the built-in endpoint}. Rounds are interleaved so that
# the shared machine's noise spreads over every configuration.
#
#   bash benches/auth-e2e.sh                     # uses target/release/marina-registry
#   REGBENCH=/tmp/regbench ROUNDS=3 DURATION=5s CONC=16 bash benches/auth-e2e.sh
#
# Needs: openssl, htpasswd (apache2-utils), regbench (../shared/tools/regbench, `go build`).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/marina-registry}
REGBENCH=${REGBENCH:-/tmp/regbench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONC=${CONC:-16}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/token-key.pem" 2>/dev/null
htpasswd -Bbc "$work/htpasswd" bench bench-pw 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

declare -A url
start() { # name tls(0/1) auth(none/basic/bearer)
  local name=$1 tls=$2 auth=$3 port scheme conf
  port=$(free_port)
  scheme=http; [ "$tls" = 1 ] && scheme=https
  conf="$work/$name.toml"
  {
    echo "listen = \"127.0.0.1:$port\""
    echo "[storage]"; echo "type = \"inmemory\""
    if [ "$tls" = 1 ]; then echo "[tls]"; echo "cert = \"$work/cert.pem\""; echo "key = \"$work/key.pem\""; fi
    if [ "$auth" != none ]; then echo "[auth]"; echo "htpasswd = \"$work/htpasswd\""; fi
    if [ "$auth" = bearer ]; then
      echo "[auth.token]"
      echo "realm = \"$scheme://localhost:$port/token\""
      echo "service = \"bench\""; echo "issuer = \"bench\""
      echo "signing_key = \"$work/token-key.pem\""; echo "lifetime = 3600"
    fi
  } >"$conf"
  RUST_LOG=warn "$BIN" --config "$conf" >/dev/null 2>"$work/$name.log" &
  pids+=($!)
  url[$name]="$scheme://localhost:$port"
}

configs=(plain-none plain-basic plain-bearer tls-none tls-basic tls-bearer)
for c in "${configs[@]}"; do
  tls=0; [[ $c == tls-* ]] && tls=1
  start "$c" "$tls" "${c#*-}"
done
sleep 1

export SSL_CERT_FILE="$work/cert.pem"
for round in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    creds=()
    [[ $c != *-none ]] && creds=(-user bench -pass bench-pw)
    "$REGBENCH" head-blob,get-manifest -url "${url[$c]}" -duration "$DURATION" -conc "$CONC" \
      -size 4KiB -name "bench/$c" "${creds[@]}" -timeout 120s 2>/dev/null \
      | sed "s/^/round=$round config=$c /"
  done
done
