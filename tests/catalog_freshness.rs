//! Catalog changes are judged at once (issue 26): after DDL commits, the
//! database's catalog is reloaded before any session's next statement is
//! judged, and inside the transaction block that made them, statements that
//! may run what changed are refused as `unknown` until the block ends.
//!
//! The attacker is a role allowed DDL and writes (and privileges and admin
//! statements, for policies and event triggers), denied pgward's dangerous
//! built-ins such as `pg_read_file`. The harness connects upstream as a
//! superuser, so what pgward lets through really runs: every attack checks
//! pgward's verdict and that its payload (a write of a server file's
//! contents into `loot`) never ran.

mod common;

use common::*;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The role under test: the example `app` role, allowed DDL too.
const MIGRATOR: (&str, &str) = BOB;

/// A PL/pgSQL body that copies a server file into `loot`.
const PAYLOAD: &str =
    "BEGIN INSERT INTO public.loot VALUES (pg_read_file('PG_VERSION')); RETURN 'x'; END";

/// `stash.f` reads a server file: pgward judges an unqualified `f()` as
/// any `f`, so the tests call `public.f()`.
fn setup_sql() -> Vec<String> {
    vec![format!(
        "CREATE TABLE loot (x text); \
         CREATE SCHEMA stash; CREATE SCHEMA attic; \
         CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 'benign'::text $$; \
         CREATE FUNCTION pf() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'benign'; END $$; \
         CREATE FUNCTION g(text) RETURNS text LANGUAGE sql AS $$ SELECT $1 $$; \
         CREATE FUNCTION ig(text) RETURNS int IMMUTABLE LANGUAGE sql AS $$ SELECT length($1) $$; \
         CREATE FUNCTION evil() RETURNS text LANGUAGE plpgsql AS $${PAYLOAD}$$; \
         CREATE FUNCTION stash.f() RETURNS text LANGUAGE plpgsql AS $${PAYLOAD}$$; \
         CREATE FUNCTION evil_tg() RETURNS trigger LANGUAGE plpgsql AS \
           $$BEGIN INSERT INTO public.loot VALUES (pg_read_file('PG_VERSION')); RETURN NEW; END$$; \
         CREATE FUNCTION evil_evt() RETURNS event_trigger LANGUAGE plpgsql AS \
           $$BEGIN INSERT INTO public.loot VALUES (pg_read_file('PG_VERSION')); END$$; \
         CREATE FUNCTION evil_cast(int) RETURNS ticket LANGUAGE plpgsql AS \
           $$BEGIN INSERT INTO public.loot VALUES (pg_read_file('PG_VERSION')); RETURN ROW($1)::ticket; END$$; \
         CREATE FUNCTION cmp(int, int) RETURNS bool LANGUAGE sql AS $$ SELECT $1 = $2 $$; \
         CREATE DOMAIN dtext AS text; \
         CREATE VIEW v AS SELECT 1 AS a; \
         GRANT ALL ON SCHEMA public TO PUBLIC;"
    )
    .replace(
        "CREATE FUNCTION evil_cast",
        "CREATE TYPE ticket AS (id int); CREATE FUNCTION evil_cast",
    )]
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = example_rules_dir(dir.path());
    let roles = rules_dir.join("roles.toml");
    let text = std::fs::read_to_string(&roles).unwrap();
    let app = "allow = [\"read\", \"write\", \"session\", \"transaction\", \"lock\", \"copy_in\", \"copy_out\"]\napprove = [\"ddl\"]";
    assert!(text.contains(app), "the example app role changed");
    let text = text.replacen(
        app,
        "allow = [\"read\", \"write\", \"ddl\", \"dcl\", \"admin\", \"session\", \"transaction\", \"lock\"]",
        1,
    );
    std::fs::write(&roles, text).unwrap();
    let rules = pgward::rules::Rules::load(&rules_dir).expect("rules");
    Harness::start_with(Setup {
        setup_sql: setup_sql(),
        rules: Some(rules.without_upstream_users()),
        ..Setup::default()
    })
    .await
}

/// Runs `sql` through pgward; it must succeed.
async fn ok(c: &Client, sql: &str) -> Vec<SimpleQueryMessage> {
    match c.simple_query(sql).await {
        Ok(m) => m,
        Err(e) => panic!("{sql}: {e:?}"),
    }
}

