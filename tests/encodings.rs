//! pgward reads a client's text in its encoding exactly as PostgreSQL
//! does: the server is the oracle. Every byte and byte pair (and samples of
//! longer sequences) of every encoding pgward decodes is converted by the
//! server (`convert_from`) and by pgward's decoder; wherever the server
//! reads a sequence, pgward must read it as the same characters, and
//! wherever the two disagree pgward must refuse it (the server then either
//! refuses it too, or pgward is stricter, which costs compatibility, never
//! safety).

mod common;

use pgward::protocol::encoding::{Decoder, Encoding, ENCODINGS};

/// What the server makes of `bytes` in `encoding`: None when it refuses.
async fn server_reads(
    c: &tokio_postgres::Client,
    encoding: &str,
    inputs: &[Vec<u8>],
) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(4096) {
        let hex: Vec<String> = chunk.iter().map(|b| hex(b)).collect();
        let rows = c
            .query(
                "SELECT pgward_try_convert(decode(h, 'hex'), $2) \
                 FROM unnest($1::text[]) WITH ORDINALITY u(h, n) ORDER BY n",
                &[&hex, &encoding],
            )
            .await
            .expect("convert");
        out.extend(rows.iter().map(|r| r.get::<_, Option<String>>(0)));
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Inputs for one encoding: every non-ASCII byte alone and followed by any
/// byte but NUL, every byte pair's lead with two more, and samples of four
/// bytes (GB18030's long form, EUC_JP's and EUC_TW's three and four).
fn inputs() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for a in 0x80u8..=0xff {
        v.push(vec![a]);
        for b in 0x01u8..=0xff {
            v.push(vec![a, b]);
        }
    }
    // EUC_JP's JIS X 0212 (0x8F lead) and half-width katakana (0x8E).
    for b in 0xa1u8..=0xfe {
        for c in 0xa1u8..=0xfe {
            v.push(vec![0x8f, b, c]);
        }
    }
    // Mixed with ASCII specials: a lead byte before a quote or backslash
    // and after them.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const PIECES: &[u8] = b"'\\\"a0 ";
    for _ in 0..20_000 {
        let len = 2 + next() % 5;
        let s: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if r % 3 == 0 {
                    PIECES[(r / 3 % PIECES.len() as u64) as usize]
                } else if r % 3 == 1 {
                    0x30 + (r / 3 % 10) as u8
                } else {
                    0x80 + (r / 3 % 0x80) as u8
                }
            })
            .collect();
        v.push(s);
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn decoders_read_what_the_server_reads() {
    let pg = tokio::task::spawn_blocking(pgward::localpg::LocalPg::start)
        .await
        .unwrap()
        .expect("start localpg");
    let (c, conn) = tokio_postgres::connect(&pg.conninfo("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    c.batch_execute(
        "CREATE FUNCTION pgward_try_convert(b bytea, enc text) RETURNS text \
         LANGUAGE plpgsql AS $$ BEGIN RETURN convert_from(b, enc); \
         EXCEPTION WHEN OTHERS THEN RETURN NULL; END $$",
    )
    .await
    .unwrap();
    let all = inputs();
    let mut report = String::new();
    for enc in ENCODINGS {
        if !enc.decodable() || enc.name == "SQL_ASCII" || enc.name == "UTF8" {
            continue;
        }
        let server = server_reads(&c, enc.name, &all).await;
        let decoder = Decoder::for_session(*enc, Encoding::UTF8);
        let (mut differ, mut stricter, mut looser) = (Vec::new(), Vec::new(), 0);
        for (bytes, theirs) in all.iter().zip(&server) {
            let ours = decoder.decode(bytes).ok();
            match (theirs, ours) {
                (Some(t), Some(o)) if *t == *o => {}
                (Some(t), Some(o)) => {
                    let ascii = |s: &str| s.chars().filter(char::is_ascii).collect::<String>();
                    let split = if ascii(t) != ascii(&o) { "SPLIT " } else { "" };
                    differ.push(format!("{split}{} server {t:?} pgward {o:?}", hex(bytes)))
                }
                (Some(t), None) => stricter.push(format!("{} server {t:?}", hex(bytes))),
                (None, Some(_)) => looser += 1,
                (None, None) => {}
            }
        }
        report.push_str(&format!(
            "{}: {} differ, {} only the server reads, {} only pgward reads\n",
            enc.name,
            differ.len(),
            stricter.len(),
            looser
        ));
        if std::env::var_os("PGWARD_ENCODING_LIST").is_some() && !differ.is_empty() {
            let mut seqs: Vec<String> = Vec::new();
            for (b, t) in all.iter().zip(&server) {
                if let (Some(t), Some(o)) = (t, decoder.decode(b).ok()) {
                    if *t != *o && b.len() <= 3 && t.chars().count() == 1 {
                        seqs.push(format!("0x{}", hex(b)));
                    }
                }
            }
            report.push_str(&format!("   LIST {}: [{}]\n", enc.name, seqs.join(", ")));
        }
        for d in differ.iter().take(8) {
            report.push_str(&format!("   differ {d}\n"));
        }
        for d in stricter.iter().take(4) {
            report.push_str(&format!("   stricter {d}\n"));
        }
    }
    println!("{report}");
    assert!(!report.contains(" differ "), "{report}");
}

use common::{error_field, login_with, until_ready, Harness, Setup, ALICE, DANA};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use tokio::io::AsyncWriteExt;

/// psql with `sql` (raw bytes in `encoding`) as one Query; (ok, stdout,
/// stderr), stdout in the client encoding.
async fn psql_raw(conninfo: &str, encoding: &str, sql: &[u8]) -> (bool, Vec<u8>, String) {
    let path = pgward::localpg::find_program("psql").expect("psql");
    let out = tokio::process::Command::new(path)
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .arg("-d")
        .arg(conninfo)
        .arg("-c")
        .arg(OsStr::from_bytes(sql))
        .env("PGCLIENTENCODING", encoding)
        .env_remove("PGPASSWORD")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run psql");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

async fn scratch_rows(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM scratch", &[])
        .await
        .unwrap()
        .get(0)
}

/// For each client encoding, statements with a multibyte character whose
/// second byte is a backslash (or another ASCII byte) inside E'' strings,
/// plain strings and quoted identifiers: pgward's verdict for a read-only
/// role follows what the server runs. A write hidden behind what a byte
/// reader takes for an escaped quote is refused (and the server, asked
/// directly, does run it); a harmless read whose string swallows a
/// `'; DELETE` passes and returns what the server returns directly.
#[tokio::test(flavor = "multi_thread")]
async fn verdicts_follow_the_server_in_every_encoding() {
    let h = Harness::start_with(Setup {
        setup_sql: vec!["CREATE TABLE scratch (a int); INSERT INTO scratch VALUES (1), (2)".into()],
        ..Setup::default()
    })
    .await;
    let direct = h.direct().await;
    let through = h.conninfo(ALICE);
    let straight = h.pg.conninfo("postgres");
    // (encoding, a character in it; most end in an ASCII byte)
    let cases: &[(&str, &[u8])] = &[
        ("SJIS", b"\x95\x5c"),
        ("BIG5", b"\xa5\x5c"),
        ("GBK", b"\x81\x5c"),
        ("GB18030", b"\x81\x5c"),
        ("UHC", b"\x81\x41"),
        ("EUC_JP", b"\xa4\xa2"),
        ("EUC_KR", b"\xb0\xa1"),
        ("EUC_CN", b"\xb0\xa1"),
        ("LATIN1", b"\xdf"),
        ("LATIN5", b"\xdd"),
        ("WIN1252", b"\x80"),
        ("WIN1251", b"\xc0"),
        ("KOI8R", b"\xc1"),
        ("ISO_8859_7", b"\xe1"),
    ];
    for &(enc, ch) in cases {
        // A read: the string ends where the server says; the rest of it
        // (`'; DELETE ... --`) is text. (The server refuses `\'` in
        // client-only encodings: `''` is the quote.) A byte reader would
        // take the character's last byte and the quote for an escaped
        // quote, and the next quote for the string's end.
        let read = cat(&[
            b"SELECT E'",
            ch,
            b"''; DELETE FROM scratch; --' || '",
            ch,
            b"' AS \"",
            ch,
            b"\", count(*) FROM scratch",
        ]);
        let (ok, out, err) = psql_raw(&through, enc, &read).await;
        assert!(ok, "{enc}: a read was refused: {err}");
        let (dok, dout, derr) = psql_raw(&straight, enc, &read).await;
        assert!(dok, "{enc}: direct: {derr}");
        assert_eq!(out, dout, "{enc}: rows differ from the server's");
        assert_eq!(scratch_rows(&direct).await, 2, "{enc}");

        // A write after a string that ends in the character: a reader that
        // took its last byte for a backslash would see one string.
        let write = cat(&[b"SELECT E'", ch, b"'; DELETE FROM scratch; --'"]);
        let (ok, _, err) = psql_raw(&through, enc, &write).await;
        assert!(
            !ok && err.contains("42501") && err.contains("pgward"),
            "{enc}: {err}"
        );
        assert_eq!(scratch_rows(&direct).await, 2, "{enc}: the write ran");
        let plain = cat(&[b"SELECT '", ch, b"'; DELETE FROM scratch; --'"]);
        let (ok, _, err) = psql_raw(&through, enc, &plain).await;
        assert!(!ok && err.contains("42501"), "{enc}: {err}");
        // The server, asked directly, runs it: pgward refused a real write.
        let (ok, _, err) = psql_raw(&straight, enc, &write).await;
        assert!(ok, "{enc}: {err}");
        assert_eq!(
            scratch_rows(&direct).await,
            0,
            "{enc}: the server ran no DELETE"
        );
        direct
            .batch_execute("INSERT INTO scratch VALUES (1), (2)")
            .await
            .unwrap();
    }
    // Invalid text is refused as the server refuses it, and the session
    // goes on.
    let (ok, _, err) = psql_raw(&through, "SJIS", b"SELECT '\x81\x27'").await;
    assert!(
        !ok && err.contains("22021") && err.contains("SJIS"),
        "{err}"
    );
    let (ok, _, err) = psql_raw(&straight, "SJIS", b"SELECT '\x81\x27'").await;
    assert!(!ok && err.contains("22021"), "{err}");
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn query(sql: &[u8]) -> Vec<u8> {
    message(b'Q', &cat(&[sql, b"\0"]))
}

/// The extended protocol in LATIN1, as psycopg 3 sends
/// `SELECT %s::text || 'ß'`; then a switch to SJIS within the session, and
/// text sent before the switch is confirmed.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_follow_their_client_encoding() {
    let h = Harness::start().await;
    let mut s = login_with(
        &h,
        &[
            ("user", DANA.0),
            ("database", "postgres"),
            ("client_encoding", "LATIN1"),
        ],
        DANA.1,
    )
    .await
    .expect("login");
    let mut pipeline = message(b'P', b"\0SELECT $1::text || '\xdf'\0\0\0");
    pipeline.extend(message(b'B', b"\0\0\0\0\0\x01\0\0\0\x01\xe9\0\0"));
    pipeline.extend(message(b'E', b"\0\0\0\0\0"));
    pipeline.extend(message(b'S', b""));
    s.write_all(&pipeline).await.unwrap();
    let answer = until_ready(&mut s).await;
    let row = answer.iter().find(|(t, _)| *t == b'D').expect("a row");
    assert!(row.1.ends_with(b"\xe9\xdf"), "{answer:?}");

    // A statement judged at Bind reads its text values in LATIN1 too.
    let mut pipeline = message(b'P', b"\0SELECT set_config('search_path', $1, false)\0\0\0");
    pipeline.extend(message(b'B', b"\0\0\0\0\0\x01\0\0\0\x02\xe9t\0\0"));
    pipeline.extend(message(b'E', b"\0\0\0\0\0"));
    pipeline.extend(message(b'S', b""));
    s.write_all(&pipeline).await.unwrap();
    let answer = until_ready(&mut s).await;
    assert!(
        answer
            .iter()
            .any(|(t, b)| *t == b'D' && b.ends_with(b"\xe9t")),
        "{answer:?}"
    );

    // SET within the session: the server reports SJIS, pgward follows.
    s.write_all(&query(b"SET client_encoding TO 'SJIS'"))
        .await
        .unwrap();
    let answer = until_ready(&mut s).await;
    assert!(answer
        .iter()
        .any(|(t, b)| *t == b'S' && b.starts_with(b"client_encoding\0SJIS")));
    s.write_all(&query(b"SELECT E'\x95\x5c' AS x"))
        .await
        .unwrap();
    let answer = until_ready(&mut s).await;
    let row = answer.iter().find(|(t, _)| *t == b'D').expect("a row");
    assert!(row.1.ends_with(b"\x95\x5c"), "{answer:?}");

    // A portal name that is not SJIS: refused as the server refuses it,
    // and the session goes on after Sync.
    let mut pipeline = message(b'P', b"\0SELECT 1\0\0\0");
    pipeline.extend(message(b'B', b"\x81\x27\0\0\0\0\0\0\0\0"));
    pipeline.extend(message(b'E', b"\x81\x27\0\0\0\0\0"));
    pipeline.extend(message(b'S', b""));
    s.write_all(&pipeline).await.unwrap();
    let answer = until_ready(&mut s).await;
    let err = answer.iter().find(|(t, _)| *t == b'E').expect("refused");
    assert_eq!(error_field(&err.1, b'C'), "22021", "{answer:?}");
    s.write_all(&query(b"SELECT 2")).await.unwrap();
    let answer = until_ready(&mut s).await;
    assert!(answer.iter().any(|(t, _)| *t == b'D'), "{answer:?}");

    // Pipelined behind a change not yet confirmed, non-ASCII text cannot
    // be read with certainty: refused; ASCII text passes.
    let mut pipeline = query(b"SET client_encoding TO 'LATIN1'");
    pipeline.extend(query(b"SELECT '\xdf'"));
    pipeline.extend(query(b"SELECT 'ascii'"));
    s.write_all(&pipeline).await.unwrap();
    let first = until_ready(&mut s).await;
    assert!(!first.iter().any(|(t, _)| *t == b'E'), "{first:?}");
    let second = until_ready(&mut s).await;
    let err = second.iter().find(|(t, _)| *t == b'E').expect("refused");
    assert_eq!(error_field(&err.1, b'C'), "55000", "{second:?}");
    let third = until_ready(&mut s).await;
    assert!(third.iter().any(|(t, _)| *t == b'D'), "{third:?}");
    // Confirmed now: LATIN1 text reads.
    s.write_all(&query(b"SELECT '\xdf'")).await.unwrap();
    let answer = until_ready(&mut s).await;
    assert!(
        answer
            .iter()
            .any(|(t, b)| *t == b'D' && b.ends_with(b"\xdf")),
        "{answer:?}"
    );

    // A SET rolled back: the server goes back to LATIN1, and so does pgward.
    let mut pipeline = query(b"BEGIN");
    pipeline.extend(query(b"SET client_encoding TO 'SJIS'"));
    pipeline.extend(query(b"ROLLBACK"));
    pipeline.extend(query(b"SELECT '\xdf'"));
    s.write_all(&pipeline).await.unwrap();
    for _ in 0..3 {
        let a = until_ready(&mut s).await;
        assert!(!a.iter().any(|(t, _)| *t == b'E'), "{a:?}");
    }
    // Behind the ROLLBACK, not yet answered when it was judged: refused.
    let a = until_ready(&mut s).await;
    assert!(a.iter().any(|(t, _)| *t == b'E'), "{a:?}");
    s.write_all(&query(b"SELECT '\xdf'")).await.unwrap();
    let a = until_ready(&mut s).await;
    assert!(
        a.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"\xdf")),
        "{a:?}"
    );

    // An encoding pgward has no faithful decoder for: ASCII passes,
    // other text is refused with a clear error, not a protocol error.
    s.write_all(&query(b"SET client_encoding TO 'EUC_TW'"))
        .await
        .unwrap();
    until_ready(&mut s).await;
    s.write_all(&query(b"SELECT 1")).await.unwrap();
    let a = until_ready(&mut s).await;
    assert!(a.iter().any(|(t, _)| *t == b'D'), "{a:?}");
    s.write_all(&query(b"SELECT '\xa4\xa1'")).await.unwrap();
    let a = until_ready(&mut s).await;
    let err = a.iter().find(|(t, _)| *t == b'E').expect("refused");
    assert_eq!(error_field(&err.1, b'C'), "0A000", "{a:?}");
    assert!(error_field(&err.1, b'M').contains("EUC_TW"));
}

