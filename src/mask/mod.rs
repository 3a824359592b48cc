//! Column masking (issue 30): which columns a role sees masked
//! (`[role.NAME.mask]`), where each output column of a statement comes from
//! (`lineage`), and the rewrite of result rows and error texts
//! (`rewrite`, `scrub`). See docs/masking.md.
//!
//! The relay calls, per statement, `lineage::plan_statement` (or
//! `plan_sql`), then for each DataRow of a statement planned `Rows`,
//! `rewrite::rewrite_data_row`; for COPY TO data, `rewrite::rewrite_copy_*`;
//! for an ErrorResponse/NoticeResponse of a statement that read a masked
//! table, `scrub::scrub_fields`.

pub mod func;
pub mod lineage;
pub mod relay;
pub mod rewrite;
pub mod scrub;

pub use func::{HashKey, MaskFn};
pub use lineage::{plan_sql, plan_statement, ColumnPlan, MaskSet, RowPlan, StatementPlan};

/// One rule of `[role.NAME.mask]`: `"schema.table.column" = "mask"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMask {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub func: MaskFn,
    /// "rules/roles.toml:12"
    pub source: String,
    pub line: usize,
}

impl ColumnMask {
    /// Parses a rule; `key` is `schema.table.column` (names as PostgreSQL
    /// stores them: lower case unless created quoted).
    pub fn parse(key: &str, value: &str, file: &str, line: usize) -> Result<ColumnMask, String> {
        let parts: Vec<&str> = key.split('.').collect();
        let [schema, table, column] = parts.as_slice() else {
            return Err(
                "name the column as \"schema.table.column\", such as \"public.customers.email\""
                    .into(),
            );
        };
        if [schema, table, column].iter().any(|p| p.is_empty()) {
            return Err("schema, table and column must each be non-empty".into());
        }
        Ok(ColumnMask {
            schema: (*schema).to_owned(),
            table: (*table).to_owned(),
            column: (*column).to_owned(),
            func: MaskFn::parse(value)?,
            source: format!("{file}:{line}"),
            line,
        })
    }

    pub fn same_column(&self, other: &ColumnMask) -> bool {
        self.schema == other.schema && self.table == other.table && self.column == other.column
    }

    /// `schema.table.column`
    pub fn key(&self) -> String {
        format!("{}.{}.{}", self.schema, self.table, self.column)
    }
}

/// The masks of a role whose columns the live catalog lacks, each as
/// `file:line: role "r": mask "key": ...` (for `pgward check`).
pub fn missing_columns(role: &crate::policy::Role, cat: &crate::policy::Catalog) -> Vec<String> {
    let mut out = Vec::new();
    for m in &role.masks {
        let why = match cat.columns(&m.schema, &m.table) {
            None => format!("table {}.{} is not in the catalog", m.schema, m.table),
            Some(cols) if !cols.iter().any(|c| c.name == m.column) => {
                format!(
                    "table {}.{} has no column {:?}",
                    m.schema, m.table, m.column
                )
            }
            Some(_) => continue,
        };
        out.push(format!(
            "{}: role {:?}: mask {:?}: {why}",
            m.source,
            role.name,
            m.key()
        ));
    }
    out
}

#[cfg(test)]
mod tests;