/// `sql` must be refused by pgward, and no payload may have run.
async fn refused(h: &Harness, c: &Client, sql: &str) -> String {
    let message = match c.simple_query(sql).await {
        Ok(_) => panic!("pgward let it run: {sql}"),
        Err(e) => {
            assert!(Harness::is_denial(&e), "{sql}: not pgward's denial: {e:?}");
            e.as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default()
        }
    };
    nothing_leaked(h).await;
    message
}

async fn nothing_leaked(h: &Harness) {
    let direct = h.direct().await;
    assert_eq!(
        one_number(&direct, "SELECT count(*) FROM loot").await,
        0,
        "a payload ran"
    );
}

/// Attack 1: a benign function is replaced (SQL and PL/pgSQL) and called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_function_is_judged_by_its_new_body() {
    let h = harness().await;
    let c = h.connect(MIGRATOR).await;
    // Judged benign (and cached) first.
    ok(&c, "SELECT public.f(), pf()").await;
    ok(
        &c,
        "CREATE OR REPLACE FUNCTION f() RETURNS text LANGUAGE sql AS \
         $$ INSERT INTO loot VALUES (pg_read_file('PG_VERSION')); SELECT 'x'::text $$",
    )
    .await;
    refused(&h, &c, "SELECT public.f()").await;
    ok(
        &c,
        &format!("CREATE OR REPLACE FUNCTION pf() RETURNS text LANGUAGE plpgsql AS $${PAYLOAD}$$"),
    )
    .await;
    refused(&h, &c, "SELECT pf()").await;
    // ALTER FUNCTION ... RENAME: the evil one takes the benign one's name.
    ok(&c, "ALTER FUNCTION g(text) RENAME TO g_old").await;
    ok(&c, "ALTER FUNCTION evil() RENAME TO g").await;
    refused(&h, &c, "SELECT g()").await;
    // ... SET SCHEMA: public.f moves out, stash.f (evil) moves in.
    ok(
        &c,
        "CREATE OR REPLACE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 'benign'::text $$",
    )
    .await;
    ok(&c, "SELECT public.f()").await;
    ok(&c, "ALTER FUNCTION public.f() SET SCHEMA attic").await;
    ok(&c, "ALTER FUNCTION stash.f() SET SCHEMA public").await;
    refused(&h, &c, "SELECT public.f()").await;
}