/// An SQL_ASCII database converts nothing: a client in an encoding a
/// database could use has its text checked in that encoding and read as it
/// is; one in a client-only encoding (SJIS) may send ASCII only, as the
/// server says; and an SQL_ASCII client there sends any bytes.
#[tokio::test(flavor = "multi_thread")]
async fn an_sql_ascii_database_reads_text_as_it_is() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            "CREATE DATABASE raw ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
                .into(),
        ],
        ..Setup::default()
    })
    .await;
    let login = |encoding: &'static str| {
        let h = &h;
        async move {
            login_with(
                h,
                &[
                    ("user", DANA.0),
                    ("database", "raw"),
                    ("client_encoding", encoding),
                ],
                DANA.1,
            )
            .await
            .expect("login")
        }
    };
    let mut s = login("SJIS").await;
    s.write_all(&query(b"SELECT 'ok'")).await.unwrap();
    let a = until_ready(&mut s).await;
    assert!(a.iter().any(|(t, _)| *t == b'D'), "{a:?}");
    s.write_all(&query(b"SELECT '\x95\x5c'")).await.unwrap();
    let a = until_ready(&mut s).await;
    let err = a.iter().find(|(t, _)| *t == b'E').expect("refused");
    assert_eq!(error_field(&err.1, b'C'), "22P05", "{a:?}");
    let mut s = login("LATIN1").await;
    s.write_all(&query(b"SELECT '\xdf'")).await.unwrap();
    let a = until_ready(&mut s).await;
    assert!(
        a.iter().any(|(t, b)| *t == b'D' && b.ends_with(b"\xdf")),
        "{a:?}"
    );
    let mut s = login("SQL_ASCII").await;
    s.write_all(&query(b"SELECT '\xff\x5c'")).await.unwrap();
    let a = until_ready(&mut s).await;
    assert!(
        a.iter()
            .any(|(t, b)| *t == b'D' && b.ends_with(b"\xff\x5c")),
        "{a:?}"
    );
}

