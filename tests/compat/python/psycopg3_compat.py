"""psycopg 3: what its users do on connect and in normal work."""

import datetime
import decimal
import threading
import time
import uuid

import psycopg
from psycopg import sql
from psycopg.types.enum import EnumInfo, register_enum
from psycopg.types.composite import CompositeInfo, register_composite
from psycopg.types.json import Jsonb

from compat_common import deep_sum, check, eq, kwargs, main


def connect(**extra):
    return psycopg.connect(**kwargs(**extra))


def t_connect():
    with connect() as c:
        eq(c.execute("SELECT 1").fetchone()[0], 1, "select 1")
        check(c.info.parameter_status("server_version"), "server_version reported")
        eq(c.info.parameter_status("client_encoding"), "UTF8", "client_encoding")


def t_simple_query():
    with connect() as c:
        cur = c.cursor()
        cur.execute("CREATE TABLE simple (id int primary key, name text)")
        cur.execute("INSERT INTO simple VALUES (1, 'a'), (2, 'b')")
        eq(cur.rowcount, 2, "rowcount")
        cur.execute("SELECT name FROM simple ORDER BY id")
        eq(cur.fetchall(), [("a",), ("b",)], "rows")
        c.commit()


def roundtrip(value, cast):
    with connect() as c:
        got = c.execute("SELECT %s::" + cast, (value,)).fetchone()[0]
        eq(got, value, cast)


def t_param_int():
    roundtrip(2**40, "bigint")


def t_param_text():
    roundtrip("héllo 'quoted' \\ back", "text")


def t_param_bytea():
    roundtrip(bytes(range(256)), "bytea")


def t_param_array():
    roundtrip([1, 2, None, 4], "int[]")
    roundtrip(["a", "b c", None], "text[]")


def t_param_json():
    with connect() as c:
        got = c.execute("SELECT %s::jsonb", (Jsonb({"a": [1, 2], "b": None}),)).fetchone()[0]
        eq(got, {"a": [1, 2], "b": None}, "jsonb")


def t_param_timestamp():
    ts = datetime.datetime(2024, 2, 29, 12, 30, 45, 123456, tzinfo=datetime.timezone.utc)
    with connect() as c:
        got = c.execute("SELECT %s::timestamptz", (ts,)).fetchone()[0]
        eq(got, ts, "timestamptz")
        d = datetime.date(1999, 12, 31)
        eq(c.execute("SELECT %s::date", (d,)).fetchone()[0], d, "date")


def t_param_null():
    with connect() as c:
        eq(c.execute("SELECT %s::int IS NULL", (None,)).fetchone()[0], True, "null")


def t_param_numeric_uuid():
    roundtrip(decimal.Decimal("12345.6789"), "numeric")
    roundtrip(uuid.UUID("12345678-1234-5678-1234-567812345678"), "uuid")


def t_binary_results():
    with connect() as c:
        cur = c.cursor(binary=True)
        cur.execute("SELECT %s::int, %s::text, %s::bytea", (7, "x", b"\x00\x01"))
        eq(cur.fetchone(), (7, "x", b"\x00\x01"), "binary row")


def t_prepared():
    with connect() as c:
        for i in range(6):
            eq(c.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()[0], i * 2, "doubled")
        n = c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        check(n >= 1, "a server-side prepared statement exists")


def t_executemany():
    with connect() as c:
        c.execute("CREATE TEMP TABLE many (a int, b text)")
        c.cursor().executemany("INSERT INTO many VALUES (%s, %s)", [(i, str(i)) for i in range(50)])
        eq(c.execute("SELECT count(*), sum(a) FROM many").fetchone(), (50, 1225), "rows")


def t_pipeline():
    with connect() as c:
        with c.pipeline():
            curs = [c.execute("SELECT %s::int", (i,)) for i in range(10)]
        eq([cur.fetchone()[0] for cur in curs], list(range(10)), "pipelined")


