#!/usr/bin/env bash
# A private 3-node MariaDB Galera Cluster for lockmgr's cross-node tests.
#
#   bash .ci/engines/galera.sh start   # fresh cluster, prints the three DSNs
#   bash .ci/engines/galera.sh stop    # stops the nodes this script started, by PID
#   bash .ci/engines/galera.sh status
#
# Nodes i = 1..3: SQL on 127.0.0.1:1330(5+i), gcomm/IST/SST on 14560+10(i-1)+{0,1,2}.
# Data under LOCKMGR_GALERA_DIR (default /tmp/lockmgr-galera), owned by mysql:
# never inside the repository. `start` wipes it and builds the cluster anew.
# LOCKMGR_GALERA_SKEW_MS=N starts node 3 under libfaketime, its clock N ms
# behind the others (0 or unset: no skew). Installs galera-4, rsync and faketime
# with apt-get when they are missing. Needs root (mysqld runs as user mysql).
set -euo pipefail

DIR=${LOCKMGR_GALERA_DIR:-/tmp/lockmgr-galera}
SKEW_MS=${LOCKMGR_GALERA_SKEW_MS:-0}
WAIT=${LOCKMGR_GALERA_WAIT:-120}
PROVIDER=/usr/lib/galera/libgalera_smm.so

sql_port() { echo $((13305 + $1)); }
gcomm_port() { echo $((14560 + 10 * ($1 - 1))); }
dsn() { echo "root@tcp(127.0.0.1:$(sql_port "$1"))/test?parseTime=true&loc=UTC"; }
sql() { mariadb --protocol=TCP -h 127.0.0.1 -P "$(sql_port "$1")" -uroot --connect-timeout=3 -N -B -e "$2"; }
log() { echo "galera: $*" >&2; }

faketime_lib() {
  local f; for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

ensure_packages() {
  local missing=()
  [ -f "$PROVIDER" ] || missing+=(galera-4)
  command -v rsync >/dev/null || missing+=(rsync)
  faketime_lib >/dev/null || missing+=(faketime libfaketime)
  [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update && timeout 1200 apt-get install -y --no-install-recommends "${missing[@]}"
}

write_cnf() {
  local i=$1 g; g=$(gcomm_port "$i")
  local addr="gcomm://127.0.0.1:$(gcomm_port 1),127.0.0.1:$(gcomm_port 2),127.0.0.1:$(gcomm_port 3)"
  mkdir -p "$DIR/n$i/data"
  cat >"$DIR/n$i/my.cnf" <<EOF
[mysqld]
user=mysql
datadir=$DIR/n$i/data
socket=$DIR/n$i/mysql.sock
pid-file=$DIR/n$i/mysqld.pid
log-error=$DIR/n$i/error.log
port=$(sql_port "$i")
bind-address=127.0.0.1
innodb_buffer_pool_size=64M
innodb_log_file_size=48M
innodb_flush_log_at_trx_commit=2
skip-log-bin
binlog_format=ROW
innodb_autoinc_lock_mode=2
max_connections=300
wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=lockmgr
wsrep_cluster_address=$addr
wsrep_node_address=127.0.0.1:$g
wsrep_node_name=n$i
wsrep_provider_options="base_host=127.0.0.1;base_port=$g;gmcast.listen_addr=tcp://127.0.0.1:$g;ist.recv_addr=127.0.0.1:$((g + 1));gcache.size=64M"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$((g + 2))
EOF
}

# start_node I [extra mariadbd args]: start node I in the background.
start_node() {
  local i=$1; shift
  local env=()
  if [ "$i" = 3 ] && [ "$SKEW_MS" != 0 ]; then
    local lib; lib=$(faketime_lib) || { log "libfaketime not found"; return 1; }
    env=(env LD_PRELOAD="$lib" FAKETIME="-$(awk -v ms="$SKEW_MS" 'BEGIN { printf "%.3f", ms / 1000 }')" FAKETIME_DONT_RESET=1)
    log "node 3 runs ${SKEW_MS} ms behind (libfaketime)"
  fi
  "${env[@]}" /usr/sbin/mariadbd --defaults-file="$DIR/n$i/my.cnf" "$@" >>"$DIR/n$i/stdout.log" 2>&1 &
  echo $! >"$DIR/n$i/launch.pid"
}

cluster_size() { sql "$1" "SHOW STATUS LIKE 'wsrep_cluster_size'" 2>/dev/null | awk '{print $2}'; }
ready() { [ "$(sql "$1" "SHOW STATUS LIKE 'wsrep_ready'" 2>/dev/null | awk '{print $2}')" = ON ]; }

wait_until() {
  local what=$1 i; shift
  for ((i = 0; i < WAIT; i++)); do "$@" && return 0; sleep 1; done
  log "timed out after ${WAIT}s waiting for $what"
  return 1
}

node_pid() { [ -s "$DIR/n$1/launch.pid" ] && cat "$DIR/n$1/launch.pid"; }
alive() { local p; p=$(node_pid "$1") && kill -0 "$p" 2>/dev/null; }

cmd_stop() {
  local i p k
  for i in 3 2 1; do
    p=$(node_pid "$i") || continue
    if kill -0 "$p" 2>/dev/null; then
      log "stopping node $i (pid $p)"
      kill -TERM "$p" 2>/dev/null || true
      for ((k = 0; k < 60 && $(kill -0 "$p" 2>/dev/null && echo 1 || echo 0); k++)); do sleep 1; done
      if kill -0 "$p" 2>/dev/null; then log "node $i did not stop in 60 s; killing pid $p"; kill -KILL "$p" 2>/dev/null || true; fi
    fi
    rm -f "$DIR/n$i/launch.pid"
  done
}

cmd_start() {
  [ "$(id -u)" = 0 ] || { log "must run as root (mysqld runs as user mysql)"; return 1; }
  ensure_packages
  cmd_stop
  rm -rf "$DIR"
  mkdir -p "$DIR"
  local i
  for i in 1 2 3; do write_cnf "$i"; done
  mariadb-install-db --defaults-file="$DIR/n1/my.cnf" --auth-root-authentication-method=normal \
    --skip-test-db >"$DIR/n1/install.log" 2>&1 || { cat "$DIR/n1/install.log" >&2; return 1; }
  chown -R mysql:mysql "$DIR"
  start_node 1 --wsrep-new-cluster
  wait_until "node 1" ready 1 || { tail -n 30 "$DIR/n1/error.log" >&2; return 1; }
  sql 1 "CREATE DATABASE IF NOT EXISTS test" || return 1
  for i in 2 3; do
    start_node "$i"
    wait_until "node $i" ready "$i" || { tail -n 30 "$DIR/n$i/error.log" >&2; return 1; }
  done
  for i in 1 2 3; do
    wait_until "cluster size 3 on node $i" test "$(cluster_size "$i")" = 3 || return 1
  done
  cmd_status
}

cmd_status() {
  local i
  for i in 1 2 3; do
    if alive "$i"; then
      echo "node $i: pid $(node_pid "$i") port $(sql_port "$i") cluster_size $(cluster_size "$i") clock $(sql "$i" 'SELECT UTC_TIMESTAMP(6)' 2>/dev/null)"
    else
      echo "node $i: not running"
    fi
  done
  echo "LOCKMGR_TEST_GALERA_DSNS=$(dsn 1) $(dsn 2) $(dsn 3)"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  dsns) echo "$(dsn 1) $(dsn 2) $(dsn 3)" ;;
  *) echo "usage: $0 start|stop|status|dsns" >&2; exit 2 ;;
esac
