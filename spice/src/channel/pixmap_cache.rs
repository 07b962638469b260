//! The server's model of one client's pixmap cache (SPICE image cache): which
//! image ids the client holds, so an image it has is sent as FROM_CACHE (its
//! 18-byte descriptor) instead of its pixels.
//!
//! The client announces the cache in DISPLAY_INIT (spice-gtk: 80 MiB / 4 =
//! 20,971,520 pixels) and stores every image sent with CACHE_ME; it never
//! evicts on its own, so the server keeps the books: sizes in pixels against
//! the budget, least recently used entries evicted with INVAL_LIST before the
//! image that needs their room.
//!
//! spice-server caches what the guest's driver marks cacheable; Linux's qxl
//! driver marks nothing, so we decide ourselves: an image is cached the second
//! time its content is seen (a sprite redrawn, a blinking cursor's two
//! pictures, an icon), so pictures that never repeat cost the client no cache
//! copy and never push the repeating ones out.
//!
//! Entries remember whether the client's copy is lossy (sent as JPEG). A
//! lossy copy is used only where lossy is allowed; where the image must be
//! exact (the link recovered, or the image is no longer a JPEG candidate)
//! it is sent again, losslessly, with CACHE_REPLACE_ME, and the entry becomes
//! lossless. Lossless entries are then named with FROM_CACHE_LOSSLESS, which
//! makes the client refuse to draw a lossy copy should our books ever be wrong
//! (spice-server does the same whenever JPEG is enabled).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Contents seen once, remembered (by key) to spot the second sighting.
const SEEN_KEYS: usize = 8192;
/// Entries the model tracks at most, whatever the pixel budget: evicting
/// stays cheap and the model small however tiny the images are.
const MAX_ENTRIES: usize = 16384;

/// What to send for an image.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// The client has it: FROM_CACHE, or FROM_CACHE_LOSSLESS (`lossless`)
    /// when the image must be exact (the copy is lossless then).
    Hit { lossless: bool },
    /// The client's copy is lossy but the image must be exact: send it
    /// losslessly with CACHE_REPLACE_ME; the entry is lossless from now on.
    Replace,
    /// Send it with CACHE_ME, after an INVAL_LIST of `evict` (if any).
    Store { evict: Vec<u64> },
    /// Send it uncached.
    Plain,
}

struct Entry {
    pixels: u64,
    stamp: u64,
    /// The client's copy was sent lossy.
    lossy: bool,
}

pub struct PixmapCache {
    budget: u64,
    used: u64,
    clock: u64,
    entries: HashMap<u64, Entry>,
    /// Entries by last use, oldest first.
    by_age: BTreeMap<u64, u64>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
}

impl PixmapCache {
    /// A cache of `budget` pixels (DISPLAY_INIT's size, or this client's
    /// share of it); None for a client that has no cache.
    pub fn new(budget: i64) -> Option<PixmapCache> {
        let budget = u64::try_from(budget).ok().filter(|b| *b > 0)?;
        Some(PixmapCache {
            budget,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        })
    }

    /// Decide how to send the image `id` of `pixels` pixels, and update the
    /// model as if it were sent so. `exact`: the image must be lossless here.
    /// A stored image is recorded lossless; [`PixmapCache::stored_lossy`]
    /// corrects that once the encoder chose JPEG.
    pub fn lookup(&mut self, id: u64, pixels: u64, exact: bool) -> CacheUse {
        self.clock += 1;
        if let Some(e) = self.entries.get_mut(&id) {
            self.by_age.remove(&e.stamp);
            e.stamp = self.clock;
            self.by_age.insert(self.clock, id);
            if e.lossy && exact {
                e.lossy = false;
                return CacheUse::Replace;
            }
            return CacheUse::Hit {
                lossless: exact && !e.lossy,
            };
        }
        // One image may take at most half the cache, so a huge one does
        // not flush everything else for a single reuse.
        if pixels == 0 || pixels > self.budget / 2 {
            return CacheUse::Plain;
        }
        if !self.seen.remove(&id) {
            self.remember(id);
            return CacheUse::Plain;
        }
        let mut evict = Vec::new();
        while self.used + pixels > self.budget || self.entries.len() >= MAX_ENTRIES {
            let Some((_, old)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&old) {
                self.used -= e.pixels;
            }
            evict.push(old);
        }
        self.used += pixels;
        self.entries.insert(
            id,
            Entry {
                pixels,
                stamp: self.clock,
                lossy: false,
            },
        );
        self.by_age.insert(self.clock, id);
        CacheUse::Store { evict }
    }

    fn remember(&mut self, id: u64) {
        if self.seen_order.len() >= 2 * SEEN_KEYS {
            // Promoted ids leave `seen` but not the queue: drop them.
            let seen = &self.seen;
            self.seen_order.retain(|k| seen.contains(k));
        }
        if self.seen.len() >= SEEN_KEYS {
            // Oldest first; ids already promoted or re-seen are skipped.
            while let Some(old) = self.seen_order.pop_front() {
                if self.seen.remove(&old) {
                    break;
                }
            }
        }
        self.seen.insert(id);
        self.seen_order.push_back(id);
    }

