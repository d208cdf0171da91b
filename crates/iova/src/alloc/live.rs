//! The table of live allocations: first address -> last address.
//!
//! Open addressing with linear probing and backward-shift deletion, 16-byte slots
//! holding the key and the value side by side: a lookup on a table far larger than the
//! caches costs one cache miss, where a general-purpose map with a separate control
//! array costs two. Fibonacci hashing (the high bits of `key * 2^64/phi`) spreads
//! page-aligned keys, whose low bits are all zero. The load stays at most 3/4.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    first: u64,
    last: u64,
}

/// `first > last` never holds for a real range.
const EMPTY: Slot = Slot { first: 1, last: 0 };

#[derive(Clone, Debug)]
pub(crate) struct LiveTable {
    slots: Vec<Slot>,
    len: usize,
    /// log2 of the slot count.
    bits: u32,
}

impl LiveTable {
    pub(crate) fn new() -> Self {
        LiveTable {
            slots: vec![EMPTY; 16],
            len: 0,
            bits: 4,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, key: u64) -> usize {
        let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits);
        usize::try_from(h).unwrap_or(0)
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: u64) -> Option<usize> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s.first == key && s.first <= s.last {
                return Some(i);
            }
            if s == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The last address of the live allocation starting at `first`.
    #[inline]
    pub(crate) fn get(&self, first: u64) -> Option<u64> {
        self.find(first).map(|i| self.slots[i].last)
    }

    /// Records `first..=last`; the caller guarantees `first` is not present.
    pub(crate) fn insert(&mut self, first: u64, last: u64) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.place(Slot { first, last });
        self.len += 1;
    }

    fn place(&mut self, s: Slot) {
        let mask = self.mask();
        let mut i = self.home(s.first);
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = s;
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.bits += 1;
        for s in old {
            if s != EMPTY {
                self.place(s);
            }
        }
    }

    /// Removes `first`; false when it was not present.
    pub(crate) fn remove(&mut self, first: u64) -> bool {
        let Some(mut hole) = self.find(first) else {
            return false;
        };
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            // The entry at j may move back to the hole unless its home lies
            // cyclically in (hole, j].
            let h = self.home(s.first);
            let stays = if hole <= j {
                hole < h && h <= j
            } else {
                hole < h || h <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn matches_a_hash_map_through_growth_and_deletions() {
        let mut t = LiveTable::new();
        let mut m: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Page-aligned keys from a small pool, so that inserts and removes collide.
            let key = (x % 5000) << 12;
            if m.remove(&key).is_some() {
                assert!(t.remove(key));
            } else {
                t.insert(key, key + step);
                m.insert(key, key + step);
            }
            if step % 997 == 0 {
                assert_eq!(t.len(), m.len());
                for k in 0..5000u64 {
                    assert_eq!(t.get(k << 12), m.get(&(k << 12)).copied());
                }
            }
        }
        assert!(!t.remove(u64::MAX));
        t.insert(u64::MAX, u64::MAX);
        assert_eq!(t.get(u64::MAX), Some(u64::MAX));
        t.insert(1, 1);
        assert_eq!(t.get(1), Some(1));
        assert!(t.remove(1));
        assert_eq!(t.get(1), None);
    }
}
