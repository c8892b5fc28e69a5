#!/usr/bin/env bash
# A real S3 server for the tests: Ceph RGW (Debian's Ceph 16 "Pacific") with one monitor, one
# BlueStore OSD on a sparse file and radosgw (beast) on 127.0.0.1:7480, in a folder this script
# owns ($REGISTRY_CEPH_DIR, default /var/tmp/registry-ceph). No cephx. One S3 user with fixed
# test keys. Daemons are started with PID files and stopped by those PID files only.
#
#   scripts/s3-ceph.sh install   install ceph-mon ceph-osd radosgw from Debian when missing (root)
#   scripts/s3-ceph.sh up        install when missing, create the cluster when there is none,
#                                start what is not running, wait until S3 answers; no-op when up
#   scripts/s3-ceph.sh stop      stop the daemons by their PID files (data kept)
#   scripts/s3-ceph.sh status    exit 0 when all three daemons run and S3 answers
#   scripts/s3-ceph.sh pids      the PIDs of the running daemons, one a line
#
# Only one such cluster can run on a machine (fixed ports): give each test run its own bucket.
# `up` and `stop` take the lock file $REGISTRY_CEPH_DIR.lock, one at a time.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

DIR=${REGISTRY_CEPH_DIR:-/var/tmp/registry-ceph}
CONF=$DIR/ceph.conf
ENDPOINT=http://127.0.0.1:7480
ACCESS_KEY=registry-test-access
SECRET_KEY=registry-test-secret-0123456789abcdef
UID_NAME=registry-test
DAEMONS=(mon.a osd.0 client.rgw.a)

say() { echo "s3-ceph: $*" >&2; }
die() {
  say "$*"
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    die "needs root (or sudo) to run: $*"
  fi
}

installed() { command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null && command -v radosgw >/dev/null; }

cmd_install() {
  installed && return 0
  say "installing ceph-mon ceph-osd radosgw from Debian"
  as_root apt-get update -qq >/dev/null
  as_root apt-get install -y -qq --no-install-recommends ceph-mon ceph-osd radosgw >/dev/null
  installed || die "install failed"
}

# The executable name a daemon's process must have (to never act on a reused PID).
comm_of() {
  case "$1" in
  mon.*) echo ceph-mon ;;
  osd.*) echo ceph-osd ;;
  client.rgw.*) echo radosgw ;;
  esac
}

# The PID of a running daemon from its PID file, or nothing.
pid_of() {
  local file=$DIR/run/$1.pid pid
  [ -f "$file" ] || return 0
  pid=$(tr -dc 0-9 <"$file")
  [ -n "$pid" ] || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$(comm_of "$1")" ] && echo "$pid"
  return 0
}

ceph_cli() { ceph -c "$CONF" --connect-timeout 10 "$@"; }

s3_answers() { curl -fsS -o /dev/null --max-time 2 "$ENDPOINT/" 2>/dev/null; }

# Polls a condition (a command) until it holds or `seconds` passed.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what (logs: $DIR/log)"
    sleep 0.1
  done
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do [ -n "$(pid_of "$d")" ] || return 1; done
}

cmd_status() {
  if all_running && s3_answers; then
    echo "up: $ENDPOINT (folder $DIR)"
    return 0
  fi
  local d
  for d in "${DAEMONS[@]}"; do echo "$d: $(pid_of "$d")"; done
  echo "down"
  return 1
}

cmd_pids() {
  local d
  for d in "${DAEMONS[@]}"; do pid_of "$d"; done
}

write_conf() {
  local fsid=$1
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:5050
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr1 = false
ms bind port min = 5051
ms bind port max = 5059
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon data avail warn = 2
mon data avail crit = 1
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
keyring = $DIR/keyring
[mon]
mon data = $DIR/mon/\$id
paxos propose interval = 0.05
[osd]
osd data = $DIR/osd/\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 20G
[client.rgw.a]
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:7480 tcp_nodelay=1
rgw data = $DIR/rgw
rgw gc obj min wait = 60
rgw gc processor period = 60
EOF
}

