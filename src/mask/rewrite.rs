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

/// Where rewritten bytes go: appended to, never cleared here. The relay
/// writes into the client's output buffer (`BytesMut`), tests and tools
/// into a `Vec`.
pub trait Out {
    /// How many bytes the buffer holds.
    fn at(&self) -> usize;
    fn put(&mut self, bytes: &[u8]);
    fn put_byte(&mut self, b: u8);
    /// The bytes from `at` on, to patch or read back.
    fn tail_mut(&mut self, at: usize) -> &mut [u8];
    /// Drops every byte from `at` on.
    fn cut(&mut self, at: usize);
    fn reserve_more(&mut self, n: usize);
}

impl Out for Vec<u8> {
    #[inline]
    fn at(&self) -> usize {
        self.len()
    }
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes)
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        self.push(b)
    }
    #[inline]
    fn tail_mut(&mut self, at: usize) -> &mut [u8] {
        &mut self[at..]
    }
    #[inline]
    fn cut(&mut self, at: usize) {
        self.truncate(at)
    }
    #[inline]
    fn reserve_more(&mut self, n: usize) {
        self.reserve(n)
    }
}

impl Out for bytes::BytesMut {
    #[inline]
    fn at(&self) -> usize {
        self.len()
    }
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes)
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        bytes::BufMut::put_u8(self, b)
    }
    #[inline]
    fn tail_mut(&mut self, at: usize) -> &mut [u8] {
        &mut self[at..]
    }
    #[inline]
    fn cut(&mut self, at: usize) {
        self.truncate(at)
    }
    #[inline]
    fn reserve_more(&mut self, n: usize) {
        self.reserve(n)
    }
}

/// What a mask did with a value.
enum Masked {
    /// Nothing: the value passes as it is.
    Pass,
    /// Nothing written: the value becomes NULL.
    Null,
    /// The masked value was appended.
    Written,
}

/// Writes the constant `redact` and `default` show, per type and format;
/// false (nothing written): NULL, a type pgward has no value of.
fn put_constant(ty: u32, format: Format, out: &mut impl Out) -> bool {
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
            let Some(elem) = array_element(ty) else {
                return false;
            };
            match format {
                Format::Binary => {
                    out.put(&[0u8; 8]);
                    out.put(&elem.to_be_bytes());
                }
                Format::Text => out.put(b"{}"),
            }
            return true;
        }
    };
    out.put(match format {
        Format::Binary => bin,
        Format::Text => text.as_bytes(),
    });
    true
}

/// `partial(first, last)` of a text: the first and last characters kept,
/// letters and digits between them starred, punctuation kept. A value too
/// short to hide anything is starred whole.
pub fn partial(value: &[u8], first: u16, last: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    put_partial(value, first, last, &mut out);
    out
}

/// `partial`, appended to `out`.
fn put_partial(value: &[u8], first: u16, last: u16, out: &mut impl Out) {
    let (first, last) = (usize::from(first), usize::from(last));
    if value.is_ascii() {
        // A byte is a character: no decoding (most values, and the
        // per-row cost of masking large results). Kept: the bytes before
        // `head` and from `tail` on; between, letters and digits starred.
        let n = value.len();
        let (head, tail) = if first + last < n {
            (first, n - last)
        } else {
            (0, n)
        };
        out.put(&value[..head]);
        let at = out.at();
        out.put(&value[head..tail]);
        for b in out.tail_mut(at) {
            *b = if b.is_ascii_alphanumeric() { b'*' } else { *b };
        }
        out.put(&value[tail..]);
        return;
    }
    let Ok(s) = std::str::from_utf8(value) else {
        out.put(b"***");
        return;
    };
    let n = s.chars().count();
    let shown = first + last < n;
    let mut buf = [0u8; 4];
    for (i, c) in s.chars().enumerate() {
        let keep = (shown && (i < first || i >= n - last)) || !c.is_alphanumeric();
        let c = if keep { c } else { '*' };
        out.put(c.encode_utf8(&mut buf).as_bytes());
    }
}

/// `email`: the first character of the local part and the domain.
pub fn email(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    put_email(value, &mut out);
    out
}

