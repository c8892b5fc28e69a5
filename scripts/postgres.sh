#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests (and for trying the PostgreSQL metadata store):
#
#   scripts/postgres.sh up      starts it (installing Debian's postgresql when missing); does
#                               nothing when it is already up; prints the database URL
#   scripts/postgres.sh stop    stops that cluster (and only it: by its postmaster.pid)
#   scripts/postgres.sh status  prints the URL and exits 0 when up; exits 3 when down
#   scripts/postgres.sh url     prints the URL (whether up or not)
#
# The cluster lives in REGISTRY_PG_DIR (default: a folder under the temporary folder named
# after this checkout, so two checkouts never share one), owned by the `postgres` user
# (initdb and postgres refuse to run as root). It listens on 127.0.0.1 at REGISTRY_PG_PORT
# (default: a free port, remembered in the folder) and on a Unix socket in the folder, with
# trust authentication for local connections only. Needs root (or the postgres user).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

root=$(cd "$(dirname "$0")/.." && pwd)
tag=$(printf '%s' "$root" | sha256sum | cut -c1-12)
dir=${REGISTRY_PG_DIR:-${TMPDIR:-/tmp}/registry-pg-$tag}
data=$dir/data

find_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$found" ] && [ -x "$found/initdb" ] && [ -x "$found/postgres" ]; then
    printf '%s' "$found"
  fi
}

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# The PID in postmaster.pid when that process is alive and is a postgres.
running_pid() {
  [ -f "$data/postmaster.pid" ] || return 1
  local pid
  pid=$(head -n 1 "$data/postmaster.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  grep -q postgres "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s' "$pid"
}

url() {
  printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$(cat "$dir/port" 2>/dev/null || echo 0)"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  if [ -n "${REGISTRY_PG_PORT:-}" ]; then
    printf '%s' "$REGISTRY_PG_PORT"
    return
  fi
  if [ -f "$dir/port" ] && ! port_in_use "$(cat "$dir/port")"; then
    cat "$dir/port"
    return
  fi
  local port tries=0
  while [ $tries -lt 200 ]; do
    port=$((20000 + RANDOM % 30000))
    if ! port_in_use "$port"; then
      printf '%s' "$port"
      return
    fi
    tries=$((tries + 1))
  done
  echo "postgres.sh: no free port found" >&2
  exit 1
}

install_postgres() {
  [ -n "$(find_bin)" ] && return
  if [ "$(id -u)" -ne 0 ]; then
    echo "postgres.sh: PostgreSQL is not installed and this is not root" >&2
    exit 1
  fi
  echo "postgres.sh: installing postgresql from Debian" >&2
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
  [ -n "$(find_bin)" ] || {
    echo "postgres.sh: postgresql installed but no initdb/postgres found" >&2
    exit 1
  }
}

up() {
  if running_pid >/dev/null; then
    url
    return
  fi
  install_postgres
  local bin port
  bin=$(find_bin)
  mkdir -p "$dir"
  chown postgres: "$dir"
  chmod 700 "$dir"
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    as_postgres "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    # Trust for local connections only (the Unix socket and loopback).
    cat >"$data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
  fi
  local attempt=0
  while :; do
    port=$(pick_port)
    printf '%s\n' "$port" >"$dir/port"
    if as_postgres "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 120 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      start >/dev/null 9>&-; then
      break
    fi
    attempt=$((attempt + 1))
    # Another process may have taken the port between the probe and the start.
    if [ -n "${REGISTRY_PG_PORT:-}" ] || [ $attempt -ge 5 ]; then
      tail -n 20 "$dir/server.log" >&2 || true
      exit 1
    fi
  done
  url
}

stop() {
  local pid bin
  pid=$(running_pid) || return 0
  bin=$(find_bin)
  if [ -n "$bin" ]; then
    as_postgres "$bin/pg_ctl" -D "$data" -m fast -w -t 120 stop >/dev/null 9>&-
  else
    kill -INT "$pid"
  fi
}

status() {
  if running_pid >/dev/null; then
    url
  else
    echo "down"
    exit 3
  fi
}

case "${1:-}" in
up | stop | status)
  mkdir -p "$(dirname "$dir")"
  # One command at a time per cluster (tests in parallel may all call `up`).
  exec 9>"$dir.lock"
  flock 9
  "$1"
  ;;
url) url ;;
*)
  echo "usage: $0 up|stop|status|url" >&2
  exit 2
  ;;
esac
