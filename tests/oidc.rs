//! OIDC sign-in end to end: a throwaway issuer on loopback, pgward in front
//! of a real PostgreSQL, tokio-postgres, psql and a raw OAUTHBEARER client.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::idp::{now, unsigned, Idp, SigningKey};
use common::{read_msg, Harness, Setup};
use postgres_protocol::message::frontend;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BINDINGS: &str = r#"
[[binding]]
claims = { groups = "db-analysts" }
roles = ["analyst"]

[[binding]]
claims = { "realm_access.roles" = "dba" }
roles = ["dba"]
"#;

fn rules() -> pgward::rules::Rules {
    let mut r = pgward::demo::example_rules()
        .expect("example rules")
        .without_upstream_users();
    r.add_file(Path::new("bindings.toml"), BINDINGS)
        .expect("bindings");
    r.validate().expect("valid rules");
    r
}

/// `[oidc]` with `extra`, and each issuer with `per_issuer` keys.
fn oidc_toml(issuers: &[&str], extra: &str, per_issuer: &str) -> String {
    let mut t = format!("[oidc]\n{extra}\n");
    for i in issuers {
        t.push_str(&format!(
            "\n[[oidc.issuer]]\nissuer = \"{i}\"\naudience = [\"pgward\"]\nusername_claim = \"sub\"\n{per_issuer}\n"
        ));
    }
    t
}

async fn start(issuers: &[&str], extra: &str) -> Harness {
    start_with(issuers, extra, "").await
}

async fn start_with(issuers: &[&str], extra: &str, per_issuer: &str) -> Harness {
    Harness::start_with(Setup {
        rules: Some(rules()),
        extra: oidc_toml(issuers, extra, per_issuer),
        ..Setup::default()
    })
    .await
}

async fn connect(
    h: &Harness,
    user: &str,
    token: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    tokio_postgres::Error,
> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(h.addr.port())
        .user(user)
        .password(token)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await?;
    Ok((client, tokio::spawn(conn)))
}

/// The FATAL a refused sign-in gets: (SQLSTATE, message).
async fn refusal(h: &Harness, user: &str, token: &str) -> (String, String) {
    match connect(h, user, token).await {
        Ok(_) => panic!("{user} signed in with a token that should be refused"),
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("not a server error: {e}"));
            assert_eq!(db.severity(), "FATAL", "{db:?}");
            (db.code().code().to_owned(), db.message().to_owned())
        }
    }
}

/// Sends `message` where pgward asks for a password; returns the ErrorResponse.
async fn raw_password(h: &Harness, user: &str, message: &[u8]) -> String {
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let mut b = BytesMut::new();
    frontend::startup_message([("user", user), ("database", "postgres")], &mut b).expect("startup");
    s.write_all(&b).await.expect("send");
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(
        (tag, &body[..]),
        (b'R', &3i32.to_be_bytes()[..]),
        "password request"
    );
    // The server may close before reading everything: only its answer counts.
    let _ = s.write_all(message).await;
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'E');
    String::from_utf8_lossy(&body).into_owned()
}

/// The audited start of `identity`'s first session.
fn session_start(h: &Harness, identity: &str) -> pgward::audit::Event {
    h.audit_events()
        .into_iter()
        .find(|e| {
            e.kind == pgward::audit::Kind::SessionStart && e.identity.as_deref() == Some(identity)
        })
        .unwrap_or_else(|| panic!("no session_start of {identity}"))
}

fn with(mut claims: Value, extra: Value) -> Value {
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    claims
}

