//! Side-by-side performance suite for `iova`.
//!
//! Every workload runs the same operation sequence (same random choices) against our
//! implementation and against a peer, in the same process:
//!
//! - [`FirstFitPeer`]: the simple allocator a driver author writes first, a sorted map
//!   of free extents scanned from the bottom (written here, for the benchmark);
//! - `range-alloc` (gfx-rs): a sorted `Vec` of free ranges with best-fit search;
//! - `rangemap::RangeInclusiveMap` for the mapping tracker (once the container lands).
//!
//! The `bench` binary (`scripts/bench`) prints one `BENCH` line per workload and peer
//! and writes `target/bench.json`; the criterion benches (`cargo bench -p iova-bench`)
//! give the detail.
#![deny(missing_docs)]

pub mod naive;
pub mod tracker;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use iova::alloc::{Allocator, LocalCache, Policy};
use iova::range::{IovaRange, IovaSet};

/// 4 KiB, the granule of every workload.
pub const PAGE: u64 = 4096;

/// The allocator interface the workloads drive: byte sizes, power-of-two alignment.
pub trait IovaAlloc {
    /// Allocates `size` bytes aligned to `align`; the first address, or `None` when full.
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64>;
    /// Frees what `alloc` returned.
    fn free(&mut self, first: u64, size: u64);
}

fn range(first: u64, size: u64) -> IovaRange {
    IovaRange::from_start_size(first, size).expect("benchmark ranges are valid")
}

impl IovaAlloc for Allocator {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        Allocator::alloc(self, size, align).ok().map(|r| r.first())
    }
    fn free(&mut self, first: u64, size: u64) {
        Allocator::free(self, range(first, size)).expect("benchmark frees are valid");
    }
}

impl IovaAlloc for LocalCache {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        LocalCache::alloc(self, size, align).ok().map(|r| r.first())
    }
    fn free(&mut self, first: u64, size: u64) {
        LocalCache::free(self, range(first, size)).expect("benchmark frees are valid");
    }
}

/// `range_alloc::RangeAllocator<u64>` over `[first, last + 1)`.
pub struct RangeAllocPeer(pub range_alloc::RangeAllocator<u64>);

impl RangeAllocPeer {
    /// A peer managing `first..=last` (`last < u64::MAX`).
    pub fn new(first: u64, last: u64) -> Self {
        RangeAllocPeer(range_alloc::RangeAllocator::new(first..last + 1))
    }
}

impl IovaAlloc for RangeAllocPeer {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        self.0
            .allocate_range_aligned(size, align)
            .ok()
            .map(|r| r.start)
    }
    fn free(&mut self, first: u64, size: u64) {
        self.0.free_range(first..first + size);
    }
}

/// The simple first-fit allocator: free extents in a `BTreeMap` (first -> last),
/// scanned from the lowest address; frees coalesce with both neighbours. No checks.
pub struct FirstFitPeer {
    free: BTreeMap<u64, u64>,
}

impl FirstFitPeer {
    /// A peer managing the ranges of `set`.
    pub fn new(set: &IovaSet) -> Self {
        FirstFitPeer {
            free: set.iter().map(|r| (r.first(), r.last())).collect(),
        }
    }
}

impl IovaAlloc for FirstFitPeer {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let mask = align - 1;
        let (first, last, start) = self.free.iter().find_map(|(&f, &l)| {
            let start = f.checked_add(mask)? & !mask;
            let end = start.checked_add(size - 1)?;
            (end <= l).then_some((f, l, start))
        })?;
        let end = start + size - 1;
        self.free.remove(&first);
        if start > first {
            self.free.insert(first, start - 1);
        }
        if end < last {
            self.free.insert(end + 1, last);
        }
        Some(start)
    }
    fn free(&mut self, first: u64, size: u64) {
        let mut f = first;
        let mut l = first + size - 1;
        if let Some((&pf, &pl)) = self.free.range(..first).next_back() {
            if pl + 1 == first {
                self.free.remove(&pf);
                f = pf;
            }
        }
        if let Some(nl) = self.free.remove(&(l + 1)) {
            l = nl;
        }
        self.free.insert(f, l);
    }
}

/// A small deterministic generator (xorshift64*), so every allocator sees the same
/// choices.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }
}

/// The sizes of the alloc-hit workload: 4 KiB to 128 KiB.
pub const HIT_SIZES: [u64; 6] = [PAGE, 2 * PAGE, 4 * PAGE, 8 * PAGE, 16 * PAGE, 32 * PAGE];

/// `pairs` alloc+free pairs cycling through [`HIT_SIZES`]; returns ns per pair.
pub fn alloc_hit<A: IovaAlloc>(a: &mut A, pairs: usize) -> f64 {
    let t = Instant::now();
    for i in 0..pairs {
        let size = HIT_SIZES[i % HIT_SIZES.len()];
        let first = a.alloc(black_box(size), PAGE).expect("empty space");
        a.free(black_box(first), size);
    }
    t.elapsed().as_nanos() as f64 / pairs as f64
}

/// Live allocations of a churn workload: (first, size).
pub type Live = Vec<(u64, u64)>;

/// Fills with `fill` one-page allocations, then frees `holes` of them chosen at
/// random, in ascending address order (cheap for every peer, same final state).
pub fn fragment<A: IovaAlloc>(a: &mut A, fill: usize, holes: usize, rng: &mut Rng) -> Live {
    let mut live: Live = Vec::with_capacity(fill);
    for _ in 0..fill {
        match a.alloc(PAGE, PAGE) {
            Some(f) => live.push((f, PAGE)),
            None => break,
        }
    }
    let mut pick = vec![false; live.len()];
    let mut n = 0;
    while n < holes.min(live.len()) {
        let i = rng.below(live.len());
        if !pick[i] {
            pick[i] = true;
            n += 1;
        }
    }
    let mut freed: Vec<(u64, u64)> = live
        .iter()
        .zip(&pick)
        .filter(|(_, p)| **p)
        .map(|(x, _)| *x)
        .collect();
    freed.sort_unstable();
    for (f, s) in freed {
        a.free(f, s);
    }
    live.into_iter()
        .zip(pick)
        .filter(|(_, p)| !*p)
        .map(|(x, _)| x)
        .collect()
}

