//! The table of live allocations: first address -> last address.
//!
//! Open addressing with linear probing and backward-shift deletion, 16-byte slots
//! holding the key and the value side by side: a lookup on a table far larger than the
//! caches costs one cache miss, where a general-purpose map with a separate control
//! array costs two. The load stays at most 3/4.
//!
//! The hash keeps neighbours together: keys are cut into groups of [`GROUP`]
//! consecutive granules, a group's place is spread by Fibonacci hashing (the high bits
//! of `group * 2^64/phi`, so strided keys, whose low bits are all zero, do not pile
//! up), and the keys of one group get consecutive home slots inside it (two cache
//! lines). Allocations placed near one another, as first-fit and top-down place them
//! on a fragmented space, then land in a cache line the previous one brought in,
//! rather than one miss each at a random place of a table of megabytes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    first: u64,
    last: u64,
}

/// Granules per group of consecutive home slots.
const GROUP: u32 = 8;
const GROUP_BITS: u32 = GROUP.trailing_zeros();

/// `first > last` never holds for a real range.
const EMPTY: Slot = Slot { first: 1, last: 0 };

#[derive(Clone, Debug)]
pub(crate) struct LiveTable {
    slots: Vec<Slot>,
    len: usize,
    /// log2 of the slot count (at least `GROUP_BITS + 1`).
    bits: u32,
    /// log2 of the granule: a key's granule number is `key >> shift`.
    shift: u32,
}

impl LiveTable {
    /// An empty table for keys that are multiples of `2^shift` (any key works; the
    /// shift only decides which keys are neighbours).
    pub(crate) fn new(shift: u32) -> Self {
        LiveTable {
            slots: vec![EMPTY; 16],
            len: 0,
            bits: 4,
            shift: shift.min(63),
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

    /// The group's spread place, then the granule's offset inside the group.
    fn home(&self, key: u64) -> usize {
        let g = key >> self.shift;
        let spread = (g >> GROUP_BITS).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> (64 - (self.bits - GROUP_BITS));
        let h = (spread << GROUP_BITS) | (g & u64::from(GROUP - 1));
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

    /// Like [`Self::get`], with the slot where the entry sits, for a
    /// [`Self::remove_found`] without a second search.
    #[inline]
    pub(crate) fn get_slot(&self, first: u64) -> Option<(usize, u64)> {
        self.find(first).map(|i| (i, self.slots[i].last))
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
        match self.find(first) {
            Some(i) => {
                self.remove_slot(i);
                true
            }
            None => false,
        }
    }

    /// Removes `first`, which [`Self::get_slot`] found at `slot` with no insert or
    /// remove since (checked: a slot that does not hold `first` falls back to a
    /// search). False when it was not present.
    pub(crate) fn remove_found(&mut self, first: u64, slot: usize) -> bool {
        match self.slots.get(slot) {
            Some(s) if s.first == first && s.first <= s.last => {
                self.remove_slot(slot);
                true
            }
            _ => self.remove(first),
        }
    }

    /// Backward-shift deletion of the entry in slot `hole`.
    fn remove_slot(&mut self, mut hole: usize) {
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
    }
}

#[cfg(test)]
impl LiveTable {
    /// The longest distance of an entry from its home slot.
    fn max_displacement(&self) -> usize {
        let mask = self.mask();
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != EMPTY)
            .map(|(i, s)| i.wrapping_sub(self.home(s.first)) & mask)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn remove_found_uses_the_slot_and_survives_a_wrong_one() {
        let mut t = LiveTable::new(12);
        for k in 0..1000u64 {
            t.insert(k << 12, (k << 12) + 0xfff);
        }
        let (slot, last) = t.get_slot(7 << 12).unwrap();
        assert_eq!(last, (7 << 12) + 0xfff);
        assert!(t.remove_found(7 << 12, slot));
        assert_eq!(t.get(7 << 12), None);
        // A slot that does not hold the key (here: another key's, and one out of
        // range) falls back to a search and removes only the key given.
        let (other, _) = t.get_slot(8 << 12).unwrap();
        assert!(t.remove_found(9 << 12, other));
        assert!(t.remove_found(10 << 12, usize::MAX));
        assert!(!t.remove_found(10 << 12, other));
        assert_eq!(t.get(8 << 12), Some((8 << 12) + 0xfff));
        assert_eq!((t.get(9 << 12), t.get(10 << 12)), (None, None));
        assert_eq!(t.len(), 997);
        for k in (0..1000u64).filter(|k| !(7..=10).contains(k) || *k == 8) {
            assert_eq!(t.get(k << 12), Some((k << 12) + 0xfff), "key {k}");
        }
    }

    #[test]
    fn strided_keys_do_not_pile_up() {
        // Keys one granule apart fill their groups' slots exactly; keys a power of two
        // of granules apart (aligned allocations) fall in different groups, which the
        // hash spreads. Either way no entry sits far from its home.
        for stride in [1u64, 2, 8, 64, 512, 1 << 18, 1 << 30] {
            let mut t = LiveTable::new(12);
            for k in 0..100_000u64 {
                let key = (k * stride) << 12;
                t.insert(key, key + 0xfff);
            }
            assert_eq!(t.len(), 100_000);
            let d = t.max_displacement();
            assert!(d < 128, "stride {stride}: an entry {d} slots from its home");
            for k in 0..100_000u64 {
                let key = (k * stride) << 12;
                assert_eq!(t.get(key), Some(key + 0xfff), "stride {stride}");
                assert_eq!(
                    t.get(key + 0x1000 * stride / 2 + 1),
                    None,
                    "stride {stride}"
                );
            }
        }
    }

    #[test]
    fn matches_a_hash_map_through_growth_and_deletions() {
        let mut t = LiveTable::new(12);
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
