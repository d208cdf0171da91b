//! Workloads of the simulated container (mapping tracker + page table) and of the IO
//! page table, with their peers: `rangemap::RangeInclusiveMap` for the tracker and a
//! minimal 4-level x86-style table written here for the page walk.

use std::hint::black_box;
use std::time::Instant;

use iova::container::{Container, ContainerConfig};
use iova::dma::{Access, DmaSpace};
use iova::host::{Group, Host, IommuUnit, IommuVendor};
use iova::pagetable::PageTable;
use rangemap::RangeInclusiveMap;

use crate::{BATCH_STEPS, Latency, PAGE, Rng, nanos, summarize, timer_overhead};

/// A host with one VT-d unit (39-bit, 4K|2M|1G, interrupt remapping) and group 1.
pub fn vtd_host() -> Host {
    let mut group = Group::new(1);
    group.iommu = Some("dmar0".into());
    Host {
        iommus: vec![
            IommuUnit::new("dmar0", IommuVendor::Intel)
                .with_address_width(39)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
        ],
        groups: vec![group],
        ..Host::default()
    }
}

/// A type1 container with group 1 attached and the given entry limit.
pub fn container(limit: u32) -> Container {
    let config = ContainerConfig::default().dma_entry_limit(limit);
    let mut c = Container::new(config);
    c.attach(&vtd_host(), 1).expect("attach the VT-d group");
    c
}

/// What the tracker workloads drive: 4 KiB map and unmap at a page index.
pub trait Tracker {
    /// Maps page `p` (IOVA `p * 4K`) to host `host`.
    fn map_page(&mut self, p: u64, host: u64);
    /// Unmaps page `p`.
    fn unmap_page(&mut self, p: u64);
}

impl Tracker for Container {
    fn map_page(&mut self, p: u64, host: u64) {
        self.map(p * PAGE, host, PAGE, Access::RW).expect("map");
    }
    fn unmap_page(&mut self, p: u64) {
        self.unmap(p * PAGE, PAGE).expect("unmap");
    }
}

/// The page table alone, as the container drives it (for splitting the container's
/// cost into tracker and page-table updates).
impl Tracker for PageTable {
    fn map_page(&mut self, p: u64, host: u64) {
        self.map(p * PAGE, host, PAGE, Access::RW).expect("map");
    }
    fn unmap_page(&mut self, p: u64) {
        self.unmap(p * PAGE, PAGE).expect("unmap");
    }
}

/// The peer tracker: a `RangeInclusiveMap` from IOVA to (host, access), with the
/// overlap check a map must make.
#[derive(Default)]
pub struct RangeMapTracker(pub RangeInclusiveMap<u64, (u64, bool, bool)>);

impl Tracker for RangeMapTracker {
    fn map_page(&mut self, p: u64, host: u64) {
        let r = p * PAGE..=p * PAGE + PAGE - 1;
        assert!(!self.0.overlaps(&r), "peer: overlap");
        self.0.insert(r, (host, true, true));
    }
    fn unmap_page(&mut self, p: u64) {
        self.0.remove(p * PAGE..=p * PAGE + PAGE - 1);
    }
}

/// A floor for any exact tracker on this workload, not a peer that does the same job:
/// the container's page table plus an unordered `HashMap` from first IOVA to (last,
/// host, access), which answers the exact unmap in one probe but keeps no order (so it
/// could not answer the overlap and range questions the container's tracker does).
/// What it costs above the page table alone is the least a tracker adds.
pub struct HashFloor {
    table: PageTable,
    starts: std::collections::HashMap<u64, (u64, u64, Access), FastHash>,
}

/// A multiply-and-fold hash for the floor's `u64` keys: far cheaper than the standard
/// library's SipHash, so the floor is not raised by hashing cost.
#[derive(Default, Clone, Copy)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

/// The hasher of [`FastHash`].
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // Page-aligned keys leave the product's low bits zero: fold the high ones in.
        h ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 ^= x;
    }
}

impl Default for HashFloor {
    fn default() -> Self {
        HashFloor {
            table: PageTable::x86(39).expect("a 39-bit x86 table"),
            starts: std::collections::HashMap::with_hasher(FastHash),
        }
    }
}

