//! Property tests of `iova::alloc` against a page-by-page reference model.
//!
//! The model knows nothing of extents or trees: it keeps the set of managed pages (a
//! page is managed when all of its bytes are in the construction set), a `BTreeSet` of
//! allocated pages and a map of live allocations, and derives every expected answer by
//! scanning pages.

use std::collections::{BTreeMap, BTreeSet};

use iova::alloc::{AllocError, Allocator, Policy, SharedAllocator};
use iova::range::{IovaRange, IovaSet};
use proptest::prelude::*;

const G: u64 = 0x1000;
const PAGES: u64 = 64;

struct Model {
    managed: BTreeSet<u64>,
    used: BTreeSet<u64>,
    live: BTreeMap<u64, u64>, // first page -> page count
}

impl Model {
    fn new(set: &IovaSet) -> Self {
        let managed = (0..PAGES + 2)
            .filter(|p| {
                let r = IovaRange::new(p * G, p * G + G - 1).unwrap();
                set.contains_range(&r)
            })
            .collect();
        Model {
            managed,
            used: BTreeSet::new(),
            live: BTreeMap::new(),
        }
    }

    fn fits(&self, p: u64, n: u64) -> bool {
        (p..p + n).all(|q| self.managed.contains(&q) && !self.used.contains(&q))
    }

    fn expected_alloc(&self, n: u64, align_pages: u64, policy: Policy) -> Option<u64> {
        let mut cands = (0..PAGES + 2).filter(|p| p % align_pages == 0 && self.fits(*p, n));
        match policy {
            Policy::FirstFit => cands.next(),
            Policy::TopDown => cands.next_back(),
        }
    }

    fn take(&mut self, p: u64, n: u64) {
        self.used.extend(p..p + n);
        self.live.insert(p, n);
    }

    fn give(&mut self, p: u64) {
        if let Some(n) = self.live.remove(&p) {
            for q in p..p + n {
                self.used.remove(&q);
            }
        }
    }

    fn free_set(&self) -> IovaSet {
        self.managed
            .iter()
            .filter(|p| !self.used.contains(p))
            .map(|p| IovaRange::new(p * G, p * G + G - 1).unwrap())
            .collect()
    }
}

fn pages(p: u64, n: u64) -> IovaRange {
    IovaRange::new(p * G, (p + n) * G - 1).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Size in bytes (1 ..= 8 pages, not always a multiple), alignment shift.
    Alloc(u64, u32),
    AllocAt(u64, u64),
    /// Free the i-th live allocation (modulo the count).
    FreeLive(usize),
    /// Free an arbitrary page range.
    FreeAny(u64, u64),
    /// Free an arbitrary, possibly unaligned byte range.
    FreeBytes(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=8 * G, 0u32..=16).prop_map(|(s, a)| Op::Alloc(s, a)),
        1 => (0u64..PAGES, 1u64..=6).prop_map(|(p, n)| Op::AllocAt(p, n)),
        4 => any::<usize>().prop_map(Op::FreeLive),
        1 => (0u64..PAGES, 1u64..=6).prop_map(|(p, n)| Op::FreeAny(p, n)),
        1 => (0u64..PAGES * G, 1u64..3 * G).prop_map(|(a, l)| Op::FreeBytes(a, l)),
    ]
}

