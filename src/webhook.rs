//! The approval webhook: a JSON POST for every new request, so approvers
//! hear of it in chat. Slack-compatible: its `text` field is the message;
//! the rest is the request for tools that want fields.
//!
//! Delivery is best effort and never delays the held session: the POST
//! runs on the background thread, and a failure is logged.

use std::time::Duration;

use crate::approval::Request;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a statement the payload carries.
const STATEMENT: usize = 4096;

pub struct Webhook {
    url: String,
    http: reqwest::Client,
}

impl Webhook {
    /// A webhook posting to `url` (http or https; https trusts the
    /// system's roots).
    pub fn new(url: &str) -> Result<Webhook, String> {
        let at = |m: String| format!("approval.webhook_url {url:?}: {m}");
        let parsed = reqwest::Url::parse(url).map_err(|e| at(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(at("use an http:// or https:// URL".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| at(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("pgward/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| at(format!("cannot build the HTTP client: {e}")))?;
        Ok(Webhook {
            url: url.to_owned(),
            http,
        })
    }

    /// Posts `request` in the background; `how_to_approve` is the console
    /// command with `{id}` for the request's id.
    pub fn notify(&self, request: &Request, how_to_approve: &str) {
        let body = payload(request, how_to_approve);
        let (http, url, id) = (self.http.clone(), self.url.clone(), request.id);
        crate::timer::spawn_background(async move {
            let request = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string());
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(request = id, status = %r.status(), "approval webhook refused the request")
                }
                Err(e) => tracing::warn!(request = id, "approval webhook failed: {e}"),
            }
        });
    }
}

/// The JSON body for `r`.
pub fn payload(r: &Request, how_to_approve: &str) -> serde_json::Value {
    let statement = cut(&r.statement, STATEMENT);
    let how = how_to_approve.replace("{id}", &r.id.to_string());
    let mut text = format!(
        "pgward: {} ({}) asks to run, on {}: {}\nrequest {} (class {}): {}",
        chat(&r.identity, false),
        chat(&r.role, false),
        chat(&r.database, false),
        chat(&statement, true),
        r.id,
        r.classes,
        chat(&r.why, false)
    );
    if let Some(reason) = &r.reason {
        text.push_str(&format!(
            "\nreason: {}",
            chat(&cut(reason, STATEMENT), false)
        ));
    }
    if !r.risk.is_empty() {
        text.push_str(&format!("\nrisk: {}", chat(&r.risk, false)));
    }
    text.push_str(&format!("\n{how}"));
    serde_json::json!({
        "text": text,
        "request": {
            "id": r.id,
            "identity": r.identity,
            "role": r.role,
            "session": r.session,
            "database": r.database,
            "classes": r.classes,
            "statement": statement,
            "why": r.why,
            "reason": r.reason,
            "risk": r.risk,
            "approvals_needed": r.approvals_needed,
            "requested_at": crate::console::timestamp(r.requested_at),
        },
    })
}

/// What a requester wrote, for the chat message's text: Slack reads `<...>`
/// as links and mentions (`<!channel>`, `<https://x|approve>`) and `&` as
/// the start of an escape, so those are escaped as Slack asks; without
/// `newlines`, line breaks are written out, so a reason cannot add lines
/// that look like the message's own (`risk: none`).
fn chat(s: &str, newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' if !newlines => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..at], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::SystemTime;

    fn request(statement: &str) -> Request {
        Request {
            id: 7,
            requested_at: SystemTime::UNIX_EPOCH,
            identity: "bob".into(),
            role: "app".into(),
            session: 3,
            database: "shop".into(),
            classes: "ddl".into(),
            why: "CREATE changes the schema".into(),
            reason: Some("INC-1".into()),
            statement: Arc::from(statement),
            risk: "ACCESS EXCLUSIVE on t (blocks reads and writes)".into(),
            fingerprints: vec![],
            approvals_needed: 1,
        }
    }

    #[test]
    fn the_payload_says_who_what_why_and_how_to_approve() {
        let p = payload(
            &request("DROP TABLE t"),
            "psql \"dbname=pgward\" -c \"APPROVE {id}\"",
        );
        let text = p["text"].as_str().unwrap();
        assert!(
            text.contains("bob (app) asks to run, on shop: DROP TABLE t"),
            "{text}"
        );
        assert!(
            text.contains("reason: INC-1") && text.contains("risk: ACCESS EXCLUSIVE"),
            "{text}"
        );
        assert!(text.ends_with("-c \"APPROVE 7\""), "{text}");
        assert_eq!(p["request"]["id"], 7);
        assert_eq!(p["request"]["reason"], "INC-1");
        assert_eq!(
            p["request"]["requested_at"],
            "1970-01-01 00:00:00.000000+00"
        );
        let long = "x".repeat(10_000) + "é";
        let p = payload(&request(&long), "");
        let s = p["request"]["statement"].as_str().unwrap();
        assert!(
            s.len() < 4200 && s.ends_with("(10002 bytes in all)"),
            "{}",
            s.len()
        );
    }

    /// A requester's words cannot ping the channel, make links, or add
    /// lines that look like the message's own.
    #[test]
    fn what_requesters_wrote_is_escaped_for_chat() {
        let mut r = request("SELECT 1 /* <!channel> <https://evil.example|approve> */\nFROM t");
        r.reason = Some("INC-1 & co\nrisk: none".into());
        let p = payload(&r, "");
        let text = p["text"].as_str().unwrap();
        assert!(
            text.contains("/* &lt;!channel&gt; &lt;https://evil.example|approve&gt; */\nFROM t"),
            "{text}"
        );
        assert!(
            text.contains("reason: INC-1 &amp; co\\nrisk: none\n"),
            "{text}"
        );
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        // The structured fields keep what was written.
        assert_eq!(p["request"]["reason"], "INC-1 & co\nrisk: none");
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert!(Webhook::new("https://hooks.example.com/x").is_ok());
        let e = Webhook::new("ftp://x").err().unwrap();
        assert!(
            e.contains("approval.webhook_url") && e.contains("http"),
            "{e}"
        );
        assert!(Webhook::new("not a url").is_err());
    }
}
