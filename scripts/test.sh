#!/usr/bin/env bash
# The project's test command (README, .ci/run): every test, every feature, on the
# filesystem, in-memory, S3 and GCS drivers, with a local S3 server (moto) and a GCS emulator
# (fake-gcs-server) started for the run.
#   bash scripts/test.sh --test http_push     # extra arguments go to `cargo test`
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/with-s3.sh" bash "$here/with-gcs.sh" cargo test --all-features "$@"
