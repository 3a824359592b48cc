//! The row rewriter: given a statement's `RowPlan`, the type of each
//! column (RowDescription) and its format (text or binary, from Bind),
//! rewrites DataRow bodies and COPY TO rows. Unmasked columns are copied as
//! byte slices; NULL stays NULL (unless the plan masks NULLs too); a mask
//! gives a value valid for the column's type in its format, or NULL for a
//! type pgward has no value of.

use std::fmt;

use super::func::{HashKey, MaskFn};
use super::lineage::RowPlan;

/// A column's format code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    /// From the protocol's format code (0 text, 1 binary).
    pub fn from_code(code: i16) -> Format {
        if code == 1 {
            Format::Binary
        } else {
            Format::Text
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteError(pub String);

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "masking a row: {}", self.0)
    }
}

impl std::error::Error for RewriteError {}

#[derive(Debug, Clone)]
struct Col {
    mask: Option<MaskFn>,
    mask_nulls: bool,
    ty: u32,
    format: Format,
}

/// Rewrites the rows of one statement.
#[derive(Debug, Clone)]
pub struct RowRewriter {
    cols: Vec<Col>,
    key: Option<HashKey>,
}

/// Type OIDs (pg_type.dat; stable across releases).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// The element type of an array type pgward writes empty arrays of.
fn array_element(ty: u32) -> Option<u32> {
    Some(match ty {
        1000 => oid::BOOL,
        1001 => oid::BYTEA,
        1002 => oid::CHAR,
        1003 => oid::NAME,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1009 => oid::TEXT,
        1014 => oid::BPCHAR,
        1015 => oid::VARCHAR,
        1016 => oid::INT8,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1028 => oid::OID,
        199 => oid::JSON,
        1115 => oid::TIMESTAMP,
        1182 => oid::DATE,
        1183 => oid::TIME,
        1185 => oid::TIMESTAMPTZ,
        1187 => oid::INTERVAL,
        1231 => oid::NUMERIC,
        2951 => oid::UUID,
        3807 => oid::JSONB,
        _ => return None,
    })
}

fn is_text(ty: u32) -> bool {
    matches!(
        ty,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN
    )
}

/// The constant `redact` and `default` show, per type and format; None:
/// NULL (a type pgward has no value of).
fn constant(ty: u32, format: Format) -> Option<Vec<u8>> {
    // (binary send form, text output form)
    let (bin, text): (&[u8], &str) = match ty {
        _ if is_text(ty) => (b"***", "***"),
        oid::CHAR => (b"*", "*"),
        oid::BOOL => (&[0], "f"),
        oid::INT2 => (&[0; 2], "0"),
        oid::INT4 | oid::OID | oid::FLOAT4 => (&[0; 4], "0"),
        // NUMERIC: ndigits 0, weight 0, sign +, dscale 0.
        oid::INT8 | oid::FLOAT8 | oid::NUMERIC => (&[0; 8], "0"),
        // PostgreSQL's epoch: 0 is 2000-01-01 (midnight).
        oid::DATE => (&[0; 4], "2000-01-01"),
        oid::TIMESTAMP => (&[0; 8], "2000-01-01 00:00:00"),
        oid::TIMESTAMPTZ => (&[0; 8], "2000-01-01 00:00:00+00"),
        oid::TIME => (&[0; 8], "00:00:00"),
        oid::TIMETZ => (&[0; 12], "00:00:00+00"),
        oid::INTERVAL => (&[0; 16], "00:00:00"),
        oid::JSON => (b"{}", "{}"),
        oid::JSONB => (&[1, b'{', b'}'], "{}"),
        oid::UUID => (&[0; 16], "00000000-0000-0000-0000-000000000000"),
        oid::BYTEA => (&[], "\\x"),
        // An empty array: no dimensions, no NULLs, of the element type.
        _ => {
            let elem = array_element(ty)?;
            return Some(match format {
                Format::Binary => [[0u8; 8].as_slice(), &elem.to_be_bytes()].concat(),
                Format::Text => b"{}".to_vec(),
            });
        }
    };
    Some(match format {
        Format::Binary => bin.to_vec(),
        Format::Text => text.as_bytes().to_vec(),
    })
}

