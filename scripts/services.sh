#!/usr/bin/env bash
# Makes sure the real Redis and PostgreSQL the tests use are reachable: starts them if they are
# installed but stopped, installs them from Debian packages if missing. With CI=true a server that
# still cannot be reached fails the run (never a skip).
set -uo pipefail

REDIS_HOST=127.0.0.1 REDIS_PORT=6379 PG_HOST=127.0.0.1 PG_PORT=5432

log() { echo "[services] $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do port_open "$1" "$2" && return 0; sleep 0.5; done; return 1; }

apt_install() {
  command -v apt-get >/dev/null || return 1
  log "installing $* from Debian packages"
  [ "$(id -u)" = 0 ] || { log "not root: cannot install $*"; return 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

ensure_redis() {
  port_open $REDIS_HOST $REDIS_PORT && return 0
  command -v redis-server >/dev/null || apt_install redis-server || return 1
  log "starting redis-server on $REDIS_PORT"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port $REDIS_HOST $REDIS_PORT
}

ensure_postgres() {
  port_open $PG_HOST $PG_PORT && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql || return 1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || return 1
  wait_port $PG_HOST $PG_PORT || return 1
  # Trust auth on loopback and a 'test' database, as the test settings expect.
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 \
    || su postgres -c "createdb test" || true
}

status=0
ensure_redis || { log "Redis is not reachable at $REDIS_HOST:$REDIS_PORT"; status=1; }
ensure_postgres || { log "PostgreSQL is not reachable at $PG_HOST:$PG_PORT"; status=1; }
if [ $status -ne 0 ] && [ "${CI:-}" = "true" ]; then
  log "CI=true: a missing server is a failure"
  exit 1
fi
exit 0
