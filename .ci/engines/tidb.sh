#!/usr/bin/env bash
# Build, start and stop a private TiDB server (unistore) for lockmgr's tests.
#
#   .ci/engines/tidb.sh build          build tidb-server into the cache (once)
#   .ci/engines/tidb.sh start DIR PORT start it with data in DIR, on 127.0.0.1:PORT
#   .ci/engines/tidb.sh stop DIR       stop the server started in DIR, by its PID
#
# The binary lives outside the repository, in $LOCKMGR_CACHE (default
# ~/.cache/lockmgr), and is rebuilt when missing. TiDB's source is never
# committed: it comes from the Go module proxy at the versions pinned here.
set -euo pipefail

TIDB_VERSION=v1.1.0-beta.0.20251126154744-e4e814fdc0af
PARSER_VERSION=v0.0.0-20251126154744-e4e814fdc0af
CACHE=${LOCKMGR_CACHE:-$HOME/.cache/lockmgr}
BIN=$CACHE/tidb-${TIDB_VERSION##*-}/tidb-server

die() { echo "tidb.sh: $*" >&2; exit 1; }

build() {
  if [ -x "$BIN" ]; then echo "$BIN"; return 0; fi
  local dir src parser tmp
  mkdir -p "$(dirname "$BIN")"
  tmp=$(mktemp -d "$CACHE/tidb-build.XXXXXX")
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"; trap - RETURN' RETURN
  # pkg/parser is a nested module missing from tidb's zip; take it from its own.
  dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/pingcap/tidb@$TIDB_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  parser=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/pingcap/tidb/pkg/parser@$PARSER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] && [ -d "$parser" ] || die "go mod download of tidb failed"
  src=$tmp/src
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  rm -rf "$src/pkg/parser" && cp -r "$parser" "$src/pkg/parser" && chmod -R u+w "$src/pkg/parser"
  echo "building tidb-server $TIDB_VERSION (about 13 CPU-minutes, once per machine)" >&2
  (cd "$src" && GOFLAGS= CGO_ENABLED=1 go build -o "$BIN.tmp" ./cmd/tidb-server)
  mv "$BIN.tmp" "$BIN"
  echo "$BIN"
}

# ready: TiDB answers SQL on port (it bootstraps with a "test" database;
# without a MySQL client, an open port is taken as ready).
ready() {
  if command -v mariadb >/dev/null; then
    mariadb --protocol=TCP -h 127.0.0.1 -P "$1" -uroot --connect-timeout=2 -N -B \
      -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null 2>&1
  else
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
  fi
}

start() {
  local dir=$1 port=$2 i
  [ -x "$BIN" ] || build >/dev/null
  mkdir -p "$dir"
  "$BIN" -store=unistore -path="$dir/data" -host 127.0.0.1 -P "$port" \
    -status $((port + 10000)) -log-file "$dir/tidb.log" -log-slow-query "$dir/tidb-slow.log" \
    >"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/tidb.pid"
  for ((i = 0; i < 120; i++)); do
    if ready "$port"; then
      echo "tidb-server up on 127.0.0.1:$port (pid $(cat "$dir/tidb.pid"))"
      return 0
    fi
    kill -0 "$(cat "$dir/tidb.pid")" 2>/dev/null || { tail -n 20 "$dir/stdout.log" "$dir/tidb.log" >&2; die "tidb-server exited"; }
    sleep 1
  done
  die "tidb-server did not answer on port $port within 120 s"
}

stop() {
  local dir=$1 pid i
  [ -f "$dir/tidb.pid" ] || return 0
  pid=$(cat "$dir/tidb.pid")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/tidb.pid"
}

case "${1:-}" in
  build) build ;;
  start) [ $# -eq 3 ] || die "usage: $0 start DIR PORT"; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 build | start DIR PORT | stop DIR" ;;
esac
