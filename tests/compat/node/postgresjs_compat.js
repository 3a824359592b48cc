// postgres.js (`postgres`): extended protocol with named prepared statements
// by default, pipelining, its own type fetching on connect.
'use strict';

const postgresModule = require('postgres');
const postgres = postgresModule.default || postgresModule;
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');
const { env, eq, check, runAll, sleep } = require('./compat_common');

const opts = { ...env, username: env.user, ssl: false, max: 4, onnotice: () => {} };

async function withSql(fn, extra = {}) {
  const sql = postgres({ ...opts, ...extra });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

const tests = [
  ['connect', () => withSql(async (sql) => {
    eq(await sql`SELECT 1 AS one`, [{ one: 1 }], 'select 1');
  })],
  ['params', () => withSql(async (sql) => {
    const ts = new Date(Date.UTC(2024, 1, 29, 12, 30, 45, 123));
    const [r] = await sql`SELECT ${42}::int AS i, ${"it's \\"}::text AS t, ${Buffer.from([0, 1, 255])}::bytea AS b,
      ${[1, 2, 3]}::int[] AS a, ${sql.json({ k: [1] })}::jsonb AS j, ${ts}::timestamptz AS ts, ${null}::int AS n`;
    eq(r.i, 42, 'int');
    eq(r.t, "it's \\", 'text');
    eq([...r.b], [0, 1, 255], 'bytea');
    eq(r.a, [1, 2, 3], 'int[]');
    eq(r.j, { k: [1] }, 'jsonb');
    eq(r.ts.toISOString(), ts.toISOString(), 'timestamptz');
    eq(r.n, null, 'null');
  })],
  ['prepared_reuse', () => withSql(async (sql) => {
    for (let i = 0; i < 5; i++) {
      const [r] = await sql`SELECT ${i}::int * 2 AS v`;
      eq(r.v, i * 2, 'doubled');
    }
  })],
  ['unprepared', () => withSql(async (sql) => {
    const [r] = await sql`SELECT ${7}::int AS v`;
    eq(r.v, 7, 'unnamed statement');
  }, { prepare: false })],
  ['simple_unsafe', () => withSql(async (sql) => {
    const r = await sql.unsafe('CREATE TABLE simple (id int); INSERT INTO simple VALUES (1); SELECT count(*)::int AS n FROM simple');
    eq(r[2], [{ n: 1 }], 'multi-statement');
  })],
  ['dynamic_identifiers', () => withSql(async (sql) => {
    await sql`CREATE TABLE ${sql('odd table')} (${sql('a col')} int)`;
    await sql`INSERT INTO ${sql('odd table')} ${sql([{ 'a col': 1 }, { 'a col': 2 }])}`;
    eq(await sql`SELECT count(*)::int AS n FROM ${sql('odd table')}`, [{ n: 2 }], 'rows');
  })],
  ['transaction', () => withSql(async (sql) => {
    await sql`CREATE TABLE acct (id int)`;
    await sql.begin(async (tx) => {
      await tx`INSERT INTO acct VALUES (1)`;
      await tx.savepoint(async (sp) => {
        await sp`INSERT INTO acct VALUES (2)`;
        throw new Error('roll back the savepoint');
      }).catch(() => {});
    });
    eq(await sql`SELECT count(*)::int AS n FROM acct`, [{ n: 1 }], 'rows');
  })],
  ['copy', () => withSql(async (sql) => {
    await sql`CREATE TABLE cp (id int, name text)`;
    const lines = Array.from({ length: 100 }, (_, i) => `${i}\tn${i}\n`).join('');
    await pipeline(Readable.from([lines]), await sql`COPY cp FROM STDIN`.writable());
    const chunks = [];
    await pipeline(await sql`COPY (SELECT * FROM cp) TO STDOUT`.readable(), new Writable({
      write(chunk, _e, cb) { chunks.push(chunk); cb(); },
    }));
    eq(Buffer.concat(chunks).toString().split('\n').filter(Boolean).length, 100, 'rows out');
  })],
  ['listen_notify', () => withSql(async (sql) => {
    let resolve;
    const got = new Promise((r) => { resolve = r; });
    await sql.listen('compat', (payload) => resolve(payload));
    await sql.notify('compat', 'hello');
    eq(await Promise.race([got, sleep(5000).then(() => 'none in 5 s')]), 'hello', 'payload');
  })],
  ['cancel', () => withSql(async (sql) => {
    await sql`SELECT 1`; // connected, so the query below is sent at once
    const q = sql`SELECT pg_sleep(10)`;
    setTimeout(() => q.cancel(), 500);
    let err;
    const started = Date.now();
    try { await q; } catch (e) { err = e; }
    eq(err && err.code, '57014', 'query_canceled');
    check(Date.now() - started < 8000, 'cancelled promptly');
  })],
  ['error_recovery', () => withSql(async (sql) => {
    let err;
    try { await sql`SELECT 1/0`; } catch (e) { err = e; }
    eq(err && err.code, '22012', 'division by zero');
    eq(await sql`SELECT 2 AS v`, [{ v: 2 }], 'recovered');
  })],
  ['cursor', () => withSql(async (sql) => {
    let total = 0;
    await sql`SELECT g FROM generate_series(1, 1000) g`.cursor(100, (rows) => {
      for (const r of rows) total += r.g;
    });
    eq(total, 500500, 'sum');
  })],
];

runAll(tests).then(() => process.exit(0));