def t_transaction():
    with connect() as c:
        c.execute("CREATE TABLE acct (id int, v int)")
        c.commit()
        with c.transaction():
            c.execute("INSERT INTO acct VALUES (1, 1)")
            try:
                with c.transaction():  # a savepoint
                    c.execute("INSERT INTO acct VALUES (2, 2)")
                    raise RuntimeError("roll back the savepoint")
            except RuntimeError:
                pass
        eq(c.execute("SELECT array_agg(id) FROM acct").fetchone()[0], [1], "savepoint rolled back")
        c.rollback()


def t_autocommit_and_isolation():
    with connect(autocommit=True) as c:
        c.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        c.autocommit = False
        eq(c.execute("SHOW transaction_isolation").fetchone()[0], "serializable", "isolation")
        c.rollback()
        c.read_only = True
        eq(c.execute("SHOW transaction_read_only").fetchone()[0], "on", "read only")
        c.rollback()


def t_copy():
    with connect() as c:
        c.execute("CREATE TABLE cp (id int, name text, data bytea)")
        with c.cursor().copy("COPY cp FROM STDIN") as copy:
            for i in range(100):
                copy.write_row((i, "n%d" % i, bytes([i])))
        rows = []
        with c.cursor().copy("COPY (SELECT id, name FROM cp ORDER BY id) TO STDOUT") as copy:
            for row in copy.rows():
                rows.append(row)
        eq(len(rows), 100, "rows out")
        eq(rows[5], ("5", "n5"), "row 5")
        with c.cursor().copy("COPY cp (id) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int4"])
            copy.write_row((1000,))
        eq(c.execute("SELECT count(*) FROM cp").fetchone()[0], 101, "binary copy")
        c.commit()


def listen_pair():
    listener = connect(autocommit=True)
    sender = connect(autocommit=True)
    listener.execute("LISTEN compat_channel")
    sender.execute("NOTIFY compat_channel, 'hello'")
    got = None
    for n in listener.notifies(timeout=5, stop_after=1):
        got = n
    listener.close()
    return got, sender


def t_listen_notify():
    n, sender = listen_pair()
    sender.close()
    check(n is not None, "a notification arrived")
    eq((n.channel, n.payload), ("compat_channel", "hello"), "notification")


def t_notify_pid():
    n, sender = listen_pair()
    with sender:
        check(n is not None, "a notification arrived")
        eq(n.pid, sender.info.backend_pid, "notification pid vs the sender's backend_pid")


def t_backend_pid():
    with connect() as c:
        eq(c.info.backend_pid, c.execute("SELECT pg_backend_pid()").fetchone()[0],
           "info.backend_pid vs pg_backend_pid()")


def cancel_until(done, cancel):
    """Cancels every 0.3 s until `done` is set (a cancel that arrives before
    the query is harmless; one arrives while it runs)."""
    def loop():
        while not done.wait(0.3):
            cancel()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def t_cancel():
    with connect() as c:
        done = threading.Event()
        cancel_until(done, c.cancel_safe)
        started = time.time()
        try:
            c.execute("SELECT pg_sleep(10)")
            raise AssertionError("pg_sleep was not cancelled")
        except psycopg.errors.QueryCanceled:
            pass
        finally:
            done.set()
        check(time.time() - started < 8, "cancelled promptly")
        c.rollback()
        eq(c.execute("SELECT 1").fetchone()[0], 1, "usable after cancel")


def t_terminate_backend():
    victim = connect()
    with connect() as killer:
        ok = killer.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,)).fetchone()[0]
        eq(ok, True, "pg_terminate_backend(info.backend_pid)")
    try:
        victim.execute("SELECT 1")
        raise AssertionError("the terminated session still answers")
    except psycopg.OperationalError:
        pass
    victim.close()


def t_error_recovery():
    with connect() as c:
        try:
            c.execute("SELECT 1/0")
            raise AssertionError("no error")
        except psycopg.errors.DivisionByZero as e:
            eq(e.sqlstate, "22012", "sqlstate")
        try:
            c.execute("SELECT 1")
            raise AssertionError("no error in an aborted transaction")
        except psycopg.errors.InFailedSqlTransaction:
            pass
        c.rollback()
        eq(c.execute("SELECT 2").fetchone()[0], 2, "recovered")


