//! Column masking against a real PostgreSQL 15: the live catalog's columns
//! and view definitions feed lineage, `check` finds masks on missing
//! columns, and every value the rewriter writes is one PostgreSQL accepts
//! for the column's type, in text and in binary format.

mod common;

use std::error::Error;
use std::path::Path;

use bytes::BytesMut;
use common::{Harness, Setup};
use pgward::mask::rewrite::{Format, RowRewriter};
use pgward::mask::{plan_sql, ColumnPlan, HashKey, MaskFn, RowPlan, StatementPlan};
use pgward::policy::Catalog;
use pgward::rules::Rules;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

const SETUP: &str =
    "CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text, phone text); \
    CREATE VIEW v_customers AS SELECT id, email, upper(name) AS uname FROM customers; \
    CREATE VIEW v_top AS SELECT email AS e FROM v_customers";

const RULES: &str = "[role.agent]\nallow = [\"read\"]\n\n[role.agent.mask]\n\
    \"public.customers.email\" = \"email\"\n\
    \"public.customers.ssn\" = \"partial(0,4)\"\n\
    \"public.customers.phnoe\" = \"hash\"\n\
    \"public.nosuch.x\" = \"redact\"\n";

/// A value sent as is, in binary format.
#[derive(Debug)]
struct Raw(Vec<u8>);

impl ToSql for Raw {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

fn masked(mask: MaskFn, ty: u32, format: Format, value: &[u8]) -> Option<Vec<u8>> {
    let plan = RowPlan {
        columns: vec![ColumnPlan {
            name: "c".into(),
            sources: Vec::new(),
            mask: Some(mask),
            mask_nulls: false,
        }],
    };
    let key = HashKey::new(b"integration test key, 32 bytes..").unwrap();
    let rw = RowRewriter::new(&plan, &[ty], &[format], Some(key)).unwrap();
    let mut row = 1i16.to_be_bytes().to_vec();
    row.extend_from_slice(&(value.len() as i32).to_be_bytes());
    row.extend_from_slice(value);
    let mut out = Vec::new();
    rw.rewrite_data_row(&row, &mut out).unwrap();
    let len = i32::from_be_bytes([out[2], out[3], out[4], out[5]]);
    (len >= 0).then(|| out[6..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_catalog_feeds_lineage_and_check() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![SETUP.into()],
        ..Setup::default()
    })
    .await;
    let cat = Catalog::load(&h.shared.upstream, "postgres").await.unwrap();
    let cols: Vec<&str> = cat
        .columns("public", "customers")
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["id", "name", "email", "ssn", "phone"]);
    assert_eq!(cat.columns("public", "customers").unwrap()[0].type_oid, 23);
    assert!(cat.view_definition("public", "v_top").is_some());

    let mut rules = Rules::default();
    rules.add_file(Path::new("rules/r.toml"), RULES).unwrap();
    let role = rules.roles["agent"].clone();
    let missing = pgward::mask::missing_columns(&role, &cat);
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(
        missing[0].starts_with("rules/r.toml:7:") && missing[0].contains("no column \"phnoe\""),
        "{missing:?}"
    );
    assert!(
        missing[1].starts_with("rules/r.toml:8:") && missing[1].contains("public.nosuch"),
        "{missing:?}"
    );

