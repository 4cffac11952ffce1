#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests and export KINSHIP_TEST_PG_URL.
#
# Source it (`. .ci/postgres.sh`) from .ci/run, or run it to print the URL. Idempotent: a data
# directory already initialised is reused, a server already running is left running, the role
# and database are created only when missing. Works as root on a fresh Debian 12 machine
# (apt package `postgresql`, PostgreSQL 15): root may not run initdb/postgres, so both run as
# the `postgres` user the package creates. No Debian cluster is touched: the server has its own
# data directory, port and socket directory, and trusts local connections (tests only).
#
#   KINSHIP_PG_DATA  data directory      (default /tmp/kinship-ci-pg)
#   KINSHIP_PG_PORT  TCP port on 127.0.0.1 (default 5433, beside a system cluster on 5432)
# A KINSHIP_TEST_PG_URL already set and reachable is kept as it is.
set -euo pipefail

_kpg_main() {
    local data="${KINSHIP_PG_DATA:-/tmp/kinship-ci-pg}"
    local port="${KINSHIP_PG_PORT:-5433}"
    local sock="$data/socket"
    local bindir
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -z "$bindir" ]]; then
        echo "postgres.sh: no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)" >&2
        return 1
    fi
    local as=()  # run server commands as postgres when we are root
    if [[ "$(id -u)" == 0 ]]; then
        as=(runuser -u postgres --)
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        mkdir -p "$data"
        [[ "$(id -u)" == 0 ]] && chown postgres: "$data"
        chmod 700 "$data"
        "${as[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
            --locale=C.UTF-8 >"$data.initdb.log" 2>&1 || {
            cat "$data.initdb.log" >&2
            return 1
        }
    fi
    mkdir -p "$sock"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$sock"
    if ! "${as[@]}" "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        "${as[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
            -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
    fi
    local psql=("$bindir/psql" -h "$sock" -p "$port" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1)
    if [[ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'kinship'")" ]]; then
        "${psql[@]}" -c "CREATE ROLE kinship LOGIN PASSWORD 'kinship'"
    fi
    if [[ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'kinship_test'")" ]]; then
        "${psql[@]}" -c "CREATE DATABASE kinship_test OWNER kinship"
    fi
    KINSHIP_TEST_PG_URL="postgresql://kinship:kinship@127.0.0.1:$port/kinship_test"
}

if [[ -n "${KINSHIP_TEST_PG_URL:-}" ]] \
    && python3 -c "import psycopg, os; psycopg.connect(os.environ['KINSHIP_TEST_PG_URL'], connect_timeout=5).close()" 2>/dev/null; then
    :  # a server was given and answers
else
    _kpg_main
fi
export KINSHIP_TEST_PG_URL
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "$KINSHIP_TEST_PG_URL"
fi