/// Attacks 2 and 3: what a write or read of a table runs, changed by DDL
/// (a trigger, a rule, a default, a CHECK, an index expression, a
/// policy), each judged as soon as the DDL committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_table_runs_is_judged_after_ddl_on_it() {
    let h = harness().await;
    let c = h.connect(MIGRATOR).await;
    let swap = |name: &str, args: &str, ret: &str, extra: &str| {
        format!(
            "CREATE OR REPLACE FUNCTION {name}({args}) RETURNS {ret} {extra} LANGUAGE plpgsql AS \
             $$BEGIN PERFORM pg_read_file('PG_VERSION'); RETURN NULL; END$$"
        )
    };
    // A trigger whose function is already known to read a server file.
    ok(&c, "CREATE TABLE t_trg (a int)").await;
    ok(&c, "INSERT INTO t_trg VALUES (1)").await;
    ok(
        &c,
        "CREATE TRIGGER trg BEFORE INSERT ON t_trg FOR EACH ROW EXECUTE FUNCTION evil_tg()",
    )
    .await;
    refused(&h, &c, "INSERT INTO t_trg VALUES (2)").await;

    // A rule calling a function, then the function replaced.
    ok(&c, "CREATE TABLE t_rule (a int)").await;
    ok(
        &c,
        "CREATE FUNCTION rf() RETURNS text LANGUAGE sql AS $$ SELECT 'benign'::text $$",
    )
    .await;
    ok(
        &c,
        "CREATE RULE r AS ON INSERT TO t_rule DO ALSO SELECT rf()",
    )
    .await;
    ok(&c, &swap("rf", "", "text", "")).await;
    refused(&h, &c, "INSERT INTO t_rule VALUES (1)").await;

    // A column default.
    ok(&c, "CREATE TABLE t_def (a int, b text)").await;
    ok(
        &c,
        "CREATE FUNCTION df() RETURNS text LANGUAGE sql AS $$ SELECT 'benign'::text $$",
    )
    .await;
    ok(&c, "ALTER TABLE t_def ALTER COLUMN b SET DEFAULT df()").await;
    ok(&c, &swap("df", "", "text", "")).await;
    refused(&h, &c, "INSERT INTO t_def (a) VALUES (1)").await;

    // A CHECK constraint.
    ok(&c, "CREATE TABLE t_chk (a int, b text)").await;
    ok(
        &c,
        "CREATE FUNCTION cf(text) RETURNS text LANGUAGE sql AS $$ SELECT $1 $$",
    )
    .await;
    ok(&c, "ALTER TABLE t_chk ADD CHECK (cf(b) IS NULL OR true)").await;
    ok(&c, &swap("cf", "text", "text", "")).await;
    refused(&h, &c, "INSERT INTO t_chk VALUES (1, 'x')").await;

    // An index expression.
    ok(&c, "CREATE TABLE t_idx (a int, b text)").await;
    ok(
        &c,
        "CREATE FUNCTION xf(text) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT $1 $$",
    )
    .await;
    ok(&c, "CREATE INDEX ON t_idx (xf(b))").await;
    ok(&c, &swap("xf", "text", "text", "IMMUTABLE")).await;
    refused(&h, &c, "INSERT INTO t_idx VALUES (1, 'x')").await;

    // A row security policy's USING expression (the superuser upstream
    // bypasses row security: pgward's verdict is what is checked).
    ok(&c, "CREATE TABLE t_pol (a int, b text)").await;
    ok(
        &c,
        "CREATE FUNCTION pol(text) RETURNS bool LANGUAGE sql AS $$ SELECT true $$",
    )
    .await;
    ok(&c, "CREATE POLICY p ON t_pol USING (pol(b))").await;
    ok(&c, "ALTER TABLE t_pol ENABLE ROW LEVEL SECURITY").await;
    ok(
        &c,
        "CREATE OR REPLACE FUNCTION pol(text) RETURNS bool LANGUAGE plpgsql AS \
         $$BEGIN PERFORM pg_read_file('PG_VERSION'); RETURN true; END$$",
    )
    .await;
    refused(&h, &c, "SELECT * FROM t_pol").await;

    // A view replaced to call a function, then the function replaced.
    ok(&c, "SELECT * FROM v").await;
    ok(
        &c,
        "CREATE FUNCTION vf() RETURNS text LANGUAGE sql AS $$ SELECT 'benign'::text $$",
    )
    .await;
    ok(&c, "CREATE OR REPLACE VIEW v AS SELECT 1 AS a, vf() AS b").await;
    ok(&c, &swap("vf", "", "text", "")).await;
    refused(&h, &c, "SELECT * FROM v").await;
}

/// Attack 3: types, casts, operators and event triggers created or
/// changed by DDL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casts_domains_operators_and_event_triggers_are_judged_after_ddl() {
    let h = harness().await;
    let c = h.connect(MIGRATOR).await;
    // A cast through a function already known to read a server file.
    ok(
        &c,
        "CREATE CAST (int AS ticket) WITH FUNCTION evil_cast(int)",
    )
    .await;
    refused(&h, &c, "SELECT 42::ticket").await;

    // A domain CHECK calling a function, then the function replaced.
    ok(&c, "SELECT 'a'::dtext").await;
    ok(
        &c,
        "CREATE FUNCTION dk(text) RETURNS bool LANGUAGE sql AS $$ SELECT true $$",
    )
    .await;
    ok(&c, "ALTER DOMAIN dtext ADD CHECK (dk(VALUE))").await;
    ok(
        &c,
        "CREATE OR REPLACE FUNCTION dk(text) RETURNS bool LANGUAGE plpgsql AS \
         $$BEGIN PERFORM pg_read_file('PG_VERSION'); RETURN true; END$$",
    )
    .await;
    refused(&h, &c, "SELECT 'a'::dtext").await;

    // An operator, then its function replaced.
    ok(
        &c,
        "CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = cmp)",
    )
    .await;
    ok(&c, "SELECT 1 === 2").await;
    ok(
        &c,
        "CREATE OR REPLACE FUNCTION cmp(int, int) RETURNS bool LANGUAGE plpgsql AS \
         $$BEGIN PERFORM pg_read_file('PG_VERSION'); RETURN true; END$$",
    )
    .await;
    refused(&h, &c, "SELECT 1 === 2").await;

    // An event trigger: the next DDL runs it.
    ok(
        &c,
        "CREATE EVENT TRIGGER evt ON ddl_command_start EXECUTE FUNCTION evil_evt()",
    )
    .await;
    refused(&h, &c, "CREATE TABLE after_evt (a int)").await;
    ok(&h.direct().await, "DROP EVENT TRIGGER evt").await;
}

