//! What a result's rows are, and the seam through which they may be
//! rewritten on their way to the client.
//!
//! Every response owed to the client that produces rows (each statement
//! of a Query, an Execute) knows its statement (`state::Answering`): the
//! columns of its RowDescription, decoded once when the server sends it
//! (for an Execute, from the Describe of its portal or statement), and the
//! result formats its Bind asked for. A statement the guard decided
//! `Decision::Rewrite` carries a `RowPlan`: the relay then hands each of
//! its DataRow (and COPY TO STDOUT CopyData) messages to the plan's
//! `RowRewriter` and sends what it writes instead. Rows of every other
//! statement are relayed as the server sent them, untouched.

use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;

use super::state::Answering;
use crate::policy::{Catalog, Role, Statement};
use crate::protocol::{backend, PgError};

/// One column of a RowDescription, as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: Box<str>,
    /// The table it comes from (0: not a table's column).
    pub table_oid: u32,
    /// Its attribute number in that table (0: none).
    pub attnum: i16,
    pub type_oid: u32,
    pub typlen: i16,
    pub typmod: i32,
    /// 0 text, 1 binary; 0 (not yet known) in a Describe of a statement.
    pub format: i16,
}

/// The columns of a result, decoded once from its RowDescription.
pub type Columns = Arc<[Column]>;

/// Decodes a RowDescription; None when its body cannot be read whole.
pub fn decode_columns(d: &backend::RowDescription<'_>) -> Option<Columns> {
    let columns = d.columns()?;
    Some(
        columns
            .into_iter()
            .map(|c| Column {
                name: c.name.into(),
                table_oid: c.table_oid,
                attnum: c.column,
                type_oid: c.type_oid,
                typlen: c.type_len,
                typmod: c.type_modifier,
                format: c.format,
            })
            .collect(),
    )
}

/// The result formats a Bind asked for, as the protocol says them: none
/// (every column text), one for every column, or one per column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Formats {
    /// Not from a Bind: each column's own `format` says (a simple Query's
    /// rows, text unless a binary cursor's FETCH).
    #[default]
    Described,
    /// One format for every column (none given: 0, text).
    All(i16),
    /// One per column.
    Each(Arc<[i16]>),
}

impl Formats {
    /// From a Bind's result format codes.
    pub fn from_codes(codes: &[i16]) -> Formats {
        match codes {
            [] => Formats::All(0),
            [one] => Formats::All(*one),
            many => Formats::Each(many.into()),
        }
    }

    /// The format of column `i` of `columns` (None: out of range).
    pub fn of(&self, columns: &[Column], i: usize) -> Option<i16> {
        match self {
            Formats::Described => columns.get(i).map(|c| c.format),
            Formats::All(f) => (i < columns.len()).then_some(*f),
            Formats::Each(v) => v.get(i).copied(),
        }
    }
}

/// Rewrites the rows of one statement's result. It is handed each
/// DataRow's body (after the length) and appends the body of the row the
/// client gets to `out`; the relay frames it. What it cannot rewrite it
/// refuses: the session then ends (FATAL), since a row half-sent cannot be
/// taken back and a row passed untouched would show what it must not.
pub trait RowRewriter: Send + Sync + fmt::Debug {
    /// A DataRow of the result `answering` describes (its columns, when
    /// the server described them to pgward, and its formats).
    fn data_row(
        &self,
        answering: &Answering,
        row: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), PgError>;

    /// Whether rows pass untouched (the statement's errors are still
    /// scrubbed): DataRows then skip `data_row`.
    fn passes_rows(&self) -> bool {
        false
    }

    /// Rewrites the text fields of an ErrorResponse or NoticeResponse
    /// that answers the statement: (field code, text). Default: as sent.
    fn scrub(&self, _fields: &mut Vec<(u8, String)>) {}

    /// A CopyData of a COPY TO STDOUT of the statement. By default refused:
    /// a rewriter must say how it rewrites COPY data.
    fn copy_data(
        &self,
        _answering: &Answering,
        _data: &[u8],
        _out: &mut BytesMut,
    ) -> Result<(), PgError> {
        Err(PgError::fatal(
            crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
            "pgward: this statement's rows must be rewritten, and COPY data cannot be",
        ))
    }
}

/// The rewriters of one message's statements: one per statement of a
/// Query (None: that statement's rows pass untouched), one for a
/// prepared statement.
#[derive(Debug, Clone)]
pub struct RowPlan(pub Box<[Option<Arc<dyn RowRewriter>>]>);

impl RowPlan {
    /// The rewriter of statement `i` of the message, if any.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Arc<dyn RowRewriter>> {
        self.0.get(i)?.as_ref()
    }

    /// A plan for one statement.
    pub fn one(r: Arc<dyn RowRewriter>) -> Arc<RowPlan> {
        Arc::new(RowPlan(Box::new([Some(r)])))
    }
}

/// Decides which statements' rows are rewritten: asked by the guard for
/// each statement it lets through (a Query's, a Parse's), with the role
/// it was judged for. Installed in the guard's context; none by default.
pub trait RowPlanner: Send + Sync {
    /// What becomes of `statement`'s rows for `role`, judged against the
    /// session's catalog; an error refuses the statement.
    /// Whether it may rewrite rows of `role`'s statements at all: when
    /// not, the session does not decode result columns for it.
    fn rewrites_for(&self, _role: &Role) -> bool {
        true
    }

    fn plan(
        &self,
        role: &Role,
        statement: &Statement,
        cat: &Arc<Catalog>,
    ) -> Result<RowDecision, PgError>;
}