/// Nanoseconds since `t`, saturating.
pub fn nanos(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Latency summary of individually timed operations (the cheapest observed timer
/// read is subtracted from each).
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Operations timed.
    pub ops: usize,
    /// Median, ns.
    pub median: f64,
    /// Mean, ns.
    pub avg: f64,
    /// 99.9th percentile, ns.
    pub p999: f64,
    /// Worst sample (a batch of `n` operations counts as `n` samples of its mean), ns.
    pub max: f64,
    /// Percentage of allocations that found no space.
    pub failed_pct: f64,
    /// Median of the frees alone, ns ([`churn`] only; 0 elsewhere).
    pub free_median: f64,
    /// Median of the allocations alone, ns ([`churn`] only; 0 elsewhere).
    pub alloc_median: f64,
}

/// Operations per timed batch where single operations are too short to time alone
/// (page-table maps, tracker churn).
pub const BATCH_STEPS: usize = 8;

/// The cheapest observed `Instant::now()` + `elapsed()` pair, ns: subtracted from each
/// batch.
pub fn timer_overhead() -> u64 {
    (0..2000)
        .map(|_| nanos(black_box(Instant::now())))
        .min()
        .unwrap_or(0)
}

/// Summarizes (ns, ops) samples: single operations (`ops` = 1) or batches.
pub fn summarize(batches: &[(u64, usize)], failed_pct: f64) -> Latency {
    if batches.is_empty() {
        return Latency::default();
    }
    let mut per_op: Vec<f64> = batches
        .iter()
        .map(|&(ns, n)| ns as f64 / n.max(1) as f64)
        .collect();
    per_op.sort_by(f64::total_cmp);
    let ops: usize = batches.iter().map(|b| b.1).sum();
    let total: u64 = batches.iter().map(|b| b.0).sum();
    let pct = |num: usize, den: usize| per_op[(per_op.len() - 1) * num / den];
    Latency {
        ops,
        median: pct(1, 2),
        avg: total as f64 / ops.max(1) as f64,
        p999: pct(999, 1000),
        max: per_op[per_op.len() - 1],
        failed_pct,
        free_median: 0.0,
        alloc_median: 0.0,
    }
}

/// Median of single-operation samples, ns (0 for none).
fn median_of(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2).map_or(0.0, |&x| x as f64)
}

/// Churn on a fragmented space: `ops` steps of "free a random live range, allocate
/// one of `size_pages(rng)` pages", each free and alloc timed on its own. A failed
/// alloc is counted and retried (untimed) as one page.
pub fn churn<A: IovaAlloc>(
    a: &mut A,
    live: &mut Live,
    ops: usize,
    rng: &mut Rng,
    size_pages: fn(&mut Rng) -> u64,
) -> Latency {
    let plan: Vec<(u64, u64)> = (0..ops)
        .map(|_| (rng.next_u64(), size_pages(rng) * PAGE))
        .collect();
    let timer = timer_overhead();
    let mut frees = Vec::with_capacity(ops);
    let mut allocs = Vec::with_capacity(ops);
    let mut failed = 0usize;
    for &(pick, size) in &plan {
        if !live.is_empty() {
            let len = u64::try_from(live.len()).unwrap_or(u64::MAX);
            let i = usize::try_from(pick % len).unwrap_or(0);
            let (f, s) = live.swap_remove(i);
            let t = Instant::now();
            a.free(f, s);
            frees.push(nanos(t).saturating_sub(timer));
        }
        let t = Instant::now();
        let got = a.alloc(size, PAGE);
        allocs.push(nanos(t).saturating_sub(timer));
        match got {
            Some(f) => live.push((f, size)),
            None => {
                failed += 1;
                if let Some(f) = a.alloc(PAGE, PAGE) {
                    live.push((f, PAGE));
                }
            }
        }
    }
    let samples: Vec<(u64, usize)> = frees.iter().chain(&allocs).map(|&ns| (ns, 1)).collect();
    let mut lat = summarize(&samples, 100.0 * failed as f64 / ops.max(1) as f64);
    lat.free_median = median_of(frees);
    lat.alloc_median = median_of(allocs);
    lat
}

/// One page every time.
pub fn one_page(_: &mut Rng) -> u64 {
    1
}

/// Half one page, half 2 to 16 pages: what makes a first-fit scan walk past small holes.
pub fn mixed_pages(rng: &mut Rng) -> u64 {
    let x = rng.next_u64();
    if x & 1 == 0 { 1 } else { 2 + (x >> 1) % 15 }
}

/// The low 4 GiB, `[0, 0xffff_ffff]`.
pub fn low_4g() -> IovaSet {
    IovaSet::from(IovaRange::new(0, 0xffff_ffff).expect("valid"))
}

/// A 39-bit space (VT-d's smallest AGAW), for the scaling workload.
pub fn space_39() -> IovaSet {
    IovaSet::from(IovaRange::new(0, (1 << 39) - 1).expect("valid"))
}

/// Our core allocator, first-fit, 4 KiB granule.
pub fn ours(set: &IovaSet) -> Allocator {
    Allocator::new(set, PAGE, Policy::FirstFit).expect("valid set")
}
