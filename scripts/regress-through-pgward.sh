#!/usr/bin/env bash
# PostgreSQL's own regression suite (pg_regress with parallel_schedule) run
# twice against a fresh cluster: direct, then through pgward with a role
# that allows everything. Reports per test whether it passed direct and
# through pgward, lists the tests that pass direct but fail through pgward
# with an excerpt of each one's diff, and fails if one of those is not in
# tests/compat/regress-known-failures.txt (a listed test that passes is
# reported, to be removed from the list).
#
#   scripts/regress-through-pgward.sh [--release] [MAJOR]     (default 15)
#
# The suite comes from scripts/fetch-regress-sql.sh (cached outside the
# clone, with the regress.so it builds). pgward is the debug build of this
# tree (cargo build), or the release build with --release, or $PGWARD_BIN.
# PGWARD_REGRESS_KEEP=1 keeps the work directory (clusters stopped).
# The report and both runs' regression.diffs are kept in
# $CARGO_TARGET_DIR/regress-through-pgward/ (default target/...).
#
# Each run gets a fresh cluster (initdb, C locale, UTF8) whose superuser is
# `compat`; pgward signs in the identity `compat` and connects upstream as
# that user, so both runs see the same current_user. Other roles the tests
# create sign in with trust on 127.0.0.1 directly; through pgward only
# pgward's identities exist, so a test that connects as another role (\c -
# regress_...) fails there: see the known list.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

release=
if [ "${1:-}" = "--release" ]; then
    release=--release
    shift
fi
major=${1:-15}
cache=${PGWARD_REGRESS_DIR:-$HOME/.cache/pgward-regress-$major}
known_file="$repo/tests/compat/regress-known-failures.txt"