/// `email`, appended to `out`.
fn put_email(value: &[u8], out: &mut impl Out) {
    // Not UTF-8, or no `@`: nothing of it shows. An `@` byte is the `@`
    // character in UTF-8, so the split is found in the bytes.
    let ascii = value.is_ascii();
    let at = match memchr::memrchr(b'@', value) {
        Some(at) if ascii || std::str::from_utf8(value).is_ok() => at,
        _ => {
            out.put(b"***");
            return;
        }
    };
    let (local, domain) = (&value[..at], &value[at + 1..]);
    // The first character, when there is more than one.
    if ascii {
        if local.len() > 1 {
            out.put_byte(local[0]);
        }
    } else if let Ok(local) = std::str::from_utf8(local) {
        let mut chars = local.chars();
        if let (Some(c), Some(_)) = (chars.next(), chars.next()) {
            out.put(c.encode_utf8(&mut [0u8; 4]).as_bytes());
        }
    }
    out.put(b"***@");
    out.put(domain);
}

#[cfg(test)]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex of `bytes`, appended.
fn put_hex(bytes: &[u8], out: &mut impl Out) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.put(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
    }
}

/// The decimal text of `x`, appended (as `x.to_string()`).
fn put_int(x: i64, out: &mut impl Out) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = x.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if x < 0 {
        out.put_byte(b'-');
    }
    out.put(&buf[at..]);
}

/// Escapes, in place, the text COPY value written from `at` on, when it
/// holds a byte that needs it (few masked values do).
fn escape_written(out: &mut impl Out, at: usize, delimiter: u8) {
    let needs = out
        .tail_mut(at)
        .iter()
        .any(|&b| b == b'\\' || b == delimiter || (b < 0x0e && matches!(b, b'\n' | b'\r' | b'\t')));
    if needs {
        let v = out.tail_mut(at).to_vec();
        out.cut(at);
        escape_text(&v, delimiter, out);
    }
}

