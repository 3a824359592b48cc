//! Client encodings: PostgreSQL's names for them, and how pgward reads a
//! client's text in one, as UTF-8, the way the server does.
//!
//! The server converts what a client sends (a Query's text, a Parse's
//! statement text, statement and portal names) from `client_encoding` to
//! the database's encoding before its lexer sees a byte. In SJIS, BIG5,
//! GBK, UHC and GB18030 the second byte of a character may be `\`, `'` or
//! a letter, so a text read byte by byte as if it were UTF-8 or ASCII
//! splits differently from the server's. pgward therefore decodes the text
//! with the session's encoding, character by character as PostgreSQL does,
//! and refuses a text it cannot decode (PostgreSQL refuses it too:
//! `invalid byte sequence`, SQLSTATE 22021) rather than guess. Decoders
//! never replace: a WHATWG decoder that meets a bad trail byte would read
//! it again as ASCII where the server stops with an error.
//!
//! Decoders come from encoding_rs (the WHATWG Encoding Standard) where its
//! table is PostgreSQL's, checked against a live server for every byte and
//! byte pair (`tests/encodings.rs`); where it is not, the sequences on
//! which the two disagree are refused. Encodings with no faithful decoder
//! (EUC_TW, EUC_JIS_2004, SHIFT_JIS_2004, JOHAB, MULE_INTERNAL) work for
//! ASCII text; other text in them is refused with a clear error. Each was
//! weighed for a decoder of pgward's own: EUC_TW (CNS 11643, seven
//! planes), EUC_JIS_2004 and SHIFT_JIS_2004 (JIS X 0213) need mapping
//! tables of tens of thousands of entries; JOHAB's Hangul is algorithmic
//! but its symbols and Hanja need a table too (PostgreSQL's verifier takes
//! only 0xa1-0xfe after a first byte, so no JOHAB character ends in an
//! ASCII byte); MULE_INTERNAL has no conversion to UTF8 in the server at
//! all. SHIFT_JIS_2004 is the one whose second bytes may be `\` (0x5c):
//! refusing its non-ASCII text keeps pgward from splitting strings where
//! the server does not (`tests/encodings.rs`,
//! `encodings_without_a_decoder_take_ascii_only`).
//!
//! ASCII is ASCII in every encoding PostgreSQL accepts from clients (a
//! byte below 0x80 that starts a character is that ASCII character), so an
//! ASCII text needs no decoding at all.

use std::borrow::Cow;

use encoding_rs::DecoderResult;

use super::messages::{sqlstate, PgError};

/// How a PostgreSQL encoding's text becomes UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Utf8,
    /// No conversion at all (see `Decoder::for_session`).
    SqlAscii,
    /// ISO 8859-1: each byte is the code point of the same number.
    Latin1,
    /// ISO 8859-9: ISO 8859-1 with six letters replaced.
    Latin5,
    /// A WHATWG decoder whose table PostgreSQL shares, except for the
    /// sequences `refused` lists.
    Whatwg(&'static encoding_rs::Encoding),
    /// No faithful decoder: ASCII only.
    Opaque,
}

/// One of PostgreSQL's encodings, as a client may set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// PostgreSQL's canonical name (`SJIS`, `LATIN1`, `UTF8`...).
    pub name: &'static str,
    kind: Kind,
    /// Client-only encodings (SJIS, BIG5, GBK, UHC, GB18030, JOHAB,
    /// SHIFT_JIS_2004): a database cannot use them, and their trail bytes
    /// may be ASCII.
    pub client_only: bool,
}

impl Encoding {
    pub const UTF8: Encoding = Encoding {
        name: "UTF8",
        kind: Kind::Utf8,
        client_only: false,
    };

    pub const SQL_ASCII: Encoding = Encoding {
        name: "SQL_ASCII",
        kind: Kind::SqlAscii,
        client_only: false,
    };

    /// An encoding name pgward does not know: ASCII only.
    pub const UNKNOWN: Encoding = opaque("UNKNOWN", true);

    /// Whether pgward can read any text in this encoding (else only ASCII).
    pub fn decodable(&self) -> bool {
        self.kind != Kind::Opaque
    }

