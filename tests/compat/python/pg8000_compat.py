"""pg8000: pure-Python protocol code (native and DB-API interfaces)."""

import datetime
import io
import struct
import time

import pg8000.dbapi
import pg8000.native

from compat_common import DATABASE, HOST, PASSWORD, PORT, USER, check, deep_sum, eq, main


def connect():
    return pg8000.native.Connection(USER, host=HOST, port=PORT, database=DATABASE, password=PASSWORD)


def t_connect():
    c = connect()
    eq(c.run("SELECT 1"), [[1]], "select 1")
    check("server_version" in c.parameter_statuses, "server_version reported")
    c.close()


def t_params():
    c = connect()
    ts = datetime.datetime(2024, 2, 29, 12, 30, 45, tzinfo=datetime.timezone.utc)
    eq(c.run("SELECT CAST(:v AS bigint)", v=2**40)[0][0], 2**40, "bigint")
    eq(c.run("SELECT CAST(:v AS text)", v="it's \\")[0][0], "it's \\", "text")
    eq(c.run("SELECT CAST(:v AS bytea)", v=bytes(range(256)))[0][0], bytes(range(256)), "bytea")
    eq(c.run("SELECT CAST(:v AS int[])", v=[1, 2, 3])[0][0], [1, 2, 3], "int[]")
    eq(c.run("SELECT CAST(:v AS jsonb)", v={"a": [1, None]})[0][0], {"a": [1, None]}, "jsonb")
    eq(c.run("SELECT CAST(:v AS timestamptz)", v=ts)[0][0], ts, "timestamptz")
    eq(c.run("SELECT CAST(:v AS int) IS NULL", v=None)[0][0], True, "null")
    c.close()


def t_prepared():
    c = connect()
    ps = c.prepare("SELECT CAST(:v AS int) * 2")
    for i in range(5):
        eq(ps.run(v=i), [[i * 2]], "doubled")
    ps.close()
    c.close()


def t_transaction():
    c = connect()
    c.run("CREATE TABLE acct (id int)")
    c.run("START TRANSACTION")
    c.run("INSERT INTO acct VALUES (1)")
    c.run("ROLLBACK")
    c.run("BEGIN")
    c.run("INSERT INTO acct VALUES (2)")
    c.run("COMMIT")
    eq(c.run("SELECT array_agg(id) FROM acct")[0][0], [2], "committed")
    c.close()


def t_dbapi():
    c = pg8000.dbapi.connect(USER, host=HOST, port=PORT, database=DATABASE, password=PASSWORD)
    cur = c.cursor()
    cur.execute("CREATE TEMP TABLE d (a int, b text)")
    cur.executemany("INSERT INTO d VALUES (%s, %s)", [(1, "a"), (2, "b")])
    cur.execute("SELECT b FROM d WHERE a = %s", (2,))
    eq(cur.fetchall(), (["b"],), "rows")
    c.rollback()
    c.close()


def t_copy():
    c = connect()
    c.run("CREATE TABLE cp (id int, name text)")
    c.run("COPY cp FROM STDIN", stream=io.StringIO("".join("%d\tn%d\n" % (i, i) for i in range(50))))
    out = io.StringIO()
    c.run("COPY (SELECT * FROM cp ORDER BY id) TO STDOUT", stream=out)
    eq(len(out.getvalue().splitlines()), 50, "rows out")
    c.close()


def backend_pid(c):
    return struct.unpack("!i", c._backend_key_data[:4])[0]


def listen_pair():
    listener = connect()
    sender = connect()
    listener.run("LISTEN compat")
    sender.run("NOTIFY compat, 'hello'")
    deadline = time.time() + 5
    while not listener.notifications and time.time() < deadline:
        listener.run("SELECT 1")
        time.sleep(0.1)
    n = listener.notifications.popleft() if listener.notifications else None
    listener.close()
    return n, sender


def t_listen_notify():
    n, sender = listen_pair()
    sender.close()
    check(n is not None, "a notification arrived")
    eq(n[1:], ("compat", "hello"), "notification")


def t_notify_pid():
    n, sender = listen_pair()
    check(n is not None, "a notification arrived")
    eq(n[0], backend_pid(sender), "notification pid vs the sender's BackendKeyData")
    sender.close()


def t_backend_pid():
    c = connect()
    eq(backend_pid(c), c.run("SELECT pg_backend_pid()")[0][0], "BackendKeyData pid vs pg_backend_pid()")
    c.close()


def t_error_recovery():
    c = connect()
    try:
        c.run("SELECT 1/0")
        raise AssertionError("no error")
    except pg8000.native.DatabaseError as e:
        eq(e.args[0]["C"], "22012", "sqlstate")
    eq(c.run("SELECT 2"), [[2]], "recovered")
    c.close()


def t_search_path():
    # pg8000 users set it on connect; pgjdbc and ORMs do too (item 7).
    c = connect()
    c.run("CREATE SCHEMA app")
    c.run("CREATE TABLE app.things (id int)")
    c.run("SET search_path = public, pg_catalog")
    c.run("SET search_path TO app, public")
    eq(c.run("SELECT count(*) FROM things"), [[0]], "unqualified through the path")
    c.close()


def t_deep_nesting_1000():
    c = connect()
    eq(c.run(deep_sum(1000)), [[1000]], "sum")
    c.close()


main(globals())
