//! The BackendKeyData clients get, mapped to the upstream's.
//!
//! A client sees the upstream backend's real process id, the one that
//! NotificationResponse carries and `pg_backend_pid()` returns, so every
//! pid a client sees is one number. The secret key is pgward's own
//! (random): the upstream's secret never leaves pgward, so a key a client
//! was given cannot cancel a query by going to the server directly, and a
//! stale key cancels nothing.
//!
//! Keys are held per pid with their secrets: two live sessions may share a
//! pid (an upstream backend that exited before its session was dropped and
//! a new one given the same pid, or two upstream servers), and each is
//! found only by its own secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use subtle::ConstantTimeEq;

use crate::session::registry::Control;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKey {
    pub process_id: i32,
    pub secret_key: i32,
}

/// A live session's upstream key and the handle that reaches the session
/// itself (a cancel of a statement held for approval goes there).
type Entry = (i32, BackendKey, Arc<Control>);

/// Per client-visible pid: (pgward's secret, the upstream key, the
/// session's control) of each live session with that pid.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<i32, Vec<Entry>>>,
}

/// Keeps a key registered while the session lives.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    pub key: BackendKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.registry.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = map.get_mut(&self.key.process_id) {
            keys.retain(|(secret, _, _)| *secret != self.key.secret_key);
            if keys.is_empty() {
                map.remove(&self.key.process_id);
            }
        }
    }
}

impl CancelRegistry {
    /// Issues the client-facing key for an upstream key: the upstream's
    /// pid with a fresh secret, distinct from the secrets of any other
    /// live session with that pid.
    pub fn register(self: &Arc<Self>, upstream: BackendKey, control: Arc<Control>) -> Registration {
        let mut rng = rand::rng();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let keys = map.entry(upstream.process_id).or_default();
        let secret_key = loop {
            let secret = rng.random::<i32>();
            if !keys.iter().any(|(s, _, _)| *s == secret) {
                break secret;
            }
        };
        keys.push((secret_key, upstream, control));
        Registration {
            registry: self.clone(),
            key: BackendKey {
                process_id: upstream.process_id,
                secret_key,
            },
        }
    }

    /// The upstream key for a client key, if the client key is live and its
    /// secret matches (compared in constant time, against every live
    /// secret for that pid).
    pub fn lookup(&self, key: BackendKey) -> Option<BackendKey> {
        self.find(key).map(|(up, _)| up)
    }

    /// The upstream key and the session's control for a client key (as
    /// `lookup`).
    pub fn find(&self, key: BackendKey) -> Option<(BackendKey, Arc<Control>)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = key.secret_key.to_be_bytes();
        let mut found = None;
        for (secret, upstream, control) in map.get(&key.process_id)? {
            if bool::from(secret.to_be_bytes().ct_eq(&wanted)) {
                found = Some((*upstream, control.clone()));
            }
        }
        found
    }

    /// The number of live keys.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_and_expire() {
        let reg = Arc::new(CancelRegistry::default());
        let up = BackendKey {
            process_id: 42,
            secret_key: 7,
        };
        let r = reg.register(up, Arc::default());
        // The client sees the upstream's pid, never its secret.
        assert_eq!(r.key.process_id, 42);
        assert_eq!(reg.lookup(r.key), Some(up));
        assert_eq!(reg.lookup(up), (r.key.secret_key == 7).then_some(up));
        let wrong = BackendKey {
            secret_key: r.key.secret_key.wrapping_add(1),
            ..r.key
        };
        assert_eq!(reg.lookup(wrong), None);
        let key = r.key;
        drop(r);
        assert_eq!(reg.lookup(key), None, "a stale key cancels nothing");
        assert!(reg.is_empty());
    }

    /// Two sessions with the same upstream pid (two servers, or a pid
    /// reused before the old session ended) are told apart by their
    /// secrets, and ending one leaves the other.
    #[test]
    fn one_pid_two_sessions() {
        let reg = Arc::new(CancelRegistry::default());
        let a_up = BackendKey {
            process_id: 1000,
            secret_key: 1,
        };
        let b_up = BackendKey {
            process_id: 1000,
            secret_key: 2,
        };
        let a = reg.register(a_up, Arc::default());
        let b = reg.register(b_up, Arc::default());
        assert_eq!(a.key.process_id, b.key.process_id);
        assert_ne!(a.key.secret_key, b.key.secret_key);
        assert_eq!(reg.lookup(a.key), Some(a_up));
        assert_eq!(reg.lookup(b.key), Some(b_up));
        assert_eq!(reg.len(), 2);
        let b_key = b.key;
        drop(a);
        assert_eq!(reg.lookup(b_key), Some(b_up));
        assert_eq!(reg.len(), 1);
        drop(b);
        assert_eq!(reg.lookup(b_key), None);
        assert!(reg.is_empty());
    }
}
