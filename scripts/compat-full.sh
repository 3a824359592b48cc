#!/usr/bin/env bash
# The full compatibility suite (issue 27), for CI or by hand:
#   1. tests/compat.rs with PGWARD_COMPAT_FULL=1: every client `cargo test`
#      runs (psycopg 3, psycopg2, asyncpg, pg8000, SQLAlchemy 2.0 and 2.1
#      over psycopg and asyncpg, Alembic, Django with and without
#      server-side binding, node-postgres, postgres.js, Sequelize, pgjdbc)
#      plus psql, pgbench, pg_dump, pg_restore and pg_dumpall, each direct
#      and through pgward; then a table per client;
#   2. PostgreSQL's regression suite direct and through pgward
#      (scripts/regress-through-pgward.sh).
#
#   scripts/compat-full.sh [--release]     (--release: pg_regress through a release build)
#
# Fails if a test fails through pgward that is not in
# tests/compat/known-failures.txt or tests/compat/regress-known-failures.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
log="$target/compat-full.log"
status=0

echo "compat-full: the clients (tests/compat.rs, PGWARD_COMPAT_FULL=1)"
PGWARD_COMPAT_FULL=1 cargo test --test compat -- --nocapture 2>&1 | tee "$log" || status=1
echo
echo "| client | tests | passed direct | passed through pgward | known failures |"
echo "|---|---|---|---|---|"
grep '^compat-table | ' "$log" | sort | awk -F' [|] ' '{printf "| %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6}'
grep '^compat .*SKIPPED' "$log" || true
echo

echo "compat-full: PostgreSQL's regression suite (scripts/regress-through-pgward.sh)"
bash scripts/regress-through-pgward.sh "$@" || status=1
exit $status