create_cluster() {
  say "creating a new cluster in $DIR"
  mkdir -p "$DIR"/{run,log,mon/a,osd/0,rgw}
  local fsid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid"
  ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  cp "$DIR/mon.keyring" "$DIR/keyring"
  monmaptool --create --fsid "$fsid" --addv a '[v2:127.0.0.1:5050]' "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
  start_daemon mon.a
  wait_for "the monitor" 60 ceph_cli mon stat
  local uuid id
  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(ceph_cli osd new "$uuid")
  [ "$id" = 0 ] || die "expected osd id 0, got '$id'"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >"$DIR/log/osd-mkfs.log" 2>&1 ||
    die "ceph-osd --mkfs failed (see $DIR/log/osd-mkfs.log)"
  echo "$uuid" >"$DIR/osd-uuid"
}

start_daemon() {
  [ -n "$(pid_of "$1")" ] && return 0
  rm -f "$DIR/run/$1.pid"
  # the daemons do not inherit the lock (fd 9): it is released when this script ends
  case "$1" in
  mon.a) ceph-mon -c "$CONF" -i a 9>&- ;;
  osd.0) ceph-osd -c "$CONF" -i 0 9>&- ;;
  client.rgw.a) radosgw -c "$CONF" -n client.rgw.a 9>&- ;;
  esac
  wait_for "$1's PID file" 60 test -s "$DIR/run/$1.pid"
}

osd_up() { ceph_cli osd dump | grep -q '^osd\.0 up'; }

user_ready() {
  radosgw-admin -c "$CONF" user info --uid="$UID_NAME" 2>/dev/null | grep -q "$ACCESS_KEY"
}

cmd_up() {
  if all_running && s3_answers; then
    print_where
    return 0
  fi
  cmd_install
  local started=$SECONDS
  [ -f "$DIR/osd-uuid" ] || {
    # a half-made cluster (interrupted creation): stop what runs of it and start again
    if [ -d "$DIR" ]; then
      cmd_stop
      rm -rf "$DIR"
    fi
    create_cluster
  }
  start_daemon mon.a
  wait_for "the monitor" 60 ceph_cli mon stat
  start_daemon osd.0
  wait_for "osd.0 up" 120 osd_up
  start_daemon client.rgw.a
  wait_for "S3 at $ENDPOINT" 120 s3_answers
  if ! user_ready; then
    radosgw-admin -c "$CONF" user create --uid="$UID_NAME" --display-name="registry tests" \
      --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
  fi
  say "up in $((SECONDS - started))s"
  print_where
}

print_where() {
  cat <<EOF
Ceph RGW is up: folder $DIR (logs in $DIR/log), PIDs: $(cmd_pids | tr '\n' ' ')
REGISTRY_S3_ENDPOINT=$ENDPOINT
REGISTRY_S3_ACCESS_KEY=$ACCESS_KEY
REGISTRY_S3_SECRET_KEY=$SECRET_KEY
REGISTRY_S3_REGION=us-east-1
EOF
}

cmd_stop() {
  local d pid deadline
  for d in client.rgw.a osd.0 mon.a; do
    pid=$(pid_of "$d")
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$(comm_of "$d")" ]; do
      if [ $SECONDS -ge $deadline ]; then
        say "$d ($pid) did not stop in 30s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 30))
      fi
      sleep 0.1
    done
    rm -f "$DIR/run/$d.pid"
    say "stopped $d ($pid)"
  done
}

# One `up` or `stop` at a time on a machine (two test runs, or a test run and the bench, may
# both bring the cluster up): the second waits for the first, then finds the cluster up.
locked() {
  mkdir -p "$(dirname "$DIR")"
  exec 9>"$DIR.lock"
  flock -w 900 9 || die "another s3-ceph.sh up/stop held $DIR.lock for 15 minutes"
  "$@"
}

case "${1:-}" in
install) cmd_install ;;
up) locked cmd_up ;;
stop) locked cmd_stop ;;
status) cmd_status ;;
pids) cmd_pids ;;
*) die "usage: $0 install|up|stop|status|pids" ;;
esac