def t_error_position():
    with connect() as c:
        try:
            c.execute("SELECT * FROM no_such_table")
            raise AssertionError("no error")
        except psycopg.errors.UndefinedTable as e:
            check("no_such_table" in str(e), "message names the table")
            eq(e.diag.statement_position, "15", "error position")
        c.rollback()


def t_syntax_error_is_postgres_own():
    # PostgreSQL's message, position and no hint of pgward's (item 6).
    with connect() as c:
        try:
            c.execute("SELEC 1")
            raise AssertionError("no error")
        except psycopg.errors.SyntaxError as e:
            eq(e.diag.message_primary, 'syntax error at or near "SELEC"', "message")
            eq(e.diag.statement_position, "1", "position")
            eq(e.diag.message_hint, None, "hint")
        c.rollback()


def t_type_info_enum_composite():
    with connect() as c:
        c.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        c.execute("CREATE TYPE pair AS (a int, b text)")
        c.commit()
        register_enum(EnumInfo.fetch(c, "mood"), c)
        info = CompositeInfo.fetch(c, "pair")
        register_composite(info, c)
        got = c.execute("SELECT 'happy'::mood, ARRAY['sad','ok']::mood[], ROW(1,'x')::pair").fetchone()
        eq(got[0].name, "happy", "enum")
        eq([m.name for m in got[1]], ["sad", "ok"], "enum array")
        eq((got[2].a, got[2].b), (1, "x"), "composite")


def t_server_cursor():
    with connect() as c:
        with c.cursor(name="big") as cur:
            cur.itersize = 100
            cur.execute("SELECT g FROM generate_series(1, 1000) g")
            eq(sum(r[0] for r in cur), 500500, "sum")
        c.commit()


def t_set_config_param():
    # Django with server-side binding sends this on every connection.
    with connect() as c:
        c.execute("SELECT set_config('TimeZone', %s, false)", ("UTC",))
        eq(c.execute("SHOW TimeZone").fetchone()[0], "UTC", "TimeZone")


def t_client_encoding_latin1():
    with connect(client_encoding="LATIN1") as c:
        eq(c.info.encoding, "iso8859-1", "encoding")
        eq(c.execute("SELECT %s::text || 'ß'", ("ä",)).fetchone()[0], "äß", "latin1 text")


def t_standard_conforming_strings_off():
    with connect(autocommit=True) as c:
        c.execute("SET standard_conforming_strings = off")
        c.execute("SET escape_string_warning = off")
        eq(c.execute("SELECT 'a\\\\b'").fetchone()[0], "a\\b", "backslash escape")
        eq(c.execute("SELECT %s::text", ("it's",)).fetchone()[0], "it's", "parameter")


def t_search_path():
    with connect() as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS app")
        c.execute("CREATE TABLE IF NOT EXISTS app.things (id int)")
        c.execute("INSERT INTO app.things VALUES (1)")
        c.commit()
        c.execute("SET search_path = app, pg_catalog")
        eq(c.execute("SELECT count(*) FROM things").fetchone()[0], 1, "unqualified via path")
        c.execute("SET search_path = public, pg_catalog")
        c.rollback()


def t_sql_composition():
    with connect() as c:
        q = sql.SQL("SELECT {} FROM (SELECT 1 AS {}) s").format(sql.Identifier("odd name"), sql.Identifier("odd name"))
        eq(c.execute(q).fetchone()[0], 1, "composed")


def t_deep_nesting_1000():
    with connect() as c:
        eq(c.execute(deep_sum(1000)).fetchone()[0], 1000, "sum")


def t_deep_nesting_3000():
    # Last: through pgward today this ends pgward (a stack overflow).
    with connect() as c:
        eq(c.execute(deep_sum(3000)).fetchone()[0], 3000, "sum")


main(globals())
