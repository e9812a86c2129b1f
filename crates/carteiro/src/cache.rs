//! A small cache for what changes rarely and is read on every request
//! (resolved settings, API keys). An entry lives `ttl`, and all entries are
//! dropped at once when this process changes the configuration (the version
//! moves); a change made elsewhere (the CLI, another instance) is seen
//! within `ttl`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Cache<K, V> {
    entries: Mutex<HashMap<K, (Instant, u64, V)>>,
    ttl: Duration,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl }
    }

    pub fn get(&self, key: &K, version: &AtomicU64) -> Option<V> {
        let now = version.load(Ordering::Acquire);
        let entries = self.entries.lock().expect("cache lock");
        let (at, seen, value) = entries.get(key)?;
        (at.elapsed() < self.ttl && *seen == now).then(|| value.clone())
    }

    /// Keeps `value`, read when the configuration was at `version_before` (a
    /// change made meanwhile makes it stale at once).
    pub fn put(&self, key: K, version_before: u64, value: V) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() > 10_000 {
            entries.retain(|_, (at, _, _)| at.elapsed() < self.ttl);
        }
        entries.insert(key, (Instant::now(), version_before, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_change_drops_every_entry() {
        let version = AtomicU64::new(0);
        let cache = Cache::new(Duration::from_secs(60));
        cache.put("acme", version.load(Ordering::Acquire), 1);
        assert_eq!(cache.get(&"acme", &version), Some(1));
        version.fetch_add(1, Ordering::Release);
        assert_eq!(cache.get(&"acme", &version), None);
    }

    #[test]
    fn entries_expire() {
        let version = AtomicU64::new(0);
        let cache = Cache::new(Duration::ZERO);
        cache.put("acme", 0, 1);
        assert_eq!(cache.get(&"acme", &version), None);
    }
}
