#!/bin/sh
# Fetches PostgreSQL's own regression suite (src/test/regress: sql, data,
# input, output, expected, parallel_schedule, resultmap) into a cache
# directory outside the clone, from the Debian source package of the server
# version, for the differential test (tests/differential.rs) and
# scripts/regress-through-pgward.sh. Where a C compiler, make and perl are
# present it also builds the suite's C library (lib/regress.so, which
# test_setup loads) from the same source, configured without optional
# libraries: pg_regress needs it and Debian ships no -dev package of it.
#
#   scripts/fetch-regress-sql.sh [MAJOR]        (default 15)
#
# What the cache already holds is kept; only what is missing is added.
#
# The cache is $PGWARD_REGRESS_DIR, else $HOME/.cache/pgward-regress-MAJOR.
# apt runs with a private configuration under the cache (its own source list,
# package lists and archive cache): the system's apt state is not changed.
# The deb-src entries are the system's own deb entries with the type changed,
# so no archive host is named here.
set -eu

major=${1:-15}
cache=${PGWARD_REGRESS_DIR:-$HOME/.cache/pgward-regress-$major}
can_build() {
    command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 && command -v perl >/dev/null 2>&1
}
complete() {
    # (input/ and output/ are gone since PostgreSQL 15: not required.)
    for d in sql data expected; do
        [ -d "$cache/$d" ] && [ -n "$(ls "$cache/$d" 2>/dev/null)" ] || return 1
    done
    [ -f "$cache/parallel_schedule" ] || return 1
    if can_build; then [ -f "$cache/lib/regress.so" ] || return 1; fi
}
if complete; then
    echo "regression suite already in $cache"
    exit 0
fi

work="$cache/.apt"
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/archives/partial" "$work/download"

# deb-src entries from the system's deb entries (deb822 and one-line forms).
: > "$work/sources.list"
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed -e 's/^Types:.*/Types: deb-src/' "$f" > "$work/sources.list.d/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n -e 's/^deb[[:space:]]/deb-src /p' "$f" >> "$work/sources.list"
done

apt_opts="-o Dir::Etc::SourceList=$work/sources.list \
 -o Dir::Etc::SourceParts=$work/sources.list.d \
 -o Dir::State::Lists=$work/lists \
 -o Dir::Cache=$work/cache \
 -o Dir::Cache::archives=$work/archives \
 -o Debug::NoLocking=1"

# shellcheck disable=SC2086
apt-get $apt_opts update >&2 || echo "apt-get update reported errors; trying anyway" >&2
cd "$work/download"
# The newest version listed first; an archive that lists a version it no
# longer holds (a security update not yet mirrored) makes apt try the next.
# shellcheck disable=SC2086
versions=$(apt-cache $apt_opts showsrc "postgresql-$major" | sed -n 's/^Version: //p' | sort -rV | uniq)
got=
for v in $versions; do
    # shellcheck disable=SC2086
    if apt-get $apt_opts source --download-only "postgresql-$major=$v" >&2; then
        got=$v
        break
    fi
    echo "postgresql-$major $v could not be downloaded; trying an older version" >&2
    rm -f ./*
done
[ -n "$got" ] || { echo "no version of postgresql-$major could be downloaded" >&2; exit 1; }

orig=$(ls postgresql-"$major"_*.orig.tar.* | head -n 1)
dir=$(tar -tf "$orig" | head -n 1 | cut -d/ -f1)
if can_build; then
    tar -xf "$orig"
else
    tar -xf "$orig" "$dir/src/test/regress"
fi
regress="$dir/src/test/regress"
mkdir -p "$cache"
for d in sql data input output expected; do
    if [ -d "$regress/$d" ] && ! [ -d "$cache/$d" ]; then
        mv "$regress/$d" "$cache/$d"
    fi
done
for f in parallel_schedule resultmap; do
    if [ -f "$regress/$f" ] && ! [ -f "$cache/$f" ]; then
        mv "$regress/$f" "$cache/$f"
    fi
done
if can_build && ! [ -f "$cache/lib/regress.so" ]; then
    echo "building the regression suite's regress.so from $orig" >&2
    (
        cd "$dir"
        ./configure --quiet --without-readline --without-zlib --without-icu \
            --without-openssl --without-llvm >&2
        make -s -C src/backend generated-headers >&2
        make -s -C src/port >&2
        make -s -C src/common >&2
        make -s -C src/test/regress regress.so >&2
    ) || echo "building regress.so failed; pg_regress's test_setup will fail without it" >&2
    if [ -f "$regress/regress.so" ]; then
        mkdir -p "$cache/lib"
        cp "$regress/regress.so" "$cache/lib/regress.so"
    fi
fi
echo "$orig" > "$cache/SOURCE"
rm -rf "$work"
echo "regression suite of $(cat "$cache/SOURCE") in $cache: $(ls "$cache/sql" | wc -l) SQL files, $(ls "$cache/expected" | wc -l) expected files$( [ -f "$cache/lib/regress.so" ] && echo ', regress.so')"