    /// The encoding PostgreSQL means by `name`, spelled any way it accepts
    /// (`latin1`, `ISO-8859-1`, `Shift_JIS`, `win932`...).
    pub fn lookup(name: &str) -> Option<Encoding> {
        let norm: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let canonical = match norm.as_str() {
            "sqlascii" => "SQL_ASCII",
            "utf8" | "unicode" => "UTF8",
            "latin1" | "iso88591" => "LATIN1",
            "latin2" | "iso88592" => "LATIN2",
            "latin3" | "iso88593" => "LATIN3",
            "latin4" | "iso88594" => "LATIN4",
            "latin5" | "iso88599" => "LATIN5",
            "latin6" | "iso885910" => "LATIN6",
            "latin7" | "iso885913" => "LATIN7",
            "latin8" | "iso885914" => "LATIN8",
            "latin9" | "iso885915" => "LATIN9",
            "latin10" | "iso885916" => "LATIN10",
            "iso88595" => "ISO_8859_5",
            "iso88596" => "ISO_8859_6",
            "iso88597" => "ISO_8859_7",
            "iso88598" => "ISO_8859_8",
            "win866" | "windows866" | "alt" => "WIN866",
            "win874" | "windows874" => "WIN874",
            "win1250" | "windows1250" => "WIN1250",
            "win1251" | "windows1251" | "win" => "WIN1251",
            "win1252" | "windows1252" => "WIN1252",
            "win1253" | "windows1253" => "WIN1253",
            "win1254" | "windows1254" => "WIN1254",
            "win1255" | "windows1255" => "WIN1255",
            "win1256" | "windows1256" => "WIN1256",
            "win1257" | "windows1257" => "WIN1257",
            "win1258" | "windows1258" | "abc" | "tcvn" | "tcvn5712" | "vscii" => "WIN1258",
            "koi8r" | "koi8" => "KOI8R",
            "koi8u" => "KOI8U",
            "eucjp" => "EUC_JP",
            "euccn" => "EUC_CN",
            "euckr" => "EUC_KR",
            "euctw" => "EUC_TW",
            "eucjis2004" => "EUC_JIS_2004",
            "sjis" | "shiftjis" | "mskanji" | "win932" | "windows932" => "SJIS",
            "shiftjis2004" => "SHIFT_JIS_2004",
            "big5" | "win950" | "windows950" => "BIG5",
            "gbk" | "win936" | "windows936" => "GBK",
            "uhc" | "win949" | "windows949" => "UHC",
            "gb18030" => "GB18030",
            "johab" => "JOHAB",
            "muleinternal" => "MULE_INTERNAL",
            _ => return None,
        };
        ENCODINGS.iter().find(|e| e.name == canonical).copied()
    }
}

const fn rs(
    name: &'static str,
    enc: &'static encoding_rs::Encoding,
    client_only: bool,
) -> Encoding {
    Encoding {
        name,
        kind: Kind::Whatwg(enc),
        client_only,
    }
}

const fn opaque(name: &'static str, client_only: bool) -> Encoding {
    Encoding {
        name,
        kind: Kind::Opaque,
        client_only,
    }
}