#[tokio::test]
async fn tokens_sign_in_with_the_role_their_claims_bind() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    let idp = Idp::start(&[&rsa, &ec]).await;
    let h = start(&[&idp.issuer], "allow_loopback_cleartext = true").await;

    // RS256, groups → analyst: reads run, writes are denied by the role.
    let analyst = rsa.sign(&with(
        idp.claims("svc-reports"),
        json!({"groups": ["staff", "db-analysts"]}),
    ));
    let (c, _conn) = connect(&h, "svc-reports", &analyst).await.expect("sign in");
    let one: i32 = c.query_one("SELECT 1", &[]).await.expect("read").get(0);
    assert_eq!(one, 1);
    let e = c
        .batch_execute("CREATE TABLE oidc_t (id int)")
        .await
        .expect_err("analyst may not create tables");
    assert!(Harness::is_denial(&e), "{e:?}");
    let msg = e.as_db_error().expect("db error").message().to_owned();
    assert!(msg.contains("\"analyst\""), "{msg}");

    // ES256, a nested claim → dba: DDL runs.
    let dba = ec.sign(&with(
        idp.claims("ops-1"),
        json!({"realm_access": {"roles": ["offline_access", "dba"]}}),
    ));
    let (c, _conn) = connect(&h, "ops-1", &dba).await.expect("sign in");
    c.batch_execute("CREATE TABLE oidc_t (id int); DROP TABLE oidc_t")
        .await
        .expect("dba runs DDL");

    // A token over 10 kB (many groups) works, with tokio-postgres and psql.
    let groups: Vec<String> = (0..700).map(|i| format!("team-{i:04}")).collect();
    let mut claims = idp.claims("svc-big");
    claims["groups"] = json!(groups);
    claims["groups"]
        .as_array_mut()
        .expect("array")
        .push(json!("db-analysts"));
    let big = rsa.sign(&claims);
    assert!(big.len() > 10_000, "token is {} bytes", big.len());
    let (c, _conn) = connect(&h, "svc-big", &big).await.expect("big token");
    c.query_one("SELECT 1", &[]).await.expect("read");

    // psql over TLS, the token in PGPASSWORD.
    let info = format!(
        "host=127.0.0.1 port={} user=svc-reports dbname=postgres sslmode=require",
        h.addr.port()
    );
    for token in [&analyst, &big] {
        let (ok, out, err) = h
            .run(
                "psql",
                &["-X", "-A", "-t", "-d", &info, "-c", "SELECT 40 + 2"],
                &[("PGPASSWORD", token.as_str())],
            )
            .await;
        // The big token names svc-big; user name must match the sub claim.
        if token == &big {
            assert!(!ok && err.contains("does not match"), "{err}");
        } else {
            assert!(ok, "psql with a token: {err}");
            assert_eq!(out.trim(), "42");
        }
    }

    // The audit log names the token's identity, the method and the issuer.
    let start = session_start(&h, "svc-reports");
    assert_eq!(start.auth_method.as_deref(), Some("oidc"));
    assert_eq!(start.role.as_deref(), Some("analyst"));
    assert!(
        start
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(&idp.issuer)),
        "{:?}",
        start.detail
    );
}

