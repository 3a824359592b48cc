//! Lineage cases: each way a masked value could leave, masked or refused.

use std::path::Path;

use super::lineage::{plan_sql, StatementPlan};
use super::MaskFn;
use crate::policy::{Catalog, Role};
use crate::rules::Rules;

const TEXT: u32 = 25;
const INT4: u32 = 23;

const RULES: &str = r#"
[role.agent]
allow = ["read"]

[role.agent.mask]
"public.customers.email" = "email"
"public.customers.ssn"   = "partial(0,4)"
"public.customers.phone" = "hash"
"public.api_keys.secret" = "redact"

[role.dana]
allow = ["read"]
"#;

fn role(name: &str) -> Role {
    let mut r = Rules::default();
    r.add_file(Path::new("rules/roles.toml"), RULES).unwrap();
    (*r.roles[name]).clone()
}

fn cat() -> Catalog {
    let mut c = Catalog::builtin();
    for (t, cols) in [
        (
            "customers",
            &[
                ("id", INT4),
                ("name", TEXT),
                ("email", TEXT),
                ("ssn", TEXT),
                ("phone", TEXT),
            ][..],
        ),
        (
            "orders",
            &[("id", INT4), ("customer_id", INT4), ("note", TEXT)][..],
        ),
        ("api_keys", &[("id", INT4), ("secret", TEXT)][..]),
    ] {
        c.add_relation("public", t, b'r');
        c.add_columns("public", t, cols);
    }
    c.add_relation("public", "v_customers", b'v');
    c.add_columns(
        "public",
        "v_customers",
        &[("id", INT4), ("email", TEXT), ("uname", TEXT)],
    );
    c.add_view_definition(
        "public",
        "v_customers",
        " SELECT customers.id, customers.email, upper(customers.name) AS uname FROM customers WHERE customers.ssn LIKE '0%';",
    );
    c.add_relation("public", "v_top", b'v');
    c.add_columns("public", "v_top", &[("e", TEXT)]);
    c.add_view_definition(
        "public",
        "v_top",
        " SELECT v_customers.email AS e FROM v_customers;",
    );
    c
}

fn plan(sql: &str) -> StatementPlan {
    let mut p = plan_sql(sql, &role("agent"), &cat());
    assert_eq!(p.len(), 1, "{sql}");
    p.remove(0)
}

/// The masks of each output column, or the refusal.
fn masks(sql: &str) -> Result<Vec<Option<MaskFn>>, String> {
    match plan(sql) {
        StatementPlan::Rows(r) => Ok(r.columns.iter().map(|c| c.mask).collect()),
        StatementPlan::Pass { columns } => Ok(columns
            .map(|c| c.iter().map(|_| None).collect())
            .unwrap_or_default()),
        StatementPlan::Declare { rows, .. } => Ok(rows
            .map(|r| r.columns.iter().map(|c| c.mask).collect())
            .unwrap_or_default()),
        StatementPlan::Fetch { .. } => Ok(Vec::new()),
        StatementPlan::Refuse(why) => Err(why),
    }
}

fn refused(sql: &str) -> String {
    match masks(sql) {
        Err(why) => why,
        Ok(m) => panic!("{sql}: not refused, planned {m:?}"),
    }
}

const EMAIL: Option<MaskFn> = Some(MaskFn::Email);
const SSN: Option<MaskFn> = Some(MaskFn::Partial { first: 0, last: 4 });
const HASH: Option<MaskFn> = Some(MaskFn::Hash);
const REDACT: Option<MaskFn> = Some(MaskFn::Redact);

#[test]
fn rules_parse_masks_and_errors_name_file_line_and_key() {
    let r = role("agent");
    assert_eq!(r.masks.len(), 4);
    assert_eq!(r.masks[0].key(), "public.customers.email");
    assert_eq!(r.masks[0].source, "rules/roles.toml:6");
    assert!(role("dana").masks.is_empty());
    let bad = [
        ("\"customers.email\" = \"email\"", "schema.table.column"),
        ("\"public.customers.email\" = \"scramble\"", "redact"),
        (
            "\"public.customers.ssn\" = \"partial(x,4)\"",
            "partial(0,4)",
        ),
    ];
    for (line, want) in bad {
        let text = format!("[role.a]\nallow = [\"read\"]\n\n[role.a.mask]\n{line}\n");
        let e = Rules::default()
            .add_file(Path::new("r.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.toml:5:"), "{e}");
        assert!(e.contains(want) && e.contains("mask \""), "{e}");
    }
}