/// `partial(first, last)` of a text: the first and last characters kept,
/// letters and digits between them starred, punctuation kept. A value too
/// short to hide anything is starred whole.
pub fn partial(value: &[u8], first: u16, last: u16) -> Vec<u8> {
    let (first, last) = (usize::from(first), usize::from(last));
    if value.is_ascii() {
        // A byte is a character: no decoding (most values, and the
        // per-row cost of masking large results).
        let n = value.len();
        let shown = first + last < n;
        return value
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (shown && (i < first || i >= n - last)) || !b.is_ascii_alphanumeric() {
                    b
                } else {
                    b'*'
                }
            })
            .collect();
    }
    let Ok(s) = std::str::from_utf8(value) else {
        return b"***".to_vec();
    };
    let chars: Vec<char> = s.chars().collect();
    let keep = |i: usize| first + last < chars.len() && (i < first || i >= chars.len() - last);
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if keep(i) || !c.is_alphanumeric() {
                *c
            } else {
                '*'
            }
        })
        .collect::<String>()
        .into_bytes()
}

/// `email`: the first character of the local part and the domain.
pub fn email(value: &[u8]) -> Vec<u8> {
    let Ok(s) = std::str::from_utf8(value) else {
        return b"***".to_vec();
    };
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            let mut out = String::new();
            if let Some(c) = local.chars().next().filter(|_| local.chars().count() > 1) {
                out.push(c);
            }
            out.push_str("***@");
            out.push_str(domain);
            out.into_bytes()
        }
        None => b"***".to_vec(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RowRewriter {
    /// One rewriter per statement (per portal): `types` from its
    /// RowDescription, `formats` its result formats (one for all, or one
    /// per column, as Bind gives them; empty: text).
    pub fn new(
        plan: &RowPlan,
        types: &[u32],
        formats: &[Format],
        key: Option<HashKey>,
    ) -> Result<RowRewriter, RewriteError> {
        if plan.columns.len() != types.len() {
            return Err(RewriteError(format!(
                "the statement's plan has {} columns and its RowDescription {}",
                plan.columns.len(),
                types.len()
            )));
        }
        let format = |i: usize| match formats {
            [] => Format::Text,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(Format::Text),
        };
        Ok(RowRewriter {
            cols: plan
                .columns
                .iter()
                .zip(types)
                .enumerate()
                .map(|(i, (c, ty))| Col {
                    mask: c.mask,
                    mask_nulls: c.mask_nulls,
                    ty: *ty,
                    format: format(i),
                })
                .collect(),
            key,
        })
    }

    /// The masked value of a column (None: NULL), or Err(()) when the
    /// value passes as it is.
    fn mask(&self, c: &Col, value: Option<&[u8]>) -> Result<Option<Vec<u8>>, ()> {
        let Some(m) = c.mask else { return Err(()) };
        let Some(v) = value else {
            if c.mask_nulls && m != MaskFn::Null {
                return Ok(constant(c.ty, c.format));
            }
            return Err(());
        };
        Ok(match m {
            MaskFn::Null => None,
            MaskFn::Redact | MaskFn::Default => constant(c.ty, c.format),
            MaskFn::Partial { first, last } if is_text(c.ty) => Some(partial(v, first, last)),
            MaskFn::Email if is_text(c.ty) => Some(email(v)),
            MaskFn::Partial { .. } | MaskFn::Email => constant(c.ty, c.format),
            MaskFn::Hash => self.hash(c, v),
        })
    }

    /// `hash`: the HMAC of the value's text form (so text and binary
    /// results hash alike), shown in the column's type.
    fn hash(&self, c: &Col, v: &[u8]) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let bin = c.format == Format::Binary;
        let canonical: Vec<u8> = match (c.ty, bin) {
            (_, false) => v.to_vec(),
            (t, true) if is_text(t) => v.to_vec(),
            (oid::INT2, true) => i16::from_be_bytes(v.try_into().ok()?)
                .to_string()
                .into_bytes(),
            (oid::INT4, true) => i32::from_be_bytes(v.try_into().ok()?)
                .to_string()
                .into_bytes(),
            (oid::OID, true) => u32::from_be_bytes(v.try_into().ok()?)
                .to_string()
                .into_bytes(),
            (oid::INT8, true) => i64::from_be_bytes(v.try_into().ok()?)
                .to_string()
                .into_bytes(),
            (oid::UUID, true) => {
                let h = hex(v);
                if h.len() != 32 {
                    return None;
                }
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
                .into_bytes()
            }
            (oid::BYTEA, true) => format!("\\x{}", hex(v)).into_bytes(),
            _ => return None,
        };
        let mac = key.mac(&canonical);
        let first = |n: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[8 - n..].copy_from_slice(&mac[..n]);
            b
        };
        Some(match c.ty {
            t if is_text(t) => hex(&mac[..16]).into_bytes(),
            oid::INT2 => {
                let x = i16::from_be_bytes([mac[0], mac[1]]);
                if bin {
                    x.to_be_bytes().to_vec()
                } else {
                    x.to_string().into_bytes()
                }
            }
            oid::INT4 => {
                let x = i32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                if bin {
                    x.to_be_bytes().to_vec()
                } else {
                    x.to_string().into_bytes()
                }
            }
            oid::OID => {
                let x = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                if bin {
                    x.to_be_bytes().to_vec()
                } else {
                    x.to_string().into_bytes()
                }
            }
            oid::INT8 => {
                let x = i64::from_be_bytes(first(8));
                if bin {
                    x.to_be_bytes().to_vec()
                } else {
                    x.to_string().into_bytes()
                }
            }
            oid::UUID => {
                if bin {
                    mac[..16].to_vec()
                } else {
                    let h = hex(&mac[..16]);
                    format!(
                        "{}-{}-{}-{}-{}",
                        &h[..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..]
                    )
                    .into_bytes()
                }
            }
            oid::BYTEA => {
                if bin {
                    mac.to_vec()
                } else {
                    format!("\\x{}", hex(&mac)).into_bytes()
                }
            }
            _ => return None,
        })
    }

    /// Rewrites one DataRow body (the message without its 'D' and
    /// length) into `out` (cleared first).
    pub fn rewrite_data_row(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        out.clear();
        let mut r = Reader { buf: body, at: 0 };
        let n = r.i16()?;
        if usize::try_from(n).ok() != Some(self.cols.len()) {
            return Err(RewriteError(format!(
                "a DataRow has {n} columns, the plan {}",
                self.cols.len()
            )));
        }
        out.reserve(body.len() + 16);
        out.extend_from_slice(&n.to_be_bytes());
        self.fields(&mut r, out)?;
        if r.at != body.len() {
            return Err(RewriteError(
                "a DataRow has bytes after its last column".into(),
            ));
        }
        Ok(())
    }

    /// Length-prefixed fields (DataRow and binary COPY share the layout).
    fn fields(&self, r: &mut Reader, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        for c in &self.cols {
            let start = r.at;
            let len = r.i32()?;
            let value = if len < 0 {
                None
            } else {
                Some(r.take(usize::try_from(len).unwrap_or(0))?)
            };
            match self.mask(c, value) {
                Err(()) => out.extend_from_slice(&r.buf[start..r.at]),
                Ok(None) => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Ok(Some(v)) => {
                    let len = i32::try_from(v.len())
                        .map_err(|_| RewriteError("a masked value too long".into()))?;
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&v);
                }
            }
        }
        Ok(())
    }

    /// Rewrites one CopyData payload of `COPY ... TO STDOUT (FORMAT
    /// binary)`: the file header when it starts with one, then tuples,
    /// then the trailer, each where it stands.
    pub fn rewrite_copy_binary(&self, data: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
        out.clear();
        let mut r = Reader { buf: data, at: 0 };
        if data.starts_with(SIGNATURE) {
            r.at = SIGNATURE.len();
            let _flags = r.i32()?;
            let ext = r.i32()?;
            r.take(usize::try_from(ext).unwrap_or(usize::MAX))?;
            out.extend_from_slice(&data[..r.at]);
        }
        while r.at < data.len() {
            let n = r.i16()?;
            out.extend_from_slice(&n.to_be_bytes());
            if n == -1 {
                continue;
            }
            if usize::try_from(n).ok() != Some(self.cols.len()) {
                return Err(RewriteError(format!(
                    "a COPY tuple has {n} fields, the plan {}",
                    self.cols.len()
                )));
            }
            self.fields(&mut r, out)?;
        }
        Ok(())
    }

    /// Rewrites one line of `COPY ... TO STDOUT` in text format (with its
    /// newline, if any): fields split at unescaped `delimiter`, `null` as
    /// the NULL marker (`\N` by default). Text COPY is always text, whatever
    /// the column types: a binary-format plan column reads as text here.
    pub fn rewrite_copy_text(
        &self,
        line: &[u8],
        delimiter: u8,
        null: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        out.clear();
        let (body, nl) = match line.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (line, false),
        };
        let mut fields = Vec::with_capacity(self.cols.len());
        let mut start = 0;
        let mut i = 0;
        // Jumps to the next backslash or delimiter: most bytes are neither.
        while let Some(at) = memchr::memchr2(b'\\', delimiter, body.get(i..).unwrap_or_default()) {
            i += at;
            if body[i] == b'\\' {
                i += 2;
                continue;
            }
            fields.push(&body[start..i]);
            i += 1;
            start = i;
        }
        fields.push(&body[start.min(body.len())..]);
        if fields.len() != self.cols.len() {
            return Err(RewriteError(format!(
                "a COPY line has {} fields, the plan {}",
                fields.len(),
                self.cols.len()
            )));
        }
        for (k, (c, f)) in self.cols.iter().zip(fields).enumerate() {
            if k > 0 {
                out.push(delimiter);
            }
            if c.mask.is_none() {
                // Passes as sent: not unescaped only to be escaped again.
                out.extend_from_slice(f);
                continue;
            }
            let c = Col {
                format: Format::Text,
                ..c.clone()
            };
            // Most values hold no escape: read in place.
            let value: Option<std::borrow::Cow<[u8]>> = if f == null {
                None
            } else if f.contains(&b'\\') {
                Some(unescape_text(f).into())
            } else {
                Some(f.into())
            };
            match self.mask(&c, value.as_deref()) {
                Err(()) => out.extend_from_slice(f),
                Ok(None) => out.extend_from_slice(null),
                Ok(Some(v)) => escape_text(&v, delimiter, out),
            }
        }
        if nl {
            out.push(b'\n');
        }
        Ok(())
    }

    /// Rewrites one CSV record of `COPY ... TO STDOUT (FORMAT csv)`:
    /// `quote` (default `"`), NULL an unquoted `null` (default empty).
    /// A record whose quoted field holds a newline arrives as one
    /// CopyData message too.
    pub fn rewrite_copy_csv(
        &self,
        line: &[u8],
        delimiter: u8,
        quote: u8,
        null: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        out.clear();
        let (body, nl) = match line.strip_suffix(b"\n") {
            Some(b) => (b.strip_suffix(b"\r").unwrap_or(b), true),
            None => (line, false),
        };
        // (raw bytes, value: None for NULL)
        let mut fields: Vec<(&[u8], Option<Vec<u8>>)> = Vec::new();
        let mut i = 0;
        loop {
            let start = i;
            let mut value = Vec::new();
            let mut quoted = false;
            while i < body.len() && body[i] != delimiter {
                if body[i] == quote {
                    quoted = true;
                    i += 1;
                    loop {
                        match body.get(i) {
                            None => return Err(RewriteError("an unterminated CSV quote".into())),
                            Some(&b) if b == quote => {
                                if body.get(i + 1) == Some(&quote) {
                                    value.push(quote);
                                    i += 2;
                                } else {
                                    i += 1;
                                    break;
                                }
                            }
                            Some(&b) => {
                                value.push(b);
                                i += 1;
                            }
                        }
                    }
                } else {
                    value.push(body[i]);
                    i += 1;
                }
            }
            let raw = &body[start..i];
            let v = if !quoted && raw == null {
                None
            } else {
                Some(value)
            };
            fields.push((raw, v));
            if i >= body.len() {
                break;
            }
            i += 1;
        }
        if fields.len() != self.cols.len() {
            return Err(RewriteError(format!(
                "a CSV record has {} fields, the plan {}",
                fields.len(),
                self.cols.len()
            )));
        }
        for (k, (c, (raw, v))) in self.cols.iter().zip(fields).enumerate() {
            if k > 0 {
                out.push(delimiter);
            }
            let c = Col {
                format: Format::Text,
                ..c.clone()
            };
            match self.mask(&c, v.as_deref()) {
                Err(()) => out.extend_from_slice(raw),
                Ok(None) => out.extend_from_slice(null),
                Ok(Some(v)) => {
                    out.push(quote);
                    for b in v {
                        if b == quote {
                            out.push(quote);
                        }
                        out.push(b);
                    }
                    out.push(quote);
                }
            }
        }
        if nl {
            out.push(b'\n');
        }
        Ok(())
    }
}

