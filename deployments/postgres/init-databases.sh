#!/bin/bash
# One database and one login role per service, from the environment; safe to run again.
# PostgreSQL's image runs it on first start (docker-entrypoint-initdb.d); `make stack-local`
# runs the same script against a local server (PGHOST/PGPORT set, POSTGRES_USER the superuser).
set -euo pipefail

: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD (see .env.example)}"
: "${PREFECT_DB_PASSWORD:?set PREFECT_DB_PASSWORD (see .env.example)}"
: "${PREDICTIONS_DB_PASSWORD:?set PREDICTIONS_DB_PASSWORD (see .env.example)}"
: "${DASHBOARDS_DB_PASSWORD:?set DASHBOARDS_DB_PASSWORD (see .env.example)}"

create_database() {
    local role="$1" password="$2" database="$3"
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        --set=role="$role" --set=password="$password" --set=database="$database" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'database') \gexec
SQL
    echo "database ${database} owned by ${role}"
}

create_database mlflow "$MLFLOW_DB_PASSWORD" mlflow
create_database prefect "$PREFECT_DB_PASSWORD" prefect
create_database predictions "$PREDICTIONS_DB_PASSWORD" predictions

# Grafana's login: SELECT on the prediction log and the monitor's history, nothing else. The
# tables are created later by their owner (the service, the monitor), hence default privileges.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname predictions \
    --set=password="$DASHBOARDS_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE dashboards LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dashboards') \gexec
SELECT format('ALTER ROLE dashboards PASSWORD %L', :'password') \gexec
GRANT CONNECT ON DATABASE predictions TO dashboards;
GRANT USAGE ON SCHEMA public TO dashboards;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO dashboards;
ALTER DEFAULT PRIVILEGES FOR ROLE predictions IN SCHEMA public GRANT SELECT ON TABLES TO dashboards;
SQL
echo "role dashboards reads database predictions"
