"""asyncpg: its own protocol code, extended protocol only, type introspection."""

import asyncio
import datetime
import json

import asyncpg

from compat_common import DATABASE, HOST, PASSWORD, PORT, USER, arun, check, deep_sum, eq, tests


async def connect(**extra):
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                 database=DATABASE, ssl=False, **extra)


async def t_connect():
    c = await connect()
    eq(await c.fetchval("SELECT 1"), 1, "select 1")
    check(c.get_server_version().major >= 13, "server version")
    await c.close()


async def t_simple_execute():
    c = await connect()
    # execute() without arguments uses the simple protocol: several statements.
    await c.execute("CREATE TABLE simple (id int, name text); INSERT INTO simple VALUES (1, 'a'), (2, 'b')")
    eq(await c.fetchval("SELECT count(*) FROM simple"), 2, "rows")
    await c.close()


async def param(cast, value, want=None):
    c = await connect()
    try:
        eq(await c.fetchval("SELECT $1::" + cast, value), value if want is None else want, cast)
    finally:
        await c.close()


async def t_param_int():
    await param("bigint", 2**40)


async def t_param_text():
    await param("text", "it's \\")


async def t_param_bytea():
    await param("bytea", bytes(range(256)))


async def t_param_json():
    await param("jsonb", json.dumps({"a": 1}), '{"a": 1}')


async def t_param_timestamp():
    await param("timestamptz", datetime.datetime(2024, 2, 29, 12, 30, 45, 123456, tzinfo=datetime.timezone.utc))


async def t_param_null():
    await param("int", None)


async def t_param_int_array():
    # The first array of a session runs asyncpg's type introspection.
    await param("int[]", [1, None, 3])


async def t_param_text_array():
    await param("text[]", ["a", "b c"])


async def t_prepared():
    c = await connect()
    stmt = await c.prepare("SELECT $1::int * 2")
    for i in range(5):
        eq(await stmt.fetchval(i), i * 2, "doubled")
    eq([a.name for a in stmt.get_attributes()], ["?column?"], "attributes")
    await c.close()


async def t_executemany():
    c = await connect()
    await c.execute("CREATE TEMP TABLE many (a int, b text)")
    await c.executemany("INSERT INTO many VALUES ($1, $2)", [(i, str(i)) for i in range(100)])
    eq(await c.fetchval("SELECT sum(a) FROM many"), 4950, "sum")
    await c.close()


async def t_transaction():
    c = await connect()
    await c.execute("CREATE TABLE acct (id int)")
    async with c.transaction():
        await c.execute("INSERT INTO acct VALUES (1)")
        try:
            async with c.transaction():  # a savepoint
                await c.execute("INSERT INTO acct VALUES (2)")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    eq(await c.fetchval("SELECT count(*) FROM acct"), 1, "savepoint")
    async with c.transaction(isolation="serializable", readonly=True):
        eq(await c.fetchval("SHOW transaction_isolation"), "serializable", "isolation")
    await c.close()


async def t_copy():
    c = await connect()
    await c.execute("CREATE TABLE cp (id int, name text, data bytea)")
    await c.copy_records_to_table("cp", records=[(i, "n%d" % i, bytes([i])) for i in range(100)])
    rows = await c.fetch("SELECT count(*) FROM cp")
    eq(rows[0][0], 100, "rows in")
    import io
    buf = io.BytesIO()
    await c.copy_from_query("SELECT id, name FROM cp WHERE id < 3 ORDER BY id", output=buf)
    eq(buf.getvalue(), b"0\tn0\n1\tn1\n2\tn2\n", "rows out")
    await c.close()


async def t_cursor():
    c = await connect()
    async with c.transaction():
        total = 0
        async for r in c.cursor("SELECT g FROM generate_series(1, 1000) g", prefetch=100):
            total += r[0]
    eq(total, 500500, "sum")
    await c.close()


async def listen_pair():
    listener = await connect()
    sender = await connect()
    got = asyncio.get_running_loop().create_future()
    await listener.add_listener("compat", lambda conn, pid, ch, payload: got.done() or got.set_result((pid, ch, payload)))
    await sender.execute("NOTIFY compat, 'hello'")
    pid, ch, payload = await asyncio.wait_for(got, 5)
    await listener.close()
    return (pid, ch, payload), sender


async def t_listen_notify():
    (_, ch, payload), sender = await listen_pair()
    await sender.close()
    eq((ch, payload), ("compat", "hello"), "notification")


async def t_notify_pid():
    (pid, _, _), sender = await listen_pair()
    eq(pid, sender.get_server_pid(), "notification pid vs the sender's get_server_pid()")
    await sender.close()


async def t_backend_pid():
    c = await connect()
    eq(c.get_server_pid(), await c.fetchval("SELECT pg_backend_pid()"), "get_server_pid() vs pg_backend_pid()")
    await c.close()


async def t_cancel():
    c = await connect()
    try:
        await asyncio.wait_for(c.execute("SELECT pg_sleep(10)"), 0.5)
        raise AssertionError("not cancelled")
    except asyncio.TimeoutError:
        pass
    eq(await c.fetchval("SELECT 1"), 1, "usable after the cancel")
    await c.close()


async def t_error_recovery():
    c = await connect()
    try:
        await c.fetchval("SELECT 1/0")
        raise AssertionError("no error")
    except asyncpg.DivisionByZeroError as e:
        eq(e.sqlstate, "22012", "sqlstate")
    try:
        async with c.transaction():
            await c.execute("SELECT * FROM no_such_table")
    except asyncpg.UndefinedTableError:
        pass
    eq(await c.fetchval("SELECT 2"), 2, "recovered")
    await c.close()


async def t_type_introspection_enum_array():
    # The first use of a custom or array type runs asyncpg's introspection,
    # which prepares `SELECT set_config('jit', $1, false)` (item 1).
    c = await connect()
    await c.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    eq(await c.fetchval("SELECT $1::mood[]", ["sad", "happy"]), ["sad", "happy"], "enum array")
    await c.close()


async def t_type_introspection_composite():
    c = await connect()
    await c.execute("CREATE TYPE pair AS (a int, b text)")
    got = await c.fetchval("SELECT $1::pair", (1, "x"))
    eq(tuple(got), (1, "x"), "composite")
    await c.close()


async def t_type_codec():
    c = await connect()
    await c.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    eq(await c.fetchval("SELECT $1::jsonb", {"a": [1, 2]}), {"a": [1, 2]}, "jsonb codec")
    await c.close()


async def t_pool():
    pool = await asyncpg.create_pool(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                     database=DATABASE, ssl=False, min_size=2, max_size=4)
    results = await asyncio.gather(*[pool.fetchval("SELECT $1::int", i) for i in range(20)])
    eq(results, list(range(20)), "pooled queries")
    await pool.close()


async def t_deep_nesting_1000():
    c = await connect()
    eq(await c.fetchval(deep_sum(1000)), 1000, "sum")
    await c.close()


async def main():
    for name, fn in tests(globals()):
        await arun(name, fn)


asyncio.run(main())
