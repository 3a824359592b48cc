"""psycopg2 (psycopg2-binary): client-side interpolation over the simple protocol."""

import datetime
import io
import select
import threading
import time

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from compat_common import check, deep_sum, eq, kwargs, main


def connect(**extra):
    return psycopg2.connect(**kwargs(**extra))


def one(conn, q, args=None):
    with conn.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchone()[0]


def t_connect():
    c = connect()
    eq(one(c, "SELECT 1"), 1, "select 1")
    check(c.server_version >= 130000, "server_version")
    eq(c.encoding, "UTF8", "encoding")
    c.close()


def t_params():
    c = connect()
    ts = datetime.datetime(2024, 2, 29, 12, 30, 45, tzinfo=datetime.timezone.utc)
    cases = [
        (2**40, "bigint"),
        ("it's \\ \"x\"", "text"),
        (psycopg2.Binary(bytes(range(256))), "bytea"),
        ([1, 2, None], "int[]"),
        (ts, "timestamptz"),
        (None, "int"),
    ]
    for value, cast in cases:
        got = one(c, "SELECT %s::" + cast, (value,))
        want = bytes(range(256)) if cast == "bytea" else value
        if cast == "bytea":
            got = bytes(got)
        eq(got, want, cast)
    got = one(c, "SELECT %s::jsonb", (psycopg2.extras.Json({"a": [1, None]}),))
    eq(got, {"a": [1, None]}, "jsonb")
    c.close()


def t_transaction():
    c = connect()
    with c.cursor() as cur:
        cur.execute("CREATE TABLE acct (id int)")
        c.commit()
        cur.execute("INSERT INTO acct VALUES (1)")
        c.rollback()
        cur.execute("INSERT INTO acct VALUES (2)")
        cur.execute("SAVEPOINT s")
        cur.execute("INSERT INTO acct VALUES (3)")
        cur.execute("ROLLBACK TO SAVEPOINT s")
        c.commit()
        cur.execute("SELECT array_agg(id) FROM acct")
        eq(cur.fetchone()[0], [2], "committed rows")
    c.close()


def t_prepare_execute_sql():
    c = connect()
    with c.cursor() as cur:
        cur.execute("PREPARE dbl(int) AS SELECT $1 * 2")
        cur.execute("EXECUTE dbl(21)")
        eq(cur.fetchone()[0], 42, "EXECUTE")
        cur.execute("DEALLOCATE dbl")
    c.close()


def t_execute_values():
    c = connect()
    with c.cursor() as cur:
        cur.execute("CREATE TEMP TABLE many (a int, b text)")
        psycopg2.extras.execute_values(cur, "INSERT INTO many VALUES %s", [(i, str(i)) for i in range(100)])
        cur.executemany("INSERT INTO many VALUES (%s, %s)", [(1000, "x"), (1001, "y")])
        cur.execute("SELECT count(*) FROM many")
        eq(cur.fetchone()[0], 102, "rows")
    c.close()


def t_copy():
    c = connect()
    with c.cursor() as cur:
        cur.execute("CREATE TABLE cp (id int, name text)")
        cur.copy_from(io.StringIO("".join("%d\tn%d\n" % (i, i) for i in range(100))), "cp")
        cur.copy_expert("COPY cp FROM STDIN WITH (FORMAT csv)", io.StringIO("100,\"a,b\"\n"))
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT * FROM cp ORDER BY id) TO STDOUT WITH (FORMAT csv)", out)
        lines = out.getvalue().splitlines()
        eq(len(lines), 101, "rows out")
        eq(lines[-1], '100,"a,b"', "last row")
        c.commit()
    c.close()


def t_large_object():
    c = connect()
    lo = c.lobject(0, "wb")
    lo.write(b"large object data" * 100)
    oid = lo.oid
    lo.close()
    lo = c.lobject(oid, "rb")
    eq(lo.read(), b"large object data" * 100, "read back")
    lo.unlink()
    c.commit()
    c.close()


def listen_pair():
    listener = connect()
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    sender = connect()
    sender.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    with listener.cursor() as cur:
        cur.execute("LISTEN compat")
    with sender.cursor() as cur:
        cur.execute("NOTIFY compat, 'payload'")
    deadline = time.time() + 5
    while not listener.notifies and time.time() < deadline:
        select.select([listener], [], [], 0.5)
        listener.poll()
    n = listener.notifies[0] if listener.notifies else None
    listener.close()
    return n, sender


def t_listen_notify():
    n, sender = listen_pair()
    sender.close()
    check(n is not None, "a notification arrived")
    eq((n.channel, n.payload), ("compat", "payload"), "notification")


def t_notify_pid():
    n, sender = listen_pair()
    check(n is not None, "a notification arrived")
    eq(n.pid, sender.get_backend_pid(), "notification pid vs the sender's get_backend_pid()")
    sender.close()


def t_backend_pid():
    c = connect()
    eq(c.get_backend_pid(), one(c, "SELECT pg_backend_pid()"), "get_backend_pid() vs pg_backend_pid()")
    c.close()


def t_cancel():
    c = connect()
    done = threading.Event()

    def loop():  # cancels every 0.3 s until the query has ended
        while not done.wait(0.3):
            c.cancel()
    threading.Thread(target=loop, daemon=True).start()
    try:
        one(c, "SELECT pg_sleep(10)")
        raise AssertionError("not cancelled")
    except psycopg2.errors.QueryCanceled:
        pass
    finally:
        done.set()
    c.rollback()
    eq(one(c, "SELECT 1"), 1, "usable after cancel")
    c.close()


def t_error_recovery():
    c = connect()
    try:
        one(c, "SELECT 1/0")
        raise AssertionError("no error")
    except psycopg2.errors.DivisionByZero as e:
        eq(e.pgcode, "22012", "pgcode")
    try:
        one(c, "SELECT 1")
        raise AssertionError("no error in an aborted transaction")
    except psycopg2.errors.InFailedSqlTransaction:
        pass
    c.rollback()
    eq(one(c, "SELECT 2"), 2, "recovered")
    c.close()


def t_named_cursor():
    c = connect()
    with c.cursor(name="big") as cur:
        cur.itersize = 100
        cur.execute("SELECT g FROM generate_series(1, 1000) g")
        eq(sum(r[0] for r in cur), 500500, "sum")
    c.commit()
    c.close()


def t_composite_and_dict_cursor():
    c = connect()
    with c.cursor() as cur:
        cur.execute("CREATE TYPE pair AS (a int, b text)")
    c.commit()
    psycopg2.extras.register_composite("pair", c)
    with c.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT ROW(1, 'x')::pair AS p, 2 AS n")
        row = cur.fetchone()
        eq((row["p"].a, row["p"].b, row["n"]), (1, "x", 2), "row")
    c.close()


def t_client_encoding_latin1():
    c = connect()
    c.set_client_encoding("LATIN1")
    eq(one(c, "SELECT %s::text || 'ß'", ("ä",)), "äß", "latin1 text")
    c.close()


def t_deep_nesting_1000():
    c = connect()
    eq(one(c, deep_sum(1000)), 1000, "sum")
    c.close()


main(globals())
