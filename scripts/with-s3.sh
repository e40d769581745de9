#!/usr/bin/env bash
# Runs a command with a local S3-compatible server (moto) started for it: installs moto into
# a venv on first use, starts it on a free loopback port, exports the S3_* and AWS_* variables
# the tests read, runs the command, and stops the server.
#
#   bash scripts/with-s3.sh cargo test --all-features     # the project's test command
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MOTO_PORT:-}" ]; then
  MOTO_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export MOTO_PORT
fi
if ! moto_env=$(bash scripts/start-moto.sh); then
  echo "scripts/with-s3.sh: could not start the S3 test server (moto); see the messages above" >&2
  exit 1
fi
eval "$moto_env"
export S3_ENDPOINT S3_BUCKET S3_REGION S3_FORCE_PATH_STYLE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
echo "S3 test server (moto) at $S3_ENDPOINT, pid $MOTO_PID" >&2
"$@"