#[tokio::test]
async fn every_bad_token_is_refused_with_a_clear_error() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    let idp = Idp::start(&[&rsa, &ec]).await;
    let h = start(&[&idp.issuer], "allow_loopback_cleartext = true").await;
    let ok = |sub: &str| with(idp.claims(sub), json!({"groups": "db-analysts"}));
    let t = now();

    let attacker = SigningKey::ec("ec-1"); // same kid, another key
    let hmac_with_public_key = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        jsonwebtoken::encode(
            &header,
            &ok("svc"),
            &jsonwebtoken::EncodingKey::from_secret(&rsa.public_bytes),
        )
        .expect("hs256")
    };
    let cases: Vec<(&str, String, &str, &str)> =
        vec![
        (
            "expired",
            rsa.sign(&with(ok("svc"), json!({"exp": t - 120, "iat": t - 700}))),
            "svc",
            "expired at",
        ),
        (
            "not yet valid",
            rsa.sign(&with(ok("svc"), json!({"nbf": t + 300}))),
            "svc",
            "not valid before",
        ),
        (
            "issued in the future",
            rsa.sign(&with(ok("svc"), json!({"iat": t + 300}))),
            "svc",
            "issued in the future",
        ),
        (
            "wrong audience",
            rsa.sign(&with(ok("svc"), json!({"aud": "another-app"}))),
            "svc",
            "audience",
        ),
        (
            "wrong issuer",
            rsa.sign(&with(ok("svc"), json!({"iss": "https://evil.example.com"}))),
            "svc",
            "is not configured",
        ),
        (
            "bad signature",
            attacker.sign(&ok("svc")),
            "svc",
            "signature does not verify",
        ),
        (
            "alg none",
            unsigned(&json!({"alg": "none", "typ": "JWT"}), &ok("svc"), b""),
            "svc",
            "unsigned",
        ),
        (
            "HS256 keyed with the public key",
            hmac_with_public_key,
            "svc",
            "HMAC",
        ),
        (
            "no exp",
            rsa.sign(
                &json!({"iss": idp.issuer, "aud": "pgward", "sub": "svc", "groups": "db-analysts"}),
            ),
            "svc",
            "no exp claim",
        ),
        (
            "no binding",
            rsa.sign(&idp.claims("nobody")),
            "nobody",
            "no binding",
        ),
        (
            "user name is not the token's",
            rsa.sign(&ok("svc")),
            "svc-other",
            "does not match",
        ),
        ("not a JWT", "hunter2".to_owned(), "svc", "not a JWT"),
        (
            "a name that would forge log lines",
            rsa.sign(&with(ok("svc"), json!({"sub": "svc\nINFO session started identity=dana"}))),
            "svc",
            "control characters",
        ),
        (
            "unknown key id",
            {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                header.kid = Some("made-up".into());
                let mut parts: Vec<String> =
                    ec.sign(&ok("svc")).split('.').map(String::from).collect();
                parts[0] = unsigned(
                    &serde_json::to_value(&header).expect("header"),
                    &json!({}),
                    b"",
                )
                .split('.')
                .next()
                .expect("header part")
                .to_owned();
                parts.join(".")
            },
            "svc",
            "no ES256 signing key with key id \"made-up\"",
        ),
    ];
    for (what, token, user, expected) in &cases {
        let (code, msg) = refusal(&h, user, token).await;
        assert_eq!(code, "28000", "{what}: {msg}");
        assert!(
            msg.starts_with("pgward: OIDC sign-in failed"),
            "{what}: {msg}"
        );
        assert!(
            msg.contains(expected),
            "{what}: expected {expected:?} in {msg}"
        );
    }
    // Malformed password messages: a clear FATAL for that connection only.
    let unterminated = [&b"p\0\0\0\x08abcd"[..]].concat();
    let not_utf8 = [&b"p\0\0\0\x07\xff\xfe\0"[..]].concat();
    let mut huge = b"p".to_vec();
    huge.extend_from_slice(&(70_000i32 + 4).to_be_bytes());
    huge.extend(std::iter::repeat_n(b'a', 70_000));
    for (body, expected) in [
        (unterminated, "malformed password message"),
        (not_utf8, "malformed password message"),
        (huge, "over the limit of"),
    ] {
        let text = raw_password(&h, "svc", &body).await;
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }

    // psql shows the reason too.
    let info = format!(
        "host=127.0.0.1 port={} user=svc dbname=postgres sslmode=require",
        h.addr.port()
    );
    let (ok_run, _, err) = h
        .run(
            "psql",
            &["-X", "-d", &info, "-c", "SELECT 1"],
            &[("PGPASSWORD", cases[0].1.as_str())],
        )
        .await;
    assert!(!ok_run && err.contains("expired at"), "{err}");
    // The same issuer's good token still works after all that.
    let (c, _conn) = connect(&h, "svc", &rsa.sign(&ok("svc")))
        .await
        .expect("sign in");
    c.query_one("SELECT 1", &[]).await.expect("read");
    // Each refusal is in the audit log.
    let refused = h
        .audit_events()
        .into_iter()
        .filter(|e| e.kind == pgward::audit::Kind::SessionRefused)
        .count();
    assert!(refused >= cases.len(), "{refused} refusals audited");
}

