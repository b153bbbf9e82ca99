#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL on 127.0.0.1 for the test suite.
#   deploy/test-postgres.sh start DIR PORT   -> prints the SQLAlchemy URL on stdout
#   deploy/test-postgres.sh stop DIR         -> stops the server and removes DIR
# The password is random per run and only ever passed through the environment.
set -euo pipefail
action=${1:?start|stop}
dir=${2:?data directory}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { runuser -u postgres -- "$@"; }

case "$action" in
start)
    port=${3:-54329}
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        install -m 600 -o postgres -g postgres /dev/null "$dir/pwfile"
        echo "$pw" >"$dir/pwfile"
        as_pg "$pgbin/initdb" -D "$dir/data" -A scram-sha-256 -U postgres \
            --pwfile="$dir/pwfile" >"$dir/initdb.log" 2>&1
        rm -f "$dir/pwfile"
    fi
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
    echo "postgresql+psycopg://postgres:$pw@127.0.0.1:$port/postgres"
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac
