//! Masking in the data path: the row planner the guard asks for each
//! allowed statement of a role with masks, and the row rewriter the relay
//! hands that statement's DataRow and COPY data to.
//!
//! A role without masks costs one check of an empty list per statement;
//! its rows are never looked at.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::BytesMut;
use pg_query::NodeEnum;

use super::lineage::{plan_statement, MaskSet, RowPlan, StatementPlan};
use super::rewrite::{Format, RowRewriter as Rows};
use super::{ColumnMask, HashKey};
use crate::policy::{stack, Catalog, Role, Statement};
use crate::protocol::{sqlstate, PgError};
use crate::session::rows::{Columns, Formats, RowDecision, RowPlanner, RowRewriter};
use crate::session::state::Answering;

/// Plans the rows of every statement of roles with masks.
pub struct Masker {
    pub key: Option<HashKey>,
    /// The mask sets built last, by role masks and catalog (see
    /// `mask_set`).
    sets: Mutex<Vec<CachedSet>>,
}

/// A role's `MaskSet` under one catalog: it depends on the role's masks
/// and on the catalog's inheritance, and on nothing else.
struct CachedSet {
    masks: Vec<ColumnMask>,
    /// Held weakly: a reloaded catalog is freed once no session holds it,
    /// and while this is held its address is not reused, so the same
    /// address is the same catalog.
    cat: Weak<Catalog>,
    set: Arc<MaskSet>,
}

/// Mask sets kept at most: one per (masked role, database) in use.
const CACHED_SETS: usize = 64;

impl Masker {
    pub fn new(key: Option<HashKey>) -> Masker {
        Masker {
            key,
            sets: Mutex::new(Vec::new()),
        }
    }

    /// The `MaskSet` of `role` under `cat`, built once per role masks and
    /// catalog: a statement of a role with masks does not build it again.
    /// A rules reload that changes the role's masks, or a catalog reload
    /// (a new catalog), misses and builds it anew.
    pub fn mask_set(&self, role: &Role, cat: &Arc<Catalog>) -> Arc<MaskSet> {
        let same =
            |c: &CachedSet| std::ptr::eq(c.cat.as_ptr(), Arc::as_ptr(cat)) && c.masks == role.masks;
        {
            let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = sets.iter().find(|c| same(c)) {
                return c.set.clone();
            }
        }
        // Built outside the lock: other sessions' statements go on.
        let set = Arc::new(MaskSet::of(role, cat));
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        // Catalogs no session holds any more, and the oldest past the cap.
        sets.retain(|c| c.cat.strong_count() > 0);
        if sets.len() >= CACHED_SETS {
            sets.remove(0);
        }
        if !sets.iter().any(&same) {
            sets.push(CachedSet {
                masks: role.masks.clone(),
                cat: Arc::downgrade(cat),
                set: set.clone(),
            });
        }
        set
    }
}

impl RowPlanner for Masker {
    fn rewrites_for(&self, role: &Role) -> bool {
        !role.masks.is_empty()
    }

    fn plan(
        &self,
        role: &Role,
        st: &Statement,
        cat: &Arc<Catalog>,
    ) -> Result<RowDecision, PgError> {
        if role.masks.is_empty() {
            return Ok(RowDecision::Pass);
        }
        let masks = self.mask_set(role, cat);
        if masks.is_empty() {
            return Ok(RowDecision::Pass);
        }
        let refuse = |why: String| {
            PgError::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("pgward: role {} sees masked columns: {why}", role.name),
            )
            .with_hint("rule: mask (see docs/masking.md)")
        };
        // Parsed again here, with the session's lexer: the classification
        // keeps no tree. Only roles with masks pay for it.
        let text = st.text.as_str();
        let options = st.lexer.options();
        let planned = stack::on(stack::for_sql(text.len()), || {
            let parsed = pg_query::parse(text, options).map_err(|e| e.to_string())?;
            let Some(node) = parsed.protobuf.stmts.first().and_then(|s| s.stmt.as_ref()) else {
                return Ok((StatementPlan::Pass { columns: None }, None));
            };
            let copy = copy_form(node, cat);
            Ok((plan_statement(node, &masks, cat), copy))
        })
        .map_err(refuse)?
        .map_err(|e: String| refuse(format!("its text does not parse: {e}")))?;
        let (plan, copy) = planned;
        // Errors of a statement that touches a masked table (or a view,
        // which may hide one) can echo its values: scrubbed, rows or not.
        let touches = st.relations.iter().any(|r| {
            masks.covers(r.schema.as_deref(), &r.name) || cat.is_view(r.schema.as_deref(), &r.name)
        });
        let pass = || match touches {
            true => RowDecision::Rewrite(Arc::new(ScrubOnly)),
            false => RowDecision::Pass,
        };
        let rows = |plan: RowPlan| -> Result<Option<Arc<dyn RowRewriter>>, PgError> {
            if !plan.masks_any() {
                return Ok(None);
            }
            let copy = match copy.clone() {
                Some(Ok(mut c)) => {
                    if c.types.is_empty() {
                        c.types = query_copy_types(&plan, cat);
                    }
                    Some(c)
                }
                Some(Err(why)) => return Err(refuse(why)),
                None => None,
            };
            Ok(Some(Arc::new(MaskRows {
                plan,
                key: self.key.clone(),
                copy,
                built: Mutex::new(None),
                header_left: AtomicBool::new(true),
            })))
        };
        Ok(match plan {
            StatementPlan::Pass { .. } => pass(),
            StatementPlan::Refuse(why) => return Err(refuse(why)),
            StatementPlan::Rows(plan) => match rows(plan)? {
                Some(r) => RowDecision::Rewrite(r),
                None => pass(),
            },
            StatementPlan::Declare { cursor, rows: plan } => RowDecision::Declare(
                cursor,
                match plan {
                    Some(p) => rows(p)?,
                    None => None,
                },
            ),
            StatementPlan::Fetch { cursor } => RowDecision::Fetch(cursor),
        })
    }
}

/// A statement whose rows pass but whose errors are scrubbed.
#[derive(Debug)]
struct ScrubOnly;

impl RowRewriter for ScrubOnly {
    fn passes_rows(&self) -> bool {
        true
    }

    fn data_row(&self, _a: &Answering, row: &[u8], out: &mut BytesMut) -> Result<(), PgError> {
        out.extend_from_slice(row);
        Ok(())
    }

    fn copy_data(&self, _a: &Answering, data: &[u8], out: &mut BytesMut) -> Result<(), PgError> {
        out.extend_from_slice(data);
        Ok(())
    }

    fn scrub(&self, fields: &mut Vec<(u8, String)>) {
        super::scrub::scrub_fields(fields);
    }
}

/// How a `COPY ... TO STDOUT` writes its rows.
#[derive(Debug, Clone)]
enum CopyForm {
    Text {
        delimiter: u8,
        null: Vec<u8>,
    },
    Csv {
        delimiter: u8,
        quote: u8,
        null: Vec<u8>,
        header: bool,
    },
    Binary,
}

#[derive(Debug, Clone)]
struct Copy {
    form: CopyForm,
    /// Column types, when the catalog knows the table (COPY of a query:
    /// unknown, and masked values become NULL).
    types: Vec<u32>,
}