/// Every encoding PostgreSQL accepts as a client encoding.
pub const ENCODINGS: &[Encoding] = &[
    Encoding::SQL_ASCII,
    Encoding::UTF8,
    Encoding {
        name: "LATIN1",
        kind: Kind::Latin1,
        client_only: false,
    },
    rs("LATIN2", encoding_rs::ISO_8859_2, false),
    rs("LATIN3", encoding_rs::ISO_8859_3, false),
    rs("LATIN4", encoding_rs::ISO_8859_4, false),
    Encoding {
        name: "LATIN5",
        kind: Kind::Latin5,
        client_only: false,
    },
    rs("LATIN6", encoding_rs::ISO_8859_10, false),
    rs("LATIN7", encoding_rs::ISO_8859_13, false),
    rs("LATIN8", encoding_rs::ISO_8859_14, false),
    rs("LATIN9", encoding_rs::ISO_8859_15, false),
    rs("LATIN10", encoding_rs::ISO_8859_16, false),
    rs("ISO_8859_5", encoding_rs::ISO_8859_5, false),
    rs("ISO_8859_6", encoding_rs::ISO_8859_6, false),
    rs("ISO_8859_7", encoding_rs::ISO_8859_7, false),
    rs("ISO_8859_8", encoding_rs::ISO_8859_8, false),
    rs("WIN866", encoding_rs::IBM866, false),
    rs("WIN874", encoding_rs::WINDOWS_874, false),
    rs("WIN1250", encoding_rs::WINDOWS_1250, false),
    rs("WIN1251", encoding_rs::WINDOWS_1251, false),
    rs("WIN1252", encoding_rs::WINDOWS_1252, false),
    rs("WIN1253", encoding_rs::WINDOWS_1253, false),
    rs("WIN1254", encoding_rs::WINDOWS_1254, false),
    rs("WIN1255", encoding_rs::WINDOWS_1255, false),
    rs("WIN1256", encoding_rs::WINDOWS_1256, false),
    rs("WIN1257", encoding_rs::WINDOWS_1257, false),
    rs("WIN1258", encoding_rs::WINDOWS_1258, false),
    rs("KOI8R", encoding_rs::KOI8_R, false),
    rs("KOI8U", encoding_rs::KOI8_U, false),
    rs("EUC_JP", encoding_rs::EUC_JP, false),
    rs("EUC_CN", encoding_rs::GBK, false),
    rs("EUC_KR", encoding_rs::EUC_KR, false),
    opaque("EUC_TW", false),
    opaque("EUC_JIS_2004", false),
    opaque("MULE_INTERNAL", false),
    rs("SJIS", encoding_rs::SHIFT_JIS, true),
    rs("BIG5", encoding_rs::BIG5, true),
    rs("GBK", encoding_rs::GBK, true),
    rs("UHC", encoding_rs::EUC_KR, true),
    rs("GB18030", encoding_rs::GB18030, true),
    opaque("JOHAB", true),
    opaque("SHIFT_JIS_2004", true),
];

/// Why a text cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a valid sequence in the encoding (the server says the same).
    Invalid {
        encoding: &'static str,
        bytes: Vec<u8>,
    },
    /// A non-ASCII byte where the server accepts none (a client-only
    /// encoding over an SQL_ASCII database).
    NotAscii { byte: u8 },
    /// Non-ASCII text in an encoding pgward has no faithful decoder for.
    Unreadable { encoding: &'static str },
}

impl DecodeError {
    /// The error the client gets; for invalid text the same as
    /// PostgreSQL's.
    pub fn to_pg_error(&self) -> PgError {
        match self {
            DecodeError::Invalid { encoding, bytes } => {
                let shown: Vec<String> = bytes.iter().map(|b| format!("0x{b:02x}")).collect();
                PgError::error(
                    sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                    format!(
                        "invalid byte sequence for encoding \"{encoding}\": {}",
                        shown.join(" ")
                    ),
                )
            }
            DecodeError::NotAscii { byte } => PgError::error(
                sqlstate::UNTRANSLATABLE_CHARACTER,
                format!("invalid byte value for encoding \"SQL_ASCII\": 0x{byte:02x}"),
            ),
            DecodeError::Unreadable { encoding } => PgError::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("pgward: cannot read non-ASCII text in client encoding {encoding}"),
            )
            .with_hint("set client_encoding to UTF8 (or another encoding pgward reads); ASCII text works in any encoding"),
        }
    }
}

/// How a session's text is read: from its client encoding and the
/// database's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    kind: Kind,
    name: &'static str,
    /// Only ASCII passes (the server refuses the rest too).
    ascii_only: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::UTF8
    }
}

impl Decoder {
    pub const UTF8: Decoder = Decoder {
        kind: Kind::Utf8,
        name: "UTF8",
        ascii_only: false,
    };

    /// What the server does with text in `client` when the database is in
    /// `server`: with no conversion between them (the same encoding, or a
    /// client in SQL_ASCII), the bytes must be valid in the database's
    /// encoding and are read in it; an SQL_ASCII database takes the text
    /// as it is, after checking it in the client's encoding, and refuses
    /// every non-ASCII byte from a client-only encoding; otherwise the text
    /// is converted from the client's encoding.
    pub fn for_session(client: Encoding, server: Encoding) -> Decoder {
        let of = |e: Encoding| Decoder {
            kind: e.kind,
            name: e.name,
            ascii_only: false,
        };
        if client == server || client.kind == Kind::SqlAscii {
            of(server)
        } else if server.kind == Kind::SqlAscii {
            Decoder {
                ascii_only: client.client_only,
                ..of(client)
            }
        } else {
            of(client)
        }
    }

    pub fn is_utf8(&self) -> bool {
        self.kind == Kind::Utf8
    }