#[test]
fn a_role_without_masks_passes_everything_untraced() {
    let p = plan_sql("SELECT c FROM customers c", &role("dana"), &cat());
    assert_eq!(p, vec![StatementPlan::Pass { columns: None }]);
}

#[test]
fn columns_are_masked_by_lineage_not_by_name() {
    assert_eq!(
        masks("SELECT id, name FROM customers"),
        Ok(vec![None, None])
    );
    assert_eq!(masks("SELECT email FROM customers"), Ok(vec![EMAIL]));
    assert_eq!(
        masks("SELECT c.email AS contact FROM customers c"),
        Ok(vec![EMAIL])
    );
    assert_eq!(
        masks("SELECT public.customers.ssn FROM public.customers"),
        Ok(vec![SSN])
    );
    assert_eq!(masks("SELECT (c).ssn FROM customers c"), Ok(vec![SSN]));
    assert_eq!(masks("SELECT ssn::text AS x FROM customers"), Ok(vec![SSN]));
    // A computation moves characters: partial and email become redact,
    // and its NULLs are masked too.
    assert_eq!(
        masks("SELECT upper(email) FROM customers"),
        Ok(vec![REDACT])
    );
    assert_eq!(masks("SELECT name || ssn FROM customers"), Ok(vec![REDACT]));
    assert_eq!(
        masks("SELECT coalesce(ssn, email) FROM customers"),
        Ok(vec![REDACT])
    );
    assert_eq!(
        masks("SELECT string_agg(email, ',') FROM customers"),
        Ok(vec![REDACT])
    );
    match plan("SELECT substring(ssn from 1 for 3) FROM customers") {
        StatementPlan::Rows(r) => assert!(r.columns[0].mask_nulls),
        other => panic!("{other:?}"),
    }
    // Counting reveals no value.
    assert_eq!(masks("SELECT count(ssn) FROM customers"), Ok(vec![None]));
    // The strictest mask of several.
    assert_eq!(
        masks("SELECT CASE WHEN id > 1 THEN email ELSE ssn END FROM customers"),
        Ok(vec![REDACT])
    );
}

#[test]
fn stars_tables_and_views_are_expanded_per_column() {
    let all = Ok(vec![None, None, EMAIL, SSN, HASH]);
    assert_eq!(masks("SELECT * FROM customers"), all);
    assert_eq!(masks("TABLE customers"), all);
    assert_eq!(masks("SELECT c.* FROM customers c"), all);
    assert_eq!(masks("SELECT (c).* FROM customers c"), all);
    assert_eq!(
        masks("SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id"),
        Ok(vec![None, None, None, None, None, EMAIL, SSN, HASH])
    );
    assert_eq!(
        masks("SELECT * FROM customers JOIN api_keys USING (id)"),
        Ok(vec![None, None, EMAIL, SSN, HASH, REDACT])
    );
    // Views, through their definitions, recursively.
    assert_eq!(
        masks("SELECT * FROM v_customers"),
        Ok(vec![None, EMAIL, None])
    );
    assert_eq!(masks("SELECT e FROM v_top"), Ok(vec![EMAIL]));
    assert_eq!(masks("TABLE v_top"), Ok(vec![EMAIL]));
}