/// The form of a COPY TO statement; None for any other statement; an
/// error for options masking cannot follow.
fn copy_form(node: &pg_query::protobuf::Node, cat: &Catalog) -> Option<Result<Copy, String>> {
    let Some(NodeEnum::CopyStmt(c)) = node.node.as_ref() else {
        return None;
    };
    if c.is_from {
        return None;
    }
    let mut format = "text".to_owned();
    let (mut delimiter, mut quote, mut escape, mut null, mut header) = (
        None::<String>,
        None::<String>,
        None::<String>,
        None::<String>,
        false,
    );
    for o in &c.options {
        let Some(NodeEnum::DefElem(d)) = o.node.as_ref() else {
            continue;
        };
        let value = d.arg.as_ref().and_then(|a| match a.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            Some(NodeEnum::Boolean(b)) => Some(b.boolval.to_string()),
            Some(NodeEnum::Integer(i)) => Some(i.ival.to_string()),
            _ => None,
        });
        match d.defname.as_str() {
            "format" => format = value.unwrap_or_default().to_ascii_lowercase(),
            "delimiter" => delimiter = value,
            "quote" => quote = value,
            "escape" => escape = value,
            "null" => null = value,
            "header" => {
                header = !matches!(value.as_deref(), Some("false" | "0" | "off"));
            }
            "encoding" | "force_quote" | "freeze" => {}
            other => return Some(Err(format!("COPY option {other} of a masked result"))),
        }
    }
    let one_byte = |v: &Option<String>, default: u8, what: &str| -> Result<u8, String> {
        match v.as_deref() {
            None => Ok(default),
            Some(s) if s.len() == 1 => Ok(s.as_bytes()[0]),
            Some(_) => Err(format!("COPY {what} of more than one byte")),
        }
    };
    let form = match format.as_str() {
        "binary" => CopyForm::Binary,
        "csv" => {
            let quote = match one_byte(&quote, b'"', "QUOTE") {
                Ok(q) => q,
                Err(e) => return Some(Err(e)),
            };
            if escape.as_deref().is_some_and(|e| e.as_bytes() != [quote]) {
                return Some(Err("COPY CSV with an ESCAPE other than its QUOTE".into()));
            }
            CopyForm::Csv {
                delimiter: match one_byte(&delimiter, b',', "DELIMITER") {
                    Ok(d) => d,
                    Err(e) => return Some(Err(e)),
                },
                quote,
                null: null.unwrap_or_default().into_bytes(),
                header,
            }
        }
        // In text format a value equal to the NULL string is written as it
        // is, so masking cannot tell it from a NULL, and the client could
        // (`NULL '078-05-1120'` shows which rows hold that value). The
        // default `\N` cannot be a value: its backslash would be doubled.
        "text" if null.as_deref().is_some_and(|n| n != "\\N") => {
            return Some(Err(
                "COPY text format with a NULL string other than \\N (a value equal to it would pass as a NULL) of a masked result".into(),
            ))
        }
        "text" if !header => CopyForm::Text {
            delimiter: match one_byte(&delimiter, b'\t', "DELIMITER") {
                Ok(d) => d,
                Err(e) => return Some(Err(e)),
            },
            null: null.unwrap_or_else(|| "\\N".into()).into_bytes(),
        },
        other => {
            return Some(Err(format!(
                "COPY FORMAT {other} (with these options) of a masked result"
            )))
        }
    };
    // The table's column types, in the order COPY writes them.
    let types = c
        .relation
        .as_ref()
        .filter(|_| c.query.is_none())
        .and_then(|rv| {
            let schema = if rv.schemaname.is_empty() {
                cat.relation_schemas(&rv.relname)
                    .filter(|s| s.len() == 1)?
                    .first()?
                    .to_string()
            } else {
                rv.schemaname.clone()
            };
            let cols = cat.columns(&schema, &rv.relname)?;
            let wanted: Vec<&str> = c
                .attlist
                .iter()
                .filter_map(|a| match a.node.as_ref() {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                })
                .collect();
            if wanted.is_empty() {
                Some(cols.iter().map(|c| c.type_oid).collect())
            } else {
                wanted
                    .iter()
                    .map(|w| cols.iter().find(|c| c.name == *w).map(|c| c.type_oid))
                    .collect()
            }
        })
        .unwrap_or_default();
    Some(Ok(Copy { form, types }))
}

/// The column types of a `COPY (query) TO`, which sends no
/// RowDescription: a column that is a text column as stored keeps its
/// type (its mask keeps the value's shape); any other is unknown (0), and
/// a masked value of it becomes NULL.
fn query_copy_types(plan: &RowPlan, cat: &Catalog) -> Vec<u32> {
    const TEXT_LIKE: [u32; 4] = [25, 1043, 1042, 19];
    plan.columns
        .iter()
        .map(|c| {
            let [source] = c.sources.as_slice() else {
                return 0;
            };
            let mut parts = source.splitn(3, '.');
            let (Some(schema), Some(table), Some(column)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return 0;
            };
            cat.columns(schema, table)
                .and_then(|cols| cols.iter().find(|col| col.name == column))
                .map(|col| col.type_oid)
                .filter(|t| !c.mask_nulls && TEXT_LIKE.contains(t))
                .unwrap_or(0)
        })
        .collect()
}

/// A rewriter, for the column types and formats it was made for.
#[derive(Debug)]
struct Built {
    types: Vec<u32>,
    formats: Vec<Format>,
    /// The described columns and formats of the result it was last used
    /// for (held, so the pointer is not reused): a row of the same result
    /// finds it without comparing each column.
    seen: Option<(Columns, Formats)>,
    rows: Rows,
}

