#!/usr/bin/env bash
# Test hook for PostgreSQL (see scripts/test.sh): `before` notes whether the cluster of
# scripts/postgres.sh is already up; `after` stops it when it was not (the tests started it,
# through tests/helpers/postgres.ts).
set -uo pipefail
cd "$(dirname "$0")/../.."
state=${SERVICES_STATE:?}/postgres.was-up
case "${1:-}" in
before)
  if bash scripts/postgres.sh status >/dev/null 2>&1; then : >"$state"; fi
  ;;
after)
  if [ ! -e "$state" ]; then bash scripts/postgres.sh stop; fi
  ;;
*)
  echo "usage: $0 before|after" >&2
  exit 2
  ;;
esac
