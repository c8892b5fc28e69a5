#!/usr/bin/env bash
# Set-up of `deno task test`: installs from Debian what the tests drive for real and is missing
# (the clients skopeo, podman, buildah and umoci; containerd and its ctr for the access-control
# client tests; curl for the curl flow; openssl for the TLS tests' CA; Prometheus for the metrics
# test; util-linux-extra's fincore for the page-cache test of the filesystem driver). Idempotent:
# installs nothing when all is there.
# Needs root (or sudo) only when something is missing; otherwise it only warns.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
for tool in skopeo podman buildah umoci curl openssl prometheus; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# containerd and ctr both come in the Debian package containerd.
if ! command -v containerd >/dev/null 2>&1 || ! command -v ctr >/dev/null 2>&1; then
  need+=(containerd)
fi
command -v fincore >/dev/null 2>&1 || need+=(util-linux-extra)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root() { sudo "$@"; }
else
  echo "test set-up: missing ${need[*]}; install them (apt-get install ${need[*]}) for the real-client tests" >&2
  exit 0
fi
echo "test set-up: installing ${need[*]} from Debian" >&2
as_root apt-get update -qq >/dev/null &&
  as_root apt-get install -y -qq "${need[@]}" >/dev/null ||
  echo "test set-up: warning: could not install ${need[*]}" >&2
exit 0
