// Shared by the Node programs of the compatibility suite (tests/compat.rs):
// each test prints `COMPAT ok NAME` or `COMPAT fail NAME ERROR`.
'use strict';

const env = {
  host: process.env.PGHOST || '127.0.0.1',
  port: Number(process.env.PGPORT || 5432),
  user: process.env.PGUSER || 'postgres',
  password: process.env.PGPASSWORD || '',
  database: process.env.PGDATABASE || 'postgres',
};

function oneLine(e) {
  const text = `${(e && e.constructor && e.constructor.name) || 'Error'}: ${e && e.message}` +
    (e && e.code ? ` (${e.code})` : '');
  return text.split('\n').map((l) => l.trim()).filter(Boolean).join(' | ').slice(0, 500);
}

function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// Runs the tests in order, each with a timeout.
async function runAll(tests, timeoutMs = 60000) {
  for (const [name, fn] of tests) {
    let timer;
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs / 1000} s`)), timeoutMs);
        }),
      ]);
      console.log(`COMPAT ok ${name}`);
    } catch (e) {
      console.log(`COMPAT fail ${name} ${oneLine(e)}`);
      if (process.env.COMPAT_TRACE) console.error(e);
    } finally {
      clearTimeout(timer);
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { env, eq, check, runAll, sleep, oneLine };
