#!/usr/bin/env bash
# A private PostgreSQL primary and hot standby, for lockmgr's failover tests.
#
#   .ci/engines/pgreplica.sh start [sync|async]  initdb a primary, pg_basebackup a standby
#   .ci/engines/pgreplica.sh stop                stop both by the PIDs in their postmaster.pid
#   .ci/engines/pgreplica.sh status              each node: port, pid, role
#   .ci/engines/pgreplica.sh dsn                 the multi-host DSN (read-write target)
#   .ci/engines/pgreplica.sh failover            kill -9 the primary, promote the standby
#   .ci/engines/pgreplica.sh rebuild             make the dead old primary a standby of the new one
#   .ci/engines/pgreplica.sh pause|resume        pause / resume WAL replay on the standby
#   .ci/engines/pgreplica.sh cut                 cut the replication stream (the standby
#                                                streams from nowhere until rebuilt)
#
# Knobs: LOCKMGR_PGREPLICA_DIR (default /tmp/lockmgr-pgreplica; never inside the
# repository), LOCKMGR_PGREPLICA_PORT (default 15432: node a; node b is port + 1),
# LOCKMGR_PGREPLICA_MODE (sync or async, default sync; start's argument wins),
# LOCKMGR_PGREPLICA_SKEW_MS=N runs node b (the first standby) under libfaketime,
# its clock N ms behind node a's (default 0: no skew; read at each start of b),
# PG_BIN (default /usr/lib/postgresql/15/bin). The servers run as the postgres
# user with trust authentication, database "test". The cluster on 5432 is never
# touched. Node roles swap at each failover; rebuild + failover is the way back.
set -euo pipefail

DIR=${LOCKMGR_PGREPLICA_DIR:-/tmp/lockmgr-pgreplica}
BASE_PORT=${LOCKMGR_PGREPLICA_PORT:-15432}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
RUN_AS=postgres