    /// The image `id` just stored (`CacheUse::Store`) went as JPEG.
    pub fn stored_lossy(&mut self, id: u64) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.lossy = true;
        }
    }

    /// Pixels the client holds for us.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_budget_no_cache() {
        assert!(PixmapCache::new(0).is_none());
        assert!(PixmapCache::new(-5).is_none());
    }

    #[test]
    fn cached_on_the_second_sighting_then_hit() {
        let mut c = PixmapCache::new(1000).unwrap();
        assert_eq!(c.lookup(7, 100, false), CacheUse::Plain);
        assert_eq!(c.lookup(7, 100, false), CacheUse::Store { evict: vec![] });
        assert_eq!(c.lookup(7, 100, false), CacheUse::Hit { lossless: false });
        assert_eq!(c.lookup(7, 100, false), CacheUse::Hit { lossless: false });
        assert_eq!(c.used(), 100);
    }

    #[test]
    fn least_recently_used_entries_make_room() {
        let mut c = PixmapCache::new(1000).unwrap();
        for id in [1, 2, 3] {
            c.lookup(id, 400, false);
            assert_eq!(
                c.lookup(id, 400, false),
                CacheUse::Store {
                    evict: if id == 3 { vec![1] } else { vec![] }
                }
            );
        }
        assert_eq!(c.used(), 800);
        // 2 is used, so 3 goes before it when 4 needs room.
        assert_eq!(c.lookup(2, 400, false), CacheUse::Hit { lossless: false });
        c.lookup(4, 400, false);
        assert_eq!(c.lookup(4, 400, false), CacheUse::Store { evict: vec![3] });
        assert_eq!(c.lookup(2, 400, false), CacheUse::Hit { lossless: false });
        // An evicted image starts over.
        assert_eq!(c.lookup(1, 400, false), CacheUse::Plain);
    }

    #[test]
    fn images_over_half_the_budget_are_never_cached() {
        let mut c = PixmapCache::new(1000).unwrap();
        for _ in 0..3 {
            assert_eq!(c.lookup(9, 501, false), CacheUse::Plain);
        }
        assert_eq!(c.lookup(9, 0, false), CacheUse::Plain);
        assert_eq!(c.used(), 0);
    }

    #[test]
    fn the_seen_set_stays_bounded() {
        let mut c = PixmapCache::new(1 << 40).unwrap();
        for id in 0..(SEEN_KEYS as u64 * 3) {
            assert_eq!(c.lookup(id, 1, false), CacheUse::Plain);
        }
        assert!(c.seen.len() <= SEEN_KEYS);
        assert!(c.seen_order.len() <= SEEN_KEYS * 2);
        // The newest are still remembered.
        let last = SEEN_KEYS as u64 * 3 - 1;
        assert_eq!(c.lookup(last, 1, false), CacheUse::Store { evict: vec![] });
    }

    #[test]
    fn promoted_ids_do_not_pile_up_in_the_seen_queue() {
        let mut c = PixmapCache::new(1 << 40).unwrap();
        for id in 0..(SEEN_KEYS as u64 * 5) {
            c.lookup(id, 1, false);
            c.lookup(id, 1, false);
        }
        assert!(c.seen_order.len() <= SEEN_KEYS * 2);
    }

    #[test]
    fn entry_count_is_bounded() {
        let mut c = PixmapCache::new(1 << 40).unwrap();
        for id in 0..(MAX_ENTRIES as u64 + 10) {
            c.lookup(id, 1, false);
            c.lookup(id, 1, false);
        }
        assert_eq!(c.entries.len(), MAX_ENTRIES);
        assert_eq!(c.by_age.len(), MAX_ENTRIES);
    }

    #[test]
    fn lossy_copies_are_replaced_when_the_image_must_be_exact() {
        let mut c = PixmapCache::new(1000).unwrap();
        c.lookup(5, 10, false);
        assert_eq!(c.lookup(5, 10, false), CacheUse::Store { evict: vec![] });
        c.stored_lossy(5);
        // Lossy allowed: the lossy copy serves.
        assert_eq!(c.lookup(5, 10, false), CacheUse::Hit { lossless: false });
        // Must be exact: sent again with CACHE_REPLACE_ME, once.
        assert_eq!(c.lookup(5, 10, true), CacheUse::Replace);
        assert_eq!(c.lookup(5, 10, true), CacheUse::Hit { lossless: true });
        assert_eq!(c.lookup(5, 10, false), CacheUse::Hit { lossless: false });
        assert_eq!(c.used(), 10);
        // A lossless entry is named FROM_CACHE_LOSSLESS where exactness counts.
        c.lookup(6, 10, true);
        assert_eq!(c.lookup(6, 10, true), CacheUse::Store { evict: vec![] });
        assert_eq!(c.lookup(6, 10, true), CacheUse::Hit { lossless: true });
        // Marking an id that is not stored changes nothing.
        c.stored_lossy(99);
        assert_eq!(c.lookup(99, 10, true), CacheUse::Plain);
    }
}
