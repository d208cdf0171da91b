//! The container's mapping tracker: an ordered map from a mapping's first IOVA to its
//! [`Entry`], kept as a short sorted list of sorted chunks.
//!
//! A lookup binary-searches the chunk minima (a few KiB for 65,535 mappings, so it
//! stays in cache) and then one chunk of at most [`CHUNK`] keys: about three cache
//! misses where a `BTreeMap` of the same size walks five or six nodes. An insert or a
//! remove moves at most one chunk's tail. Chunks split when they overflow and merge
//! with their successor when both are small, so the chunk count stays within a small
//! factor of `len / CHUNK`.

use super::Entry;

/// Most keys per chunk.
const CHUNK: usize = 64;

#[derive(Clone, Default)]
struct Chunk {
    keys: Vec<u64>,
    vals: Vec<Entry>,
}

/// See the [module documentation](self).
#[derive(Clone, Default)]
pub(super) struct Tracker {
    /// The first key of every chunk, in order; every chunk is non-empty.
    mins: Vec<u64>,
    chunks: Vec<Chunk>,
    len: usize,
}

impl PartialEq for Tracker {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Tracker {}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Tracker {
    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Removes everything.
    pub(super) fn clear(&mut self) {
        self.mins.clear();
        self.chunks.clear();
        self.len = 0;
    }

    /// The chunk holding the greatest key `<= x`, if any key is `<= x`.
    #[inline]
    fn chunk_for(&self, x: u64) -> Option<usize> {
        self.mins.partition_point(|&m| m <= x).checked_sub(1)
    }

    /// The entry with the greatest key `<= x`.
    #[inline]
    pub(super) fn floor(&self, x: u64) -> Option<(u64, Entry)> {
        let ch = self.chunks.get(self.chunk_for(x)?)?;
        let j = ch.keys.partition_point(|&k| k <= x).checked_sub(1)?;
        Some((*ch.keys.get(j)?, *ch.vals.get(j)?))
    }

    /// The entry with the greatest key.
    #[inline]
    pub(super) fn last(&self) -> Option<(u64, Entry)> {
        let ch = self.chunks.last()?;
        Some((*ch.keys.last()?, *ch.vals.last()?))
    }

    /// Position (chunk, index) of the smallest key `>= x` (may be one past the end).
    fn lower_bound(&self, x: u64) -> (usize, usize) {
        let c = self.mins.partition_point(|&m| m < x);
        if let Some(p) = c.checked_sub(1) {
            if let Some(ch) = self.chunks.get(p) {
                let j = ch.keys.partition_point(|&k| k < x);
                if j < ch.keys.len() {
                    return (p, j);
                }
            }
        }
        (c, 0)
    }

    /// Entries with keys `>= x`, in order.
    pub(super) fn iter_from(&self, x: u64) -> impl Iterator<Item = (u64, Entry)> + '_ {
        let (c, j) = self.lower_bound(x);
        self.chunks
            .get(c..)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .flat_map(move |(n, ch)| {
                let skip = if n == 0 { j } else { 0 };
                ch.keys
                    .iter()
                    .copied()
                    .zip(ch.vals.iter().copied())
                    .skip(skip)
            })
    }

