//! DMA traces: sequences of map/unmap operations replayed against any [`DmaSpace`].
//!
//! The same trace runs on the simulated [`crate::container::Container`] and on the real
//! kernel (through `iova-linux`), and the outcomes, formatted by [`format_outcome`], are
//! compared line by line. That is how the simulation is held to the kernel.
//!
//! # Format
//!
//! One operation per line; `#` starts a comment; blank lines are ignored. Numbers are
//! hex (`0x…`) or decimal, `_` separators allowed.
//!
//! ```text
//! map IOVA SIZE [HOST_ADDR] [r|w|rw|-]   # host address defaults to IOVA, access to rw
//! unmap IOVA SIZE
//! unmap-all
//! ```
//!
//! `-` asks for no access at all (the kernel refuses it: EINVAL).
//!
//! Outcomes are written `ok` (map), `ok 0x<bytes>` (unmap, unmap-all) or the errno name
//! (`EINVAL`, `EEXIST`, ...).
//!
//! ```
//! use iova::trace::{parse_trace, TraceOp};
//! use iova::dma::Access;
//!
//! let t = parse_trace("map 0x100000 0x200000\n# comment\nunmap 0x100000 2097152\nunmap-all\n")?;
//! assert_eq!(t[0].op, TraceOp::Map { iova: 0x100000, size: 0x200000, host_addr: 0x100000, access: Access::RW });
//! assert_eq!(t[1].line_no, 3);
//! # Ok::<(), iova::trace::TraceError>(())
//! ```

use std::fmt;

use crate::dma::{Access, DmaInfo, DmaSpace, Errno};
use crate::range::{IovaRange, parse_u64};

/// One operation of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceOp {
    /// Map `size` bytes at `iova` to `host_addr`.
    Map {
        /// First IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
        /// Host (process virtual) address of the first byte.
        host_addr: u64,
        /// Device access.
        access: Access,
    },
    /// Unmap `[iova, iova + size - 1]`.
    Unmap {
        /// First IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
    },
    /// Unmap everything.
    UnmapAll,
}

impl fmt::Display for TraceOp {
    /// The trace-file spelling, parseable by [`parse_trace`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceOp::Map {
                iova,
                size,
                host_addr,
                access,
            } => write!(
                f,
                "map {iova:#x} {size:#x} {host_addr:#x} {}",
                access.as_str()
            ),
            TraceOp::Unmap { iova, size } => write!(f, "unmap {iova:#x} {size:#x}"),
            TraceOp::UnmapAll => f.write_str("unmap-all"),
        }
    }
}

/// An operation and the line it came from (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLine {
    /// Line number in the trace text, from 1.
    pub line_no: usize,
    /// The operation.
    pub op: TraceOp,
}

/// A trace line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line_no}: '{text}': {reason}")]
pub struct TraceError {
    /// Line number, from 1.
    pub line_no: usize,
    /// The line as written (comment removed, trimmed).
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// The result of one operation: `Some(bytes)` for unmaps, `None` for maps, or the errno.
pub type Outcome = Result<Option<u128>, Errno>;

fn parse_access(s: &str) -> Option<Access> {
    Some(match s {
        "rw" | "wr" => Access::RW,
        "r" => Access::READ,
        "w" => Access::WRITE,
        "-" => Access::NONE,
        _ => return None,
    })
}

/// Parses a trace (see the [module documentation](self) for the format).
pub fn parse_trace(text: &str) -> Result<Vec<TraceLine>, TraceError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let err = |reason: String| TraceError {
            line_no,
            text: body.to_owned(),
            reason,
        };
        let words: Vec<&str> = body.split_whitespace().collect();
        let num = |k: usize, what: &str| -> Result<u64, TraceError> {
            let w = words.get(k).ok_or_else(|| err(format!("missing {what}")))?;
            parse_u64(w).map_err(|e| err(format!("{what}: {e}")))
        };
        let op = match words[0] {
            "map" => {
                if words.len() > 5 {
                    return Err(err(
                        "too many fields (map IOVA SIZE [HOST_ADDR] [r|w|rw])".into()
                    ));
                }
                let iova = num(1, "IOVA")?;
                let size = num(2, "SIZE")?;
                let mut host_addr = iova;
                let mut access = Access::RW;
                match &words[3..] {
                    [] => {}
                    [a] => match parse_access(a) {
                        Some(acc) => access = acc,
                        None => host_addr = num(3, "HOST_ADDR")?,
                    },
                    [_, a] => {
                        host_addr = num(3, "HOST_ADDR")?;
                        access = parse_access(a).ok_or_else(|| {
                            err(format!("access '{a}' is not one of r, w, rw, -"))
                        })?;
                    }
                    _ => unreachable!("length checked above"),
                }
                TraceOp::Map {
                    iova,
                    size,
                    host_addr,
                    access,
                }
            }
            "unmap" => {
                if words.len() != 3 {
                    return Err(err("expected: unmap IOVA SIZE".into()));
                }
                TraceOp::Unmap {
                    iova: num(1, "IOVA")?,
                    size: num(2, "SIZE")?,
                }
            }
            "unmap-all" => {
                if words.len() != 1 {
                    return Err(err("unmap-all takes no arguments".into()));
                }
                TraceOp::UnmapAll
            }
            w => {
                return Err(err(format!(
                    "unknown operation '{w}' (expected map, unmap or unmap-all)"
                )));
            }
        };
        out.push(TraceLine { line_no, op });
    }
    Ok(out)
}