    /// The encoding it reads (PostgreSQL's name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `text` as UTF-8, exactly as the server will read it; borrowed when
    /// it is UTF-8 already (always, for a UTF-8 session, which pays
    /// nothing more than the UTF-8 check it always had).
    pub fn decode<'a>(&self, text: &'a [u8]) -> Result<Cow<'a, str>, DecodeError> {
        if self.kind == Kind::Utf8 {
            return std::str::from_utf8(text).map(Cow::Borrowed).map_err(|e| {
                DecodeError::Invalid {
                    encoding: "UTF8",
                    bytes: utf8_bad_sequence(text, e),
                }
            });
        }
        if text.is_ascii() {
            // ASCII is itself in every client encoding.
            return Ok(Cow::Borrowed(std::str::from_utf8(text).unwrap_or_default()));
        }
        if self.ascii_only {
            let byte = text.iter().copied().find(|b| !b.is_ascii()).unwrap_or(0);
            return Err(DecodeError::NotAscii { byte });
        }
        match self.kind {
            Kind::Utf8 => Decoder::UTF8.decode(text),
            // An SQL_ASCII database over an SQL_ASCII client: the bytes
            // reach the lexer unchanged, and every byte from 0x80 up is a
            // letter to it. Read as ISO 8859-1, each is a distinct letter
            // (names then differ from any pgward knows: judged unknown).
            Kind::SqlAscii | Kind::Latin1 => {
                Ok(Cow::Owned(text.iter().map(|&b| b as char).collect()))
            }
            Kind::Latin5 => Ok(Cow::Owned(text.iter().map(|&b| latin5(b)).collect())),
            Kind::Whatwg(enc) => self.whatwg(enc, text).map(Cow::Owned),
            Kind::Opaque => Err(DecodeError::Unreadable {
                encoding: self.name,
            }),
        }
    }

    /// `text` as UTF-8 with what cannot be read replaced, for the record
    /// of a message that is refused.
    pub fn decode_lossy<'a>(&self, text: &'a [u8]) -> Cow<'a, str> {
        match self.decode(text) {
            Ok(t) => t,
            Err(_) => match self.kind {
                Kind::Whatwg(enc) => enc.decode_without_bom_handling(text).0,
                _ => String::from_utf8_lossy(text),
            },
        }
    }

    fn whatwg(
        &self,
        enc: &'static encoding_rs::Encoding,
        text: &[u8],
    ) -> Result<String, DecodeError> {
        let mut decoder = enc.new_decoder_without_bom_handling();
        let cap = decoder
            .max_utf8_buffer_length_without_replacement(text.len())
            .unwrap_or(text.len() * 3 + 16);
        let mut out = String::with_capacity(cap);
        let (result, read) = decoder.decode_to_string_without_replacement(text, &mut out, true);
        match result {
            DecoderResult::InputEmpty => {}
            DecoderResult::Malformed(bad, kept) => {
                // `bad` bytes ending `kept` bytes before `read` were wrong.
                let end = read.saturating_sub(kept as usize);
                let start = end.saturating_sub(bad as usize);
                let shown = &text[start..(start + 2).min(text.len())];
                return Err(DecodeError::Invalid {
                    encoding: self.name,
                    bytes: shown.to_vec(),
                });
            }
            DecoderResult::OutputFull => {
                return Err(DecodeError::Invalid {
                    encoding: self.name,
                    bytes: Vec::new(),
                })
            }
        }
        if let Some(bytes) = refused(self.name, text) {
            return Err(DecodeError::Invalid {
                encoding: self.name,
                bytes,
            });
        }
        Ok(out)
    }
}

/// The bytes of the first invalid sequence, as PostgreSQL shows them.
fn utf8_bad_sequence(text: &[u8], e: std::str::Utf8Error) -> Vec<u8> {
    let start = e.valid_up_to();
    let len = e.error_len().unwrap_or(text.len() - start).clamp(1, 2);
    text[start..(start + len).min(text.len())].to_vec()
}

/// ISO 8859-9: ISO 8859-1 but for six Turkish letters.
fn latin5(b: u8) -> char {
    match b {
        0xd0 => '\u{011e}',
        0xdd => '\u{0130}',
        0xde => '\u{015e}',
        0xf0 => '\u{011f}',
        0xfd => '\u{0131}',
        0xfe => '\u{015f}',
        _ => b as char,
    }
}

