//! The SASL OAUTHBEARER mechanism (RFC 7628) as PostgreSQL 18 speaks it:
//! the client's first message carries `auth=Bearer <token>`, or an empty
//! `auth=` to ask where to get a token.

pub const MECHANISM: &str = "OAUTHBEARER";

const KVSEP: u8 = 0x01;

#[derive(Debug, PartialEq, Eq)]
pub enum Initial<'a> {
    Token(&'a str),
    /// No token yet: the client wants the issuer and scope.
    Discovery,
}

/// Parses `gs2-header kvsep *(key=value kvsep) kvsep`.
pub fn parse_initial(data: &[u8]) -> Result<Initial<'_>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "OAUTHBEARER message is not UTF-8")?;
    let rest = match text.as_bytes().first() {
        Some(b'n' | b'y') if text.as_bytes().get(1) == Some(&b',') => &text[2..],
        Some(b'p') => return Err("OAUTHBEARER does not support channel binding".into()),
        _ => return Err("malformed OAUTHBEARER message: bad GS2 header".into()),
    };
    let (authzid, rest) = rest
        .split_once(',')
        .ok_or("malformed OAUTHBEARER message: unterminated GS2 header")?;
    if !authzid.is_empty() {
        return Err("OAUTHBEARER authorization identities (a=) are not supported".into());
    }
    let pairs = rest
        .strip_prefix(KVSEP as char)
        .and_then(|r| r.strip_suffix(KVSEP as char))
        .ok_or("malformed OAUTHBEARER message: missing separators")?;
    let mut auth = None;
    if !pairs.is_empty() {
        let pairs = pairs
            .strip_suffix(KVSEP as char)
            .ok_or("malformed OAUTHBEARER message: unterminated key/value pair")?;
        for pair in pairs.split(KVSEP as char) {
            let (key, value) = pair
                .split_once('=')
                .ok_or("malformed OAUTHBEARER message: key without '='")?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!("malformed OAUTHBEARER message: bad key {key:?}"));
            }
            if key == "auth" {
                if auth.is_some() {
                    return Err("malformed OAUTHBEARER message: auth given twice".into());
                }
                auth = Some(value);
            }
        }
    }
    match auth {
        None => Err("OAUTHBEARER message has no auth value".into()),
        Some("") => Ok(Initial::Discovery),
        Some(v) => {
            let (scheme, token) = v
                .split_once(' ')
                .ok_or("OAUTHBEARER auth value is not \"Bearer <token>\"")?;
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err("OAUTHBEARER auth value is not \"Bearer <token>\"".into());
            }
            Ok(Initial::Token(token.trim()))
        }
    }
}

/// The server's answer to a discovery request or a refused token: where a
/// client gets a token (RFC 7628 section 3.2.2).
pub fn error_document(discovery_url: &str, scope: &str) -> Vec<u8> {
    serde_json::json!({
        "status": "invalid_token",
        "openid-configuration": discovery_url,
        "scope": scope,
    })
    .to_string()
    .into_bytes()
}

/// The client's acknowledgement of an error document: one kvsep.
pub fn is_error_ack(data: &[u8]) -> bool {
    data == [KVSEP]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_responses() {
        assert_eq!(
            parse_initial(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01"),
            Ok(Initial::Token("abc.def.ghi"))
        );
        assert_eq!(
            parse_initial(b"y,,\x01host=x\x01auth=bearer t\x01\x01"),
            Ok(Initial::Token("t"))
        );
        assert_eq!(
            parse_initial(b"n,,\x01auth=\x01\x01"),
            Ok(Initial::Discovery)
        );
        for bad in [
            &b"p=tls-server-end-point,,\x01auth=Bearer t\x01\x01"[..],
            b"n,a=bob,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01\x01",
            b"n,,\x01auth=Bearer a\x01auth=Bearer b\x01\x01",
            b"n,,\x01=x\x01\x01",
            b"",
            b"\xff\xfe",
        ] {
            assert!(parse_initial(bad).is_err(), "{bad:?}");
        }
        assert!(is_error_ack(b"\x01"));
        let doc = error_document("https://idp/.well-known/openid-configuration", "openid");
        let v: serde_json::Value = serde_json::from_slice(&doc).expect("json");
        assert_eq!(v["status"], "invalid_token");
    }
}
