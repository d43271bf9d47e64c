#!/usr/bin/env bash
# A private PgBouncer in front of the test PostgreSQL, for lockmgr's pooler tests.
#
#   bash .ci/engines/pgbouncer.sh start   # prints the DSN (last line of stdout)
#   bash .ci/engines/pgbouncer.sh stop    # stops it by the PID in its pidfile
#
# Knobs: PGBOUNCER_PORT (default 16432, the pooler's range is 16432-16439),
# PGBOUNCER_DIR (default /tmp/lockmgr-pgbouncer-$PGBOUNCER_PORT),
# PGBOUNCER_POOL_MODE (default transaction), PGBOUNCER_POOL_SIZE (default 5),
# PG_HOST / PG_PORT / PG_DB (default 127.0.0.1 / 5432 / test).
# PgBouncer refuses to run as root: it runs as the postgres user.
set -euo pipefail

PORT=${PGBOUNCER_PORT:-16432}
DIR=${PGBOUNCER_DIR:-/tmp/lockmgr-pgbouncer-$PORT}
MODE=${PGBOUNCER_POOL_MODE:-transaction}
POOL=${PGBOUNCER_POOL_SIZE:-5}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_DB=${PG_DB:-test}
RUN_AS=postgres
PIDFILE=$DIR/pgbouncer.pid

install_pgbouncer() {
  if command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then return 0; fi
  echo "pgbouncer is not installed; installing" >&2
  command -v apt-get >/dev/null || { echo "apt-get not available" >&2; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update >&2 && timeout 1200 apt-get install -y --no-install-recommends pgbouncer >&2
}

bin() { command -v pgbouncer || echo /usr/sbin/pgbouncer; }

write_config() {
  install -d -m 0755 -o "$RUN_AS" "$DIR"
  printf '"postgres" ""\n' >"$DIR/userlist.txt"
  cat >"$DIR/pgbouncer.ini" <<INI
[databases]
$PG_DB = host=$PG_HOST port=$PG_PORT dbname=$PG_DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $DIR/userlist.txt
pool_mode = $MODE
default_pool_size = $POOL
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = $DIR/pgbouncer.log
pidfile = $PIDFILE
INI
  chown "$RUN_AS" "$DIR"/pgbouncer.ini "$DIR"/userlist.txt
}

up() { timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$PORT" 2>/dev/null; }

start() {
  install_pgbouncer
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "pgbouncer already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT" >&2
  else
    if up; then echo "port $PORT is taken by something else" >&2; return 1; fi
    write_config
    if [ "$(id -u)" = 0 ]; then
      runuser -u "$RUN_AS" -- "$(bin)" -d "$DIR/pgbouncer.ini" >&2
    else
      "$(bin)" -d "$DIR/pgbouncer.ini" >&2
    fi
    local i; for ((i = 0; i < 50; i++)); do up && break; sleep 0.2; done
    up || { echo "pgbouncer did not come up on 127.0.0.1:$PORT" >&2; tail -n 20 "$DIR/pgbouncer.log" >&2 || true; return 1; }
    echo "pgbouncer $(bin) ($MODE pooling, pool size $POOL) on 127.0.0.1:$PORT, pid $(cat "$PIDFILE"), dir $DIR" >&2
  fi
  echo "postgres://postgres@127.0.0.1:$PORT/$PG_DB?sslmode=disable"
}

stop() {
  [ -s "$PIDFILE" ] || { echo "no pgbouncer pidfile at $PIDFILE" >&2; return 0; }
  local pid i; pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$DIR"
  echo "pgbouncer (pid $pid) stopped" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
