#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the `portcullis sql` tests and benchmark.
#
#   scripts/pg-test-server.sh start [DIR]   # initdb, start, load the fixture; print the URLs
#   scripts/pg-test-server.sh url [DIR]     # print the URLs again
#   scripts/pg-test-server.sh stop [DIR]    # stop the cluster and delete DIR
#
# DIR defaults to $PC_PG_DIR, else (start only) a new directory /tmp/pc-pg.XXXXXX. The
# cluster lives entirely in DIR: data directory, Unix socket, log. It listens on 127.0.0.1 only,
# on a free port, with scram-sha-256 for TCP and trust for the socket (the socket directory is
# private to the cluster's OS user). It is never Debian's own cluster (pg_ctlcluster): initdb
# and pg_ctl are taken from /usr/lib/postgresql/<newest>/bin, else from PATH. initdb refuses to
# run as root, so as root the cluster runs as the `postgres` OS user (runuser).
#
# `start` loads tests/fixtures/sql/postgres-setup.sql (roles portcullis_owner and portcullis_ro,
# database portcullis_test, schema app with schema.sql) and writes DIR/urls.env, also printed
# on stdout, so that `eval "$(scripts/pg-test-server.sh start)"` exports:
#   PC_PG_DIR                      the directory to pass to `stop`
#   PORTCULLIS_TEST_PG_URL         postgresql://portcullis_ro:…@127.0.0.1:PORT/portcullis_test
#   PORTCULLIS_TEST_PG_OWNER_URL   the same for portcullis_owner (owns the tables)
# The passwords are random for each cluster.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../tests/fixtures/sql"
cmd=${1:-}
dir=${2:-${PC_PG_DIR:-}}

die() { echo "pg-test-server: $*" >&2; exit 1; }

pg_bindir() {
  local d
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then
    echo "$d"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
  else
    die "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin nor on PATH); on Debian: apt-get install postgresql"
  fi
}

# Run a command as the cluster's OS user: `postgres` when we are root, else ourselves.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rand_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

start() {
  local bin port owner_pw ro_pw
  bin=$(pg_bindir)
  if [ -z "$dir" ]; then
    # /tmp, not $TMPDIR: the postgres OS user must reach it, and socket paths must stay short.
    dir=$(mktemp -d /tmp/pc-pg.XXXXXX)
  fi
  mkdir -p "$dir"
  [ ! -e "$dir/data" ] || die "$dir/data exists: stop that cluster first (scripts/pg-test-server.sh stop $dir)"
  mkdir -p "$dir/data" "$dir/sock"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user to run the cluster as"
    chown postgres: "$dir" "$dir/data" "$dir/sock"
  fi
  chmod 700 "$dir" "$dir/data" "$dir/sock"

  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --no-locale --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }

  port=$(free_port)
  # Throw-away data: durability off, small and quick.
  as_pg tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 50
log_min_messages = warning
CONF
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 start >/dev/null \
    || { as_pg cat "$dir/data/server.log" >&2 || true; die "the server did not start"; }

  owner_pw="pcowner-$(rand_hex)"
  ro_pw="pcro-$(rand_hex)"
  "$bin/psql" -X -q -h "$dir/sock" -p "$port" -U postgres -d postgres \
    -v owner_password="$owner_pw" -v ro_password="$ro_pw" \
    -f "$fixtures/postgres-setup.sql" >"$dir/setup.log" 2>&1 \
    || { cat "$dir/setup.log" >&2; stop_cluster; die "loading the fixture failed"; }

  local base="127.0.0.1:$port/portcullis_test"
  umask 077
  cat >"$dir/urls.env" <<URLS
export PC_PG_DIR='$dir'
export PORTCULLIS_TEST_PG_URL='postgresql://portcullis_ro:$ro_pw@$base'
export PORTCULLIS_TEST_PG_OWNER_URL='postgresql://portcullis_owner:$owner_pw@$base'
URLS
  cat "$dir/urls.env"
}

stop_cluster() {
  local bin
  bin=$(pg_bindir)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
  fi
}

case "$cmd" in
  start) start ;;
  url)
    [ -n "$dir" ] && [ -f "$dir/urls.env" ] || die "no cluster: give its directory (or set PC_PG_DIR)"
    cat "$dir/urls.env"
    ;;
  stop)
    [ -n "$dir" ] || die "stop: give the cluster's directory (or set PC_PG_DIR)"
    [ -d "$dir" ] || exit 0
    [ -e "$dir/data/PG_VERSION" ] || [ -e "$dir/urls.env" ] || die "$dir is not a test cluster's directory"
    stop_cluster
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|url|stop [DIR]" >&2; exit 2 ;;
esac