#[tokio::test]
async fn tokens_travel_only_over_tls_unless_loopback_is_allowed() {
    let rsa = SigningKey::rsa("rsa-1");
    let idp = Idp::start(&[&rsa]).await;
    let h = start(&[&idp.issuer], "").await;
    let token = rsa.sign(&with(idp.claims("svc"), json!({"groups": "db-analysts"})));

    // pgward refuses before asking for the password: the token never leaves
    // the client on a plain connection.
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let mut b = BytesMut::new();
    frontend::startup_message([("user", "svc"), ("database", "postgres")], &mut b)
        .expect("startup");
    s.write_all(&b).await.expect("send");
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'E', "pgward asked for a password over plain TCP");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("28000") && text.contains("only over TLS"),
        "{text}"
    );

    let (code, msg) = match connect(&h, "svc", &token).await {
        Ok(_) => panic!("signed in over plain TCP"),
        Err(e) => {
            let db = e.as_db_error().expect("server error");
            (db.code().code().to_owned(), db.message().to_owned())
        }
    };
    assert_eq!(code, "28000");
    assert!(msg.contains("only over TLS"), "{msg}");

    // Over TLS the same token works.
    let info = format!(
        "host=127.0.0.1 port={} user=svc dbname=postgres sslmode=require",
        h.addr.port()
    );
    let (ok, out, err) = h
        .run(
            "psql",
            &["-X", "-A", "-t", "-d", &info, "-c", "SELECT 7"],
            &[("PGPASSWORD", token.as_str())],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "7");
    // Declared identities still sign in with SCRAM.
    let c = h.connect(common::ALICE).await;
    c.query_one("SELECT 1", &[]).await.expect("alice reads");
}

#[tokio::test]
async fn rotated_keys_are_fetched_without_a_restart_but_not_on_every_bad_token() {
    let rsa = SigningKey::rsa("rsa-1");
    let idp = Idp::start(&[&rsa]).await;
    let h = start(
        &[&idp.issuer],
        "allow_loopback_cleartext = true\njwks_min_refresh_secs = 4",
    )
    .await;
    let claims = with(idp.claims("svc"), json!({"groups": "db-analysts"}));
    let (c, _conn) = connect(&h, "svc", &rsa.sign(&claims))
        .await
        .expect("sign in");
    c.query_one("SELECT 1", &[]).await.expect("read");
    let after_first = idp.fetches();
    assert_eq!(after_first, 1, "one fetch of the key set");

    // The provider rotates to a new key. Right after the last fetch, a
    // token with the new kid is refused: refetching is rate-limited.
    let rotated = SigningKey::ec("ec-2");
    idp.publish(&rotated);
    let fetched_at = Instant::now();
    let (code, msg) = refusal(&h, "svc", &rotated.sign(&claims)).await;
    assert_eq!(code, "28000");
    assert!(msg.contains("refetched at most every 4s"), "{msg}");
    // A flood of made-up key ids does not reach the provider.
    let bogus: Vec<SigningKey> = (0..20)
        .map(|i| SigningKey::ec(&format!("bogus-{i}")))
        .collect();
    let floods = bogus.iter().map(|k| {
        let token = k.sign(&claims);
        let h = &h;
        async move { refusal(h, "svc", &token).await }
    });
    for (code, _) in futures_util::future::join_all(floods).await {
        assert_eq!(code, "28000");
    }
    assert_eq!(
        idp.fetches(),
        after_first,
        "bad tokens hammered the provider"
    );

    // Once the interval has passed, the new key is fetched and works; the
    // old one still does.
    let wait = Duration::from_millis(4200).saturating_sub(fetched_at.elapsed());
    tokio::time::sleep(wait).await;
    let (c, _conn) = connect(&h, "svc", &rotated.sign(&claims))
        .await
        .expect("rotated key signs in");
    c.query_one("SELECT 1", &[]).await.expect("read");
    assert_eq!(idp.fetches(), after_first + 1);
    let (c, _conn) = connect(&h, "svc", &rsa.sign(&claims))
        .await
        .expect("old key");
    c.query_one("SELECT 1", &[]).await.expect("read");
    assert_eq!(idp.fetches(), after_first + 1);
}

#[tokio::test]
async fn a_session_ends_when_its_token_expires() {
    let rsa = SigningKey::rsa("rsa-1");
    let idp = Idp::start(&[&rsa]).await;
    // The session lasts until exp + leeway + grace: 2 + 1 + 1 s here.
    let h = start_with(
        &[&idp.issuer],
        "allow_loopback_cleartext = true\nexpiry_grace_secs = 1",
        "leeway_secs = 1",
    )
    .await;
    let claims = with(
        idp.claims("svc-short"),
        json!({"groups": "db-analysts", "exp": now() + 2}),
    );
    let started = Instant::now();
    let (c, conn) = connect(&h, "svc-short", &rsa.sign(&claims))
        .await
        .expect("sign in");
    c.query_one("SELECT 1", &[])
        .await
        .expect("read while valid");
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the session outlived its token")
        .expect("connection task");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(3), "ended after {elapsed:?}");
    let e = ended.expect_err("the session ends with an error");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.severity(), "FATAL");
    assert_eq!(db.code().code(), "28000");
    assert!(db.message().contains("expired"), "{}", db.message());
    assert!(c.query_one("SELECT 1", &[]).await.is_err());

    let events = h.audit_events();
    let end = events
        .iter()
        .find(|e| e.kind == pgward::audit::Kind::SessionEnd)
        .expect("session_end");
    assert!(
        end.detail.as_deref().is_some_and(|d| d.contains("expired")),
        "{:?}",
        end.detail
    );
}

