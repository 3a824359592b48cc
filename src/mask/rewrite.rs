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
    let text = |s: &str| Some(s.as_bytes().to_vec());
    let bin = format == Format::Binary;
    match ty {
        _ if is_text(ty) => text("***"),
        oid::CHAR => text("*"),
        oid::BOOL => {
            if bin {
                Some(vec![0])
            } else {
                text("f")
            }
        }
        oid::INT2 => if bin { Some(vec![0; 2]) } else { text("0") },
        oid::INT4 | oid::OID | oid::FLOAT4 => if bin { Some(vec![0; 4]) } else { text("0") },
        oid::INT8 | oid::FLOAT8 => if bin { Some(vec![0; 8]) } else { text("0") },
        // ndigits 0, weight 0, sign +, dscale 0.
        oid::NUMERIC => if bin { Some(vec![0; 8]) } else { text("0") },
        // PostgreSQL's epoch: 0 is 2000-01-01 (midnight).
        oid::DATE => if bin { Some(vec![0; 4]) } else { text("2000-01-01") },
        oid::TIMESTAMP => if bin { Some(vec![0; 8]) } else { text("2000-01-01 00:00:00") },
        oid::TIMESTAMPTZ => if bin { Some(vec![0; 8]) } else { text("2000-01-01 00:00:00+00") },
        oid::TIME => if bin { Some(vec![0; 8]) } else { text("00:00:00") },
        oid::TIMETZ => if bin { Some(vec![0; 12]) } else { text("00:00:00+00") },
        oid::INTERVAL => if bin { Some(vec![0; 16]) } else { text("00:00:00") },
        oid::JSON => text("{}"),
        oid::JSONB => if bin { Some(vec![1, b'{', b'}']) } else { text("{}") },
        oid::UUID => if bin { Some(vec![0; 16]) } else { text("00000000-0000-0000-0000-000000000000") },
        oid::BYTEA => if bin { Some(Vec::new()) } else { text("\\x") },
        _ => {
            let elem = array_element(ty)?;
            if bin {
                let mut v = vec![0u8; 8];
                v.extend_from_slice(&elem.to_be_bytes());
                Some(v)
            } else {
                text("{}")
            }
        }
    }
}

/// `partial(first, last)` of a text: the first and last characters kept,
/// letters and digits between them starred, punctuation kept. A value too
/// short to hide anything is starred whole.
pub fn partial(value: &[u8], first: u16, last: u16) -> Vec<u8> {
    let Ok(s) = std::str::from_utf8(value) else {
        return b"***".to_vec();
    };
    let chars: Vec<char> = s.chars().collect();
    let (first, last) = (usize::from(first), usize::from(last));
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
            (oid::INT2, true) => i16::from_be_bytes(v.try_into().ok()?).to_string().into_bytes(),
            (oid::INT4, true) => i32::from_be_bytes(v.try_into().ok()?).to_string().into_bytes(),
            (oid::OID, true) => u32::from_be_bytes(v.try_into().ok()?).to_string().into_bytes(),
            (oid::INT8, true) => i64::from_be_bytes(v.try_into().ok()?).to_string().into_bytes(),
            (oid::UUID, true) => {
                let h = hex(v);
                if h.len() != 32 {
                    return None;
                }
                format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
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
                if bin { x.to_be_bytes().to_vec() } else { x.to_string().into_bytes() }
            }
            oid::INT4 => {
                let x = i32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                if bin { x.to_be_bytes().to_vec() } else { x.to_string().into_bytes() }
            }
            oid::OID => {
                let x = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                if bin { x.to_be_bytes().to_vec() } else { x.to_string().into_bytes() }
            }
            oid::INT8 => {
                let x = i64::from_be_bytes(first(8));
                if bin { x.to_be_bytes().to_vec() } else { x.to_string().into_bytes() }
            }
            oid::UUID => {
                if bin {
                    mac[..16].to_vec()
                } else {
                    let h = hex(&mac[..16]);
                    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
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
            return Err(RewriteError("a DataRow has bytes after its last column".into()));
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
        while i < body.len() {
            if body[i] == b'\\' {
                i += 2;
                continue;
            }
            if body[i] == delimiter {
                fields.push(&body[start..i]);
                start = i + 1;
            }
            i += 1;
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
            let c = Col {
                format: Format::Text,
                ..c.clone()
            };
            let value = if f == null { None } else { Some(unescape_text(f)) };
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
                            None => {
                                return Err(RewriteError("an unterminated CSV quote".into()))
                            }
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
            let v = if !quoted && raw == null { None } else { Some(value) };
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