/// Attack 4, and the reload itself: DDL committed in one session is judged
/// in another session of the same database before its next statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_session_sees_the_change_at_once() {
    let h = harness().await;
    let a = h.connect(MIGRATOR).await;
    let b = h.connect(MIGRATOR).await;
    ok(&b, "SELECT public.f()").await;
    // A table created in one session is known to the other's next
    // statement (its unqualified name is placed).
    ok(&a, "CREATE TABLE fresh_one (a int)").await;
    // The other session's next statement waits for the reload.
    ok(&b, "SELECT 1").await;
    let slot = h.shared.catalogs.slot(&h.shared.upstream, "postgres").await;
    assert!(
        slot.get().places("fresh_one"),
        "the catalog was reloaded before the other session's statement"
    );
    ok(
        &a,
        "CREATE OR REPLACE FUNCTION f() RETURNS text LANGUAGE sql AS \
         $$ INSERT INTO loot VALUES (pg_read_file('PG_VERSION')); SELECT 'x'::text $$",
    )
    .await;
    refused(&h, &b, "SELECT public.f()").await;
    // A prepared statement judged before the change is judged again.
    ok(&a, "CREATE OR REPLACE FUNCTION pf() RETURNS text LANGUAGE plpgsql AS $$BEGIN RETURN 'benign'; END$$").await;
    let stmt = b.prepare("SELECT pf()").await.unwrap();
    b.query(&stmt, &[]).await.unwrap();
    ok(
        &a,
        &format!("CREATE OR REPLACE FUNCTION pf() RETURNS text LANGUAGE plpgsql AS $${PAYLOAD}$$"),
    )
    .await;
    let e = b.query(&stmt, &[]).await.unwrap_err();
    assert!(Harness::is_denial(&e), "{e:?}");
    ok(&b, "PREPARE p AS SELECT 1").await;
    ok(
        &a,
        "CREATE OR REPLACE FUNCTION g(text) RETURNS text LANGUAGE sql AS $$ SELECT $1 $$",
    )
    .await;
    ok(&b, "PREPARE q AS SELECT g('x')").await;
    ok(&b, "EXECUTE q").await;
    ok(
        &a,
        "CREATE OR REPLACE FUNCTION g(text) RETURNS text LANGUAGE plpgsql AS \
         $$BEGIN PERFORM pg_read_file('PG_VERSION'); RETURN $1; END$$",
    )
    .await;
    refused(&h, &b, "EXECUTE q").await;
}

/// Attack 5: inside an open transaction block (or one string), what the
/// block's DDL changed cannot be judged before COMMIT: refused as unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_inside_a_block_are_refused_until_commit() {
    let h = harness().await;
    let c = h.connect(MIGRATOR).await;
    let replace = "CREATE OR REPLACE FUNCTION f() RETURNS text LANGUAGE sql AS \
                   $$ INSERT INTO loot VALUES (pg_read_file('PG_VERSION')); SELECT 'x'::text $$";
    ok(&c, "BEGIN").await;
    ok(&c, replace).await;
    let m = refused(&h, &c, "SELECT public.f()").await;
    assert!(
        m.contains("unknown") && m.contains("f was changed in this transaction"),
        "{m}"
    );
    ok(&c, "ROLLBACK").await;
    // One string is one transaction.
    refused(&h, &c, &format!("{replace}; SELECT public.f()")).await;
    // A trigger put on a table in the block.
    ok(&c, "CREATE TABLE t_in (a int)").await;
    ok(&c, "BEGIN").await;
    ok(
        &c,
        "CREATE TRIGGER trg BEFORE INSERT ON t_in FOR EACH ROW EXECUTE FUNCTION evil_tg()",
    )
    .await;
    refused(&h, &c, "INSERT INTO t_in VALUES (1)").await;
    ok(&c, "ROLLBACK").await;
    // After ROLLBACK the table is as it was.
    ok(&c, "INSERT INTO t_in VALUES (1)").await;
    // Committed: judged by the new body.
    ok(&c, "BEGIN").await;
    ok(&c, replace).await;
    ok(&c, "COMMIT").await;
    refused(&h, &c, "SELECT public.f()").await;
}

