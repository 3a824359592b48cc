//! pgward's own BackendKeyData, mapped to the upstream's. Clients only ever
//! see pgward's keys, so a key cannot be used to cancel someone else's
//! query directly upstream, and a stale key cancels nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKey {
    pub process_id: i32,
    pub secret_key: i32,
}

#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<i32, (i32, BackendKey)>>,
}

/// Keeps a key registered while the session lives.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    pub key: BackendKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.map.lock() {
            map.remove(&self.key.process_id);
        }
    }
}

impl CancelRegistry {
    /// Issues a fresh client-facing key for an upstream key.
    pub fn register(self: &Arc<Self>, upstream: BackendKey) -> Registration {
        let mut rng = rand::rng();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let process_id = loop {
            let pid = rng.random_range(1..i32::MAX);
            if !map.contains_key(&pid) {
                break pid;
            }
        };
        let secret_key = rng.random::<i32>();
        map.insert(process_id, (secret_key, upstream));
        Registration {
            registry: self.clone(),
            key: BackendKey {
                process_id,
                secret_key,
            },
        }
    }

    /// The upstream key for a client key, if the client key is live and its
    /// secret matches.
    pub fn lookup(&self, key: BackendKey) -> Option<BackendKey> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (secret, upstream) = map.get(&key.process_id)?;
        bool::from(secret.to_be_bytes().ct_eq(&key.secret_key.to_be_bytes())).then_some(*upstream)
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
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
        let r = reg.register(up);
        assert_eq!(reg.lookup(r.key), Some(up));
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
}
