#!/bin/bash
# The official image's first-start contract: a cluster with POSTGRES_USER (superuser) and
# POSTGRES_PASSWORD (scram-sha-256 over TCP), then every /docker-entrypoint-initdb.d/*.sh run once
# against a socket-only server; afterwards the server listens on every address.
set -euo pipefail
: "${POSTGRES_PASSWORD:?the postgres stand-in needs POSTGRES_PASSWORD}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl --wait --silent -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start
    for script in /docker-entrypoint-initdb.d/*.sh; do
        [ -e "$script" ] || continue
        echo "running $script"
        PGHOST=/var/run/postgresql bash "$script"
    done
    pg_ctl --wait --silent -m fast stop
    echo "PostgreSQL init process complete; ready for start up."
fi
[ "${1:-}" = postgres ] && shift
exec postgres -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
