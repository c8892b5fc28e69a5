#!/usr/bin/env bash
# `deno task test`: the set-up (scripts/test_setup.sh), the tests (all of tests/, or the paths
# given), then each service hook's `after`, however the tests end. A hook in
# scripts/services.d/ is called with `before` ahead of the tests and `after` once they end;
# it stops what the tests started and leaves alone what was running before.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/test_setup.sh || exit $?

SERVICES_STATE=$(mktemp -d)
export SERVICES_STATE
hooks=(scripts/services.d/*.sh)
after() {
  for hook in "${hooks[@]}"; do
    [ -f "$hook" ] && bash "$hook" after
  done
  rm -rf "$SERVICES_STATE"
}
trap after EXIT
for hook in "${hooks[@]}"; do
  [ -f "$hook" ] && bash "$hook" before
done

if [ $# -eq 0 ]; then set -- tests/; fi
NO_COLOR=1 deno test -A "$@"
