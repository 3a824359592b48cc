//! Mask functions as the rules name them, and the HMAC key of `hash`.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a masked column shows instead of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskFn {
    /// A constant of the column's type (`***`, 0, 2000-01-01, `{}`).
    Redact,
    /// SQL NULL.
    Null,
    /// Keep the first and last characters; every other letter or digit
    /// becomes `*` (punctuation stays: `***-**-1120`).
    Partial { first: u16, last: u16 },
    /// HMAC-SHA-256 of the value, keyed by a secret: stable, so equal
    /// values mask equal (joins, GROUP BY and equality keep working).
    Hash,
    /// `a***@example.com`: the first character and the domain.
    Email,
    /// The type's neutral value (numbers 0, dates 2000-01-01, JSON `{}`,
    /// arrays `{}`, text `***`).
    Default,
}

impl MaskFn {
    /// Parses a rule's value: `redact`, `null`, `partial(first,last)`,
    /// `hash`, `email`, `default`.
    pub fn parse(text: &str) -> Result<MaskFn, String> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "redact" => return Ok(MaskFn::Redact),
            "null" => return Ok(MaskFn::Null),
            "hash" => return Ok(MaskFn::Hash),
            "email" => return Ok(MaskFn::Email),
            "default" => return Ok(MaskFn::Default),
            _ => {}
        }
        let bad = || {
            format!(
                "{text:?} is not a mask; use \"redact\", \"null\", \"partial(first,last)\", \"hash\", \"email\" or \"default\""
            )
        };
        let inner = t
            .strip_prefix("partial(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(bad)?;
        let (a, b) = inner.split_once(',').ok_or_else(bad)?;
        let num = |s: &str| {
            s.trim().parse::<u16>().map_err(|_| {
                format!("{text:?}: partial takes two counts of characters, such as partial(0,4)")
            })
        };
        Ok(MaskFn::Partial {
            first: num(a)?,
            last: num(b)?,
        })
    }

    /// How much a mask hides: when several masks meet in one output, the
    /// one that hides most wins.
    fn rank(self) -> u8 {
        match self {
            MaskFn::Null => 6,
            MaskFn::Redact => 5,
            MaskFn::Default => 4,
            MaskFn::Hash => 3,
            MaskFn::Partial { .. } => 2,
            MaskFn::Email => 1,
        }
    }

    /// The mask of an output that derives from two masked sources: the
    /// same mask when they agree, else the stricter of `null` and `redact`
    /// (two different masks of different columns cannot both be kept).
    pub fn strictest(self, other: MaskFn) -> MaskFn {
        if self == other {
            return self;
        }
        if self == MaskFn::Null || other == MaskFn::Null {
            return MaskFn::Null;
        }
        if self.rank().max(other.rank()) >= MaskFn::Default.rank() {
            return if self.rank() >= other.rank() {
                self
            } else {
                other
            };
        }
        MaskFn::Redact
    }

    /// The mask of a value computed from a masked one (`upper(ssn)`):
    /// `partial` and `email` keep characters by position, which a
    /// computation can move (`reverse(ssn)`), and `hash` keeps equality,
    /// which of a computed value answers the client's question
    /// (`substring(ssn from '^078')`): they become `redact`.
    pub fn derived(self) -> MaskFn {
        match self {
            MaskFn::Partial { .. } | MaskFn::Email | MaskFn::Hash => MaskFn::Redact,
            m => m,
        }
    }
}

impl fmt::Display for MaskFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskFn::Redact => f.write_str("redact"),
            MaskFn::Null => f.write_str("null"),
            MaskFn::Partial { first, last } => write!(f, "partial({first},{last})"),
            MaskFn::Hash => f.write_str("hash"),
            MaskFn::Email => f.write_str("email"),
            MaskFn::Default => f.write_str("default"),
        }
    }
}

/// The secret `hash` masks are keyed with, as an HMAC already keyed: each
/// value then costs the hashing of its own bytes only.
#[derive(Clone)]
pub struct HashKey(Hmac<Sha256>);

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// Fewer bytes than this make a key that can be guessed.
pub const MIN_KEY_BYTES: usize = 16;

impl HashKey {
    pub fn new(secret: &[u8]) -> Result<HashKey, String> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the hash mask key has {} bytes; use at least {MIN_KEY_BYTES} random bytes",
                secret.len()
            ));
        }
        // HMAC takes a key of any length: new_from_slice cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .map_err(|e| format!("the hash mask key: {e}"))?;
        Ok(HashKey(mac))
    }

    /// Reads the key from environment variable `var`.
    pub fn from_env(var: &str) -> Result<HashKey, String> {
        let v = std::env::var_os(var)
            .ok_or_else(|| format!("environment variable {var} (mask.hash_key_env) is not set"))?;
        HashKey::new(v.as_encoded_bytes()).map_err(|e| format!("{var}: {e}"))
    }

    /// HMAC-SHA-256 of `value`.
    pub fn mac(&self, value: &[u8]) -> [u8; 32] {
        let mut m = self.0.clone();
        m.update(value);
        m.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_parse_and_name_what_to_write() {
        assert_eq!(MaskFn::parse("redact"), Ok(MaskFn::Redact));
        assert_eq!(MaskFn::parse(" Hash "), Ok(MaskFn::Hash));
        assert_eq!(
            MaskFn::parse("partial(0, 4)"),
            Ok(MaskFn::Partial { first: 0, last: 4 })
        );
        assert_eq!(
            MaskFn::Partial { first: 1, last: 2 }.to_string(),
            "partial(1,2)"
        );
        let e = MaskFn::parse("partial(a,4)").unwrap_err();
        assert!(e.contains("partial(0,4)"), "{e}");
        let e = MaskFn::parse("scramble").unwrap_err();
        assert!(e.contains("\"scramble\"") && e.contains("redact"), "{e}");
        assert!(MaskFn::parse("partial(1,2").is_err());
        assert!(MaskFn::parse("partial(1)").is_err());
    }

    #[test]
    fn the_stricter_mask_wins() {
        let p = MaskFn::Partial { first: 0, last: 4 };
        assert_eq!(p.strictest(MaskFn::Email), MaskFn::Redact);
        assert_eq!(p.strictest(MaskFn::Null), MaskFn::Null);
        assert_eq!(MaskFn::Hash.strictest(MaskFn::Hash), MaskFn::Hash);
        assert_eq!(MaskFn::Hash.strictest(p), MaskFn::Redact);
        assert_eq!(MaskFn::Default.strictest(MaskFn::Redact), MaskFn::Redact);
        assert_eq!(p.derived(), MaskFn::Redact);
        assert_eq!(MaskFn::Hash.derived(), MaskFn::Redact);
        assert_eq!(MaskFn::Null.derived(), MaskFn::Null);
    }

    #[test]
    fn short_keys_are_refused_and_macs_are_stable() {
        assert!(HashKey::new(b"short").is_err());
        let k = HashKey::new(b"0123456789abcdef0123").unwrap();
        assert_eq!(k.mac(b"x"), k.mac(b"x"));
        assert_ne!(k.mac(b"x"), k.mac(b"y"));
        let other = HashKey::new(b"fedcba98765432100123").unwrap();
        assert_ne!(k.mac(b"x"), other.mac(b"x"));
    }
}
