// node-postgres (`pg`): what its users do on connect and in normal work.
'use strict';

const { Client, Pool } = require('pg');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');
const { env, eq, check, runAll, sleep } = require('./compat_common');

async function connect() {
  const c = new Client({ ...env, ssl: false });
  await c.connect();
  return c;
}

async function withClient(fn) {
  const c = await connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

const tests = [
  ['connect', () => withClient(async (c) => {
    eq((await c.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'select 1');
  })],
  ['simple_multi_statement', () => withClient(async (c) => {
    const res = await c.query('CREATE TABLE simple (id int, name text); INSERT INTO simple VALUES (1, $$a$$); SELECT count(*)::int AS n FROM simple');
    eq(res[2].rows, [{ n: 1 }], 'last result');
  })],
  ['params', () => withClient(async (c) => {
    const ts = new Date(Date.UTC(2024, 1, 29, 12, 30, 45, 123));
    const r = (await c.query(
      'SELECT $1::int AS i, $2::text AS t, $3::bytea AS b, $4::int[] AS a, $5::jsonb AS j, $6::timestamptz AS ts, $7::int AS n',
      [42, "it's \\", Buffer.from([0, 1, 255]), [1, 2, null], JSON.stringify({ k: [1] }), ts, null],
    )).rows[0];
    eq(r.i, 42, 'int');
    eq(r.t, "it's \\", 'text');
    eq([...r.b], [0, 1, 255], 'bytea');
    eq(r.a, [1, 2, null], 'int[]');
    eq(r.j, { k: [1] }, 'jsonb');
    eq(r.ts.toISOString(), ts.toISOString(), 'timestamptz');
    eq(r.n, null, 'null');
  })],
  ['prepared_named', () => withClient(async (c) => {
    for (let i = 0; i < 5; i++) {
      const r = await c.query({ name: 'dbl', text: 'SELECT $1::int * 2 AS v', values: [i] });
      eq(r.rows[0].v, i * 2, 'doubled');
    }
  })],
  ['binary_rows_array_mode', () => withClient(async (c) => {
    const r = await c.query({ text: 'SELECT 1::int, $1::text', values: ['x'], rowMode: 'array' });
    eq(r.rows, [[1, 'x']], 'array rows');
  })],
  ['transaction', () => withClient(async (c) => {
    await c.query('CREATE TABLE acct (id int)');
    await c.query('BEGIN');
    await c.query('INSERT INTO acct VALUES (1)');
    await c.query('SAVEPOINT s');
    await c.query('INSERT INTO acct VALUES (2)');
    await c.query('ROLLBACK TO SAVEPOINT s');
    await c.query('COMMIT');
    eq((await c.query('SELECT count(*)::int AS n FROM acct')).rows[0].n, 1, 'rows');
  })],
  ['copy', () => withClient(async (c) => {
    await c.query('CREATE TABLE cp (id int, name text)');
    const lines = Array.from({ length: 100 }, (_, i) => `${i}\tn${i}\n`).join('');
    await pipeline(Readable.from([lines]), c.query(copyFrom('COPY cp FROM STDIN')));
    const chunks = [];
    await pipeline(c.query(copyTo('COPY (SELECT * FROM cp ORDER BY id) TO STDOUT')), new Writable({
      write(chunk, _e, cb) { chunks.push(chunk); cb(); },
    }));
    eq(Buffer.concat(chunks).toString().split('\n').filter(Boolean).length, 100, 'rows out');
  })],
  ['listen_notify', async () => {
    const [msg] = await notifyOnce();
    eq([msg.channel, msg.payload], ['compat', 'hello'], 'notification');
  }],
  ['notify_pid', async () => {
    const [msg, senderPid] = await notifyOnce();
    eq(msg.processId, senderPid, "notification pid vs the sender's processID");
  }],
  ['backend_pid', () => withClient(async (c) => {
    eq(c.processID, (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p, 'processID vs pg_backend_pid()');
  })],
  ['error_recovery', () => withClient(async (c) => {
    let err;
    try { await c.query('SELECT 1/0'); } catch (e) { err = e; }
    check(err && err.code === '22012', `division by zero: ${err && err.code}`);
    await c.query('BEGIN');
    try { await c.query('SELECT * FROM no_such_table'); } catch (e) { err = e; }
    eq([err.code, err.position], ['42P01', '15'], 'undefined table and its position');
    try { await c.query('SELECT 1'); } catch (e) { err = e; }
    eq(err.code, '25P02', 'aborted transaction');
    await c.query('ROLLBACK');
    eq((await c.query('SELECT 2 AS v')).rows[0].v, 2, 'recovered');
  })],
  ['pool', async () => {
    const pool = new Pool({ ...env, ssl: false, max: 4 });
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.query('SELECT $1::int AS v', [i])));
    eq(got.map((r) => r.rows[0].v), Array.from({ length: 20 }, (_, i) => i), 'pooled');
    await pool.end();
  }],
  ['search_path', () => withClient(async (c) => {
    await c.query('CREATE SCHEMA app; CREATE TABLE app.things (id int)');
    await c.query('SET search_path TO app, public');
    eq((await c.query('SELECT count(*)::int AS n FROM things')).rows[0].n, 0, 'through the path');
  })],
];

async function notifyOnce() {
  const listener = await connect();
  const sender = await connect();
  try {
    const got = new Promise((resolve) => listener.on('notification', resolve));
    await listener.query('LISTEN compat');
    await sender.query("NOTIFY compat, 'hello'");
    const msg = await Promise.race([got, sleep(5000).then(() => { throw new Error('no notification in 5 s'); })]);
    return [msg, sender.processID];
  } finally {
    await listener.end().catch(() => {});
    await sender.end().catch(() => {});
  }
}

runAll(tests).then(() => process.exit(0));
