#!/bin/sh
# Fetches PostgreSQL's own regression SQL (src/test/regress/{sql,data,input})
# for the differential test (tests/differential.rs) into a cache directory
# outside the clone, from the Debian source package of the server version.
#
#   scripts/fetch-regress-sql.sh [MAJOR]        (default 15)
#
# The cache is $PGWARD_REGRESS_DIR, else $HOME/.cache/pgward-regress-MAJOR.
# apt runs with a private configuration under the cache (its own source list,
# package lists and archive cache): the system's apt state is not changed.
# The deb-src entries are the system's own deb entries with the type changed,
# so no archive host is named here.
set -eu

major=${1:-15}
cache=${PGWARD_REGRESS_DIR:-$HOME/.cache/pgward-regress-$major}
if [ -d "$cache/sql" ] && [ -n "$(ls "$cache/sql" 2>/dev/null)" ]; then
    echo "regression SQL already in $cache"
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
tar -xf "$orig" "$dir/src/test/regress/sql" "$dir/src/test/regress/data" \
    "$dir/src/test/regress/input" "$dir/src/test/regress/parallel_schedule" 2>/dev/null \
    || tar -xf "$orig" "$dir/src/test/regress/sql" "$dir/src/test/regress/data"
rm -rf "$cache/sql" "$cache/data" "$cache/input"
for d in sql data input; do
    [ -d "$dir/src/test/regress/$d" ] && mv "$dir/src/test/regress/$d" "$cache/$d"
done
[ -f "$dir/src/test/regress/parallel_schedule" ] && mv "$dir/src/test/regress/parallel_schedule" "$cache/"
echo "$orig" > "$cache/SOURCE"
rm -rf "$work"
echo "regression SQL of $(cat "$cache/SOURCE") in $cache: $(ls "$cache/sql" | wc -l) files"