#[tokio::test]
async fn an_unreachable_or_hanging_provider_is_a_clear_error_not_a_hang() {
    let down = format!("http://127.0.0.1:{}", common::free_port());
    let key = SigningKey::ec("ec-1");
    let hanging = Idp::start(&[&key]).await;
    hanging
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Keys offered over plain HTTP from another host are not fetched.
    let cleartext = Idp::start(&[&key]).await;
    *cleartext.jwks_uri.lock().expect("jwks_uri") = Some("http://keys.example.com/jwks".into());
    let h = start(
        &[&down, &hanging.issuer, &cleartext.issuer],
        "allow_loopback_cleartext = true\nhttp_timeout_secs = 1",
    )
    .await;
    for iss in [&down, &hanging.issuer] {
        let claims = json!({
            "iss": iss, "sub": "svc", "aud": "pgward", "groups": "db-analysts",
            "iat": now(), "exp": now() + 600,
        });
        let t0 = Instant::now();
        let (code, msg) = refusal(&h, "svc", &key.sign(&claims)).await;
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t0.elapsed()
        );
        assert_eq!(code, "28000");
        assert!(msg.contains("cannot fetch the signing keys"), "{msg}");
        assert!(msg.contains(iss.as_str()), "{msg}");
    }
    let claims = json!({
        "iss": cleartext.issuer, "sub": "svc", "aud": "pgward", "groups": "db-analysts",
        "iat": now(), "exp": now() + 600,
    });
    let (code, msg) = refusal(&h, "svc", &key.sign(&claims)).await;
    assert_eq!(code, "28000");
    assert!(
        msg.contains("jwks_uri \"http://keys.example.com/jwks\", which is not https://"),
        "{msg}"
    );
}

/// A raw OAUTHBEARER exchange, as libpq 18 performs it.
async fn oauthbearer(h: &Harness, user: &str, initial: &[u8]) -> (TcpStream, u8, Vec<u8>) {
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let mut b = BytesMut::new();
    frontend::startup_message([("user", user), ("database", "postgres")], &mut b).expect("startup");
    s.write_all(&b).await.expect("send");
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'R');
    assert_eq!(&body[..4], &10i32.to_be_bytes(), "AuthenticationSASL");
    assert_eq!(&body[4..], b"OAUTHBEARER\0\0");
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("OAUTHBEARER", initial, &mut out).expect("initial");
    s.write_all(&out).await.expect("send");
    let (tag, body) = read_msg(&mut s).await;
    (s, tag, body)
}

