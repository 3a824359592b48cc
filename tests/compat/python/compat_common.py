"""Shared by the Python programs of the compatibility suite (tests/compat.rs).

Each test prints one line: `COMPAT ok NAME` or `COMPAT fail NAME ERROR`.
Where to connect comes from the libpq variables PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE; COMPAT_MODE is `direct` or `pgward`.
"""

import asyncio
import os
import sys
import traceback

MODE = os.environ.get("COMPAT_MODE", "direct")
FULL = os.environ.get("COMPAT_FULL", "0") == "1"
HOST = os.environ.get("PGHOST", "127.0.0.1")
PORT = int(os.environ.get("PGPORT", "5432"))
USER = os.environ.get("PGUSER", "postgres")
PASSWORD = os.environ.get("PGPASSWORD", "")
DATABASE = os.environ.get("PGDATABASE", "postgres")
RO_USER = os.environ.get("COMPAT_RO_USER", USER)
RO_PASSWORD = os.environ.get("COMPAT_RO_PASSWORD", PASSWORD)

def deep_sum(n):
    """`SELECT 1+1+...`, n terms: a left-deep tree as deep as n (item 8)."""
    return "SELECT " + "+".join(["1"] * n)


def kwargs(**extra):
    d = dict(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE)
    d.update(extra)
    return d


def url(driver, database=None):
    return "postgresql+%s://%s:%s@%s:%d/%s" % (
        driver, USER, PASSWORD, HOST, PORT, database or DATABASE)


def one_line(e):
    text = "%s: %s" % (type(e).__name__, e)
    return " | ".join(l.strip() for l in text.strip().splitlines() if l.strip())[:500]


def report(name, error=None):
    if error is None:
        print("COMPAT ok %s" % name, flush=True)
    else:
        print("COMPAT fail %s %s" % (name, error), flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def run(name, fn, *args):
    """Runs one test; an exception is its failure."""
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001 - every failure is a result
        if isinstance(e, KeyboardInterrupt):
            raise
        report(name, one_line(e))
        if os.environ.get("COMPAT_TRACE"):
            traceback.print_exc()
        return False
    report(name)
    return True


async def arun(name, fn, *args, timeout=60):
    """Runs one async test with a timeout."""
    try:
        await asyncio.wait_for(fn(*args), timeout)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        report(name, one_line(e) if not isinstance(e, asyncio.TimeoutError)
               else "timed out after %d s" % timeout)
        if os.environ.get("COMPAT_TRACE"):
            traceback.print_exc()
        return False
    report(name)
    return True


def tests(namespace, prefix="t_"):
    """The test functions of a module, in definition order."""
    return [(k[len(prefix):], v) for k, v in namespace.items()
            if k.startswith(prefix) and callable(v)]


def main(namespace):
    for name, fn in tests(namespace):
        run(name, fn)
    sys.stdout.flush()