/// The rows of one masked statement.
#[derive(Debug)]
struct MaskRows {
    plan: RowPlan,
    key: Option<HashKey>,
    copy: Option<Copy>,
    /// The rewriter for the last types and formats seen (a prepared
    /// statement may be bound with other formats each time).
    built: Mutex<Option<Built>>,
    /// A CSV COPY with HEADER: its first line is the column names.
    header_left: AtomicBool,
}

fn fatal(why: impl std::fmt::Display) -> PgError {
    PgError::fatal(
        sqlstate::INTERNAL_ERROR,
        format!("pgward: a masked result could not be rewritten: {why}"),
    )
}

impl MaskRows {
    /// The rewriter for the types and formats `n` columns have (`type_of`,
    /// `format_of`), in `built`: made once, and again only when they
    /// change (a prepared statement bound with other formats), so a row
    /// costs no allocation.
    fn rows<'a>(
        &self,
        built: &'a mut Option<Built>,
        n: usize,
        type_of: impl Fn(usize) -> u32,
        format_of: impl Fn(usize) -> Format,
    ) -> Result<&'a mut Built, PgError> {
        let same = matches!(&*built, Some(b)
            if b.types.len() == n
                && (0..n).all(|i| b.types[i] == type_of(i) && b.formats[i] == format_of(i)));
        if !same {
            let types: Vec<u32> = (0..n).map(&type_of).collect();
            let formats: Vec<Format> = (0..n).map(&format_of).collect();
            let rows = Rows::new(&self.plan, &types, &formats, self.key.clone()).map_err(fatal)?;
            *built = Some(Built {
                types,
                formats,
                seen: None,
                rows,
            });
        }
        built.as_mut().ok_or_else(|| fatal("no rewriter"))
    }
}

impl RowRewriter for MaskRows {
    fn scrub(&self, fields: &mut Vec<(u8, String)>) {
        super::scrub::scrub_fields(fields);
    }

    fn data_row(&self, a: &Answering, row: &[u8], out: &mut BytesMut) -> Result<(), PgError> {
        // Without the columns' types no masked value can be made right:
        // the row is refused, never passed.
        let columns = a
            .columns
            .as_ref()
            .ok_or_else(|| fatal("the result's columns were not described to pgward"))?;
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let known = matches!(&*built, Some(Built { seen: Some((c, f)), .. })
            if Arc::ptr_eq(c, columns) && *f == a.formats);
        if !known {
            let type_of = |i: usize| columns[i].type_oid;
            let format_of = |i: usize| Format::from_code(a.formats.of(columns, i).unwrap_or(0));
            let b = self.rows(&mut built, columns.len(), type_of, format_of)?;
            b.seen = Some((columns.clone(), a.formats.clone()));
        }
        let b = built.as_mut().ok_or_else(|| fatal("no rewriter"))?;
        // Written straight into the client's buffer; the relay cuts what
        // was written when this fails.
        b.rows.put_data_row(row, out).map_err(fatal)
    }

    fn copy_data(&self, _a: &Answering, data: &[u8], out: &mut BytesMut) -> Result<(), PgError> {
        let Some(copy) = &self.copy else {
            return Err(fatal("COPY data of a statement that is not COPY TO"));
        };
        let n = self.plan.columns.len();
        let type_of = |i: usize| copy.types.get(i).copied().unwrap_or(0);
        let format = match copy.form {
            CopyForm::Binary => Format::Binary,
            _ => Format::Text,
        };
        if let CopyForm::Csv { header: true, .. } = copy.form {
            if self.header_left.swap(false, Ordering::Relaxed) {
                out.extend_from_slice(data);
                return Ok(());
            }
        }
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let rows = &self.rows(&mut built, n, type_of, |_| format)?.rows;
        match &copy.form {
            CopyForm::Binary => rows.put_copy_binary(data, out),
            CopyForm::Text { delimiter, null } => rows.put_copy_text(data, *delimiter, null, out),
            CopyForm::Csv {
                delimiter,
                quote,
                null,
                ..
            } => rows.put_copy_csv(data, *delimiter, *quote, null, out),
        }
        .map_err(fatal)
    }
}
