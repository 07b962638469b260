//! The server's model of one client's cursor cache, so a shape the client
//! already holds is sent as CURSOR_FLAGS_FROM_CACHE (its header, no pixels)
//! instead of up to 256 KiB of ARGB again.
//!
//! The client (spice-gtk's cursor channel) stores every shape sent with
//! CACHE_ME under the header's unique id, with no bound of its own, and drops
//! entries only on INVAL_ONE, INVAL_ALL, RESET and INIT. So the server keeps
//! the books and the bound, as spice-server does: 256 shapes per client, the
//! least recently used evicted with INVAL_ONE before the shape that needs its
//! room. A FROM_CACHE the client cannot resolve leaves it without a cursor,
//! so the model must never claim more than the client holds.

use std::collections::{BTreeMap, HashMap};

/// Shapes one client caches at most (spice-server's CLIENT_CURSOR_CACHE_SIZE).
pub const CURSOR_CACHE_ENTRIES: usize = 256;

/// How to send a shape.
#[derive(Debug, PartialEq, Eq)]
pub enum CursorCacheUse {
    /// The client has it: FROM_CACHE.
    Hit,
    /// Send it with CACHE_ME, after INVAL_ONE of `evict` (if any).
    Store { evict: Option<u64> },
}

#[derive(Default)]
pub struct CursorCache {
    clock: u64,
    /// id -> stamp of last use.
    entries: HashMap<u64, u64>,
    /// stamp -> id, oldest first.
    by_age: BTreeMap<u64, u64>,
}

impl CursorCache {
    pub fn new() -> CursorCache {
        CursorCache::default()
    }

    /// Decide how to send shape `id`, and update the model as if it were sent
    /// so (the shape becomes the most recently used).
    pub fn lookup(&mut self, id: u64) -> CursorCacheUse {
        self.clock += 1;
        if let Some(stamp) = self.entries.get_mut(&id) {
            self.by_age.remove(stamp);
            *stamp = self.clock;
            self.by_age.insert(self.clock, id);
            return CursorCacheUse::Hit;
        }
        let mut evict = None;
        if self.entries.len() >= CURSOR_CACHE_ENTRIES {
            if let Some((_, old)) = self.by_age.pop_first() {
                self.entries.remove(&old);
                evict = Some(old);
            }
        }
        self.entries.insert(id, self.clock);
        self.by_age.insert(self.clock, id);
        CursorCacheUse::Store { evict }
    }

    /// The client emptied its cache (INIT, INVAL_ALL, RESET).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_age.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    pub fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(evict: Option<u64>) -> CursorCacheUse {
        CursorCacheUse::Store { evict }
    }

    #[test]
    fn first_sight_stores_then_hits() {
        let mut c = CursorCache::new();
        assert_eq!(c.lookup(7), store(None));
        assert_eq!(c.lookup(7), CursorCacheUse::Hit);
        assert_eq!(c.lookup(9), store(None));
        assert_eq!(c.lookup(7), CursorCacheUse::Hit);
        assert_eq!(c.lookup(9), CursorCacheUse::Hit);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn full_cache_evicts_least_recently_used() {
        let mut c = CursorCache::new();
        for id in 0..CURSOR_CACHE_ENTRIES as u64 {
            assert_eq!(c.lookup(id), store(None));
        }
        // Using 0 again makes 1 the oldest.
        assert_eq!(c.lookup(0), CursorCacheUse::Hit);
        assert_eq!(c.lookup(1000), store(Some(1)));
        assert!(!c.contains(1) && c.contains(0) && c.contains(1000));
        assert_eq!(c.len(), CURSOR_CACHE_ENTRIES);
        // The evicted shape comes back as a new store, evicting the next oldest.
        assert_eq!(c.lookup(1), store(Some(2)));
        assert_eq!(c.len(), CURSOR_CACHE_ENTRIES);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut c = CursorCache::new();
        c.lookup(1);
        c.lookup(2);
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.lookup(1), store(None));
    }

    #[test]
    fn odd_ids_and_long_churn_stay_bounded() {
        let mut c = CursorCache::new();
        // 0 and u64::MAX are ids like any other.
        assert_eq!(c.lookup(0), store(None));
        assert_eq!(c.lookup(u64::MAX), store(None));
        assert_eq!(c.lookup(0), CursorCacheUse::Hit);
        // A guest cycling through more shapes than fit: every eviction names an
        // entry the model held, and the model never exceeds the bound.
        let mut held = std::collections::HashSet::from([0, u64::MAX]);
        let mut rng = crate::image::samples::Rng::new(5);
        for _ in 0..20_000 {
            let id = u64::from(rng.below(600));
            match c.lookup(id) {
                CursorCacheUse::Hit => assert!(held.contains(&id)),
                CursorCacheUse::Store { evict } => {
                    assert!(!held.contains(&id));
                    if let Some(e) = evict {
                        assert!(held.remove(&e), "evicted {e} it did not hold");
                    }
                    held.insert(id);
                }
            }
            assert!(c.len() <= CURSOR_CACHE_ENTRIES);
            assert_eq!(c.len(), held.len());
        }
    }
}
