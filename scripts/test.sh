#!/usr/bin/env bash
# The project's test command: starts a local S3-compatible server (moto, installed into a
# venv on first use), runs every test with every feature against the filesystem, in-memory
# and S3 drivers, and stops the server again.
#
#   bash scripts/test.sh                # everything
#   bash scripts/test.sh --test http_push   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash scripts/start-moto.sh)"
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
echo "S3 test server (moto) at $S3_ENDPOINT, pid $MOTO_PID" >&2

cargo test --all-features "$@"