/// A migration that creates and fills tables with built-in expressions
/// runs in one block, as Django's and the like do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_in_one_block_still_works() {
    let h = harness().await;
    let c = h.connect(MIGRATOR).await;
    ok(&c, "BEGIN").await;
    ok(
        &c,
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL, \
         created timestamptz NOT NULL DEFAULT now(), CHECK (length(email) > 3))",
    )
    .await;
    ok(&c, "CREATE INDEX accounts_email ON accounts (lower(email))").await;
    // What Alembic and Django send inside their migration transactions: an
    // enum type and a column of it, an index with a built-in operator class.
    ok(&c, "CREATE TYPE account_kind AS ENUM ('user', 'admin')").await;
    ok(&c, "ALTER TABLE accounts ADD COLUMN kind account_kind").await;
    ok(
        &c,
        "CREATE INDEX accounts_email_like ON accounts (email varchar_pattern_ops)",
    )
    .await;
    ok(&c, "ALTER TABLE accounts ADD COLUMN c int DEFAULT 0").await;
    ok(
        &c,
        "CREATE TABLE logins (id serial PRIMARY KEY, account bigint REFERENCES accounts (id) \
         DEFERRABLE INITIALLY DEFERRED)",
    )
    .await;
    ok(
        &c,
        "INSERT INTO accounts (email) VALUES ('ada@example.com')",
    )
    .await;
    ok(&c, "INSERT INTO logins (account) SELECT id FROM accounts").await;
    ok(
        &c,
        "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname = 'accounts'",
    )
    .await;
    ok(&c, "UPDATE accounts SET c = c + 1").await;
    ok(&c, "COMMIT").await;
    let direct = h.direct().await;
    assert_eq!(one_number(&direct, "SELECT sum(c) FROM accounts").await, 1);
    assert_eq!(one_number(&direct, "SELECT count(*) FROM logins").await, 1);
    // The same in one string.
    ok(
        &c,
        "CREATE TABLE t2 (a int DEFAULT 0, b text); CREATE INDEX ON t2 (b); \
         ALTER TABLE t2 ADD COLUMN c int DEFAULT 0; INSERT INTO t2 (b) VALUES ('x'); SELECT * FROM t2",
    )
    .await;
}

/// What Alembic, psycopg and pgjdbc send in one block: an enum, tables
/// with a foreign key that cascades, an index on the referencing table, a
/// domain and a composite type of built-in computations, an empty schema
/// and a table in it (issue 26: the compatibility suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alembic_and_schema_migrations_run_in_one_block() {
    let h = harness().await;
    let c = h.connect(MIGRATOR).await;
    ok(&c, "BEGIN").await;
    ok(&c, "CREATE TYPE post_kind AS ENUM ('note', 'page')").await;
    ok(
        &c,
        "CREATE TABLE users (id SERIAL NOT NULL, email VARCHAR(200) NOT NULL, \
         created TIMESTAMP WITH TIME ZONE DEFAULT now(), PRIMARY KEY (id), UNIQUE (email))",
    )
    .await;
    ok(
        &c,
        "CREATE TABLE posts (id SERIAL NOT NULL, user_id INTEGER, body TEXT, kind post_kind, \
         PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE)",
    )
    .await;
    ok(&c, "CREATE INDEX ix_posts_user_id ON posts (user_id)").await;
    ok(
        &c,
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0) DEFAULT 1",
    )
    .await;
    ok(&c, "CREATE TYPE pair AS (a int, b text)").await;
    ok(
        &c,
        "ALTER TABLE posts ADD COLUMN score positive, ADD COLUMN p pair",
    )
    .await;
    ok(&c, "INSERT INTO users (email) VALUES ('ada@example.com')").await;
    ok(
        &c,
        "INSERT INTO posts (user_id, kind) SELECT id, 'note' FROM users",
    )
    .await;
    ok(&c, "CREATE SCHEMA IF NOT EXISTS app").await;
    ok(&c, "CREATE TABLE IF NOT EXISTS app.things (id int)").await;
    ok(&c, "INSERT INTO app.things VALUES (1)").await;
    // A DELETE of the referenced table now deletes posts too, which the
    // catalog does not know yet.
    let m = refused(&h, &c, "DELETE FROM users").await;
    assert!(m.contains("foreign key") && m.contains("COMMIT"), "{m}");
    ok(&c, "ROLLBACK").await;
    // pgjdbc's set_schema: one string.
    ok(&c, "CREATE SCHEMA app; CREATE TABLE app.things (id int)").await;
    ok(&c, "INSERT INTO app.things VALUES (1)").await;
    // The migration again, committed: the referenced table is judged by
    // the reloaded catalog, which knows the cascade.
    ok(
        &c,
        "BEGIN; CREATE TABLE users (id int PRIMARY KEY); \
         CREATE TABLE posts (user_id int REFERENCES users ON DELETE CASCADE); \
         CREATE INDEX ON posts (user_id); INSERT INTO users VALUES (1); \
         INSERT INTO posts VALUES (1); COMMIT",
    )
    .await;
    ok(&c, "DELETE FROM users").await;
    let direct = h.direct().await;
    assert_eq!(one_number(&direct, "SELECT count(*) FROM posts").await, 0);
    assert_eq!(
        one_number(&direct, "SELECT count(*) FROM app.things").await,
        1
    );
    nothing_leaked(&h).await;
}

