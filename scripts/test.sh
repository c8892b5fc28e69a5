#!/usr/bin/env bash
# `deno task test`: the set-up (scripts/test_setup.sh), then every test (deno's own summary
# line and exit code), then stops the services the tests brought up during this run (the Ceph
# RGW of tests/helpers/s3.ts), by their PID files, and only when none of them ran before.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/test_setup.sh || exit $?

ceph_before=$(bash scripts/s3-ceph.sh pids 2>/dev/null || true)
stop_started() {
  if [ -z "$ceph_before" ] && [ -n "$(bash scripts/s3-ceph.sh pids 2>/dev/null || true)" ]; then
    bash scripts/s3-ceph.sh stop
  fi
}
trap stop_started EXIT

NO_COLOR=1 deno test -A tests/ "$@"
