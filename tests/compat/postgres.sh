#!/usr/bin/env bash
# A PostgreSQL server of a test's own (Debian's postgresql package, run as
# the postgres user), for the SDK suites against hosts sharing a database:
#
#   postgres.sh start DIR PORT   make a cluster in DIR, start it on
#                                127.0.0.1:PORT (TCP only), print its URL
#   postgres.sh stop DIR         stop it (by the PID in DIR's postmaster.pid)
set -euo pipefail
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$bindir/postgres" ] || { echo "no PostgreSQL server: run scripts/deps.sh --tests" >&2; exit 1; }
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
case "$1" in
    start)
        dir=$2 port=$3
        mkdir -p "$dir/data"
        chown postgres: "$dir" "$dir/data"
        as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
        as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-h 127.0.0.1 -p $port -k '' -c fsync=off" start >/dev/null
        "$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE sprited" >/dev/null
        echo "postgres://postgres@127.0.0.1:$port/sprited"
        ;;
    stop)
        as_pg "$bindir/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null
        ;;
    *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