/// Sequences the WHATWG decoder reads as other characters than
/// PostgreSQL does (found by `tests/encodings.rs` against the server, for
/// every byte, byte pair and EUC_JP triple): a text holding one is
/// refused. Returns the first one found. `text` has been decoded, so it
/// splits into characters by their first bytes.
fn refused(encoding: &str, text: &[u8]) -> Option<Vec<u8>> {
    let (list, len): (&[u32], CharLen) = match encoding {
        "KOI8U" => (REFUSED_KOI8U, |_| 1),
        "EUC_CN" => (REFUSED_EUC_CN, double_byte),
        "BIG5" => (REFUSED_BIG5, double_byte),
        "EUC_JP" => (REFUSED_EUC_JP, |b| match b[0] {
            0x8f => 3,
            0x80.. => 2,
            _ => 1,
        }),
        "GB18030" => (REFUSED_GB18030, |b| match (b[0], b.get(1)) {
            (0..=0x7f, _) => 1,
            (_, Some(0x30..=0x39)) => 4,
            _ => 2,
        }),
        _ => return None,
    };
    let mut i = 0;
    while i < text.len() {
        let n = len(&text[i..]).min(text.len() - i);
        if n > 1 || text[i] >= 0x80 {
            let code = text[i..i + n]
                .iter()
                .fold(0u32, |acc, &b| acc.wrapping_shl(8) | u32::from(b));
            if n <= 4 && list.binary_search(&code).is_ok() {
                return Some(text[i..i + n].to_vec());
            }
        }
        i += n;
    }
    None
}

/// The length of the character `b` starts with.
type CharLen = fn(&[u8]) -> usize;

fn double_byte(b: &[u8]) -> usize {
    if b[0] < 0x80 {
        1
    } else {
        2
    }
}