impl Tracker for HashFloor {
    fn map_page(&mut self, p: u64, host: u64) {
        let iova = p * PAGE;
        self.table.map(iova, host, PAGE, Access::RW).expect("map");
        self.starts
            .insert(iova, (iova + PAGE - 1, host, Access::RW));
    }
    fn unmap_page(&mut self, p: u64) {
        let iova = p * PAGE;
        let e = self.starts.remove(&iova).expect("mapped");
        assert_eq!(e.0, iova + PAGE - 1, "floor: exact unmap");
        self.table.unmap(iova, PAGE).expect("unmap");
    }
}

/// Resident set size of this process, bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// Result of a tracker churn.
pub struct Churn {
    /// Map and unmap latencies.
    pub lat: Latency,
    /// RSS growth while filling, bytes per live mapping (0 if unknown).
    pub bytes_per_mapping: f64,
}

/// Fills `t` with `live` 4 KiB mappings at random pages among `slots`, then runs `ops`
/// steps of "unmap a random live page, map a random free page", timing each call.
pub fn tracker_churn<T: Tracker>(t: &mut T, slots: u64, live: usize, ops: usize) -> Churn {
    let mut rng = Rng::new(0xc0ffee);
    let mut used = vec![false; usize::try_from(slots).unwrap_or(0)];
    let mut pages: Vec<u64> = Vec::with_capacity(live);
    let pick_free = |rng: &mut Rng, used: &mut Vec<bool>| loop {
        let p = rng.below(used.len());
        if !used[p] {
            used[p] = true;
            return u64::try_from(p).unwrap_or(0);
        }
    };
    // Fault in the harness's own vectors first, so that the RSS growth below is the
    // tracker's alone (untouched, these add 24 bytes per mapping at 65,535 mappings:
    // the `used` flags and the `pages` list).
    used.iter_mut().for_each(|u| *u = black_box(false));
    black_box(&used);
    pages.resize(live, 0);
    black_box(&mut pages).clear();
    let before = rss_bytes();
    for _ in 0..live {
        let p = pick_free(&mut rng, &mut used);
        t.map_page(p, (1 << 40) + p * PAGE);
        pages.push(p);
    }
    let grown = rss_bytes().saturating_sub(before);
    let timer = timer_overhead();
    let mut batches = Vec::with_capacity(ops / BATCH_STEPS + 1);
    let mut done = 0;
    while done < ops {
        // Choices are made before the timer starts.
        let steps = BATCH_STEPS.min(ops - done);
        let mut plan = [(0u64, 0u64); BATCH_STEPS];
        for slot in plan.iter_mut().take(steps) {
            let i = rng.below(pages.len());
            let p = pages.swap_remove(i);
            used[usize::try_from(p).unwrap_or(0)] = false;
            let q = pick_free(&mut rng, &mut used);
            pages.push(q);
            *slot = (p, q);
        }
        let t0 = Instant::now();
        for &(p, q) in plan.iter().take(steps) {
            t.unmap_page(p);
            t.map_page(q, (1 << 40) + q * PAGE);
        }
        batches.push((nanos(t0).saturating_sub(timer), 2 * steps));
        done += steps;
    }
    Churn {
        lat: summarize(&batches, 0.0),
        bytes_per_mapping: grown as f64 / live.max(1) as f64,
    }
}

/// The peer page table: four levels of 512-entry tables in an arena, x86-style
/// (present bit 0, writable bit 1, address in bits 12..51), 4 KiB leaves only.
pub struct ArrayWalk {
    tables: Vec<[u64; 512]>,
}

impl Default for ArrayWalk {
    fn default() -> Self {
        ArrayWalk {
            tables: vec![[0; 512]],
        }
    }
}

const ADDR: u64 = 0x000f_ffff_ffff_f000;

fn slot(iova: u64, level: u32) -> usize {
    usize::try_from((iova >> (12 + 9 * level)) & 511).unwrap_or(0)
}

impl ArrayWalk {
    /// Maps one 4 KiB page (overwrites).
    pub fn map_4k(&mut self, iova: u64, host: u64) {
        let mut t = 0usize;
        for level in (1..4).rev() {
            let s = slot(iova, level);
            let e = self.tables[t][s];
            t = if e & 1 == 1 {
                usize::try_from((e & ADDR) >> 12).unwrap_or(0)
            } else {
                self.tables.push([0; 512]);
                let n = self.tables.len() - 1;
                self.tables[t][s] = (u64::try_from(n).unwrap_or(0) << 12) | 3;
                n
            };
        }
        self.tables[t][slot(iova, 0)] = (host & ADDR) | 3;
    }