/// A planner's answer for one statement.
#[derive(Debug, Clone)]
pub enum RowDecision {
    /// Its rows (if any) pass as the server sends them.
    Pass,
    /// Its rows are rewritten.
    Rewrite(Arc<dyn RowRewriter>),
    /// `DECLARE name CURSOR`: its own answer has no rows; a later `FETCH`
    /// of `name` gets this rewriter (None: the cursor's rows pass).
    Declare(String, Option<Arc<dyn RowRewriter>>),
    /// `FETCH`/`MOVE` of cursor `name`: its rows are the cursor's.
    Fetch(String),
}

/// Appends one DataRow message with the body `rewrite` writes to `out`,
/// framed: the length is filled in after.
pub fn write_rewritten(
    out: &mut BytesMut,
    tag: u8,
    rewrite: impl FnOnce(&mut BytesMut) -> Result<(), PgError>,
) -> Result<(), PgError> {
    use bytes::BufMut;
    let start = out.len();
    out.put_u8(tag);
    out.put_u32(0);
    if let Err(e) = rewrite(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - 1;
    let Ok(len) = u32::try_from(len) else {
        out.truncate(start);
        return Err(PgError::fatal(
            crate::protocol::sqlstate::PROGRAM_LIMIT_EXCEEDED,
            "pgward: a rewritten row is too large",
        ));
    };
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The fields of a DataRow body: None for NULL; None overall when the
/// body cannot be read whole.
pub fn data_row_fields(row: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let n = u16::from_be_bytes(row.get(..2)?.try_into().ok()?) as usize;
    let mut at = 2;
    let mut fields = Vec::with_capacity(n.min(1664));
    for _ in 0..n {
        let len = i32::from_be_bytes(row.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        match usize::try_from(len) {
            Ok(len) => {
                fields.push(Some(row.get(at..at + len)?));
                at += len;
            }
            Err(_) => fields.push(None),
        }
    }
    (at == row.len()).then_some(fields)
}

/// Appends a DataRow body of `fields` to `out`.
pub fn put_data_row(out: &mut BytesMut, fields: &[Option<&[u8]>]) -> Result<(), PgError> {
    use bytes::BufMut;
    let too_large = || {
        PgError::fatal(
            crate::protocol::sqlstate::PROGRAM_LIMIT_EXCEEDED,
            "pgward: a rewritten row is too large",
        )
    };
    out.put_u16(u16::try_from(fields.len()).map_err(|_| too_large())?);
    for f in fields {
        match f {
            Some(b) => {
                out.put_i32(i32::try_from(b.len()).map_err(|_| too_large())?);
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    Ok(())
}

/// The fields of an ErrorResponse or NoticeResponse body; None when it is
/// not one (a field without its terminator, text that is not UTF-8).
pub fn message_fields(body: &[u8]) -> Option<Vec<(u8, String)>> {
    let mut fields = Vec::new();
    let mut at = 0;
    loop {
        let code = *body.get(at)?;
        if code == 0 {
            return (at + 1 == body.len()).then_some(fields);
        }
        let end = at + 1 + body.get(at + 1..)?.iter().position(|&b| b == 0)?;
        let text = std::str::from_utf8(&body[at + 1..end]).ok()?;
        fields.push((code, text.to_owned()));
        at = end + 1;
    }
}

/// Appends an ErrorResponse or NoticeResponse (`tag`) of these fields.
pub fn put_fields(out: &mut BytesMut, tag: u8, fields: &[(u8, String)]) {
    use bytes::BufMut;
    let start = out.len();
    out.put_u8(tag);
    out.put_u32(0);
    for (code, text) in fields {
        out.put_u8(*code);
        // A NUL would end the field early: the server never sends one.
        out.extend_from_slice(text.replace('\0', "").as_bytes());
        out.put_u8(0);
    }
    out.put_u8(0);
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rows_read_and_write_back_the_same() {
        let row = b"\0\x03\0\0\0\x02ab\xff\xff\xff\xff\0\0\0\0";
        let fields = data_row_fields(row).unwrap();
        assert_eq!(fields, vec![Some(&b"ab"[..]), None, Some(&b""[..])]);
        let mut out = BytesMut::new();
        put_data_row(&mut out, &fields).unwrap();
        assert_eq!(&out[..], &row[..]);
        // Short, long, or a length past the end: not a row.
        assert!(data_row_fields(b"\0\x01\0\0\0\x05ab").is_none());
        assert!(data_row_fields(b"\0\x01\0\0\0\x01ab").is_none());
        assert!(data_row_fields(b"\0").is_none());
    }

    #[test]
    fn rewritten_rows_are_framed_and_failures_leave_nothing() {
        let mut out = BytesMut::from(&b"x"[..]);
        write_rewritten(&mut out, b'D', |o| put_data_row(o, &[Some(b"hi")])).unwrap();
        assert_eq!(&out[..], b"xD\0\0\0\x0c\0\x01\0\0\0\x02hi");
        let err = write_rewritten(&mut out, b'D', |o| {
            o.extend_from_slice(b"partial");
            Err(PgError::fatal("XX000", "no"))
        });
        assert!(err.is_err());
        assert_eq!(out.len(), 14);
    }

    #[test]
    fn formats_follow_the_protocol() {
        let cols: Columns = (0..3)
            .map(|i| Column {
                name: "c".into(),
                table_oid: 0,
                attnum: 0,
                type_oid: 25,
                typlen: -1,
                typmod: -1,
                format: i % 2,
            })
            .collect();
        assert_eq!(Formats::Described.of(&cols, 1), Some(1));
        assert_eq!(Formats::from_codes(&[]).of(&cols, 2), Some(0));
        assert_eq!(Formats::from_codes(&[1]).of(&cols, 0), Some(1));
        assert_eq!(Formats::from_codes(&[1]).of(&cols, 3), None);
        assert_eq!(Formats::from_codes(&[0, 1, 0]).of(&cols, 1), Some(1));
    }
}