// The sequences themselves, sorted: KOI8U's two box-drawing characters
// (WHATWG's KOI8-U is KOI8-RU), code points on which GB 2312 and GBK
// differ, one JIS X 0212 character, GB18030-2022's remapped code points
// (PostgreSQL maps them to the private use area), and Big5-HKSCS's
// departures from PostgreSQL's Big5.
const REFUSED_KOI8U: &[u32] = &[0xae, 0xbe];
const REFUSED_BIG5: &[u32] = &[
    0xa145, 0xa14e, 0xa15a, 0xa1c2, 0xa1c3, 0xa1c5, 0xa1e3, 0xa1f2, 0xa1f3, 0xa1fe, 0xa240, 0xa241,
    0xa242, 0xa244, 0xa246, 0xa247, 0xa2cc, 0xa2ce, 0xc6a1, 0xc6a2, 0xc6a3, 0xc6a4, 0xc6a5, 0xc6a6,
    0xc6a7, 0xc6a8, 0xc6a9, 0xc6aa, 0xc6ab, 0xc6ac, 0xc6ad, 0xc6ae, 0xc6af, 0xc6b0, 0xc6b1, 0xc6b2,
    0xc6b3, 0xc6b4, 0xc6b5, 0xc6b6, 0xc6b7, 0xc6b8, 0xc6b9, 0xc6ba, 0xc6bb, 0xc6bc, 0xc6bd, 0xc6be,
    0xc6bf, 0xc6c0, 0xc6c1, 0xc6c2, 0xc6c3, 0xc6c4, 0xc6c5, 0xc6c6, 0xc6c7, 0xc6c8, 0xc6c9, 0xc6ca,
    0xc6cb, 0xc6cc, 0xc6cd, 0xc6ce, 0xc6cf, 0xc6d0, 0xc6d1, 0xc6d2, 0xc6d3, 0xc6d4, 0xc6d5, 0xc6d6,
    0xc6d7, 0xc6d8, 0xc6d9, 0xc6da, 0xc6db, 0xc6dc, 0xc6dd, 0xc6de, 0xc6df, 0xc6e0, 0xc6e1, 0xc6e2,
    0xc6e3, 0xc6e4, 0xc6e5, 0xc6e6, 0xc6e7, 0xc6e8, 0xc6e9, 0xc6ea, 0xc6eb, 0xc6ec, 0xc6ed, 0xc6ee,
    0xc6ef, 0xc6f0, 0xc6f1, 0xc6f2, 0xc6f3, 0xc6f4, 0xc6f5, 0xc6f6, 0xc6f7, 0xc6f8, 0xc6f9, 0xc6fa,
    0xc6fb, 0xc6fc, 0xc6fd, 0xc6fe, 0xc740, 0xc741, 0xc742, 0xc743, 0xc744, 0xc745, 0xc746, 0xc747,
    0xc748, 0xc749, 0xc74a, 0xc74b, 0xc74c, 0xc74d, 0xc74e, 0xc74f, 0xc750, 0xc751, 0xc752, 0xc753,
    0xc754, 0xc755, 0xc756, 0xc757, 0xc758, 0xc759, 0xc75a, 0xc75b, 0xc75c, 0xc75d, 0xc75e, 0xc75f,
    0xc760, 0xc761, 0xc762, 0xc763, 0xc764, 0xc765, 0xc766, 0xc767, 0xc768, 0xc769, 0xc76a, 0xc76b,
    0xc76c, 0xc76d, 0xc76e, 0xc76f, 0xc770, 0xc771, 0xc772, 0xc773, 0xc774, 0xc775, 0xc776, 0xc777,
    0xc778, 0xc779, 0xc77a, 0xc77b, 0xc77c, 0xc77d, 0xc77e, 0xc7a1, 0xc7a2, 0xc7a3, 0xc7a4, 0xc7a5,
    0xc7a6, 0xc7a7, 0xc7a8, 0xc7a9, 0xc7aa, 0xc7ab, 0xc7ac, 0xc7ad, 0xc7ae, 0xc7af, 0xc7b0, 0xc7b1,
    0xc7b2, 0xc7b3, 0xc7b4, 0xc7b5, 0xc7b6, 0xc7b7, 0xc7b8, 0xc7b9, 0xc7ba, 0xc7bb, 0xc7bc, 0xc7bd,
    0xc7be, 0xc7bf, 0xc7c0, 0xc7c1, 0xc7c2, 0xc7c3, 0xc7c4, 0xc7c5, 0xc7c6, 0xc7c7, 0xc7c8, 0xc7c9,
    0xc7ca, 0xc7cb, 0xc7cc, 0xc7cd, 0xc7ce, 0xc7cf, 0xc7d0, 0xc7d1, 0xc7d2, 0xc7d3, 0xc7d4, 0xc7d5,
    0xc7d6, 0xc7d7, 0xc7d8, 0xc7d9, 0xc7da, 0xc7db, 0xc7dc, 0xc7dd, 0xc7de, 0xc7df, 0xc7e0, 0xc7e1,
    0xc7e2, 0xc7e3, 0xc7e4, 0xc7e5, 0xc7e6, 0xc7e7, 0xc7e8, 0xc7e9, 0xc7ea, 0xc7eb, 0xc7ec, 0xc7ed,
    0xc7ee, 0xc7ef, 0xc7f0, 0xc7f1, 0xc7f2, 0xc7f3, 0xc7f4, 0xc7f5, 0xc7f6, 0xc7f7, 0xc7f8, 0xc7f9,
    0xc7fa, 0xc7fb, 0xc7fc,
];

const REFUSED_EUC_CN: &[u32] = &[0xa1a4, 0xa1aa];

const REFUSED_EUC_JP: &[u32] = &[0x8fa2c3];