#[test]
fn subqueries_ctes_set_operations_lateral_values_returning() {
    assert_eq!(
        masks("SELECT (SELECT ssn FROM customers LIMIT 1)"),
        Ok(vec![REDACT])
    );
    assert_eq!(
        masks("SELECT s.x FROM (SELECT ssn AS x FROM customers) s"),
        Ok(vec![SSN])
    );
    assert_eq!(
        masks("SELECT * FROM (SELECT ssn FROM customers) s(y)"),
        Ok(vec![SSN])
    );
    assert_eq!(
        masks("WITH x AS (SELECT email FROM customers) SELECT * FROM x"),
        Ok(vec![EMAIL])
    );
    assert_eq!(
        masks("WITH x(e) AS (SELECT email FROM customers) SELECT x.e FROM x"),
        Ok(vec![EMAIL])
    );
    assert_eq!(
        masks("WITH RECURSIVE r(n, s) AS (SELECT 1, ''::text UNION ALL SELECT n + 1, c.ssn FROM r, customers c WHERE n < 3) SELECT s FROM r"),
        Ok(vec![SSN])
    );
    assert_eq!(
        masks("SELECT name FROM customers UNION ALL SELECT ssn FROM customers"),
        Ok(vec![SSN])
    );
    assert_eq!(
        masks("SELECT l.e FROM orders o, LATERAL (SELECT c.email AS e FROM customers c WHERE c.id = o.customer_id) l"),
        Ok(vec![EMAIL])
    );
    assert_eq!(
        masks("SELECT * FROM (VALUES (1, 'a')) v(a, b)"),
        Ok(vec![None, None])
    );
    assert_eq!(
        masks("SELECT * FROM (VALUES ((SELECT email FROM customers LIMIT 1))) v(a)"),
        Ok(vec![REDACT])
    );
    assert_eq!(
        masks("UPDATE customers SET name = 'x' WHERE id = 1 RETURNING ssn, id"),
        Ok(vec![SSN, None])
    );
    assert_eq!(
        masks("DELETE FROM customers WHERE id = 1 RETURNING *"),
        Ok(vec![None, None, EMAIL, SSN, HASH])
    );
    assert_eq!(
        masks("INSERT INTO customers (name) VALUES ('a') RETURNING email"),
        Ok(vec![EMAIL])
    );
    assert_eq!(
        masks("WITH d AS (DELETE FROM api_keys RETURNING secret) SELECT * FROM d"),
        Ok(vec![REDACT])
    );
}

