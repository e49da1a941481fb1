#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the test suite and print its URL.
# Installs Debian's postgresql if the server binaries are missing. Idempotent.
set -euo pipefail
PORT="${PREFLINE_PG_PORT:-54329}"
DATA="${PREFLINE_PG_DATA:-/tmp/prefline-pgdata}"
SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN="$(find_bin || true)"
if [ -z "$BIN" ] || [ ! -x "$BIN/postgres" ]; then
  echo "installing PostgreSQL server (Debian package postgresql)..." >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
  BIN="$(find_bin)"
fi
RUNAS=()
if [ "$(id -u)" = "0" ]; then RUNAS=(su postgres -s /bin/bash -c); else RUNAS=(bash -c); fi
if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then
  # A server killed with its session leaves postmaster.pid behind; drop it if nothing runs it.
  if [ -f "$DATA/postmaster.pid" ] && ! kill -0 "$(head -1 "$DATA/postmaster.pid")" 2>/dev/null; then
    rm -f "$DATA/postmaster.pid"
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = "0" ] && chown postgres "$DATA"
    "${RUNAS[@]}" "$BIN/initdb -D $DATA -U postgres --auth=trust -E UTF8 >/dev/null"
  fi
  "${RUNAS[@]}" "$BIN/pg_ctl -D $DATA -l $DATA/server.log -o '-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off' -w start >/dev/null"
fi
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='prefline_test'" | grep -q 1 \
  || "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres prefline_test
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/prefline_test"