/// Sends a SASLResponse; returns the reply's type and its body as text.
async fn sasl_reply(s: &mut TcpStream, data: &[u8]) -> (u8, String) {
    let mut out = BytesMut::new();
    frontend::sasl_response(data, &mut out).expect("SASLResponse");
    s.write_all(&out).await.expect("send");
    let (tag, body) = read_msg(s).await;
    (tag, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn libpq_18_oauthbearer_discovery_and_sign_in() {
    let rsa = SigningKey::rsa("rsa-1");
    let idp = Idp::start(&[&rsa]).await;
    let h = start(
        &[&idp.issuer],
        "allow_loopback_cleartext = true\nmethod = \"oauthbearer\"",
    )
    .await;

    // No token yet: pgward says where to get one, then fails the attempt.
    let (mut s, tag, body) = oauthbearer(&h, "svc", b"n,,\x01auth=\x01\x01").await;
    assert_eq!(tag, b'R');
    assert_eq!(
        &body[..4],
        &11i32.to_be_bytes(),
        "AuthenticationSASLContinue"
    );
    let doc: Value = serde_json::from_slice(&body[4..]).expect("json");
    assert_eq!(doc["status"], "invalid_token");
    assert_eq!(
        doc["openid-configuration"],
        format!("{}/.well-known/openid-configuration", idp.issuer)
    );
    assert_eq!(doc["scope"], "openid");
    let (tag, text) = sasl_reply(&mut s, b"\x01").await;
    assert_eq!(tag, b'E');
    assert!(text.contains("28000"), "{text}");

    // With a token: AuthenticationOk, then a working session.
    let token = rsa.sign(&with(idp.claims("svc"), json!({"groups": "db-analysts"})));
    let initial = format!("n,,\x01auth=Bearer {token}\x01\x01");
    let (mut s, tag, body) = oauthbearer(&h, "svc", initial.as_bytes()).await;
    assert_eq!(
        (tag, &body[..]),
        (b'R', &0i32.to_be_bytes()[..]),
        "AuthenticationOk"
    );
    loop {
        let (tag, _) = read_msg(&mut s).await;
        if tag == b'Z' {
            break;
        }
    }
    let mut out = BytesMut::new();
    frontend::query("SELECT 'via oauthbearer'", &mut out).expect("query");
    s.write_all(&out).await.expect("send");
    let mut row = None;
    loop {
        let (tag, body) = read_msg(&mut s).await;
        match tag {
            b'D' => row = Some(String::from_utf8_lossy(&body).into_owned()),
            b'Z' => break,
            b'E' => panic!("{}", String::from_utf8_lossy(&body)),
            _ => {}
        }
    }
    assert!(row.is_some_and(|r| r.contains("via oauthbearer")));

    // Without an initial response: an empty challenge, then the token.
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    let mut b = BytesMut::new();
    frontend::startup_message([("user", "svc"), ("database", "postgres")], &mut b)
        .expect("startup");
    s.write_all(&b).await.expect("send");
    let (tag, _) = read_msg(&mut s).await;
    assert_eq!(tag, b'R');
    // SASLInitialResponse with length -1.
    let mut out = BytesMut::new();
    out.extend_from_slice(b"p\0\0\0\x14OAUTHBEARER\0\xff\xff\xff\xff");
    s.write_all(&out).await.expect("send");
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(
        (tag, &body[..]),
        (b'R', &11i32.to_be_bytes()[..]),
        "empty challenge"
    );
    let mut out = BytesMut::new();
    frontend::sasl_response(initial.as_bytes(), &mut out).expect("response");
    s.write_all(&out).await.expect("send");
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(
        (tag, &body[..]),
        (b'R', &0i32.to_be_bytes()[..]),
        "AuthenticationOk"
    );

    // A bad token through OAUTHBEARER: the error document first (RFC 7628
    // 3.2.2), and after the client's acknowledgement the refusal, with why.
    let expired = rsa.sign(&with(
        idp.claims("svc"),
        json!({"groups": "db-analysts", "exp": now() - 600}),
    ));
    let initial = format!("n,,\x01auth=Bearer {expired}\x01\x01");
    let (mut s, tag, body) = oauthbearer(&h, "svc", initial.as_bytes()).await;
    assert_eq!((tag, &body[..4]), (b'R', &11i32.to_be_bytes()[..]));
    let doc: Value = serde_json::from_slice(&body[4..]).expect("json");
    assert_eq!(doc["status"], "invalid_token");
    assert_eq!(doc["scope"], "openid");
    let (tag, text) = sasl_reply(&mut s, b"\x01").await;
    assert_eq!(tag, b'E');
    assert!(
        text.contains("28000") && text.contains("expired at"),
        "{text}"
    );
    // Anything but the acknowledgement there is a protocol error.
    let (mut s, tag, _) = oauthbearer(&h, "svc", initial.as_bytes()).await;
    assert_eq!(tag, b'R');
    let (tag, text) = sasl_reply(&mut s, initial.as_bytes()).await;
    assert_eq!(tag, b'E');
    assert!(
        text.contains("08P01") && text.contains("acknowledgement"),
        "{text}"
    );
    // Malformed OAUTHBEARER messages are protocol errors for that connection.
    for (initial, expected) in [
        (&b"n,,\x01auth=Basic abc\x01\x01"[..], "Bearer"),
        (
            b"p=tls-server-end-point,,\x01auth=Bearer t\x01\x01",
            "channel binding",
        ),
        (b"n,,\x01auth=Bearer t\x01", "unterminated"),
    ] {
        let (_s, tag, body) = oauthbearer(&h, "svc", initial).await;
        assert_eq!(tag, b'E');
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("08P01") && text.contains(expected), "{text}");
    }

    // Declared identities keep SCRAM.
    let c = h.connect(common::ALICE).await;
    c.query_one("SELECT 1", &[]).await.expect("alice reads");
    let _ = Arc::clone(&idp);
}

#[tokio::test]
async fn several_issuers_scoped_bindings_and_a_bindings_reload() {
    let a_key = SigningKey::rsa("a-1");
    let b_key = SigningKey::ec("b-1");
    let a = Idp::start(&[&a_key]).await;
    let b = Idp::start(&[&b_key]).await;
    let bindings = format!(
        "[[binding]]\nissuer = \"{}\"\nclaims = {{ team = \"data\" }}\nroles = [\"analyst\"]\n\n[[binding]]\nissuer = \"{}\"\nclaims = {{ team = \"data\" }}\nroles = [\"dba\"]\n",
        a.issuer, b.issuer
    );
    let mut r = pgward::demo::example_rules()
        .expect("example rules")
        .without_upstream_users();
    r.add_file(Path::new("bindings.toml"), &bindings)
        .expect("bindings");
    r.validate().expect("valid");
    // Issuer A checks the user name against sub; issuer B ignores it.
    let extra = format!(
        "[oidc]\nallow_loopback_cleartext = true\n\n[[oidc.issuer]]\nissuer = \"{}\"\naudience = [\"pgward\"]\nusername_claim = \"sub\"\n\n[[oidc.issuer]]\nissuer = \"{}\"\naudience = [\"db\", \"pgward\"]\nidentity_claim = \"email\"\n",
        a.issuer, b.issuer
    );
    let h = Harness::start_with(Setup {
        rules: Some(r),
        extra,
        ..Setup::default()
    })
    .await;
    let team = json!({"team": "data"});

    // The same claims, two issuers, two roles.
    let (ca, _conn_a) = connect(
        &h,
        "svc-a",
        &a_key.sign(&with(a.claims("svc-a"), team.clone())),
    )
    .await
    .expect("issuer A");
    let e = ca
        .batch_execute("CREATE TABLE from_a (id int)")
        .await
        .expect_err("analyst");
    assert!(Harness::is_denial(&e), "{e:?}");
    let b_claims = with(
        b.claims("0f9a-opaque"),
        json!({"team": "data", "email": "bea@example.com"}),
    );
    let (cb, _conn_b) = connect(&h, "any-name-at-all", &b_key.sign(&b_claims))
        .await
        .expect("issuer B ignores the user name");
    cb.batch_execute("CREATE TABLE from_b (id int)")
        .await
        .expect("dba");
    // A token of B's signed with A's key does not pass as B's.
    let forged = a_key.sign(&b_claims);
    let (code, msg) = refusal(&h, "x", &forged).await;
    assert_eq!(code, "28000");
    assert!(msg.contains("key id \"a-1\""), "{msg}");

    // Reloaded bindings apply to running sessions at their next statement:
    // A's tokens now bind to nothing, so its session loses its role.
    let mut r = pgward::demo::example_rules()
        .expect("example rules")
        .without_upstream_users();
    let only_b = format!(
        "[[binding]]\nissuer = \"{}\"\nclaims = {{ team = \"data\" }}\nroles = [\"dba\"]\n",
        b.issuer
    );
    r.add_file(Path::new("bindings.toml"), &only_b)
        .expect("bindings");
    r.validate().expect("valid");
    h.shared.set_rules(r);
    let e = ca
        .query_one("SELECT 1", &[])
        .await
        .expect_err("no role after the reload");
    let msg = e.as_db_error().expect("db error").message().to_owned();
    assert!(msg.contains("no binding"), "{msg}");
    cb.query_one("SELECT 1", &[]).await.expect("B keeps dba");
    cb.batch_execute("DROP TABLE from_b").await.expect("dba");

    // B's session is named by its email claim.
    let start_b = session_start(&h, "bea@example.com");
    assert_eq!(start_b.role.as_deref(), Some("dba"));
}
