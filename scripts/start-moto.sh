#!/usr/bin/env bash
# Starts moto (an in-memory S3 server, the CI choice of ../shared/S3-TEST-SERVERS.md) on
# 127.0.0.1 in the background, installing it into a virtualenv first if needed (~20 s), waits
# until it answers, and prints the environment the S3 tests read, for `eval`:
#
#   eval "$(bash scripts/start-moto.sh)"
#   cargo test --all-features --test s3
#   kill "$MOTO_PID"
#
# Settings: MOTO_VENV (default ~/.cache/marina/moto-venv), MOTO_PORT (default: 5050, or the
# next free port up to 5099 when 5050 is taken),
# MOTO_LOG (default /tmp/marina-moto-$MOTO_PORT.log). Progress goes to stderr; stdout holds
# only the `export` line.
set -euo pipefail
VENV=${MOTO_VENV:-$HOME/.cache/marina/moto-venv}
PORT=${MOTO_PORT:-5050}
LOG=${MOTO_LOG:-/tmp/marina-moto-$PORT.log}
BUCKET=${S3_BUCKET:-marina-test}

if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "installing moto into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q 'moto[s3]==5.2.5' flask flask-cors >&2
fi

answers() {
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
except Exception:
    sys.exit(1)
PY
}

port_in_use() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)  # in use
sys.exit(1)
PY
}

if port_in_use "$PORT"; then
  if [ -n "${MOTO_PORT:-}" ]; then
    echo "port $PORT (MOTO_PORT) is in use" >&2
    exit 1
  fi
  # Another test run (or anything else) holds the default port: take the next free one.
  for candidate in $(seq 5051 5099); do
    if ! port_in_use "$candidate"; then PORT=$candidate; break; fi
  done
  if port_in_use "$PORT"; then
    echo "no free port in 5050-5099" >&2
    exit 1
  fi
  LOG=${MOTO_LOG:-/tmp/marina-moto-$PORT.log}
fi

"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 1 200); do
  if answers "http://127.0.0.1:$PORT/"; then
    echo "export S3_ENDPOINT=http://127.0.0.1:$PORT S3_BUCKET=$BUCKET S3_REGION=us-east-1 S3_FORCE_PATH_STYLE=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test MOTO_PID=$PID"
    exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "moto exited; see $LOG" >&2
    exit 1
  fi
  sleep 0.1
done
echo "moto did not answer on port $PORT within 20 s; see $LOG" >&2
kill "$PID" 2>/dev/null || true
exit 1