#[test]
fn copy_and_cursors_are_statements_too() {
    assert_eq!(
        masks("COPY customers TO STDOUT"),
        Ok(vec![None, None, EMAIL, SSN, HASH])
    );
    assert_eq!(
        masks("COPY customers (ssn, id) TO STDOUT (FORMAT csv)"),
        Ok(vec![SSN, None])
    );
    assert_eq!(
        masks("COPY (SELECT secret FROM api_keys) TO STDOUT"),
        Ok(vec![REDACT])
    );
    assert_eq!(
        plan("COPY customers FROM STDIN"),
        StatementPlan::Pass { columns: None }
    );
    match plan("DECLARE c CURSOR FOR SELECT ssn FROM customers") {
        StatementPlan::Declare {
            cursor,
            rows: Some(r),
        } => {
            assert_eq!(cursor, "c");
            assert_eq!(r.columns[0].mask, SSN);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        plan("FETCH 10 FROM c"),
        StatementPlan::Fetch { cursor: "c".into() }
    );
}

#[test]
fn whole_row_values_are_refused() {
    for sql in [
        "SELECT c FROM customers c",
        "SELECT customers FROM customers",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT to_jsonb(c) FROM customers c",
        "SELECT to_jsonb(c.*) FROM customers c",
        "SELECT json_agg(c) FROM customers c",
        "SELECT c::text FROM customers c",
        "SELECT hstore(c) FROM customers c",
        "SELECT email(c) FROM customers c",
        // Attribute notation: c.upper is upper(c).
        "SELECT c.upper FROM customers c",
        "SELECT ROW(id, ssn) FROM customers",
        "SELECT x FROM (SELECT ssn FROM customers) x",
        "SELECT v FROM v_customers v",
    ] {
        let why = refused(sql);
        assert!(
            why.contains("whole-row") || why.contains("row value"),
            "{sql}: {why}"
        );
    }
    // A table without masked columns may be used whole.
    assert_eq!(masks("SELECT o FROM orders o"), Ok(vec![None]));
}

#[test]
fn probes_are_refused_unless_hash_equality() {
    for sql in [
        "SELECT id FROM customers WHERE ssn LIKE '078%'",
        "SELECT id FROM customers WHERE ssn = '078-05-1120'",
        "SELECT id FROM customers WHERE length(ssn) > 3",
        "SELECT o.id FROM orders o JOIN customers c ON c.ssn = o.note",
        "SELECT id FROM customers ORDER BY ssn",
        "SELECT ssn FROM customers ORDER BY 1",
        "SELECT email AS e FROM customers ORDER BY e",
        "SELECT id FROM customers ORDER BY phone",
        "SELECT count(*) FROM customers GROUP BY ssn",
        "SELECT count(*) FROM customers GROUP BY 1 HAVING min(email) > 'a'",
        "SELECT DISTINCT ssn FROM customers",
        "SELECT DISTINCT ON (email) id FROM customers",
        "SELECT rank() OVER (PARTITION BY ssn) FROM customers",
        "SELECT rank() OVER (ORDER BY phone) FROM customers",
        "SELECT min(ssn) FROM customers",
        "SELECT max(phone) FROM customers",
        "SELECT CASE WHEN ssn LIKE '0%' THEN 1 END FROM customers",
        "SELECT CASE ssn WHEN 'x' THEN 1 END FROM customers",
        "SELECT NULLIF(ssn, 'x') FROM customers",
        "SELECT substring(ssn from '^078') IS NULL FROM customers",
        "SELECT ssn::int FROM customers",
        "SELECT 1 / (length(ssn) - 11) FROM customers",
        "SELECT pg_sleep(length(ssn)) FROM customers",
        "SELECT id FROM customers WHERE upper(phone) = 'X'",
        "SELECT EXISTS (SELECT 1 FROM customers WHERE ssn LIKE '0%')",
        "SELECT id FROM customers WHERE ssn IN (SELECT note FROM orders)",
        "SELECT name FROM customers UNION SELECT ssn FROM customers",
        "SELECT count(DISTINCT ssn) FROM customers",
        "SELECT array_agg(id ORDER BY ssn) FROM customers",
        "SELECT count(*) FILTER (WHERE ssn > '5') FROM customers",
        "SELECT GREATEST(ssn, '5') FROM customers",
        "UPDATE customers SET name = 'x' WHERE ssn LIKE '0%'",
        "DELETE FROM customers WHERE email ILIKE '%@corp.com'",
        "EXPLAIN ANALYZE SELECT * FROM customers WHERE ssn LIKE '0%'",
        "SELECT * FROM v_customers WHERE email LIKE 'a%'",
        "SELECT id FROM customers LIMIT (SELECT length(ssn) FROM customers LIMIT 1)",
    ] {
        refused(sql);
    }
    // hash keeps equality: joins, GROUP BY, DISTINCT and = on the column.
    assert_eq!(
        masks("SELECT id FROM customers WHERE phone = '555'"),
        Ok(vec![None])
    );
    assert_eq!(
        masks("SELECT id FROM customers WHERE phone IN ('1', '2')"),
        Ok(vec![None])
    );
    assert_eq!(
        masks("SELECT phone, count(*) FROM customers GROUP BY phone"),
        Ok(vec![HASH, None])
    );
    assert_eq!(
        masks("SELECT DISTINCT phone FROM customers"),
        Ok(vec![HASH])
    );
    assert_eq!(
        masks("SELECT a.id FROM customers a JOIN customers b ON a.phone = b.phone"),
        Ok(vec![None])
    );
    // Predicates on unmasked columns, and NULL tests of the column itself.
    assert_eq!(
        masks("SELECT ssn FROM customers WHERE id = 1 AND email IS NOT NULL ORDER BY name"),
        Ok(vec![SSN])
    );
    // A view's own predicate is the DBA's, not a probe.
    assert_eq!(masks("SELECT id FROM v_customers"), Ok(vec![None]));
}

#[test]
fn untraceable_and_copying_statements_are_refused() {
    for sql in [
        "SELECT query_to_xml('select ssn from customers', true, true, '')",
        "SELECT * FROM pg_stats WHERE tablename = 'customers'",
        "SELECT my_function()",
        "SELECT ssn INTO TEMP t FROM customers",
        "CREATE TABLE t AS SELECT email FROM customers",
        "INSERT INTO orders (note) SELECT ssn FROM customers",
        "UPDATE customers SET name = ssn",
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$",
        "EXECUTE p",
        "SELECT * FROM unnest(ARRAY(SELECT ssn FROM customers))",
    ] {
        refused(sql);
    }
    // A catalog that lists the database's relations and lacks one named
    // like a masked table: created since it was loaded, refused.
    let mut c = Catalog::builtin();
    c.lists_user_relations = true;
    let p = plan_sql("SELECT email FROM customers", &role("agent"), &c);
    assert!(
        matches!(&p[0], StatementPlan::Refuse(w) if w.contains("not in the catalog")),
        "{p:?}"
    );
    // Writing a masked column back into itself keeps it behind its mask.
    assert_eq!(masks("UPDATE customers SET ssn = upper(ssn)"), Ok(vec![]));
}

#[test]
fn masks_follow_inheritance_and_ambiguous_names_are_refused() {
    let mut c = cat();
    c.add_relation("public", "vip", b'r');
    c.add_columns("public", "vip", &[("id", INT4), ("ssn", TEXT)]);
    c.add_inheritance("public.vip", "public.customers");
    c.add_relation("hr", "api_keys", b'r');
    let p = plan_sql("SELECT ssn FROM vip", &role("agent"), &c);
    match &p[0] {
        StatementPlan::Rows(r) => assert_eq!(r.columns[0].mask, SSN),
        other => panic!("{other:?}"),
    }
    let p = plan_sql("SELECT secret FROM api_keys", &role("agent"), &c);
    assert!(
        matches!(&p[0], StatementPlan::Refuse(w) if w.contains("qualify")),
        "{p:?}"
    );
    let p = plan_sql("SELECT secret FROM public.api_keys", &role("agent"), &c);
    assert!(matches!(&p[0], StatementPlan::Rows(_)), "{p:?}");
}

#[test]
fn user_functions_and_operators_that_could_see_masked_values_are_refused() {
    let mut c = cat();
    c.add_test_function("public", "leak", "sql", "SELECT ssn FROM customers LIMIT 1");
    c.add_test_function("public", "harmless", "sql", "SELECT 42");
    c.add_test_function("public", "dyn", "plpgsql", "BEGIN EXECUTE 'x'; END");
    // A user lower() ahead of pg_catalog on the search_path.
    c.add_test_function("public", "lower", "sql", "SELECT $1");
    c.add_test_operator("||", "public", "textcat_spy");
    let r = role("agent");
    let one = |sql: &str| plan_sql(sql, &r, &c).remove(0);
    for sql in [
        "SELECT leak()",
        "SELECT dyn()",
        "SELECT harmless(ssn) FROM customers",
        "SELECT lower(email) FROM customers",
        "SELECT name || ssn FROM customers",
        "SELECT c.harmless FROM customers c",
    ] {
        assert!(
            matches!(one(sql), StatementPlan::Refuse(_)),
            "{sql}: {:?}",
            one(sql)
        );
    }
    assert!(matches!(
        one("SELECT harmless()"),
        StatementPlan::Pass { .. }
    ));
    assert!(matches!(
        one("SELECT name || 'x' FROM customers"),
        StatementPlan::Pass { .. }
    ));
}

#[test]
fn definitions_the_catalog_could_not_read_are_refused() {
    // A catalog load that found a view's relations locked holds a marker
    // for its definition (and a function's body): what it shows cannot be
    // traced, so it is refused, never taken as a view of nothing masked.
    let mut c = cat();
    c.add_relation("public", "v_locked", b'v');
    c.add_columns("public", "v_locked", &[("id", INT4), ("email", TEXT)]);
    c.add_view_definition("public", "v_locked", "SELECT pgward_locked_at_load()");
    c.add_test_function(
        "public",
        "f_locked",
        "sql",
        "SELECT pgward_locked_at_load()",
    );
    c.add_test_function(
        "public",
        "g_locked",
        "plpgsql",
        "pgward could not read this: locked at load",
    );
    for sql in [
        "SELECT * FROM v_locked",
        "SELECT id FROM v_locked",
        "SELECT f_locked()",
        "SELECT g_locked()",
    ] {
        let p = plan_sql(sql, &role("agent"), &c);
        assert!(
            matches!(&p[0], StatementPlan::Refuse(w) if w.contains("locked") || w.contains("may read")),
            "{sql}: {p:?}"
        );
    }
    // The markers are what `unread_at_load` recognises.
    assert!(crate::policy::catalog::unread_at_load(
        "SELECT pgward_locked_at_load()"
    ));
    assert!(!crate::policy::catalog::unread_at_load(
        " SELECT customers.id FROM customers;"
    ));
}

#[test]
fn mask_sets_are_built_once_per_role_masks_and_catalog() {
    use super::relay::Masker;
    use std::sync::Arc;
    let masker = Masker::new(None);
    let agent = role("agent");
    let first = Arc::new(cat());
    let set = masker.mask_set(&agent, &first);
    assert!(
        Arc::ptr_eq(&set, &masker.mask_set(&agent, &first)),
        "built once for the same masks and catalog"
    );
    assert_eq!(set.mask("public", "customers", "ssn"), SSN);
    // Rules reloaded with other masks for the role: built anew.
    let mut reloaded = agent.clone();
    reloaded.masks.retain(|m| m.column != "ssn");
    for m in reloaded.masks.iter_mut().filter(|m| m.column == "email") {
        m.func = MaskFn::Null;
    }
    let changed = masker.mask_set(&reloaded, &first);
    assert_eq!(changed.mask("public", "customers", "ssn"), None);
    assert_eq!(
        changed.mask("public", "customers", "email"),
        Some(MaskFn::Null)
    );
    // And back: the first masks again.
    let again = masker.mask_set(&agent, &first);
    assert_eq!(again.mask("public", "customers", "ssn"), SSN);
    assert_eq!(
        again.mask("public", "customers", "email"),
        Some(MaskFn::Email)
    );
    // The catalog reloaded: a table now inherits customers.
    let mut c = cat();
    c.add_relation("public", "vip", b'r');
    c.add_columns("public", "vip", &[("id", INT4), ("ssn", TEXT)]);
    c.add_inheritance("public.vip", "public.customers");
    let second = Arc::new(c);
    assert_eq!(set.mask("public", "vip", "ssn"), None);
    assert_eq!(
        masker
            .mask_set(&agent, &second)
            .mask("public", "vip", "ssn"),
        SSN
    );
    // The old catalog freed: a catalog built at its address is not taken
    // for it.
    drop(first);
    let third = Arc::new(cat());
    assert_eq!(
        masker
            .mask_set(&reloaded, &third)
            .mask("public", "customers", "ssn"),
        None
    );
    assert_eq!(
        masker
            .mask_set(&agent, &third)
            .mask("public", "customers", "ssn"),
        SSN
    );
}

/// `cat()` with the constraints that compare values: unique
/// `customers(email)`, an exclusion on `customers(ssn)`, unique
/// `customers(phone)` (hash-masked), the primary key `customers(id)`, a
/// foreign key `orders(note)` → `customers(email)`, and a unique index on
/// `api_keys_1(secret)`, a table that inherits from `api_keys`.
fn keyed_cat() -> Catalog {
    use crate::policy::catalog::{KeyConstraint, KeyKind};
    let mut c = cat();
    c.add_relation("public", "api_keys_1", b'r');
    c.add_columns("public", "api_keys_1", &[("id", INT4), ("secret", TEXT)]);
    c.add_inheritance("public.api_keys_1", "public.api_keys");
    let key = |kind, name: &str, table: &str, cols: &[&str]| KeyConstraint {
        kind,
        names: vec![name.to_owned()],
        table: ("public".to_owned(), table.to_owned()),
        columns: cols.iter().map(|c| (*c).to_owned()).collect(),
        plain: cols.iter().map(|c| (*c).to_owned()).collect(),
        referenced: None,
    };
    c.add_key_constraint(key(KeyKind::Unique, "customers_pkey", "customers", &["id"]));
    c.add_key_constraint(key(
        KeyKind::Unique,
        "customers_email_key",
        "customers",
        &["email"],
    ));
    c.add_key_constraint(key(
        KeyKind::Exclusion,
        "customers_ssn_excl",
        "customers",
        &["ssn"],
    ));
    c.add_key_constraint(key(
        KeyKind::Unique,
        "customers_phone_key",
        "customers",
        &["phone"],
    ));
    c.add_key_constraint(key(
        KeyKind::Unique,
        "api_keys_1_secret_key",
        "api_keys_1",
        &["secret"],
    ));
    let mut fk = key(KeyKind::ForeignKey, "orders_note_fkey", "orders", &["note"]);
    fk.referenced = Some((
        ("public".to_owned(), "customers".to_owned()),
        vec!["email".to_owned()],
    ));
    c.add_key_constraint(fk);
    c
}

#[test]
fn constraints_over_masked_columns_are_no_equality_oracles() {
    let c = keyed_cat();
    let plan = |sql: &str| {
        let mut p = plan_sql(sql, &role("agent"), &c);
        assert_eq!(p.len(), 1, "{sql}");
        p.remove(0)
    };
    for sql in [
        "INSERT INTO customers (name, email) VALUES ('x', 'ada@example.com')",
        "INSERT INTO customers (name, email) VALUES ('x', $1)",
        "INSERT INTO customers VALUES (1, 'x', 'e', 's', 'p')",
        "INSERT INTO customers (name, ssn) VALUES ('x', 'y')",
        "INSERT INTO customers (name, email) SELECT 'x', 'y'",
        "UPDATE customers SET ssn = upper(ssn)",
        "UPDATE customers SET email = email WHERE id = 1",
        "UPDATE customers SET (name, email) = ('x', 'y')",
        "INSERT INTO customers (name) VALUES ('x') ON CONFLICT DO NOTHING",
        "INSERT INTO customers (name) VALUES ('x') ON CONFLICT ON CONSTRAINT customers_email_key DO NOTHING",
        "INSERT INTO customers (name) VALUES ('x') ON CONFLICT ON CONSTRAINT nonesuch DO NOTHING",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (email) DO NOTHING",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (lower(ssn)) DO NOTHING",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) WHERE ssn IS NOT NULL DO NOTHING",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET email = 'x'",
        "INSERT INTO orders (note) VALUES ('ada@example.com')",
        "UPDATE orders SET note = 'x'",
        "DELETE FROM customers WHERE id = 1",
        "WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING id) SELECT id FROM d",
        "COPY customers (name, email) FROM STDIN",
        "COPY customers FROM STDIN",
        "COPY orders FROM STDIN",
        "INSERT INTO api_keys (id, secret) VALUES (1, 'x')",
        "UPDATE api_keys SET secret = 'x'",
        "WITH w AS (INSERT INTO customers (email) VALUES ('x') RETURNING id) SELECT id FROM w",
        "INSERT INTO v_customers (email) VALUES ('x')",
        "MERGE INTO orders o USING (SELECT 1 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE",
    ] {
        match plan(sql) {
            StatementPlan::Refuse(why) => assert!(
                why.contains("compares") || why.contains("references") || why.contains("MERGE"),
                "{sql}: {why}"
            ),
            other => panic!("{sql}: not refused: {other:?}"),
        }
    }
    for sql in [
        // `hash` shows equality anyway.
        "INSERT INTO customers (name, phone) VALUES ('x', 'p')",
        "INSERT INTO customers (name, phone) VALUES ('x', 'p') ON CONFLICT (phone) DO NOTHING",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO NOTHING",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT ON CONSTRAINT customers_pkey DO NOTHING",
        "INSERT INTO customers DEFAULT VALUES",
        "UPDATE customers SET name = 'x' WHERE id = 1",
        "DELETE FROM orders WHERE id = 1",
        "UPDATE orders SET customer_id = 2",
        "INSERT INTO orders (customer_id) VALUES (1)",
        "COPY orders (id, customer_id) FROM STDIN",
        "INSERT INTO api_keys (id) VALUES (1)",
    ] {
        let p = plan(sql);
        assert!(!matches!(p, StatementPlan::Refuse(_)), "{sql}: {p:?}");
    }
    // A hash-masked column compared through an expression or by an
    // exclusion constraint tells more than equality.
    let mut c = cat();
    c.add_key_constraint(crate::policy::catalog::KeyConstraint {
        kind: crate::policy::catalog::KeyKind::Unique,
        names: vec!["customers_lower_phone".into()],
        table: ("public".into(), "customers".into()),
        columns: vec!["phone".into()],
        plain: Vec::new(),
        referenced: None,
    });
    let p = plan_sql(
        "INSERT INTO customers (phone) VALUES ('x')",
        &role("agent"),
        &c,
    );
    assert!(matches!(&p[0], StatementPlan::Refuse(_)), "{p:?}");
}