/// Up to three ranges inside the first 64 pages, with edges that need not be aligned.
fn set() -> impl Strategy<Value = IovaSet> {
    prop::collection::vec((0u64..PAGES * G, 1u64..24 * G), 1..=3).prop_map(|v| {
        v.into_iter()
            .map(|(a, l)| IovaRange::new(a, (a + l - 1).min(PAGES * G - 1)).unwrap())
            .collect()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![Just(Policy::FirstFit), Just(Policy::TopDown)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn core_matches_the_page_model(set in set(), policy in policy(), ops in prop::collection::vec(op(), 1..80)) {
        let mut a = Allocator::new(&set, G, policy).unwrap();
        let mut m = Model::new(&set);
        let managed: IovaSet = m.managed.iter().map(|p| pages(*p, 1)).collect();
        prop_assert_eq!(a.managed(), &managed);
        for op in ops {
            match op {
                Op::Alloc(size, shift) => {
                    let align = 1u64 << shift;
                    let n = size.div_ceil(G);
                    let align_pages = (align / G).max(1);
                    let got = a.alloc(size, align);
                    match m.expected_alloc(n, align_pages, policy) {
                        Some(p) => {
                            prop_assert_eq!(got, Ok(pages(p, n)));
                            m.take(p, n);
                        }
                        None => prop_assert_eq!(
                            got,
                            Err(AllocError::NoSpace { size: n * G, align: align.max(G) })
                        ),
                    }
                }
                Op::AllocAt(p, n) => {
                    let r = pages(p, n);
                    let got = a.alloc_at(r);
                    if (p..p + n).any(|q| !m.managed.contains(&q)) {
                        prop_assert_eq!(got, Err(AllocError::OutsideSet { range: r }));
                    } else if !m.fits(p, n) {
                        prop_assert_eq!(got, Err(AllocError::Busy { range: r }));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        m.take(p, n);
                    }
                }
                Op::FreeLive(i) => {
                    if m.live.is_empty() {
                        continue;
                    }
                    let (&p, &n) = m.live.iter().nth(i % m.live.len()).unwrap();
                    prop_assert_eq!(a.free(pages(p, n)), Ok(()));
                    m.give(p);
                    // Freeing it again is a double free.
                    prop_assert_eq!(
                        a.free(pages(p, n)),
                        Err(AllocError::NotAllocated { range: pages(p, n) })
                    );
                }
                Op::FreeAny(p, n) => {
                    let r = pages(p, n);
                    let got = a.free(r);
                    match m.live.get(&p) {
                        Some(&ln) if ln == n => {
                            prop_assert_eq!(got, Ok(()));
                            m.give(p);
                        }
                        Some(&ln) => prop_assert_eq!(
                            got,
                            Err(AllocError::Mismatch { range: r, allocated: pages(p, ln) })
                        ),
                        None => prop_assert_eq!(got, Err(AllocError::NotAllocated { range: r })),
                    }
                }
                Op::FreeBytes(start, len) => {
                    let r = IovaRange::from_start_size(start, len).unwrap();
                    let exact = r.first() % G == 0
                        && (r.last() + 1) % G == 0
                        && m.live.get(&(r.first() / G)) == Some(&((r.last() + 1 - r.first()) / G));
                    let before = a.free_ranges();
                    let got = a.free(r);
                    if exact {
                        prop_assert_eq!(got, Ok(()));
                        m.give(r.first() / G);
                    } else {
                        prop_assert!(got.is_err());
                        prop_assert_eq!(a.free_ranges(), before);
                    }
                }
            }
            prop_assert_eq!(a.free_ranges(), m.free_set());
            prop_assert_eq!(a.allocation_count(), m.live.len());
            prop_assert_eq!(a.allocated_bytes(), u128::from(m.used.len() as u64 * G));
        }
        // Free everything: back to the initial state.
        let live: Vec<(u64, u64)> = m.live.iter().map(|(p, n)| (*p, *n)).collect();
        for (p, n) in live {
            prop_assert_eq!(a.free(pages(p, n)), Ok(()));
        }
        prop_assert_eq!(a.free_ranges(), managed.clone());
        prop_assert_eq!(a.free_extent_count(), managed.range_count());
        prop_assert_eq!(a.allocation_count(), 0);
    }

    /// Through a thread cache placement is not first-fit any more (magazines reuse
    /// ranges), so the model checks what must hold whatever the placement.
    #[test]
    fn cache_hands_out_only_free_pages_of_the_set(set in set(), ops in prop::collection::vec(op(), 1..120)) {
        let shared = SharedAllocator::new(&set, G, Policy::FirstFit).unwrap();
        let mut cache = shared.local();
        let mut m = Model::new(&set);
        let managed: IovaSet = m.managed.iter().map(|p| pages(*p, 1)).collect();
        for op in ops {
            match op {
                Op::Alloc(size, shift) => {
                    let align = 1u64 << shift;
                    let n = size.div_ceil(G);
                    match cache.alloc(size, align) {
                        Ok(r) => {
                            let p = r.first() / G;
                            prop_assert_eq!(r, pages(p, n));
                            prop_assert_eq!(r.first() % align.max(G), 0);
                            prop_assert!(m.fits(p, n), "{} overlaps a live range or leaves the set", r);
                            m.take(p, n);
                        }
                        Err(e) => {
                            let no_space = matches!(e, AllocError::NoSpace { .. });
                            prop_assert!(no_space, "unexpected {:?}", e);
                            // Whatever the caches hold, a real lack of space is the only excuse
                            // once the cache has flushed itself.
                            cache.flush();
                            prop_assert_eq!(m.expected_alloc(n, (align / G).max(1), Policy::FirstFit).is_some(),
                                shared.alloc(size, align).map(|r| { shared.free(r).unwrap(); }).is_ok());
                        }
                    }
                }
                Op::AllocAt(p, n) => {
                    cache.flush();
                    let r = pages(p, n);
                    let expect_ok = m.fits(p, n);
                    prop_assert_eq!(cache.alloc_at(r).is_ok(), expect_ok);
                    if expect_ok {
                        m.take(p, n);
                    }
                }
                Op::FreeLive(i) => {
                    if m.live.is_empty() {
                        continue;
                    }
                    let (&p, &n) = m.live.iter().nth(i % m.live.len()).unwrap();
                    // Every third free goes through the shared handle, as from another thread.
                    if i % 3 == 0 {
                        prop_assert_eq!(shared.free(pages(p, n)), Ok(()));
                    } else {
                        prop_assert_eq!(cache.free(pages(p, n)), Ok(()));
                    }
                    m.give(p);
                    prop_assert_eq!(
                        cache.free(pages(p, n)),
                        Err(AllocError::NotAllocated { range: pages(p, n) })
                    );
                    prop_assert_eq!(
                        shared.free(pages(p, n)),
                        Err(AllocError::NotAllocated { range: pages(p, n) })
                    );
                }
                Op::FreeAny(p, n) => {
                    let r = pages(p, n);
                    let ok = m.live.get(&p) == Some(&n);
                    prop_assert_eq!(cache.free(r).is_ok(), ok);
                    if ok {
                        m.give(p);
                    }
                }
                Op::FreeBytes(start, len) => {
                    let r = IovaRange::from_start_size(start, len).unwrap();
                    let ok = r.first() % G == 0
                        && (r.last() + 1) % G == 0
                        && m.live.get(&(r.first() / G)) == Some(&((r.last() + 1 - r.first()) / G));
                    prop_assert_eq!(cache.free(r).is_ok(), ok);
                    if ok {
                        m.give(r.first() / G);
                    }
                }
            }
        }
        let live: Vec<(u64, u64)> = m.live.iter().map(|(p, n)| (*p, *n)).collect();
        for (k, (p, n)) in live.into_iter().enumerate() {
            if k % 2 == 0 {
                prop_assert_eq!(cache.free(pages(p, n)), Ok(()));
            } else {
                prop_assert_eq!(shared.free(pages(p, n)), Ok(()));
            }
        }
        drop(cache);
        prop_assert_eq!(shared.with_core(|a| a.free_ranges()), managed.clone());
        prop_assert_eq!(shared.with_core(|a| a.free_extent_count()), managed.range_count());
        prop_assert_eq!(shared.with_core(|a| a.allocation_count()), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Enough extents (hundreds) that the free-extent index splits and joins nodes on
    /// several levels; placements still match a page-scanning first-fit / top-down.
    #[test]
    fn many_extents_match_a_page_scan(
        policy in policy(),
        ops in prop::collection::vec((any::<bool>(), 1u64..=4, any::<prop::sample::Index>()), 200..1200),
    ) {
        const N: u64 = 2048;
        let set = IovaSet::from(IovaRange::new(0, N * G - 1).unwrap());
        let mut a = Allocator::new(&set, G, policy).unwrap();
        let mut used = vec![false; 2048];
        let mut live: Vec<(u64, u64)> = Vec::new();
        for (k, (alloc, n, pick)) in ops.into_iter().enumerate() {
            if alloc || live.is_empty() {
                let fits = |p: u64| (p..p + n).all(|q| !used[q as usize]);
                let mut cands = (0..=N - n).filter(|&p| fits(p));
                let expect = match policy {
                    Policy::FirstFit => cands.next(),
                    Policy::TopDown => cands.next_back(),
                };
                let got = a.alloc(n * G, G).ok();
                prop_assert_eq!(got, expect.map(|p| pages(p, n)));
                if let Some(p) = expect {
                    (p..p + n).for_each(|q| used[q as usize] = true);
                    live.push((p, n));
                }
            } else {
                let (p, n) = live.swap_remove(pick.index(live.len()));
                prop_assert_eq!(a.free(pages(p, n)), Ok(()));
                (p..p + n).for_each(|q| used[q as usize] = false);
            }
            if k % 64 == 0 {
                let free: IovaSet = (0..N).filter(|&p| !used[p as usize]).map(|p| pages(p, 1)).collect();
                prop_assert_eq!(a.free_ranges(), free);
            }
        }
        for (p, n) in live {
            prop_assert_eq!(a.free(pages(p, n)), Ok(()));
        }
        prop_assert_eq!(a.free_ranges(), set);
        prop_assert_eq!(a.free_extent_count(), 1);
    }
}