    /// Every entry, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, Entry)> + '_ {
        self.chunks
            .iter()
            .flat_map(|ch| ch.keys.iter().copied().zip(ch.vals.iter().copied()))
    }

    /// Inserts or replaces the entry at `key`.
    pub(super) fn insert(&mut self, key: u64, val: Entry) {
        let c = match self.chunk_for(key) {
            Some(c) => c,
            None if self.chunks.is_empty() => {
                let mut ch = Chunk {
                    keys: Vec::with_capacity(CHUNK + 1),
                    vals: Vec::with_capacity(CHUNK + 1),
                };
                ch.keys.push(key);
                ch.vals.push(val);
                self.chunks.push(ch);
                self.mins.push(key);
                self.len = 1;
                return;
            }
            // Below every key: it becomes the first key of the first chunk.
            None => 0,
        };
        let Some(ch) = self.chunks.get_mut(c) else {
            return;
        };
        let j = ch.keys.partition_point(|&k| k < key);
        if ch.keys.get(j) == Some(&key) {
            ch.vals[j] = val;
            return;
        }
        ch.keys.insert(j, key);
        ch.vals.insert(j, val);
        self.len += 1;
        if j == 0 {
            self.mins[c] = key;
        }
        if ch.keys.len() > CHUNK {
            let half = ch.keys.len() / 2;
            let mut keys = Vec::with_capacity(CHUNK + 1);
            let mut vals = Vec::with_capacity(CHUNK + 1);
            keys.extend_from_slice(&ch.keys[half..]);
            vals.extend_from_slice(&ch.vals[half..]);
            ch.keys.truncate(half);
            ch.vals.truncate(half);
            self.mins.insert(c + 1, keys[0]);
            self.chunks.insert(c + 1, Chunk { keys, vals });
        }
    }

    /// Removes the entry at `key` if `remove` approves it; the removed entry.
    #[inline]
    pub(super) fn remove_if(
        &mut self,
        key: u64,
        remove: impl FnOnce(&Entry) -> bool,
    ) -> Option<Entry> {
        let c = self.chunk_for(key)?;
        let ch = self.chunks.get_mut(c)?;
        let j = ch.keys.binary_search(&key).ok()?;
        if !remove(ch.vals.get(j)?) {
            return None;
        }
        ch.keys.remove(j);
        let val = ch.vals.remove(j);
        self.len -= 1;
        if ch.keys.is_empty() {
            self.chunks.remove(c);
            self.mins.remove(c);
            return Some(val);
        }
        if j == 0 {
            self.mins[c] = ch.keys[0];
        }
        // Merge with the next chunk when both are small.
        let here = ch.keys.len();
        if here < CHUNK / 4
            && self
                .chunks
                .get(c + 1)
                .is_some_and(|n| here + n.keys.len() <= CHUNK / 2)
        {
            let next = self.chunks.remove(c + 1);
            self.mins.remove(c + 1);
            let ch = &mut self.chunks[c];
            ch.keys.extend_from_slice(&next.keys);
            ch.vals.extend_from_slice(&next.vals);
        }
        Some(val)
    }

    /// Removes the entry at `key`.
    pub(super) fn remove(&mut self, key: u64) -> Option<Entry> {
        self.remove_if(key, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entry(k: u64) -> Entry {
        Entry {
            last: k,
            host: k << 12,
            access: crate::dma::Access::RW,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Every operation against `BTreeMap`, with keys dense enough to collide and
        /// enough of them to split and merge chunks.
        #[test]
        fn matches_btreemap(ops in proptest::collection::vec((0u8..3, 0u64..600), 1..1500)) {
            let mut t = Tracker::default();
            let mut m: BTreeMap<u64, Entry> = BTreeMap::new();
            for (op, k) in ops {
                match op {
                    0 | 1 => {
                        t.insert(k, entry(k));
                        m.insert(k, entry(k));
                    }
                    _ => prop_assert_eq!(t.remove(k), m.remove(&k)),
                }
                prop_assert_eq!(t.len(), m.len());
                prop_assert_eq!(t.last(), m.iter().next_back().map(|(&a, &b)| (a, b)));
                prop_assert_eq!(t.floor(k), m.range(..=k).next_back().map(|(&a, &b)| (a, b)));
                let want: Vec<_> = m.range(k..).take(3).map(|(&a, &b)| (a, b)).collect();
                let got: Vec<_> = t.iter_from(k).take(3).collect();
                prop_assert_eq!(got, want);
            }
            prop_assert!(t.iter().eq(m.iter().map(|(&a, &b)| (a, b))));
            prop_assert!(t.mins.iter().zip(&t.chunks).all(|(&m, c)| c.keys.first() == Some(&m)));
            prop_assert!(t.chunks.iter().all(|c| c.keys.len() <= CHUNK && c.keys.len() == c.vals.len()));
        }
    }
}