die() { echo "pgreplica.sh: $*" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$RUN_AS" -- "$@"; else "$@"; fi; }
port_of() { if [ "$1" = a ]; then echo "$BASE_PORT"; else echo $((BASE_PORT + 1)); fi; }
other() { if [ "$1" = a ]; then echo b; else echo a; fi; }
primary() { cat "$DIR/primary" 2>/dev/null || echo a; }
mode() { cat "$DIR/mode" 2>/dev/null || echo "${LOCKMGR_PGREPLICA_MODE:-sync}"; }
pid_of() { head -n1 "$DIR/$1/postmaster.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
psql_on() { as_pg "$PG_BIN/psql" -X -w -q -At -h 127.0.0.1 -p "$(port_of "$1")" -d "${2:-postgres}" -c "$3"; }

case "$DIR" in
  "" | / ) die "refusing data directory '$DIR'" ;;
esac
if top=$(git rev-parse --show-toplevel 2>/dev/null) && [[ "$(realpath -m "$DIR")" == "$top"* ]]; then
  die "the data directory $DIR is inside the repository"
fi

# conf NODE: the settings both nodes share (a standby inherits them via pg_basebackup).
conf() {
  cat >>"$DIR/$1/postgresql.conf" <<CONF
port = $(port_of "$1")
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 5
hot_standby = on
hot_standby_feedback = on
wal_sender_timeout = 5s
wal_receiver_status_interval = 1s
fsync = off
shared_buffers = 32MB
max_connections = 100
logging_collector = off
CONF
}

faketime_lib() {
  local f; for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

# pg_start NODE; node b runs LOCKMGR_PGREPLICA_SKEW_MS behind when that is set.
pg_start() {
  local skew=${LOCKMGR_PGREPLICA_SKEW_MS:-0} envs=() lib
  if [ "$1" = b ] && [ "$skew" != 0 ]; then
    lib=$(faketime_lib) || die "libfaketime not found (apt-get install faketime libfaketime)"
    envs=(LD_PRELOAD="$lib" FAKETIME="-$(awk -v ms="$skew" 'BEGIN { printf "%.3f", ms / 1000 }')" FAKETIME_DONT_RESET=1)
    echo "node b runs $skew ms behind (libfaketime)" >&2
  fi
  as_pg env "${envs[@]}" "$PG_BIN/pg_ctl" -D "$DIR/$1" -l "$DIR/$1.log" -w -t 60 start >&2 \
    || { tail -n 20 "$DIR/$1.log" >&2; die "node $1 did not start"; }
}

# set_sync NODE: on the primary NODE, wait (sync) or not (async) for the standby.
set_sync() {
  local names=''
  [ "$(mode)" = sync ] && names=standby
  psql_on "$1" postgres "ALTER SYSTEM SET synchronous_standby_names = '$names'" >&2
  psql_on "$1" postgres "SELECT pg_reload_conf()" >/dev/null
}

# make_standby NODE FROM: a fresh copy of FROM's data in NODE, streaming from FROM.
make_standby() {
  rm -rf "${DIR:?}/$1"
  as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$(port_of "$2")" -U postgres -D "$DIR/$1" \
    -X stream -R -c fast -d "application_name=standby" >&2
  sed -i '/^port = /d' "$DIR/$1/postgresql.conf"
  echo "port = $(port_of "$1")" >>"$DIR/$1/postgresql.conf"
  # A promoted standby must not wait for a standby it does not have.
  echo "synchronous_standby_names = ''" >>"$DIR/$1/postgresql.auto.conf"
  pg_start "$1"
  wait_streaming "$2"
}

wait_streaming() {
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(psql_on "$1" postgres "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" = 1 ] && return 0
    sleep 0.2
  done
  die "the standby does not stream from node $1"
}

start() {
  local m=${1:-${LOCKMGR_PGREPLICA_MODE:-sync}}
  [ "$m" = sync ] || [ "$m" = async ] || die "mode must be sync or async, not '$m'"
  if alive a || alive b; then echo "pgreplica already running in $DIR" >&2; dsn; return 0; fi
  rm -rf "${DIR:?}"
  install -d -m 0700 -o "$RUN_AS" "$DIR"
  echo "$m" >"$DIR/mode"; echo a >"$DIR/primary"
  as_pg "$PG_BIN/initdb" -D "$DIR/a" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  conf a
  pg_start a
  psql_on a postgres "CREATE DATABASE test" >&2
  make_standby b a
  set_sync a
  echo "pgreplica ($m) primary a on 127.0.0.1:$(port_of a), standby b on 127.0.0.1:$(port_of b), dir $DIR" >&2
  dsn
}

kill_node() {
  local pid kids
  pid=$(pid_of "$1"); [ -n "$pid" ] || return 0
  kids=$(pgrep -P "$pid" || true)
  kill -9 "$pid" $kids 2>/dev/null || true
  local i; for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

stop() {
  [ -d "$DIR" ] || { echo "no pgreplica in $DIR" >&2; return 0; }
  local n pid i
  for n in a b; do
    pid=$(pid_of "$n"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill_node "$n"
  done
  rm -rf "${DIR:?}"
  echo "pgreplica stopped" >&2
}

status() {
  local n role
  for n in a b; do
    if alive "$n"; then
      role=$(psql_on "$n" postgres "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null || echo '?')
    else role=down; fi
    echo "$n 127.0.0.1:$(port_of "$n") pid=$(pid_of "$n") $role"
  done
}

dsn() {
  echo "postgres://postgres@127.0.0.1:$(port_of a),127.0.0.1:$(port_of b)/test?sslmode=disable&target_session_attrs=read-write&connect_timeout=2"
}

failover() {
  local old new
  old=$(primary); new=$(other "$old")
  alive "$new" || die "no standby to promote (node $new is down)"
  kill_node "$old"
  as_pg "$PG_BIN/pg_ctl" -D "$DIR/$new" -w -t 60 promote >&2
  echo "$new" >"$DIR/primary"
  echo "failover: node $old (port $(port_of "$old")) killed, node $new (port $(port_of "$new")) promoted" >&2
}

rebuild() {
  local p s
  p=$(primary); s=$(other "$p")
  alive "$s" && die "node $s is running; rebuild only replaces a dead node"
  make_standby "$s" "$p"
  set_sync "$p"
  echo "rebuild: node $s is a standby of node $p again" >&2
}

# cut: point the standby's walreceiver at a closed port; the primary's
# later commits never reach it (a sync primary waits for it instead).
cut() {
  local s; s=$(other "$(primary)")
  psql_on "$s" postgres "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 connect_timeout=1'" >&2
  psql_on "$s" postgres "SELECT pg_reload_conf()" >/dev/null
  local i; for ((i = 0; i < 50; i++)); do
    [ "$(psql_on "$(primary)" postgres "SELECT count(*) FROM pg_stat_replication")" = 0 ] && break; sleep 0.1
  done
  echo "cut: node $s no longer streams from node $(primary)" >&2
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  status) status ;;
  dsn) dsn ;;
  failover) failover ;;
  rebuild | failback) rebuild ;;
  cut) cut ;;
  pause) psql_on "$(other "$(primary)")" postgres "SELECT pg_wal_replay_pause()" >/dev/null ;;
  resume) psql_on "$(other "$(primary)")" postgres "SELECT pg_wal_replay_resume()" >/dev/null ;;
  *) sed -n '2,/^set /{/^#/p}' "$0" >&2; exit 2 ;;
esac
