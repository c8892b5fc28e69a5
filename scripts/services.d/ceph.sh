#!/usr/bin/env bash
# Test hook for Ceph RGW (see scripts/test.sh): `before` notes whether any daemon of the cluster
# of scripts/s3-ceph.sh already runs; `after` stops the cluster, by its PID files, when none did
# (the tests started it, through tests/helpers/s3.ts).
set -uo pipefail
cd "$(dirname "$0")/../.."
state=${SERVICES_STATE:?}/ceph.was-up
running() { [ -n "$(bash scripts/s3-ceph.sh pids 2>/dev/null || true)" ]; }
case "${1:-}" in
before)
  if running; then : >"$state"; fi
  ;;
after)
  if [ ! -e "$state" ] && running; then bash scripts/s3-ceph.sh stop; fi
  ;;
*)
  echo "usage: $0 before|after" >&2
  exit 2
  ;;
esac