find_bindir() {
    for d in "/usr/lib/postgresql/$major/bin" "$(pg_config --bindir 2>/dev/null || true)"; do
        [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
    return 1
}
bindir=$(find_bindir) || { echo "regress: PostgreSQL $major's initdb is not installed" >&2; exit 1; }
pg_regress=
for p in "/usr/lib/postgresql/$major/lib/pgxs/src/test/regress/pg_regress" \
    "$(pg_config --pkglibdir 2>/dev/null || true)/pgxs/src/test/regress/pg_regress"; do
    [ -x "$p" ] && { pg_regress=$p; break; }
done
[ -n "$pg_regress" ] || { echo "regress: pg_regress not found (Debian: part of postgresql-$major)" >&2; exit 1; }
pkglibdir="/usr/lib/postgresql/$major/lib"

sh scripts/fetch-regress-sql.sh "$major" >&2
[ -f "$cache/lib/regress.so" ] || echo "regress: WARNING: no regress.so in $cache/lib (needs cc, make, perl): test_setup and what depends on it fail in both runs" >&2

if [ -n "${PGWARD_BIN:-}" ]; then
    pgward=$PGWARD_BIN
else
    export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
    cargo build -q $release --bin pgward
    target=${CARGO_TARGET_DIR:-$repo/target}
    pgward="$target/$([ -n "$release" ] && echo release || echo debug)/pgward"
fi
report_dir="${CARGO_TARGET_DIR:-$repo/target}/regress-through-pgward"
rm -rf "$report_dir"
mkdir -p "$report_dir"

work=$(mktemp -d /tmp/pgward-regress-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for d in "$work"/cluster-*; do
        [ -d "$d/data" ] && as_pg "$bindir/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1 || true
    done
    if [ -n "${PGWARD_REGRESS_KEEP:-}" ]; then
        echo "regress: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# initdb and the server refuse to run as root: run them (and pg_regress,
# whose output directory the server writes to) as postgres.
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "regress: running as root needs a postgres user" >&2; exit 1; }
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The suite, where the server's user can read it (COPY FROM its data files).
cp -r "$cache" "$work/suite"
rm -rf "$work/suite/.apt"
mkdir -p "$work/lib"
[ -f "$cache/lib/regress.so" ] && cp "$cache/lib/regress.so" "$work/lib/"
for lib in autoinc refint; do
    [ -f "$pkglibdir/$lib.so" ] && ln -sf "$pkglibdir/$lib.so" "$work/lib/$lib.so"
done
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
echo "$password" > "$work/pwfile"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"

start_cluster() { # name -> sets $pgport
    local dir="$work/cluster-$1"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$bindir/initdb" -D "$dir/data" -U compat --auth=scram-sha-256 -E UTF8 --locale=C \
        --pwfile="$work/pwfile" --no-sync >/dev/null
    cat > "$dir/data/pg_hba.conf" <<EOF
local all all trust
host all compat 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
EOF
    pgport=$(free_port)
    cat >> "$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >/dev/null
}

run_regress() { # name port -> results in $work/out-name
    local out="$work/out-$1"
    mkdir -p "$out"
    [ "$(id -u)" = 0 ] && chown postgres "$out"
    local started=$SECONDS
    as_pg env PGPASSWORD="$password" PGSSLMODE=disable PGAPPNAME=pg_regress \
        "$pg_regress" --inputdir="$work/suite" --outputdir="$out" --bindir="$bindir" \
        --dlpath="$work/lib" --schedule="$work/suite/parallel_schedule" \
        --host=127.0.0.1 --port="$2" --user=compat \
        > "$out/stdout" 2>&1 || true
    echo "regress: $1 run took $((SECONDS - started)) s" >&2
    # "test name ... ok 12 ms", "     name ... FAILED 3 ms", "... failed (ignored)"
    sed -n -E 's/^(test |ok |not ok )?[[:space:]]*([0-9]+[[:space:]]+-[[:space:]]+)?([A-Za-z0-9_.+-]+)[[:space:]]+\.\.\.[[:space:]]+(ok|FAILED|failed \(ignored\)).*/\3 \4/p' \
        "$out/stdout" | sed 's/ failed (ignored)/ ignored/' > "$out/status"
    cp "$out/stdout" "$report_dir/$1.out"
    [ -f "$out/regression.diffs" ] && cp "$out/regression.diffs" "$report_dir/$1.diffs"
    return 0
}

echo "regress: direct" >&2
start_cluster direct
run_regress direct "$pgport"

echo "regress: through pgward ($pgward)" >&2
start_cluster pgward
upstream_port=$pgport
pw_port=$(free_port)
mkdir -p "$work/pgward/rules"
dangerous=$(printf '[role.x]\nallow = ["*"]\nallow_dangerous = ["?"]\n' > "$work/pgward/probe.toml" &&
    mkdir -p "$work/pgward/probe" && mv "$work/pgward/probe.toml" "$work/pgward/probe/" &&
    { "$pgward" check "$work/pgward/probe" 2>&1 || true; } | sed -n 's/.*use one of //p' | tr -d '\n')
[ -n "$dangerous" ] || { echo "regress: could not list pgward's dangerous names" >&2; exit 1; }
quoted=$(echo "$dangerous" | sed -E 's/([^, ]+)/"\1"/g')
verifier=$(printf '%s' "$password" | "$pgward" hash-password)
cat > "$work/pgward/rules/compat.toml" <<EOF
[role.all]
allow = ["*"]
settings = ["*"]
allow_dangerous = [$quoted]

[[identity]]
name = "compat"
scram = "$verifier"
roles = ["all"]
EOF
cp "$work/pwfile" "$work/pgward/upstream-password"
cat > "$work/pgward/pgward.toml" <<EOF
[server]
listen = "127.0.0.1:$pw_port"
# PostgreSQL's authentication_timeout: a parallel group signs in 20 psql
# sessions at once, slow for a debug build on a busy machine.
auth_timeout_secs = 60

[upstream]
url = "postgres://compat@127.0.0.1:$upstream_port/postgres"
password_file = "upstream-password"
sslmode = "disable"

[audit]
dir = "audit"

[rules]
dir = "rules"
EOF
"$pgward" check --config "$work/pgward/pgward.toml" > "$work/pgward/check.log" 2>&1 ||
    { cat "$work/pgward/check.log" >&2; exit 1; }
"$pgward" serve --config "$work/pgward/pgward.toml" > "$work/pgward/log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    PGPASSWORD=$password "$bindir/psql" -X -q -h 127.0.0.1 -p "$pw_port" -U compat -d postgres \
        -c 'select 1' >/dev/null 2>&1 && break
    sleep 0.2
done
run_regress pgward "$pw_port"
if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "regress: pgward EXITED during the run; its log ends:" >&2
    tail -5 "$work/pgward/log" >&2
fi
cp "$work/pgward/log" "$report_dir/pgward.log"

# The comparison.
known() { [ -f "$known_file" ] && grep -v '^#' "$known_file" | awk '{print $1}' | grep -qx "$1"; }
report="$report_dir/report.txt"
total=0 direct_ok=0 pgward_ok=0 new=0 listed=0 fixed=0
: > "$report_dir/regressions.txt"
{
    printf '%-32s %-8s %-8s\n' test direct pgward
    while read -r name status; do
        total=$((total + 1))
        through=$(awk -v n="$name" '$1 == n {print $2}' "$work/out-pgward/status")
        through=${through:-missing}
        [ "$status" = ok ] && direct_ok=$((direct_ok + 1))
        [ "$through" = ok ] && pgward_ok=$((pgward_ok + 1))
        mark=
        if [ "$status" = ok ] && [ "$through" != ok ]; then
            if known "$name"; then mark=known; listed=$((listed + 1)); else mark=NEW; new=$((new + 1)); fi
            echo "$name" >> "$report_dir/regressions.txt"
        elif [ "$through" = ok ] && known "$name"; then
            mark="fixed: remove from tests/compat/regress-known-failures.txt"
            fixed=$((fixed + 1))
        fi
        printf '%-32s %-8s %-8s %s\n' "$name" "$status" "$through" "$mark"
    done < "$work/out-direct/status"
} > "$report"
{
    echo
    echo "pg_regress $major parallel_schedule: $total tests; passed direct: $direct_ok; passed through pgward: $pgward_ok"
    echo "pass direct, fail through pgward: $((new + listed)) ($listed in the known list, $new not)"
    [ "$fixed" -gt 0 ] && echo "listed as failing but passing now: $fixed (remove them from the list)"
} >> "$report"
# A diff excerpt per regression.
while read -r name; do
    echo
    echo "==== $name: passes direct, fails through pgward"
    if [ -f "$work/out-pgward/regression.diffs" ]; then
        awk -v n="$name" '
            /^diff / { show = ($0 ~ ("/" n "\\.out ")) ; shown = 0 }
            show && shown < 30 { print; shown++ }' "$work/out-pgward/regression.diffs"
    fi
done < "$report_dir/regressions.txt" >> "$report"
cat "$report"
echo "regress: report in $report" >&2
[ "$new" -eq 0 ]