    // Views traced through the definitions PostgreSQL prints.
    let p = plan_sql(
        "SELECT * FROM v_top; SELECT * FROM v_customers; SELECT v FROM v_customers v",
        &role,
        &cat,
    );
    let masks = |p: &StatementPlan| match p {
        StatementPlan::Rows(r) => r.columns.iter().map(|c| c.mask).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(masks(&p[0]), [Some(MaskFn::Email)]);
    assert_eq!(masks(&p[1]), [None, Some(MaskFn::Email), None]);
    assert!(matches!(&p[2], StatementPlan::Refuse(_)), "{:?}", p[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_are_valid_input_for_their_types() {
    let h = Harness::start().await;
    let c = h.direct().await;
    let types: &[(u32, &str, &[u8], &[u8])] = &[
        // (oid, type, a text value, the same value in binary)
        (16, "boolean", b"t", &[1]),
        (21, "smallint", b"7", &7i16.to_be_bytes()),
        (23, "integer", b"7", &7i32.to_be_bytes()),
        (20, "bigint", b"7", &7i64.to_be_bytes()),
        (26, "oid", b"7", &7u32.to_be_bytes()),
        (700, "real", b"1.5", &1.5f32.to_be_bytes()),
        (701, "double precision", b"1.5", &1.5f64.to_be_bytes()),
        (1700, "numeric", b"0", &[0, 0, 0, 0, 0, 0, 0, 0]),
        (25, "text", b"bob@example.com", b"bob@example.com"),
        (1043, "varchar", b"078-05-1120", b"078-05-1120"),
        (1042, "character(11)", b"078-05-1120", b"078-05-1120"),
        (18, "\"char\"", b"x", b"x"),
        (17, "bytea", b"\\x0102", &[1, 2]),
        (1082, "date", b"2026-12-08", &9838i32.to_be_bytes()),
        (
            1114,
            "timestamp",
            b"2026-12-08 00:00:00",
            &0i64.to_be_bytes(),
        ),
        (
            1184,
            "timestamptz",
            b"2026-12-08 00:00:00+00",
            &0i64.to_be_bytes(),
        ),
        (1083, "time", b"12:00:00", &0i64.to_be_bytes()),
        (1266, "timetz", b"12:00:00+00", &[0; 12]),
        (1186, "interval", b"1 day", &[0; 16]),
        (114, "json", b"{\"a\": 1}", b"{\"a\": 1}"),
        (3802, "jsonb", b"{\"a\": 1}", b"\x01{\"a\": 1}"),
        (
            2950,
            "uuid",
            b"07070707-0707-0707-0707-070707070707",
            &[7; 16],
        ),
        (1007, "integer[]", b"{1,2}", b""),
        (1009, "text[]", b"{a}", b""),
    ];
    let masks = [
        MaskFn::Redact,
        MaskFn::Default,
        MaskFn::Hash,
        MaskFn::Email,
        MaskFn::Partial { first: 1, last: 2 },
    ];
    for (oid, ty, text, bin) in types {
        for m in masks {
            if let Some(v) = masked(m, *oid, Format::Text, text) {
                let s = String::from_utf8(v).unwrap();
                c.query_one(&format!("SELECT $1::text::{ty}"), &[&s])
                    .await
                    .unwrap_or_else(|e| panic!("{m} of {ty} in text: {s:?}: {e}"));
            }
            if bin.is_empty() {
                // (Arrays: the binary value below is only ever a mask's.)
            } else if let Some(v) = masked(m, *oid, Format::Binary, bin) {
                let param_ty = Type::from_oid(*oid).unwrap();
                let stmt = c
                    .prepare_typed(&format!("SELECT $1::{ty} IS NOT NULL"), &[param_ty])
                    .await
                    .unwrap();
                c.query_one(&stmt, &[&Raw(v.clone())])
                    .await
                    .unwrap_or_else(|e| panic!("{m} of {ty} in binary: {v:?}: {e}"));
            }
        }
    }
    // Empty arrays in binary, as redact writes them.
    for (oid, ty) in [(1007u32, "integer[]"), (1009, "text[]"), (3807, "jsonb[]")] {
        let v = masked(MaskFn::Redact, oid, Format::Binary, &[0; 12]).unwrap();
        let stmt = c
            .prepare_typed(
                &format!("SELECT cardinality($1::{ty})"),
                &[Type::from_oid(oid).unwrap()],
            )
            .await
            .unwrap();
        let n: i32 = c.query_one(&stmt, &[&Raw(v)]).await.unwrap().get(0);
        assert_eq!(n, 0);
    }
}