/// The encodings pgward has no faithful decoder for (EUC_TW, EUC_JIS_2004,
/// SHIFT_JIS_2004, JOHAB, MULE_INTERNAL: encoding_rs has none of them, and
/// their tables are too large to carry) work for ASCII text, which is
/// itself in each of them, and refuse other text with an error naming the
/// encoding, never guessing at it. SHIFT_JIS_2004 is the one among them
/// whose second bytes may be ASCII (`\x95\x5c` is one character, ending
/// in a backslash's byte): a reader that took it byte by byte would end a
/// string where the server does not. The server is asked the same things
/// directly, as the oracle.
#[tokio::test(flavor = "multi_thread")]
async fn encodings_without_a_decoder_take_ascii_only() {
    let h = Harness::start_with(Setup {
        setup_sql: vec![
            "CREATE TABLE scratch (a int); INSERT INTO scratch VALUES (1), (2)".into(),
            "CREATE DATABASE tw ENCODING 'EUC_TW' TEMPLATE template0 LOCALE 'C'".into(),
            "CREATE DATABASE jis ENCODING 'EUC_JIS_2004' TEMPLATE template0 LOCALE 'C'".into(),
            "CREATE DATABASE mule ENCODING 'MULE_INTERNAL' TEMPLATE template0 LOCALE 'C'".into(),
        ],
        ..Setup::default()
    })
    .await;
    let direct = h.direct().await;
    let in_db = |info: String, db: &str| info.replace("dbname=postgres", &format!("dbname={db}"));
    let ascii_plain: &[u8] = b"SELECT 'it''s' AS x, E'a\\\\b' AS y";
    let ascii_read = cat(&[ascii_plain, b", count(*) FROM scratch"]);
    // (client encoding, a character the server accepts in it)
    let cases: &[(&str, &[u8])] = &[
        ("EUC_TW", b"\xa4\xa1"),
        ("EUC_JIS_2004", b"\xa4\xa2"),
        ("SHIFT_JIS_2004", b"\x95\x5c"),
        ("JOHAB", b"\x88\xa1"),
    ];
    for &(enc, ch) in cases {
        let through = h.conninfo(ALICE);
        let straight = h.pg.conninfo("postgres");
        let (ok, out, err) = psql_raw(&through, enc, &ascii_read).await;
        assert!(ok, "{enc}: ASCII was refused: {err}");
        let (dok, dout, derr) = psql_raw(&straight, enc, &ascii_read).await;
        assert!(dok, "{enc}: direct: {derr}");
        assert_eq!(out, dout, "{enc}: rows differ from the server's");

        let read = cat(&[b"SELECT '", ch, b"' AS x"]);
        let (ok, _, err) = psql_raw(&through, enc, &read).await;
        assert!(
            !ok && err.contains("0A000") && err.contains(enc),
            "{enc}: {err}"
        );
        let (ok, _, err) = psql_raw(&straight, enc, &read).await;
        assert!(ok, "{enc}: the server reads the character: {err}");

        // A string that ends in the character, then a write.
        let write = cat(&[b"SELECT E'", ch, b"'; DELETE FROM scratch; --'"]);
        let (ok, _, err) = psql_raw(&through, enc, &write).await;
        assert!(!ok && err.contains("0A000"), "{enc}: {err}");
        assert_eq!(scratch_rows(&direct).await, 2, "{enc}: the write ran");
    }
    // The server, asked directly, runs that write in SHIFT_JIS_2004.
    let (ok, _, err) = psql_raw(
        &h.pg.conninfo("postgres"),
        "SHIFT_JIS_2004",
        b"SELECT E'\x95\x5c'; DELETE FROM scratch; --'",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(scratch_rows(&direct).await, 0, "the server ran no DELETE");

    // Databases in them: a UTF8 client's text is read as UTF-8 (the
    // server converts it, and none of their bytes after the first of a
    // character is ASCII); a client in the database's own encoding may
    // send ASCII only.
    for (db, enc, utf8_text) in [
        ("tw", "EUC_TW", Some("中文")),
        ("jis", "EUC_JIS_2004", Some("あい")),
        // The server converts nothing between MULE_INTERNAL and UTF8.
        ("mule", "MULE_INTERNAL", None),
    ] {
        let through = in_db(h.conninfo(DANA), db);
        let straight = in_db(h.pg.conninfo("postgres"), db);
        if let Some(text) = utf8_text {
            let sql = format!("SELECT '{text}' AS x, length('{text}') AS n");
            let (ok, out, err) = psql_raw(&through, "UTF8", sql.as_bytes()).await;
            assert!(ok, "{db}: {err}");
            let (_, dout, _) = psql_raw(&straight, "UTF8", sql.as_bytes()).await;
            assert_eq!(out, dout, "{db}");
        }
        let (ok, out, err) = psql_raw(&through, enc, ascii_plain).await;
        assert!(ok, "{db} in {enc}: {err}");
        let (_, dout, _) = psql_raw(&straight, enc, ascii_plain).await;
        assert_eq!(out, dout, "{db}");
        let non_ascii: &[u8] = match enc {
            "MULE_INTERNAL" => b"SELECT '\x92\xa4\xa2' AS x",
            _ => b"SELECT '\xa4\xa2' AS x",
        };
        let (ok, _, err) = psql_raw(&through, enc, non_ascii).await;
        assert!(
            !ok && err.contains("0A000") && err.contains(enc),
            "{db}: {err}"
        );
        let (ok, _, err) = psql_raw(&straight, enc, non_ascii).await;
        assert!(ok, "{db}: the server reads it: {err}");
    }
}