const REFUSED_GB18030: &[u32] = &[
    0xa3a0, 0xa6d9, 0xa6da, 0xa6db, 0xa6dc, 0xa6dd, 0xa6de, 0xa6df, 0xa6ec, 0xa6ed, 0xa6f3, 0xa8bc,
    0xfe59, 0xfe61, 0xfe66, 0xfe67, 0xfe6d, 0xfe7e, 0xfe90, 0xfea0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_lists_are_sorted() {
        for list in [
            REFUSED_KOI8U,
            REFUSED_BIG5,
            REFUSED_EUC_CN,
            REFUSED_EUC_JP,
            REFUSED_GB18030,
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]));
        }
        let big5 = Decoder::for_session(Encoding::lookup("BIG5").unwrap(), Encoding::UTF8);
        assert!(big5.decode(b"a\xa1\x45").is_err());
        let gb = Decoder::for_session(Encoding::lookup("GB18030").unwrap(), Encoding::UTF8);
        assert!(gb.decode(b"\x81\x30\x81\x30\xa3\xa0").is_err());
        assert!(gb.decode(b"\x81\x30\x81\x30\xa1\xa1").is_ok());
    }

    #[test]
    fn names_are_read_as_postgres_reads_them() {
        assert_eq!(Encoding::lookup("latin1").unwrap().name, "LATIN1");
        assert_eq!(Encoding::lookup("ISO-8859-1").unwrap().name, "LATIN1");
        assert_eq!(Encoding::lookup("Shift_JIS").unwrap().name, "SJIS");
        assert_eq!(Encoding::lookup("win932").unwrap().name, "SJIS");
        assert_eq!(Encoding::lookup("unicode").unwrap().name, "UTF8");
        assert_eq!(Encoding::lookup("iso_8859_9").unwrap().name, "LATIN5");
        assert!(Encoding::lookup("klingon").is_none());
        for e in ENCODINGS {
            assert_eq!(Encoding::lookup(e.name), Some(*e), "{}", e.name);
        }
    }

    /// LATIN1 is ISO 8859-1, not the windows-1252 WHATWG gives that label.
    #[test]
    fn latin1_is_iso_8859_1() {
        let d = Decoder::for_session(Encoding::lookup("LATIN1").unwrap(), Encoding::UTF8);
        assert_eq!(d.decode(b"\x80\x9f\xdf").unwrap(), "\u{80}\u{9f}\u{df}");
        let d5 = Decoder::for_session(Encoding::lookup("LATIN5").unwrap(), Encoding::UTF8);
        assert_eq!(d5.decode(b"\x80\xdd\xe9").unwrap(), "\u{80}\u{130}\u{e9}");
    }

    /// A trail byte that is `\` or `'` belongs to its character; a lead
    /// byte before an ASCII byte that cannot trail it is an error, never
    /// read again as ASCII.
    #[test]
    fn multibyte_characters_keep_their_ascii_trail_bytes() {
        let sjis = Decoder::for_session(Encoding::lookup("SJIS").unwrap(), Encoding::UTF8);
        // 0x95 0x5C is 表: the 0x5C is not a backslash.
        assert_eq!(sjis.decode(b"'\x95\x5c'").unwrap(), "'表'");
        let e = sjis.decode(b"'\x81\x27'").unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::Invalid {
                    encoding: "SJIS",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(sjis.decode(b"x\x81").is_err(), "a lead byte at the end");
        let big5 = Decoder::for_session(Encoding::lookup("BIG5").unwrap(), Encoding::UTF8);
        assert_eq!(big5.decode(b"\xa5\x5c").unwrap(), "功");
        let gbk = Decoder::for_session(Encoding::lookup("GBK").unwrap(), Encoding::UTF8);
        assert_eq!(gbk.decode(b"\x81\x5c").unwrap().chars().count(), 1);
    }

    #[test]
    fn sessions_read_text_as_their_server_does() {
        let sjis = Encoding::lookup("SJIS").unwrap();
        let latin1 = Encoding::lookup("LATIN1").unwrap();
        // No conversion from SQL_ASCII: checked as the database's encoding.
        let d = Decoder::for_session(Encoding::SQL_ASCII, Encoding::UTF8);
        assert!(d.is_utf8());
        assert!(d.decode(b"\xdf").is_err());
        // Into an SQL_ASCII database: as they are, checked in the client's
        // encoding; a client-only encoding may send ASCII only.
        let d = Decoder::for_session(latin1, Encoding::SQL_ASCII);
        assert_eq!(d.decode(b"\xdf").unwrap(), "ß");
        let d = Decoder::for_session(sjis, Encoding::SQL_ASCII);
        assert_eq!(d.decode(b"ok").unwrap(), "ok");
        assert_eq!(
            d.decode(b"\x95\x5c").unwrap_err(),
            DecodeError::NotAscii { byte: 0x95 }
        );
        let d = Decoder::for_session(Encoding::SQL_ASCII, Encoding::SQL_ASCII);
        assert_eq!(d.decode(b"\xff").unwrap(), "\u{ff}");
        // Opaque encodings: ASCII only, with an error that says so.
        let d = Decoder::for_session(Encoding::lookup("EUC_TW").unwrap(), Encoding::UTF8);
        assert_eq!(d.decode(b"SELECT 1").unwrap(), "SELECT 1");
        assert!(matches!(
            d.decode(b"\xa4\xa1"),
            Err(DecodeError::Unreadable { encoding: "EUC_TW" })
        ));
        assert_eq!(
            Decoder::UTF8
                .decode(b"a\xc3")
                .unwrap_err()
                .to_pg_error()
                .code,
            "22021"
        );
    }
}