/// Runs one operation on a DMA space.
pub fn apply(space: &mut dyn DmaSpace, op: &TraceOp) -> Outcome {
    match *op {
        TraceOp::Map {
            iova,
            size,
            host_addr,
            access,
        } => space
            .map(iova, host_addr, size, access)
            .map(|()| None)
            .map_err(|e| e.errno()),
        TraceOp::Unmap { iova, size } => space.unmap(iova, size).map(Some).map_err(|e| e.errno()),
        TraceOp::UnmapAll => space.unmap_all().map(Some).map_err(|e| e.errno()),
    }
}

/// `ok`, `ok 0x<bytes>` or the errno name.
pub fn format_outcome(o: &Outcome) -> String {
    match o {
        Ok(None) => "ok".to_owned(),
        Ok(Some(bytes)) => format!("ok {bytes:#x}"),
        Err(e) => e.name(),
    }
}

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

    #[test]
    fn parse_errors_name_line_and_text() {
        let e = parse_trace("map 0x1000 0x1000\n\nmap 0x1000 zz\n").unwrap_err();
        assert_eq!(e.line_no, 3);
        assert_eq!(e.text, "map 0x1000 zz");
        assert!(e.to_string().contains("SIZE"), "{e}");
        assert!(parse_trace("frob 1 2").unwrap_err().reason.contains("frob"));
        assert!(parse_trace("unmap 1").is_err());
        assert!(parse_trace("unmap-all 0").is_err());
        assert!(parse_trace("map 0 0x1000 0 rw extra").is_err());
        assert!(parse_trace("map 0 0x1000 0 x").is_err());
    }

    #[test]
    fn parse_forms() {
        let t =
            parse_trace("map 0x2000 4096 r # ro\nmap 0x3000 0x1000 0x9000\nmap 1 2 3 -\n").unwrap();
        assert_eq!(
            t[0].op,
            TraceOp::Map {
                iova: 0x2000,
                size: 4096,
                host_addr: 0x2000,
                access: Access::READ
            }
        );
        assert_eq!(
            t[1].op,
            TraceOp::Map {
                iova: 0x3000,
                size: 0x1000,
                host_addr: 0x9000,
                access: Access::RW
            }
        );
        assert_eq!(
            t[2].op,
            TraceOp::Map {
                iova: 1,
                size: 2,
                host_addr: 3,
                access: Access::NONE
            }
        );
        // Display round-trips.
        for l in &t {
            let back = parse_trace(&l.op.to_string()).unwrap();
            assert_eq!(back[0].op, l.op);
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(format_outcome(&Ok(None)), "ok");
        assert_eq!(format_outcome(&Ok(Some(0x20_0000))), "ok 0x200000");
        assert_eq!(format_outcome(&Ok(Some(0))), "ok 0x0");
        assert_eq!(format_outcome(&Err(Errno::EEXIST)), "EEXIST");
    }

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
