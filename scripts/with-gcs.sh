#!/usr/bin/env bash
# Runs a command with a local GCS emulator (fake-gcs-server) started for it: installs it into
# a venv on first use, starts it on a free loopback port, exports the GCS_* variables the
# tests read, runs the command, and stops the server.
#
#   bash scripts/with-gcs.sh cargo test --all-features --test gcs
set -euo pipefail
cd "$(dirname "$0")/.."
if ! gcs_env=$(bash scripts/start-fake-gcs.sh); then
  echo "scripts/with-gcs.sh: could not start the GCS test server (fake-gcs-server); see the messages above" >&2
  exit 1
fi
eval "$gcs_env"
export GCS_ENDPOINT GCS_BUCKET GCS_ANONYMOUS
trap 'kill "$FAKE_GCS_PID" 2>/dev/null || true' EXIT
echo "GCS test server (fake-gcs-server) at $GCS_ENDPOINT, pid $FAKE_GCS_PID" >&2
"$@"
