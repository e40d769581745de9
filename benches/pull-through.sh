#!/usr/bin/env bash
# What a pull-through cache costs and saves, side by side in one run: an upstream
# marina-registry and a cache in front of it (both release builds, filesystem storage, plain
# HTTP on loopback), curl as the client.
#
#   cargo build --release && bash benches/pull-through.sh
#   SIZE_MIB=512 REQUESTS=4000 bash benches/pull-through.sh
#
# Prints, per line: a 256 MiB blob pulled from the upstream directly, through the cache the
# first time (fetched, verified and stored while it flows to the client) and the second
# time (from the cache's store), in MB/s and the time to its first byte; and REQUESTS manifest GETs (16 at once, one curl process) from the
# upstream, from the cache by tag (each asks the upstream where the tag points: a HEAD) and
# from the cache by digest (local only), in requests per second.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MARINA_BIN:-target/release/marina-registry}
SIZE_MIB=${SIZE_MIB:-256}
REQUESTS=${REQUESTS:-2000}
WORK=$(mktemp -d /tmp/marina-pull-through.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name, then arguments; sets ADDR (not in a subshell: PIDS must see the server)
  local name=$1
  shift
  "$BIN" --listen 127.0.0.1:0 --root-directory "$WORK/$name" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    if grep -q "listening on" "$WORK/$name.out" 2>/dev/null; then
      ADDR=$(sed -n 's|.*listening on http://\([^/]*\)/v2/.*|\1|p' "$WORK/$name.out")
      return
    fi
    sleep 0.1
  done
  echo "$name did not start" >&2
  exit 1
}

start upstream
UP=$ADDR
start cache --proxy-remote-url "http://$UP"
CACHE=$ADDR

# An image upstream: a SIZE_MIB layer, a config, a manifest tagged v1.
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/layer"
echo '{"architecture":"amd64","os":"linux"}' >"$WORK/config"
push_blob() { # file; prints its digest
  local d
  d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  curl -sf -X POST --data-binary @"$1" -H 'content-type: application/octet-stream' \
    "http://$UP/v2/bench/app/blobs/uploads/?digest=$d" -o /dev/null
  echo "$d"
}
LAYER=$(push_blob "$WORK/layer")
CONFIG=$(push_blob "$WORK/config")
cat >"$WORK/manifest" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$CONFIG","size":$(stat -c %s "$WORK/config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$LAYER","size":$(stat -c %s "$WORK/layer")}]}
EOF
curl -sf -X PUT --data-binary @"$WORK/manifest" \
  -H 'content-type: application/vnd.oci.image.manifest.v1+json' \
  "http://$UP/v2/bench/app/manifests/v1" -o /dev/null
MANIFEST="sha256:$(sha256sum "$WORK/manifest" | cut -d' ' -f1)"

pull() { # label, url
  local figures
  figures=$(curl -sf -o /dev/null -w '%{speed_download} %{time_starttransfer}' "$2")
  awk -v l="$1" -v f="$figures" 'BEGIN {
    split(f, x, " ")
    printf "%-34s %8.1f MB/s, first byte after %7.1f ms\n", l, x[1] / 1e6, x[2] * 1000
  }'
}
pull "blob, upstream directly" "http://$UP/v2/bench/app/blobs/$LAYER"
pull "blob, through the cache (cold)" "http://$CACHE/v2/bench/app/blobs/$LAYER"
pull "blob, through the cache (warm)" "http://$CACHE/v2/bench/app/blobs/$LAYER"
pull "blob, upstream directly (again)" "http://$UP/v2/bench/app/blobs/$LAYER"

# The manifest is stored in the background once served; wait for it.
curl -sf "http://$CACHE/v2/bench/app/manifests/v1" -o /dev/null
for _ in $(seq 100); do
  grep -q "manifest stored" "$WORK/cache.log" && break
  sleep 0.1
done

gets() { # label, url
  local list=$WORK/urls start end
  for _ in $(seq "$REQUESTS"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$2"; done >"$list"
  start=$(date +%s.%N)
  curl -sf -Z --parallel-max 16 -K "$list" 2>/dev/null
  end=$(date +%s.%N)
  awk -v l="$1" -v n="$REQUESTS" -v a="$start" -v b="$end" \
    'BEGIN { printf "%-34s %8.0f requests/s\n", l, n / (b - a) }'
}
gets "manifest by tag, upstream" "http://$UP/v2/bench/app/manifests/v1"
gets "manifest by tag, cache" "http://$CACHE/v2/bench/app/manifests/v1"
gets "manifest by digest, upstream" "http://$UP/v2/bench/app/manifests/$MANIFEST"
gets "manifest by digest, cache" "http://$CACHE/v2/bench/app/manifests/$MANIFEST"