    /// Walks to the host address of `iova`.
    pub fn translate(&self, iova: u64) -> Option<u64> {
        let mut t = 0usize;
        for level in (1..4).rev() {
            let e = self.tables[t][slot(iova, level)];
            if e & 1 == 0 {
                return None;
            }
            t = usize::try_from((e & ADDR) >> 12).unwrap_or(0);
        }
        let e = self.tables[t][slot(iova, 0)];
        (e & 1 == 1).then_some((e & ADDR) | (iova & 0xfff))
    }
}

/// ns per PTE mapping 1 GiB as 4 KiB pages: ours in one `map` call on a 4K-only table,
/// the peer page by page. Median of `reps`.
pub fn pt_map_1g(reps: usize) -> (f64, f64) {
    let ptes = (1u64 << 30) / PAGE;
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for _ in 0..reps {
        let mut pt = PageTable::new(PAGE, 48).expect("4K-only table");
        let t = Instant::now();
        pt.map(1 << 30, 1 << 40, 1 << 30, Access::RW)
            .expect("map 1 GiB");
        ours.push(nanos(t) as f64 / ptes as f64);
        black_box(&pt);
        let mut w = ArrayWalk::default();
        let t = Instant::now();
        for i in 0..ptes {
            w.map_4k((1 << 30) + i * PAGE, (1 << 40) + i * PAGE);
        }
        peer.push(nanos(t) as f64 / ptes as f64);
        black_box(&w);
    }
    (median(ours), median(peer))
}

/// Latency of single 4 KiB maps at random pages of a 1 GiB window (individually
/// timed), ours vs peer.
pub fn pt_map_single(n: usize) -> (Latency, Latency) {
    let mut rng = Rng::new(9);
    let pages: Vec<u64> = {
        let mut v: Vec<u64> = (0..(1u64 << 18)).collect();
        for i in (1..v.len()).rev() {
            v.swap(i, rng.below(i + 1));
        }
        v.truncate(n);
        v
    };
    let mut pt = PageTable::new(PAGE, 48).expect("4K-only table");
    let mut w = ArrayWalk::default();
    let timer = timer_overhead();
    let mut lo = Vec::with_capacity(n / BATCH_STEPS + 1);
    let mut lp = Vec::with_capacity(n / BATCH_STEPS + 1);
    for chunk in pages.chunks(BATCH_STEPS) {
        let t = Instant::now();
        for &p in chunk {
            pt.map((1 << 30) + p * PAGE, (1 << 40) + p * PAGE, PAGE, Access::RW)
                .expect("map");
        }
        lo.push((nanos(t).saturating_sub(timer), chunk.len()));
        let t = Instant::now();
        for &p in chunk {
            w.map_4k((1 << 30) + p * PAGE, (1 << 40) + p * PAGE);
        }
        lp.push((nanos(t).saturating_sub(timer), chunk.len()));
    }
    (summarize(&lo, 0.0), summarize(&lp, 0.0))
}

/// ns per translation of random addresses over 1 GiB of 4 KiB mappings.
pub fn pt_translate(n: usize) -> (f64, f64) {
    let mut pt = PageTable::new(PAGE, 48).expect("4K-only table");
    pt.map(1 << 30, 1 << 40, 1 << 30, Access::RW)
        .expect("map 1 GiB");
    let mut w = ArrayWalk::default();
    for i in 0..(1u64 << 18) {
        w.map_4k((1 << 30) + i * PAGE, (1 << 40) + i * PAGE);
    }
    let mut rng = Rng::new(3);
    let addrs: Vec<u64> = (0..n)
        .map(|_| (1 << 30) + (rng.next_u64() & ((1 << 30) - 1)))
        .collect();
    let t = Instant::now();
    let mut sum = 0u64;
    for &a in &addrs {
        sum = sum.wrapping_add(pt.translate(a, Access::READ).unwrap_or(0));
    }
    let ours = nanos(t) as f64 / n as f64;
    let t = Instant::now();
    let mut sum2 = 0u64;
    for &a in &addrs {
        sum2 = sum2.wrapping_add(w.translate(a).unwrap_or(0));
    }
    let peer = nanos(t) as f64 / n as f64;
    assert_eq!(sum, sum2, "both tables translate alike");
    (ours, peer)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
