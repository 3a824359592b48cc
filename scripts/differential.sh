#!/bin/sh
# The full differential test (issue 26): every statement of PostgreSQL's
# regression files and the repo corpus, classified by pgward and run in an
# instrumented PostgreSQL. `cargo test` runs a bounded subset; CI runs this.
#
#   scripts/differential.sh [candidates-file]
#
# With a file argument, every failure is also written there in the format
# of tests/differential/allowed-effects.txt (candidates for review: an
# effect is allowed only when it is the server's own business).
set -eu
cd "$(dirname "$0")/.."
scripts/fetch-regress-sql.sh 15
if [ $# -ge 1 ]; then
    PGWARD_DIFF_WRITE=$(realpath "$1")
    export PGWARD_DIFF_WRITE
fi
PGWARD_DIFF_FULL=1 exec cargo test --test differential -- --nocapture