/// Doubles, in place, every `quote` of the CSV value written from `at` on.
fn double_quotes(out: &mut impl Out, at: usize, quote: u8) {
    if out.tail_mut(at).contains(&quote) {
        let v = out.tail_mut(at).to_vec();
        out.cut(at);
        for b in v {
            if b == quote {
                out.put_byte(quote);
            }
            out.put_byte(b);
        }
    }
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

    /// Appends the masked value of a column in `format` (`Written`), or
    /// says it is NULL or passes as it is (nothing appended).
    fn put_mask(
        &self,
        c: &Col,
        format: Format,
        value: Option<&[u8]>,
        out: &mut impl Out,
    ) -> Masked {
        let Some(m) = c.mask else {
            return Masked::Pass;
        };
        let written = |ok: bool| if ok { Masked::Written } else { Masked::Null };
        let Some(v) = value else {
            if c.mask_nulls && m != MaskFn::Null {
                return written(put_constant(c.ty, format, out));
            }
            return Masked::Pass;
        };
        match m {
            MaskFn::Null => Masked::Null,
            MaskFn::Redact | MaskFn::Default => written(put_constant(c.ty, format, out)),
            MaskFn::Partial { first, last } if is_text(c.ty) => {
                put_partial(v, first, last, out);
                Masked::Written
            }
            MaskFn::Email if is_text(c.ty) => {
                put_email(v, out);
                Masked::Written
            }
            MaskFn::Partial { .. } | MaskFn::Email => written(put_constant(c.ty, format, out)),
            MaskFn::Hash => written(self.put_hash(c.ty, format, v, out)),
        }
    }

    /// `hash`: the HMAC of the value's text form (so text and binary
    /// results hash alike), shown in the column's type; false (nothing
    /// written): NULL.
    fn put_hash(&self, ty: u32, format: Format, v: &[u8], out: &mut impl Out) -> bool {
        let Some(key) = self.key.as_ref() else {
            return false;
        };
        let bin = format == Format::Binary;
        let mut canonical = Vec::new();
        let canonical: &[u8] = match (ty, bin) {
            (_, false) => v,
            (t, true) if is_text(t) => v,
            (oid::INT2, true) => {
                let Ok(b) = v.try_into() else { return false };
                put_int(i16::from_be_bytes(b).into(), &mut canonical);
                &canonical
            }
            (oid::INT4, true) => {
                let Ok(b) = v.try_into() else { return false };
                put_int(i32::from_be_bytes(b).into(), &mut canonical);
                &canonical
            }
            (oid::OID, true) => {
                let Ok(b) = v.try_into() else { return false };
                put_int(u32::from_be_bytes(b).into(), &mut canonical);
                &canonical
            }
            (oid::INT8, true) => {
                let Ok(b) = v.try_into() else { return false };
                put_int(i64::from_be_bytes(b), &mut canonical);
                &canonical
            }
            (oid::UUID, true) => {
                if v.len() != 16 {
                    return false;
                }
                put_uuid(v, &mut canonical);
                &canonical
            }
            (oid::BYTEA, true) => {
                canonical.put(b"\\x");
                put_hex(v, &mut canonical);
                &canonical
            }
            _ => return false,
        };
        let mac = key.mac(canonical);
        match ty {
            t if is_text(t) => put_hex(&mac[..16], out),
            oid::INT2 => {
                let x = i16::from_be_bytes([mac[0], mac[1]]);
                match bin {
                    true => out.put(&x.to_be_bytes()),
                    false => put_int(x.into(), out),
                }
            }
            oid::INT4 => {
                let x = i32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                match bin {
                    true => out.put(&x.to_be_bytes()),
                    false => put_int(x.into(), out),
                }
            }
            oid::OID => {
                let x = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
                match bin {
                    true => out.put(&x.to_be_bytes()),
                    false => put_int(x.into(), out),
                }
            }
            oid::INT8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&mac[..8]);
                let x = i64::from_be_bytes(b);
                match bin {
                    true => out.put(&x.to_be_bytes()),
                    false => put_int(x, out),
                }
            }
            oid::UUID => match bin {
                true => out.put(&mac[..16]),
                false => put_uuid(&mac[..16], out),
            },
            oid::BYTEA => match bin {
                true => out.put(&mac),
                false => {
                    out.put(b"\\x");
                    put_hex(&mac, out);
                }
            },
            _ => return false,
        }
        true
    }

    /// Rewrites one DataRow body (the message without its 'D' and
    /// length) into `out` (cleared first).
    pub fn rewrite_data_row(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        out.clear();
        self.put_data_row(body, out)
    }

    /// Rewrites one DataRow body, appending it to `out`. On an error, what
    /// was appended is left for the caller to cut.
    pub fn put_data_row(&self, body: &[u8], out: &mut impl Out) -> Result<(), RewriteError> {
        let mut r = Reader { buf: body, at: 0 };
        let n = r.i16()?;
        if usize::try_from(n).ok() != Some(self.cols.len()) {
            return Err(RewriteError(format!(
                "a DataRow has {n} columns, the plan {}",
                self.cols.len()
            )));
        }
        out.reserve_more(body.len() + 16);
        out.put(&n.to_be_bytes());
        self.fields(&mut r, out)?;
        if r.at != body.len() {
            return Err(RewriteError(
                "a DataRow has bytes after its last column".into(),
            ));
        }
        Ok(())
    }

    /// Length-prefixed fields (DataRow and binary COPY share the layout).
    /// Fields that pass are copied as they were sent, each run of them as
    /// one slice.
    fn fields(&self, r: &mut Reader, out: &mut impl Out) -> Result<(), RewriteError> {
        // Bytes read before this one are in `out`.
        let mut copied = r.at;
        for c in &self.cols {
            let start = r.at;
            let len = r.i32()?;
            let value = if len < 0 {
                None
            } else {
                Some(r.take(usize::try_from(len).unwrap_or(0))?)
            };
            if c.mask.is_none() {
                continue;
            }
            out.put(&r.buf[copied..start]);
            let at = out.at();
            // The length, filled in once the value is written.
            out.put(&[0; 4]);
            match self.put_mask(c, c.format, value, out) {
                Masked::Pass => {
                    out.cut(at);
                    copied = start;
                    continue;
                }
                Masked::Null => {
                    out.cut(at);
                    out.put(&(-1i32).to_be_bytes());
                }
                Masked::Written => {
                    let len = i32::try_from(out.at() - at - 4)
                        .map_err(|_| RewriteError("a masked value too long".into()))?;
                    out.tail_mut(at)[..4].copy_from_slice(&len.to_be_bytes());
                }
            }
            copied = r.at;
        }
        out.put(&r.buf[copied..r.at]);
        Ok(())
    }

    /// Rewrites one CopyData payload of `COPY ... TO STDOUT (FORMAT
    /// binary)` into `out` (cleared first).
    pub fn rewrite_copy_binary(&self, data: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        out.clear();
        self.put_copy_binary(data, out)
    }

    /// Rewrites one CopyData payload of `COPY ... TO STDOUT (FORMAT
    /// binary)`: the file header when it starts with one, then tuples,
    /// then the trailer, each where it stands; appended to `out`.
    pub fn put_copy_binary(&self, data: &[u8], out: &mut impl Out) -> Result<(), RewriteError> {
        const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
        let mut r = Reader { buf: data, at: 0 };
        if data.starts_with(SIGNATURE) {
            r.at = SIGNATURE.len();
            let _flags = r.i32()?;
            let ext = r.i32()?;
            r.take(usize::try_from(ext).unwrap_or(usize::MAX))?;
            out.put(&data[..r.at]);
        }
        while r.at < data.len() {
            let n = r.i16()?;
            out.put(&n.to_be_bytes());
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

    /// Rewrites one line of `COPY ... TO STDOUT` in text format into `out`
    /// (cleared first); see `put_copy_text`.
    pub fn rewrite_copy_text(
        &self,
        line: &[u8],
        delimiter: u8,
        null: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        out.clear();
        self.put_copy_text(line, delimiter, null, out)
    }

    /// Rewrites one line of `COPY ... TO STDOUT` in text format (with its
    /// newline, if any), appended to `out`: fields split at unescaped
    /// `delimiter`, `null` as the NULL marker (`\N` by default). Text COPY
    /// is always text, whatever the column types: a binary-format plan
    /// column reads as text here. Fields that pass are copied as sent
    /// (not unescaped only to be escaped again), runs of them as one slice.
    pub fn put_copy_text(
        &self,
        line: &[u8],
        delimiter: u8,
        null: &[u8],
        out: &mut impl Out,
    ) -> Result<(), RewriteError> {
        let (body, nl) = match line.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (line, false),
        };
        // Bytes of `body` before this one are in `out`.
        let mut copied = 0;
        let mut start = 0;
        let mut i = 0;
        let mut k = 0;
        loop {
            // The field ends at the next delimiter not escaped; jumps to
            // the next backslash or delimiter: most bytes are neither.
            let end = loop {
                match memchr::memchr2(b'\\', delimiter, body.get(i..).unwrap_or_default()) {
                    Some(at) if body[i + at] == b'\\' => i += at + 2,
                    Some(at) => break Some(i + at),
                    None => break None,
                }
            };
            let f_end = end.unwrap_or(body.len());
            let f = &body[start.min(f_end)..f_end];
            if let Some(c) = self.cols.get(k).filter(|c| c.mask.is_some()) {
                // Most values hold no escape: read in place.
                let value: Option<std::borrow::Cow<[u8]>> = if f == null {
                    None
                } else if f.contains(&b'\\') {
                    Some(unescape_text(f).into())
                } else {
                    Some(f.into())
                };
                out.put(&body[copied..start]);
                let at = out.at();
                match self.put_mask(c, Format::Text, value.as_deref(), out) {
                    Masked::Pass => copied = start,
                    Masked::Null => {
                        out.put(null);
                        copied = f_end;
                    }
                    Masked::Written => {
                        escape_written(out, at, delimiter);
                        copied = f_end;
                    }
                }
            }
            k += 1;
            match end {
                Some(e) => {
                    i = e + 1;
                    start = i;
                }
                None => break,
            }
        }
        if k != self.cols.len() {
            return Err(RewriteError(format!(
                "a COPY line has {k} fields, the plan {}",
                self.cols.len()
            )));
        }
        out.put(&body[copied..]);
        if nl {
            out.put_byte(b'\n');
        }
        Ok(())
    }

    /// Rewrites one CSV record of `COPY ... TO STDOUT (FORMAT csv)` into
    /// `out` (cleared first); see `put_copy_csv`.
    pub fn rewrite_copy_csv(
        &self,
        line: &[u8],
        delimiter: u8,
        quote: u8,
        null: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        out.clear();
        self.put_copy_csv(line, delimiter, quote, null, out)
    }

    /// Rewrites one CSV record of `COPY ... TO STDOUT (FORMAT csv)`,
    /// appended to `out`: `quote` (default `"`), NULL an unquoted `null`
    /// (default empty). A record whose quoted field holds a newline
    /// arrives as one CopyData message too. Fields that pass are copied as
    /// sent, runs of them as one slice.
    pub fn put_copy_csv(
        &self,
        line: &[u8],
        delimiter: u8,
        quote: u8,
        null: &[u8],
        out: &mut impl Out,
    ) -> Result<(), RewriteError> {
        let (body, nl) = match line.strip_suffix(b"\n") {
            Some(b) => (b.strip_suffix(b"\r").unwrap_or(b), true),
            None => (line, false),
        };
        // Bytes of `body` before this one are in `out`.
        let mut copied = 0;
        let mut i = 0;
        let mut k = 0;
        loop {
            let start = i;
            let mut quoted = false;
            // The field ends at the next delimiter outside quotes.
            loop {
                match memchr::memchr2(delimiter, quote, &body[i..]) {
                    None => {
                        i = body.len();
                        break;
                    }
                    Some(at) if body[i + at] == delimiter => {
                        i += at;
                        break;
                    }
                    Some(at) => {
                        quoted = true;
                        i += at + 1;
                        loop {
                            let Some(q) = memchr::memchr(quote, &body[i..]) else {
                                return Err(RewriteError("an unterminated CSV quote".into()));
                            };
                            i += q;
                            if body.get(i + 1) == Some(&quote) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                    }
                }
            }
            let raw = &body[start..i];
            if let Some(c) = self.cols.get(k).filter(|c| c.mask.is_some()) {
                let value: Option<std::borrow::Cow<[u8]>> = if !quoted && raw == null {
                    None
                } else if quoted {
                    Some(unquote_csv(raw, quote).into())
                } else {
                    Some(raw.into())
                };
                out.put(&body[copied..start]);
                let at = out.at();
                out.put_byte(quote);
                match self.put_mask(c, Format::Text, value.as_deref(), out) {
                    Masked::Pass => {
                        out.cut(at);
                        copied = start;
                    }
                    Masked::Null => {
                        out.cut(at);
                        out.put(null);
                        copied = i;
                    }
                    Masked::Written => {
                        double_quotes(out, at + 1, quote);
                        out.put_byte(quote);
                        copied = i;
                    }
                }
            }
            k += 1;
            if i >= body.len() {
                break;
            }
            i += 1;
        }
        if k != self.cols.len() {
            return Err(RewriteError(format!(
                "a CSV record has {k} fields, the plan {}",
                self.cols.len()
            )));
        }
        out.put(&body[copied..]);
        if nl {
            out.put_byte(b'\n');
        }
        Ok(())
    }
}

/// The text of a UUID's 16 bytes, appended: 8-4-4-4-12 hex digits.
fn put_uuid(b: &[u8], out: &mut impl Out) {
    for (k, part) in [&b[..4], &b[4..6], &b[6..8], &b[8..10], &b[10..]]
        .into_iter()
        .enumerate()
    {
        if k > 0 {
            out.put_byte(b'-');
        }
        put_hex(part, out);
    }
}

/// The value of a CSV field that holds quotes: quoted runs unquoted, a
/// doubled quote inside them one quote.
fn unquote_csv(raw: &[u8], quote: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(raw.len());
    let mut inside = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != quote {
            v.push(b);
        } else if !inside {
            inside = true;
        } else if raw.get(i + 1) == Some(&quote) {
            v.push(quote);
            i += 1;
        } else {
            inside = false;
        }
        i += 1;
    }
    v
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

fn escape_text(v: &[u8], delimiter: u8, out: &mut impl Out) {
    for &b in v {
        match b {
            b'\\' => out.put(b"\\\\"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            _ if b == delimiter => {
                out.put_byte(b'\\');
                out.put_byte(b);
            }
            _ => out.put_byte(b),
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
