#!/usr/bin/env bash
# The project's test command (README, .ci/run): every test, every feature, on the
# filesystem, in-memory and S3 drivers, with a local S3 server (moto) started for the run.
#   bash scripts/test.sh --test http_push     # extra arguments go to `cargo test`
exec bash "$(dirname "$0")/with-s3.sh" cargo test --all-features "$@"
