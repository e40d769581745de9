#!/usr/bin/env bash
# Issue 16 figures: marina-registry on GCS (a local fake-gcs-server) against direct uploads of
# the same bytes with the client crate the driver uses (gcloud-storage), side by side in one
# run and on one emulator, as ratios; then the registry's peak RSS during a 1 GiB push in
# 1 MiB chunks.
#
#   bash benches/gcs-e2e.sh            # SIZE=64MiB RSS_SIZE=256MiB for a quicker run
#
# Scenarios (regbench, ../shared/tools/regbench, needs Go): push-mono (N blobs of SIZE, a
# single POST with the digest each), push-chunked (SIZE in 1 MiB PATCHes), pull (N blobs of
# SIZE), push-small (SMALL_N blobs of 4 KiB, 8 at a time). Baselines (tests/gcs.rs
# `direct_client_baseline`): the same bytes as one streamed media upload per blob (for both
# pushes), streamed downloads, 4 KiB media uploads 8 at a time; and, for push-mono, the
# primitive the driver uses, a resumable session fed 8 MiB per request. fake-gcs-server
# rehashes a session's whole object on every chunk (quadratic: 64 MiB in 1 MiB chunks takes
# 25 s), so session figures there say more about the emulator than about GCS.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-256MiB}
N=${N:-2}
SMALL_N=${SMALL_N:-1000}
RSS_SIZE=${RSS_SIZE:-1GiB}
bytes() { python3 -c "import sys,re; m=re.fullmatch(r'(\d+)(KiB|MiB|GiB)?', sys.argv[1]); print(int(m[1]) * {None: 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}[m[2]])" "$1"; }
WORK=$(mktemp -d /tmp/marina-gcse2e.XXXXXX)
# regbench lives in the shared tools beside the repository (../shared; ../../shared from a
# worktree under wt/).
REGBENCH_SRC=${REGBENCH_SRC:-$(for d in ../shared ../../shared; do [ -d "$d/tools/regbench" ] && echo "$d/tools/regbench" && break; done)}
(cd "$REGBENCH_SRC" && go build -o "$WORK/regbench" .)
cargo build --release --all-features --quiet --bin marina-registry   # --all-features: the test below shares the library build
cargo test --release --all-features --quiet --test gcs --no-run 2>/dev/null
gcs_env=$(bash scripts/start-fake-gcs.sh); eval "$gcs_env"
export GCS_ENDPOINT GCS_BUCKET GCS_ANONYMOUS
trap 'kill "$FAKE_GCS_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

registry() { # label regbench-args: prints the regbench line, then peak_rss=<MiB>
  STORAGE_TYPE=gcs GCS_PREFIX="e2e-$1-$$" MARINA_LISTEN=127.0.0.1:$PORT RUST_LOG=warn \
    target/release/marina-registry >"$WORK/marina.log" 2>&1 &
  local pid=$! line kb
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.1; done
  if ! line=$("$WORK/regbench" $2 -url "http://127.0.0.1:$PORT" -seed 3 -timeout 1800s 2>"$WORK/regbench.err"); then
    cat "$WORK/regbench.err" >&2; kill "$pid"; exit 1
  fi
  kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep '^scenario=' <<<"$line"
  echo "peak_rss=$((kb / 1024))"
}

direct() { # scenario size n conc
  local out
  out=$(GCS_PREFIX="e2e-direct-$1-$$-$RANDOM" GCS_BENCH=$1 GCS_BENCH_SIZE=$2 GCS_BENCH_N=$3 GCS_BENCH_CONC=$4 \
    cargo test --release --all-features --quiet --test gcs direct_client_baseline -- --ignored --nocapture 2>/dev/null)
  grep '^scenario=' <<<"$out"
}

compare() { # label registry-line direct-line metric
  local r d; r=$(field "$2" "$4"); d=$(field "$3" "$4")
  printf '%-22s registry %10s  direct %10s  %s  ratio %s\n' "$1" "$r" "$d" "$4" "$(python3 -c "print(f'{$r / $d:.2f}')")"
}

size=$(bytes "$SIZE")
echo "fake-gcs-server at $GCS_ENDPOINT; SIZE=$SIZE N=$N SMALL_N=$SMALL_N" >&2
r=$(registry mono "push-mono -size $SIZE -n $N -conc 1" ); r=${r%%$'\n'*}; d=$(direct push-mono "$size" "$N" 1)
compare "push-mono $SIZE" "$r" "$d" MBps
compare "  vs 8MiB session" "$r" "$(direct push-session "$size" "$N" 1)" MBps
r=$(registry chunked "push-chunked -size $SIZE -chunk 1MiB" ); r=${r%%$'\n'*}; d=$(direct push-mono "$size" 1 1)
compare "push-chunked 1MiB" "$r" "$d" MBps
r=$(registry pull "pull -size $SIZE -n $N -conc 1" ); r=${r%%$'\n'*}; d=$(direct pull "$size" "$N" 1)
compare "pull $SIZE" "$r" "$d" MBps
r=$(registry small "push-small -size 4KiB -n $SMALL_N -conc 8" ); r=${r%%$'\n'*}; d=$(direct push-small 4096 "$SMALL_N" 8)
compare "push-small 4KiB" "$r" "$d" ops_per_s
out=$(registry rss "push-chunked -size $RSS_SIZE -chunk 1MiB")
echo "push-chunked $RSS_SIZE in 1MiB chunks: $(field "${out%%$'\n'*}" MBps) MBps, registry peak RSS $(field "${out##*$'\n'}" peak_rss) MiB"
