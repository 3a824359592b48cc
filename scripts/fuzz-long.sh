#!/usr/bin/env bash
# The long fuzz run: the property tests of tests/fuzz_protocol.rs and
# tests/fuzz_e2e.rs with many more cases than `cargo test` runs, round after
# round with fresh random seeds, until the time is up or a case fails.
#
#   scripts/fuzz-long.sh [SECONDS]      # default 3600 (an hour)
#
# Environment: PROPTEST_CASES per property and round (default 1000 for the
# unit-level properties; the end-to-end test runs E2E_CASES, default 30),
# FUZZ_NO_BUILD=1 to run again the binaries a previous run copied,
# ROUND_TIMEOUT (default 1200 s: a round that takes longer is a hang).
# A failing case is printed shrunk; proptest also saves its seed under
# tests/*.proptest-regressions (check it in, and add the input as a
# regression test). Logs go to $FUZZ_LOG_DIR (default target dir/fuzz-long).
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-3600}"
CASES="${PROPTEST_CASES:-1000}"
E2E_CASES="${E2E_CASES:-30}"
ROUND_TIMEOUT="${ROUND_TIMEOUT:-1200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pgward-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
LOG_DIR="${FUZZ_LOG_DIR:-$CARGO_TARGET_DIR/fuzz-long}"
mkdir -p "$LOG_DIR"

if [ -n "${FUZZ_NO_BUILD:-}" ] && [ -x "$LOG_DIR/bin/fuzz_protocol" ] && [ -x "$LOG_DIR/bin/fuzz_e2e" ]; then
    echo "fuzz-long: FUZZ_NO_BUILD: running the test binaries already in $LOG_DIR/bin"
else
echo "fuzz-long: building the fuzz tests"
cargo test --no-run --test fuzz_protocol --test fuzz_e2e >"$LOG_DIR/build.log" 2>&1 || {
    cat "$LOG_DIR/build.log"
    exit 1
}
# Run copies of the test binaries: a rebuild meanwhile (you keep working)
# changes nothing in this run.
mkdir -p "$LOG_DIR/bin"
for t in fuzz_protocol fuzz_e2e; do
    exe=$(sed -n "s|.*Executable tests/$t.rs (\(.*\))|\1|p" "$LOG_DIR/build.log" | tail -1)
    [ -x "$exe" ] || { echo "fuzz-long: no test binary for $t"; exit 1; }
    cp "$exe" "$LOG_DIR/bin/$t"
done
fi

end=$(($(date +%s) + DURATION))
round=0
total_unit=0
total_e2e=0
while [ "$(date +%s)" -lt "$end" ]; do
    round=$((round + 1))
    log="$LOG_DIR/round-$round.log"
    start=$(date +%s)
    if ! PROPTEST_CASES="$CASES" timeout "$ROUND_TIMEOUT" \
        "$LOG_DIR/bin/fuzz_protocol" --test-threads=1 >"$log" 2>&1; then
        echo "fuzz-long: round $round FAILED (fuzz_protocol, exit or timeout); log: $log"
        grep -E "minimal failing input|panicked|Test failed|FAILED|failed" "$log" | head -40
        exit 1
    fi
    total_unit=$((total_unit + CASES))
    if [ "$(date +%s)" -lt "$end" ]; then
        if ! PROPTEST_CASES="$E2E_CASES" timeout "$ROUND_TIMEOUT" \
            "$LOG_DIR/bin/fuzz_e2e" >>"$log" 2>&1; then
            echo "fuzz-long: round $round FAILED (fuzz_e2e, exit or timeout); log: $log"
            grep -E "minimal failing input|panicked|Test failed|FAILED|failed" "$log" | head -40
            exit 1
        fi
        total_e2e=$((total_e2e + E2E_CASES))
    fi
    echo "fuzz-long: round $round passed in $(($(date +%s) - start)) s ($CASES cases per property, $E2E_CASES end-to-end cases)"
done
echo "fuzz-long: $round rounds passed: $total_unit cases per unit property, $total_e2e end-to-end cases (3 connections each)"
