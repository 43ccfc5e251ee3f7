#!/usr/bin/env bash
# A throw-away Redis server for the `portcullis serve` tests (shared state of replicas).
#
#   scripts/redis-test-server.sh start [DIR]   # start a server; print the URL
#   scripts/redis-test-server.sh url [DIR]     # print the URL again
#   scripts/redis-test-server.sh stop [DIR]    # stop the server and delete DIR
#
# DIR defaults to $PC_REDIS_DIR, else (start only) a new directory /tmp/pc-redis.XXXXXX. The
# server lives entirely in DIR: config, pidfile, log. It listens on 127.0.0.1 only, on a free
# port, with a random `requirepass`, no persistence (nothing is ever written to disk but the
# log) and no Unix socket. It is never Debian's own redis-server service.
#
# `start` writes DIR/url.env, also printed on stdout, so that
# `eval "$(scripts/redis-test-server.sh start)"` exports:
#   PC_REDIS_DIR                 the directory to pass to `stop`
#   PORTCULLIS_TEST_REDIS_URL    redis://:PASSWORD@127.0.0.1:PORT/0
set -euo pipefail

cmd=${1:-}
dir=${2:-${PC_REDIS_DIR:-}}

die() { echo "redis-test-server: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rand_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

server_bin() {
  command -v redis-server >/dev/null 2>&1 \
    || die "Redis is not installed (no redis-server on PATH); on Debian: apt-get install redis-server"
  command -v redis-server
}

start() {
  local bin port password i
  bin=$(server_bin)
  if [ -z "$dir" ]; then
    dir=$(mktemp -d /tmp/pc-redis.XXXXXX)
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  [ ! -e "$dir/redis.pid" ] || die "$dir/redis.pid exists: stop that server first (scripts/redis-test-server.sh stop $dir)"

  port=$(free_port)
  password="pcredis-$(rand_hex)"
  umask 077
  # The password is in the config file (mode 0600), never on a command line (ps would show it).
  cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
protected-mode yes
port $port
unixsocket ""
requirepass $password
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
save ""
appendonly no
databases 4
maxmemory 64mb
maxmemory-policy noeviction
CONF
  "$bin" "$dir/redis.conf" >/dev/null 2>&1 || { cat "$dir/redis.log" >&2 || true; die "the server did not start"; }
  # daemonize returns before the port is open: wait (bounded) for the pidfile and the port.
  for i in $(seq 1 100); do
    if [ -s "$dir/redis.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    [ "$i" -lt 100 ] || { cat "$dir/redis.log" >&2 || true; stop_server; die "the server did not start listening on 127.0.0.1:$port"; }
    sleep 0.1
  done

  cat >"$dir/url.env" <<URLS
export PC_REDIS_DIR='$dir'
export PORTCULLIS_TEST_REDIS_URL='redis://:$password@127.0.0.1:$port/0'
URLS
  cat "$dir/url.env"
}

stop_server() {
  local pid i
  [ -s "$dir/redis.pid" ] || return 0
  pid=$(cat "$dir/redis.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

case "$cmd" in
  start) start ;;
  url)
    [ -n "$dir" ] && [ -f "$dir/url.env" ] || die "no server: give its directory (or set PC_REDIS_DIR)"
    cat "$dir/url.env"
    ;;
  stop)
    [ -n "$dir" ] || die "stop: give the server's directory (or set PC_REDIS_DIR)"
    [ -d "$dir" ] || exit 0
    [ -e "$dir/redis.conf" ] || die "$dir is not a test server's directory"
    stop_server
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|url|stop [DIR]" >&2; exit 2 ;;
esac