/// What the block's plain DDL lets through must not reach user code the
/// catalog knows only in part: a foreign key that cascades into a table
/// with a trigger, a column of a domain whose DEFAULT calls a function
/// replaced in the block, a key whose check uses a user operator class,
/// and a schema created with elements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ddl_in_a_block_does_not_hide_user_code() {
    let h = harness().await;
    let direct = h.direct().await;
    direct
        .batch_execute(
            "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent VALUES (1); \
             CREATE TABLE child (p int); INSERT INTO child VALUES (1); \
             CREATE FUNCTION evil_del() RETURNS trigger LANGUAGE plpgsql AS \
               $$BEGIN INSERT INTO public.loot VALUES (pg_read_file('PG_VERSION')); RETURN OLD; END$$; \
             CREATE TRIGGER evil_del AFTER DELETE ON child FOR EACH ROW EXECUTE FUNCTION evil_del(); \
             CREATE DOMAIN fdom AS text DEFAULT pf(); \
             CREATE FUNCTION evil_cmp(int, int) RETURNS int LANGUAGE plpgsql AS \
               $$BEGIN INSERT INTO public.loot VALUES (pg_read_file('PG_VERSION')); RETURN btint4cmp($1, $2); END$$; \
             CREATE OPERATOR CLASS evil_ops FOR TYPE int USING btree AS \
               OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, \
               FUNCTION 1 evil_cmp(int, int); \
             CREATE TABLE keyed (id int); CREATE UNIQUE INDEX keyed_id ON keyed (id evil_ops); \
             INSERT INTO keyed VALUES (1); \
             CREATE FUNCTION tidy_cmp(int, int) RETURNS int LANGUAGE plpgsql AS \
               $$BEGIN RETURN btint4cmp($1, $2); END$$; \
             CREATE OPERATOR CLASS tidy_ops FOR TYPE int USING btree AS \
               OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, \
               FUNCTION 1 tidy_cmp(int, int); \
             CREATE TABLE kchild (k int); CREATE INDEX ON kchild (k tidy_ops); DELETE FROM loot; \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
        )
        .await
        .unwrap();
    let mut c = h.connect(MIGRATOR).await;
    // The key's action would delete child's row and fire its trigger. A
    // refusal ends the block, so each attempt gets its own.
    for attack in [
        "DELETE FROM parent",
        "UPDATE parent SET id = 1 WHERE id = 1",
        "TRUNCATE parent CASCADE",
        "INSERT INTO parent VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2",
    ] {
        ok(&c, "BEGIN").await;
        ok(
            &c,
            "ALTER TABLE child ADD FOREIGN KEY (p) REFERENCES parent ON DELETE CASCADE ON UPDATE CASCADE",
        )
        .await;
        let m = refused(&h, &c, attack).await;
        assert!(m.contains("foreign key"), "{attack}: {m}");
        ok(&c, "ROLLBACK").await;
    }
    refused(
        &h,
        &c,
        "ALTER TABLE child ADD FOREIGN KEY (p) REFERENCES parent ON DELETE CASCADE; \
         DELETE FROM parent",
    )
    .await;
    // A statement prepared, or a portal bound, before the key was added
    // is judged again when it runs.
    ok(&c, "PREPARE purge AS DELETE FROM parent").await;
    ok(&c, "BEGIN").await;
    ok(
        &c,
        "ALTER TABLE child ADD FOREIGN KEY (p) REFERENCES parent ON DELETE CASCADE",
    )
    .await;
    refused(&h, &c, "EXECUTE purge").await;
    ok(&c, "ROLLBACK").await;
    {
        let tx = c.transaction().await.unwrap();
        let stmt = tx.prepare("DELETE FROM parent").await.unwrap();
        let portal = tx.bind(&stmt, &[]).await.unwrap();
        tx.batch_execute(
            "ALTER TABLE child ADD FOREIGN KEY (p) REFERENCES parent ON DELETE CASCADE",
        )
        .await
        .unwrap();
        match tx.query_portal(&portal, 0).await {
            Ok(_) => panic!("pgward let the portal run"),
            Err(e) => assert!(Harness::is_denial(&e), "{e:?}"),
        }
        tx.rollback().await.unwrap();
    }
    nothing_leaked(&h).await;
    // Without an action, only TRUNCATE ... CASCADE reaches child.
    ok(&c, "BEGIN").await;
    ok(
        &c,
        "ALTER TABLE child ADD FOREIGN KEY (p) REFERENCES parent",
    )
    .await;
    refused(&h, &c, "TRUNCATE parent CASCADE").await;
    ok(&c, "ROLLBACK").await;
    // A new table's column takes the domain's DEFAULT, which calls pf(),
    // replaced in the block.
    let replace = "CREATE OR REPLACE FUNCTION pf() RETURNS text LANGUAGE sql AS \
                   $$ INSERT INTO loot VALUES (pg_read_file('PG_VERSION')); SELECT 'x'::text $$";
    ok(&c, "BEGIN").await;
    ok(&c, replace).await;
    ok(&c, "CREATE TABLE t_dom (a int, b fdom)").await;
    refused(&h, &c, "INSERT INTO t_dom (a) VALUES (1)").await;
    ok(&c, "ROLLBACK").await;
    refused(
        &h,
        &c,
        &format!("{replace}; CREATE TABLE t_dom (a int, b fdom); INSERT INTO t_dom (a) VALUES (1)"),
    )
    .await;
    // The key's check looks keyed up through evil_ops.
    ok(&c, "BEGIN").await;
    ok(&c, "CREATE TABLE refs (k int REFERENCES keyed (id))").await;
    refused(&h, &c, "INSERT INTO refs VALUES (1)").await;
    ok(&c, "ROLLBACK").await;
    // A key's check of the referencing table looks kchild up through
    // tidy_ops (user code, if benign) when parent is written.
    ok(&c, "BEGIN").await;
    ok(
        &c,
        "ALTER TABLE kchild ADD FOREIGN KEY (k) REFERENCES parent",
    )
    .await;
    refused(&h, &c, "UPDATE parent SET id = id").await;
    ok(&c, "ROLLBACK").await;
    // A domain whose DEFAULT calls a user function, made in the block.
    ok(&c, "BEGIN").await;
    ok(&c, "CREATE DOMAIN pfdom AS text DEFAULT pf()").await;
    ok(&c, "CREATE TABLE t_pf (a int, b pfdom)").await;
    refused(&h, &c, "INSERT INTO t_pf (a) VALUES (1)").await;
    ok(&c, "ROLLBACK").await;
    // A schema created with elements is not looked into.
    ok(&c, "BEGIN").await;
    ok(
        &c,
        "CREATE SCHEMA elems CREATE TABLE e (a int) CREATE VIEW ev AS SELECT public.pf() AS x",
    )
    .await;
    refused(&h, &c, "SELECT * FROM elems.ev").await;
    ok(&c, "ROLLBACK").await;
    nothing_leaked(&h).await;
}
