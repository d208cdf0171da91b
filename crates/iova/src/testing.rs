//! Helpers for tests and differential runs: a portable seeded generator and seeded
//! random DMA traces. Compiled only with the `testing` feature (and for this crate's
//! own tests): they are not part of the kernel model.

use crate::dma::{Access, DmaInfo};
use crate::range::IovaRange;
use crate::trace::TraceOp;

/// A small deterministic generator (SplitMix64): the same seed gives the same numbers
/// on every machine. Used for the seeded random traces, and by tests that need their
/// own reproducible sequences.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        let n = u64::try_from(items.len()).ok()?;
        let i = usize::try_from(self.below(n)).ok()?;
        items.get(i).copied()
    }
}

/// Generates a seeded random trace of `len` operations for differential testing,
/// biased toward the cases where implementations differ: the edges of the valid ranges
/// in `info` (and so the MSI window and the aperture end), the first and last page of
/// the space, overlaps with and splits of earlier mappings, misaligned addresses and
/// sizes, size 0, wrapping ranges, read-only and no-access maps, and unmap-all.
///
/// `info` is what the space under test reports (its page sizes give the alignment
/// unit). The same seed and `info` give the same trace on every machine.
pub fn random_trace(seed: u64, len: usize, info: &DmaInfo) -> Vec<TraceOp> {
    let mut rng = SplitMix(seed);
    let page = info.min_page_size().unwrap_or(0x1000);
    let huge = if info.page_sizes & (1 << 21) != 0 {
        1 << 21
    } else {
        page.saturating_mul(16)
    };
    // Interesting addresses: the edges of every valid range and of the gaps between.
    let mut points: Vec<u64> = vec![0, page, 0x10_0000, u64::MAX - (page - 1)];
    for r in info.iova_ranges.iter() {
        points.push(r.first());
        points.push(r.last() - (page - 1).min(r.last()));
        points.push(r.last().wrapping_add(1));
        points.push(r.first().wrapping_sub(page));
    }
    let mut mapped: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let size_pages = match rng.below(6) {
            0 => 1,
            1 => 2,
            2 => 1 + rng.below(16),
            3 => huge / page,
            4 => 1 + rng.below(4),
            _ => (huge / page).saturating_mul(1 + rng.below(2)),
        };
        let mut size = size_pages.saturating_mul(page);
        let mut iova = match rng.below(5) {
            0 | 1 => {
                let p = rng.pick(&points).unwrap_or(0);
                // Near the edge: a page or two either side.
                match rng.below(4) {
                    0 => p,
                    1 => p.wrapping_sub(page),
                    2 => p.wrapping_sub(size.saturating_sub(page)),
                    _ => p.wrapping_add(page),
                }
            }
            2 => match rng.pick(&mapped) {
                Some((f, l)) => {
                    // Inside, at, or straddling an earlier mapping.
                    match rng.below(4) {
                        0 => f,
                        1 => f.wrapping_add(page).min(l & !(page - 1)),
                        2 => f.wrapping_sub(page),
                        _ => l.wrapping_add(1).wrapping_sub(page),
                    }
                }
                None => rng.below(64).wrapping_mul(huge),
            },
            _ => rng
                .below(256)
                .wrapping_mul(huge)
                .wrapping_add(rng.below(512).wrapping_mul(page)),
        };
        // Occasionally break the rules.
        match rng.below(24) {
            0 => size = 0,
            1 => iova |= page / 2,
            2 => size = size.wrapping_add(page / 2),
            3 => iova = u64::MAX - (page - 1),
            4 => size = size.max(page.saturating_mul(2)),
            _ => {}
        }
        let op = match rng.below(10) {
            0..=5 => {
                let access = match rng.below(12) {
                    0 => Access::READ,
                    1 => Access::WRITE,
                    2 => Access::NONE,
                    _ => Access::RW,
                };
                let host_addr = match rng.below(16) {
                    0 => iova | (page / 2),
                    1 => u64::MAX - (page - 1),
                    2..=8 => iova,
                    _ => 0x7f00_0000_0000u64.wrapping_add(rng.below(1 << 20) * page),
                };
                if let Ok(r) = IovaRange::from_start_size(iova, size) {
                    mapped.push((r.first(), r.last()));
                    if mapped.len() > 64 {
                        mapped.remove(0);
                    }
                }
                TraceOp::Map {
                    iova,
                    size,
                    host_addr,
                    access,
                }
            }
            6..=8 => {
                if let (0, Some((f, l))) = (rng.below(2), rng.pick(&mapped)) {
                    // The whole of an earlier mapping, a superset or a split.
                    let (f, l) = match rng.below(3) {
                        0 => (f, l),
                        1 => (f & !(huge - 1), l | (huge - 1)),
                        _ => (f, f.wrapping_add(page - 1).min(l)),
                    };
                    let size = l.wrapping_sub(f).wrapping_add(1);
                    TraceOp::Unmap { iova: f, size }
                } else {
                    TraceOp::Unmap { iova, size }
                }
            }
            _ => {
                mapped.clear();
                TraceOp::UnmapAll
            }
        };
        out.push(op);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::IovaSet;
    use crate::trace::parse_trace;

    #[test]
    fn random_traces_are_deterministic_and_varied() {
        let info = DmaInfo {
            iova_ranges: IovaSet::from(IovaRange::new(0, 0x7f_ffff_ffff).unwrap()),
            page_sizes: 0x4020_1000,
            dma_avail: Some(65535),
        };
        let a = random_trace(7, 500, &info);
        assert_eq!(a, random_trace(7, 500, &info));
        assert_ne!(a, random_trace(8, 500, &info));
        assert!(a.iter().any(|o| matches!(o, TraceOp::UnmapAll)));
        assert!(a.iter().any(|o| matches!(o, TraceOp::Map { size: 0, .. })));
        assert!(a.iter().any(|o| matches!(o, TraceOp::Unmap { .. })));
        // Every generated op survives a round trip through the text format.
        let text: String = a.iter().map(|o| format!("{o}\n")).collect();
        let back: Vec<TraceOp> = parse_trace(&text)
            .unwrap()
            .into_iter()
            .map(|l| l.op)
            .collect();
        assert_eq!(back, a);
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // SplitMix64 (Steele, Lea, Flood 2014) seeded with 0 starts with these values;
        // they pin the generator so traces are the same on every machine.
        let mut r = SplitMix(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
    }
}
