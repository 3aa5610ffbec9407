#!/usr/bin/env bash
# A throwaway local Postgres for the benchmark and the tests: `scripts/postgres.sh start` creates
# (once) and starts a cluster in ./.pgdata on 127.0.0.1:${PGPORT:-54330} with trust auth and prints
# its URL; `scripts/postgres.sh stop` stops it. Needs Debian's postgresql package
# (`apt-get install postgresql`); run as root, it runs the server as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PGPORT=${PGPORT:-54330}
PGDATA=$PWD/.pgdata
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/pg_ctl" ]; then
  echo "no Postgres found under /usr/lib/postgresql; install it: apt-get install postgresql" >&2
  exit 1
fi
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
  start)
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
      mkdir -p "$PGDATA"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
      as_owner "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    fi
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c max_connections=300" start >/dev/null
    echo "postgres://postgres@127.0.0.1:$PGPORT/postgres"
    ;;
  stop)
    as_owner "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    ;;
  *)
    echo "usage: scripts/postgres.sh start|stop" >&2
    exit 2
    ;;
esac