/// COPY text format's backslash escapes, undone.
fn unescape_text(f: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        if f[i] == b'\\' && i + 1 < f.len() {
            v.push(match f[i + 1] {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'b' => 8,
                b'f' => 12,
                b'v' => 11,
                other => other,
            });
            i += 2;
        } else {
            v.push(f[i]);
            i += 1;
        }
    }
    v
}

fn escape_text(v: &[u8], delimiter: u8, out: &mut Vec<u8>) {
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ if b == delimiter => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RewriteError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| RewriteError("a row ends inside a value".into()))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn i16(&mut self) -> Result<i16, RewriteError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, RewriteError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::lineage::ColumnPlan;
    use postgres_protocol::types as pt;
    use tokio_postgres::types::{FromSql, Type};

    fn col(mask: Option<MaskFn>) -> ColumnPlan {
        ColumnPlan {
            name: "c".into(),
            sources: Vec::new(),
            mask,
            mask_nulls: false,
        }
    }

    fn key() -> HashKey {
        HashKey::new(b"a test key of enough bytes").unwrap()
    }

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    fn fields(body: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut r = Reader { buf: body, at: 0 };
        let n = r.i16().unwrap();
        (0..n)
            .map(|_| {
                let len = r.i32().unwrap();
                (len >= 0).then(|| r.take(len as usize).unwrap().to_vec())
            })
            .collect()
    }

    fn one(mask: MaskFn, ty: u32, format: Format, value: Option<&[u8]>) -> Option<Vec<u8>> {
        let plan = RowPlan {
            columns: vec![col(Some(mask))],
        };
        let rw = RowRewriter::new(&plan, &[ty], &[format], Some(key())).unwrap();
        let mut out = Vec::new();
        rw.rewrite_data_row(&row(&[value]), &mut out).unwrap();
        fields(&out).remove(0)
    }

    #[test]
    fn partial_keeps_its_ends_and_punctuation_in_ascii_and_beyond() {
        let p = |v: &str, f, l| String::from_utf8(partial(v.as_bytes(), f, l)).unwrap();
        assert_eq!(p("078-05-1120", 0, 4), "***-**-1120");
        assert_eq!(p("078-05-1120", 3, 0), "078-**-****");
        // Too short to hide anything: starred whole.
        assert_eq!(p("ab", 1, 1), "**");
        assert_eq!(p("a-b", 0, 0), "*-*");
        assert_eq!(p("", 0, 4), "");
        // Characters, not bytes, beyond ASCII.
        assert_eq!(p("héllo wörld", 1, 1), "h**** ****d");
        assert_eq!(p("ñandú", 0, 2), "***dú");
    }

    #[test]
    fn a_row_is_masked_where_planned_and_copied_elsewhere() {
        let plan = RowPlan {
            columns: vec![
                col(None),
                col(Some(MaskFn::Email)),
                col(Some(MaskFn::Partial { first: 0, last: 4 })),
                col(Some(MaskFn::Redact)),
                col(None),
                col(Some(MaskFn::Null)),
            ],
        };
        let types = [
            oid::INT4,
            oid::TEXT,
            oid::TEXT,
            oid::INT8,
            oid::TEXT,
            oid::TEXT,
        ];
        let rw = RowRewriter::new(&plan, &types, &[Format::Binary], None).unwrap();
        let body = row(&[
            Some(&7i32.to_be_bytes()),
            Some(b"alice@example.com"),
            Some(b"078-05-1120"),
            Some(&123456789i64.to_be_bytes()),
            None,
            Some(b"secret"),
        ]);
        let mut out = Vec::new();
        rw.rewrite_data_row(&body, &mut out).unwrap();
        let f = fields(&out);
        assert_eq!(
            i32::from_sql(&Type::INT4, f[0].as_deref().unwrap()).unwrap(),
            7
        );
        assert_eq!(
            String::from_sql(&Type::TEXT, f[1].as_deref().unwrap()).unwrap(),
            "a***@example.com"
        );
        assert_eq!(
            String::from_sql(&Type::TEXT, f[2].as_deref().unwrap()).unwrap(),
            "***-**-1120"
        );
        assert_eq!(
            i64::from_sql(&Type::INT8, f[3].as_deref().unwrap()).unwrap(),
            0
        );
        assert_eq!(f[4], None);
        assert_eq!(f[5], None);
        for secret in [&b"alice@"[..], b"078-05", b"secret"] {
            assert!(!out.windows(secret.len()).any(|w| w == secret));
        }
        // Per-column formats, as Bind may give them; NULL stays NULL.
        let rw = RowRewriter::new(&plan, &types, &[Format::Text; 6], None).unwrap();
        let body = row(&[Some(b"7"), None, Some(b"12"), Some(b"99"), Some(b"x"), None]);
        rw.rewrite_data_row(&body, &mut out).unwrap();
        let f = fields(&out);
        assert_eq!(f[0].as_deref(), Some(&b"7"[..]));
        assert_eq!(f[1], None);
        assert_eq!(f[2].as_deref(), Some(&b"**"[..]), "too short to keep 4");
        assert_eq!(f[3].as_deref(), Some(&b"0"[..]));
        assert_eq!(f[4].as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn redact_gives_a_valid_value_of_each_type_in_binary() {
        let b = |ty: u32| {
            one(
                MaskFn::Redact,
                ty,
                Format::Binary,
                Some(b"\x01\x02\x03\x04\x05\x06\x07\x08"),
            )
            .unwrap()
        };
        assert!(!bool::from_sql(&Type::BOOL, &b(oid::BOOL)).unwrap());
        assert_eq!(i16::from_sql(&Type::INT2, &b(oid::INT2)).unwrap(), 0);
        assert_eq!(i32::from_sql(&Type::INT4, &b(oid::INT4)).unwrap(), 0);
        assert_eq!(i64::from_sql(&Type::INT8, &b(oid::INT8)).unwrap(), 0);
        assert_eq!(u32::from_sql(&Type::OID, &b(oid::OID)).unwrap(), 0);
        assert_eq!(f32::from_sql(&Type::FLOAT4, &b(oid::FLOAT4)).unwrap(), 0.0);
        assert_eq!(f64::from_sql(&Type::FLOAT8, &b(oid::FLOAT8)).unwrap(), 0.0);
        assert_eq!(String::from_sql(&Type::TEXT, &b(oid::TEXT)).unwrap(), "***");
        assert_eq!(
            String::from_sql(&Type::VARCHAR, &b(oid::VARCHAR)).unwrap(),
            "***"
        );
        assert_eq!(
            Vec::<u8>::from_sql(&Type::BYTEA, &b(oid::BYTEA)).unwrap(),
            b""
        );
        assert_eq!(pt::date_from_sql(&b(oid::DATE)).unwrap(), 0);
        assert_eq!(pt::timestamp_from_sql(&b(oid::TIMESTAMP)).unwrap(), 0);
        assert_eq!(pt::timestamp_from_sql(&b(oid::TIMESTAMPTZ)).unwrap(), 0);
        assert_eq!(pt::time_from_sql(&b(oid::TIME)).unwrap(), 0);
        assert_eq!(pt::uuid_from_sql(&b(oid::UUID)).unwrap(), [0; 16]);
        assert_eq!(b(oid::INTERVAL).len(), 16);
        assert_eq!(b(oid::TIMETZ).len(), 12);
        // numeric: ndigits 0, weight 0, sign +, dscale 0 (zero).
        assert_eq!(b(oid::NUMERIC), vec![0; 8]);
        let jsonb = b(oid::JSONB);
        assert_eq!(jsonb[0], 1, "jsonb binary version");
        assert!(serde_json::from_slice::<serde_json::Value>(&jsonb[1..])
            .unwrap()
            .is_object());
        assert!(serde_json::from_slice::<serde_json::Value>(&b(oid::JSON))
            .unwrap()
            .is_object());
        for (arr, elem) in [(1007, oid::INT4), (1009, oid::TEXT), (3807, oid::JSONB)] {
            let bytes = b(arr);
            let a = pt::array_from_sql(&bytes).unwrap();
            assert_eq!(a.element_type(), elem);
            assert!(
                fallible_iterator::FallibleIterator::next(&mut a.dimensions())
                    .unwrap()
                    .is_none()
            );
        }
        // A type pgward has no value of: NULL.
        assert_eq!(one(MaskFn::Redact, 869, Format::Binary, Some(b"x")), None);
        assert_eq!(
            one(MaskFn::Default, 1000000, Format::Text, Some(b"x")),
            None
        );
    }

    #[test]
    fn redact_gives_postgres_text_literals() {
        let t = |ty: u32| {
            String::from_utf8(one(MaskFn::Redact, ty, Format::Text, Some(b"v")).unwrap()).unwrap()
        };
        assert_eq!(t(oid::INT4), "0");
        assert_eq!(t(oid::BOOL), "f");
        assert_eq!(t(oid::DATE), "2000-01-01");
        assert_eq!(t(oid::TIMESTAMPTZ), "2000-01-01 00:00:00+00");
        assert_eq!(t(oid::UUID), "00000000-0000-0000-0000-000000000000");
        assert_eq!(t(1009), "{}");
        assert_eq!(t(oid::BYTEA), "\\x");
        // partial and email on a non-text type fall back to its constant.
        assert_eq!(
            one(MaskFn::Email, oid::INT4, Format::Text, Some(b"42")).as_deref(),
            Some(&b"0"[..])
        );
    }

    #[test]
    fn hash_is_stable_across_formats_and_typed() {
        let text = one(MaskFn::Hash, oid::INT4, Format::Text, Some(b"42")).unwrap();
        let bin = one(
            MaskFn::Hash,
            oid::INT4,
            Format::Binary,
            Some(&42i32.to_be_bytes()),
        )
        .unwrap();
        let bin = i32::from_sql(&Type::INT4, &bin).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), bin.to_string());
        let a = one(MaskFn::Hash, oid::TEXT, Format::Text, Some(b"bob@x.org")).unwrap();
        let b = one(MaskFn::Hash, oid::TEXT, Format::Binary, Some(b"bob@x.org")).unwrap();
        let c = one(MaskFn::Hash, oid::TEXT, Format::Text, Some(b"eve@x.org")).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 32);
        let u = [7u8; 16];
        let ub = one(MaskFn::Hash, oid::UUID, Format::Binary, Some(&u)).unwrap();
        let ut = one(
            MaskFn::Hash,
            oid::UUID,
            Format::Text,
            Some(b"07070707-0707-0707-0707-070707070707"),
        )
        .unwrap();
        assert_eq!(pt::uuid_from_sql(&ub).unwrap().len(), 16);
        assert_eq!(hex(&ub), String::from_utf8(ut).unwrap().replace('-', ""));
        // Without a key, hash shows NULL (fail closed).
        let plan = RowPlan {
            columns: vec![col(Some(MaskFn::Hash))],
        };
        let rw = RowRewriter::new(&plan, &[oid::TEXT], &[], None).unwrap();
        let mut out = Vec::new();
        rw.rewrite_data_row(&row(&[Some(b"x")]), &mut out).unwrap();
        assert_eq!(fields(&out), vec![None]);
    }

    #[test]
    fn masked_nulls_of_computed_values() {
        let plan = RowPlan {
            columns: vec![ColumnPlan {
                mask_nulls: true,
                ..col(Some(MaskFn::Redact))
            }],
        };
        let rw = RowRewriter::new(&plan, &[oid::TEXT], &[], None).unwrap();
        let mut out = Vec::new();
        rw.rewrite_data_row(&row(&[None]), &mut out).unwrap();
        assert_eq!(fields(&out), vec![Some(b"***".to_vec())]);
    }

    #[test]
    fn copy_rows_in_text_csv_and_binary() {
        let plan = RowPlan {
            columns: vec![
                col(None),
                col(Some(MaskFn::Email)),
                col(Some(MaskFn::Redact)),
            ],
        };
        let types = [oid::INT4, oid::TEXT, oid::TEXT];
        let rw = RowRewriter::new(&plan, &types, &[], None).unwrap();
        let mut out = Vec::new();
        rw.rewrite_copy_text(b"1\tal\\tice@x.org\tse\\\\cret\n", b'\t', b"\\N", &mut out)
            .unwrap();
        assert_eq!(out, b"1\ta***@x.org\t***\n");
        rw.rewrite_copy_text(b"2\t\\N\tx\n", b'\t', b"\\N", &mut out)
            .unwrap();
        assert_eq!(out, b"2\t\\N\t***\n");
        rw.rewrite_copy_text(b"3,a\\,b@c,x\n", b',', b"\\N", &mut out)
            .unwrap();
        assert_eq!(out, b"3,a***@c,***\n");
        rw.rewrite_copy_csv(
            b"4,\"bo,\"\"b\"\"@x.org\",\"s\nx\"\n",
            b',',
            b'"',
            b"",
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"4,\"b***@x.org\",\"***\"\n");
        rw.rewrite_copy_csv(b"5,,\"\"\n", b',', b'"', b"", &mut out)
            .unwrap();
        assert_eq!(
            out, b"5,,\"***\"\n",
            "NULL stays NULL, an empty string is masked"
        );
        assert!(rw
            .rewrite_copy_text(b"1\t2\n", b'\t', b"\\N", &mut out)
            .is_err());
        assert!(rw
            .rewrite_copy_csv(b"1,\"x,y\n", b',', b'"', b"", &mut out)
            .is_err());
        // Binary: header, a tuple, the trailer.
        let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&row(&[Some(&9i32.to_be_bytes()), Some(b"z@q.com"), None]));
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let rw = RowRewriter::new(&plan, &types, &[Format::Binary], None).unwrap();
        rw.rewrite_copy_binary(&data, &mut out).unwrap();
        let mut want = data[..19].to_vec();
        want.extend_from_slice(&row(&[Some(&9i32.to_be_bytes()), Some(b"***@q.com"), None]));
        want.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        let plan = RowPlan {
            columns: vec![col(None), col(Some(MaskFn::Redact))],
        };
        assert!(RowRewriter::new(&plan, &[oid::TEXT], &[], None).is_err());
        let rw = RowRewriter::new(&plan, &[oid::TEXT, oid::INT4], &[], None).unwrap();
        let good = row(&[Some(b"abc"), Some(b"12")]);
        let mut out = Vec::new();
        for cut in 0..good.len() {
            assert!(rw.rewrite_data_row(&good[..cut], &mut out).is_err());
            let _ = rw.rewrite_copy_binary(&good[..cut], &mut out);
            let _ = rw.rewrite_copy_csv(&good[..cut], b',', b'"', b"", &mut out);
            let _ = rw.rewrite_copy_text(&good[..cut], b'\t', b"\\N", &mut out);
        }
        let mut long = good.clone();
        long.push(0);
        assert!(rw.rewrite_data_row(&long, &mut out).is_err());
        assert!(rw.rewrite_data_row(&row(&[Some(b"a")]), &mut out).is_err());
        let mut huge = 2i16.to_be_bytes().to_vec();
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(rw.rewrite_data_row(&huge, &mut out).is_err());
        rw.rewrite_data_row(&good, &mut out).unwrap();
    }
}
