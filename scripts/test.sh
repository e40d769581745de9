#!/usr/bin/env bash
# The project's test command: starts a local S3-compatible server (moto, installed into a
# venv on first use), runs every test with every feature against the filesystem, in-memory
# and S3 drivers, and stops the server again.
#
#   bash scripts/test.sh                      # everything
#   bash scripts/test.sh --test http_push     # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# A free loopback port for this run's moto, unless MOTO_PORT is given.
if [ -z "${MOTO_PORT:-}" ]; then
  MOTO_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export MOTO_PORT
fi
if ! moto_env=$(bash scripts/start-moto.sh); then
  echo "scripts/test.sh: could not start the S3 test server (moto); see the messages above" >&2
  exit 1
fi
eval "$moto_env"
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
echo "S3 test server (moto) at $S3_ENDPOINT, pid $MOTO_PID" >&2

cargo test --all-features "$@"
