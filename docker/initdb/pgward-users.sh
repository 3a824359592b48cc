#!/bin/sh
# The PostgreSQL users the example roles connect as (rules/roles.toml,
# upstream_user), and the database "app" they work in. The postgres image
# runs this once, when it initialises its data directory; pgward.toml gives
# pgward the same passwords ([[upstream.users]] in docker/pgward.toml).
#
# Two locks, not one: none of these users is a superuser or a member of
# pg_read_server_files, pg_write_server_files or pg_execute_server_program,
# and each has only what its role needs, so a statement pgward misclassifies
# still meets PostgreSQL's own permission checks.
#   pgward_dba      owns the database and the tables it creates
#   pgward_app      SELECT, INSERT, UPDATE, DELETE on them, USAGE on sequences,
#                   CREATE in public (its DDL runs once approved)
#   pgward_analyst  SELECT on them
#   pgward_agent    SELECT on them
# The rules keep analyst and agent away from public.api_keys; when the DBA
# creates it, take their grant away too (the second lock for that table):
#   REVOKE SELECT ON api_keys FROM pgward_analyst, pgward_agent;
set -eu

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
    -v dba="$PGWARD_DBA_PASSWORD" \
    -v app="$PGWARD_APP_PASSWORD" \
    -v analyst="$PGWARD_ANALYST_PASSWORD" \
    -v agent="$PGWARD_AGENT_PASSWORD" <<'SQL'
CREATE ROLE pgward_dba LOGIN CREATEDB PASSWORD :'dba';
CREATE ROLE pgward_app LOGIN PASSWORD :'app';
CREATE ROLE pgward_analyst LOGIN PASSWORD :'analyst';
CREATE ROLE pgward_agent LOGIN PASSWORD :'agent';
-- The dba role may cancel and end other sessions (allow_dangerous).
GRANT pg_signal_backend TO pgward_dba;
CREATE DATABASE app OWNER pgward_dba;
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT ON DATABASE app TO pgward_analyst, pgward_agent, pgward_app;
GRANT TEMPORARY ON DATABASE app TO pgward_app;

\connect app
ALTER DEFAULT PRIVILEGES FOR ROLE pgward_dba IN SCHEMA public
    GRANT SELECT ON TABLES TO pgward_analyst, pgward_agent;
-- pg_dump reads the sequences a dumped table owns.
ALTER DEFAULT PRIVILEGES FOR ROLE pgward_dba IN SCHEMA public
    GRANT SELECT ON SEQUENCES TO pgward_analyst, pgward_agent;
ALTER DEFAULT PRIVILEGES FOR ROLE pgward_dba IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO pgward_app;
ALTER DEFAULT PRIVILEGES FOR ROLE pgward_dba IN SCHEMA public
    GRANT USAGE ON SEQUENCES TO pgward_app;
-- app's schema changes run once a DBA approves them: tables of its own.
GRANT CREATE ON SCHEMA public TO pgward_app;
-- Anyone may create large objects by default, even in a read-only
-- transaction: only the roles that may write.
REVOKE EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), lo_from_bytea(oid, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), lo_from_bytea(oid, bytea) TO pgward_app, pgward_dba;
-- The dba role may reload the configuration (allow_dangerous).
GRANT EXECUTE ON FUNCTION pg_reload_conf() TO pgward_dba;
SQL
