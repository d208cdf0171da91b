//! Differential checks of the iommufd backend: the real IOAS against the simulated
//! [`Container`] in [`Flavour::Iommufd`], attached to the same group of the host model
//! that `iova_linux::sysfs::read_host` builds from the guest's `/sys`.
//!
//! - the valid IOVAs the simulation computes against IOVA_RANGES;
//! - fixed-IOVA traces: the vm-spike corpus (`crates/iova/tests/data/vm-spike-39.trace`)
//!   and seeded random traces (`iova::trace::random_trace`), every outcome compared;
//! - automatic allocation: seeded sequences of MAP without FIXED_IOVA (sizes from one
//!   page to several huge pages, user addresses of every alignment), unmaps and
//!   ALLOW_IOVAS changes; the IOVA each picks (or its errno) compared.
//!
//! Each disagreement is printed with the operation; the check names carry the counts.

use std::path::Path;

use iova::container::{Container, Flavour};
use iova::dma::{Access, DmaInfo, DmaSpace};
use iova::range::{IovaRange, IovaSet};
use iova::testing::SplitMix;
use iova::trace::{TraceOp, apply, format_outcome, parse_trace};
use iova_linux::arena::TraceArena;
use iova_linux::iommufd::Ioas;
use iova_linux::memory::HoldMemory;

use crate::diff::{replay, replay_random};
use crate::report::Report;

/// The vm-spike MAP/UNMAP sequence (a real 6.1 type1 run), reused as a fixed corpus.
const CORPUS: &str = include_str!("../../../iova/tests/data/vm-spike-39.trace");

/// The simulated iommufd IOAS for `group`, built from the guest's sysfs.
pub fn simulated(r: &mut Report, group: u32) -> Option<Container> {
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => h,
        Err(e) => {
            r.fail("sim-read-host", &e.to_string());
            return None;
        }
    };
    let mut c = Container::new(crate::diff::guest_config(Flavour::Iommufd));
    match c.attach(&host, group) {
        Ok(()) => Some(c),
        Err(e) => {
            r.fail("sim-attach", &e.to_string());
            None
        }
    }
}

/// One automatic-allocation sequence; returns (operations, disagreements).
fn auto_sequence(
    r: &mut Report,
    seed: u64,
    real: &mut Ioas,
    sim: &mut Container,
    arena: &TraceArena,
) -> (usize, usize) {
    const K4: u64 = 0x1000;
    let mut rng = SplitMix(seed);
    // The arena is only sure to be page aligned: start at its first huge-page
    // boundary so that large alignments happen.
    let huge = 0x20_0000u64;
    let base = arena
        .addr()
        .checked_add(huge - 1)
        .map_or(arena.addr(), |a| a & !(huge - 1));
    let len = TraceArena::DEFAULT_LEN - huge;
    let mut live: Vec<(u64, u64)> = Vec::new();
    let (mut n, mut bad) = (0, 0);
    let note = |r: &mut Report, what: String, got: String, want: String| {
        if got != want {
            r.note(&format!(
                "DISAGREE auto seed {seed}: {what}: kernel {got}, simulation {want}; {}",
                crate::facts::kernel_label()
            ));
            true
        } else {
            false
        }
    };
    for _ in 0..60 {
        match rng.below(10) {
            0..=6 => {
                let size = match rng.below(5) {
                    0 => K4,
                    1 => K4 * (1 + rng.below(16)),
                    2 => 0x20_0000,
                    3 => 0x20_0000 * (1 + rng.below(3)),
                    _ => K4 * (1 + rng.below(600)),
                };
                // User addresses of every alignment: huge-page aligned, page aligned,
                // odd pages, and now and then off the page grid.
                let off = match rng.below(6) {
                    0 => 0,
                    1 => 0x20_0000 * rng.below(8),
                    2 => K4 * rng.below(4096),
                    3 => K4 * (2 * rng.below(2048) + 1),
                    4 => 0x800,
                    _ => K4 * rng.below(64),
                };
                if off.saturating_add(size) > len {
                    continue;
                }
                let host = base + off;
                let access = if rng.below(5) == 0 {
                    Access::READ
                } else {
                    Access::RW
                };
                let got = real.map_auto(host, size, access).map_err(|e| e.name());
                let want = sim
                    .map_auto(host, size, access)
                    .map_err(|e| e.errno().name());
                if let Ok(iova) = got {
                    live.push((iova, size));
                }
                let fmt = |x: &Result<u64, String>| match x {
                    Ok(v) => format!("{v:#x}"),
                    Err(e) => e.clone(),
                };
                if note(
                    r,
                    format!("map-auto {host:#x}(+{off:#x}) {size:#x}"),
                    fmt(&got),
                    fmt(&want),
                ) {
                    bad += 1;
                }
            }
            7 | 8 if !live.is_empty() => {
                let count = u64::try_from(live.len()).unwrap_or(u64::MAX);
                let i = usize::try_from(rng.below(count)).unwrap_or(0);
                let (iova, size) = live.swap_remove(i);
                let got = format_outcome(&apply(real, &TraceOp::Unmap { iova, size }));
                let want = format_outcome(&apply(sim, &TraceOp::Unmap { iova, size }));
                if note(r, format!("unmap {iova:#x} {size:#x}"), got, want) {
                    bad += 1;
                }
            }
            _ => {
                // A new allowed list: empty, or one or two windows below 4 GiB.
                let mut ranges = Vec::new();
                for _ in 0..rng.below(3) {
                    let first = 0x10_0000 * rng.below(4096);
                    let size = 0x1_0000 * (1 + rng.below(512));
                    if let Ok(x) = IovaRange::from_start_size(first, size) {
                        ranges.push(x);
                    }
                }
                let set: IovaSet = ranges.iter().copied().collect();
                let list: Vec<IovaRange> = set.iter().copied().collect();
                let got = real
                    .allow_iovas(&list)
                    .map_or_else(|e| e.name(), |()| "ok".into());
                let want = sim
                    .allow_iovas(&set)
                    .map_or_else(|e| e.errno().name(), |()| "ok".into());
                if note(r, format!("allow-iovas {list:?}"), got, want) {
                    bad += 1;
                }
            }
        }
        n += 1;
    }
    let _ = real.allow_iovas(&[]);
    let _ = sim.allow_iovas(&IovaSet::default());
    let a = format_outcome(&apply(real, &TraceOp::UnmapAll));
    let b = format_outcome(&apply(sim, &TraceOp::UnmapAll));
    if note(r, "final unmap-all".into(), a, b) {
        bad += 1;
    }
    (n + 1, bad)
}

/// Runs the differential checks on an IOAS with the device attached and nothing mapped.
pub fn run(r: &mut Report, ioas: &mut Ioas, group: u32, seed: u64) {
    let Some(mut sim) = simulated(r, group) else {
        return;
    };
    let kernel = match ioas.iova_ranges() {
        Ok(k) => k,
        Err(e) => return r.fail("sim-valid-iovas-equal-iova-ranges", &e.name()),
    };
    r.eq(
        "sim-valid-iovas-equal-iova-ranges",
        sim.valid_iovas(),
        kernel.ranges.iter().copied().collect::<IovaSet>(),
    );
    let arena = match TraceArena::new(TraceArena::DEFAULT_LEN) {
        Ok(a) => a,
        Err(e) => return r.fail("diff-arena", &e.name()),
    };
    ioas.add_memory(arena.memory());
    let _ = ioas.unmap_raw(0, u64::MAX);
    let _ = sim.unmap_all();
    match parse_trace(CORPUS) {
        Ok(lines) => {
            let ops: Vec<TraceOp> = lines.iter().map(|l| l.op.clone()).collect();
            let (n, bad) = replay(r, "corpus", ioas, &mut sim, &ops, &arena);
            r.eq(&format!("diff-corpus-{n}-ops-agree"), bad, 0);
        }
        Err(e) => r.fail("diff-corpus-parse", &e.to_string()),
    }
    // Traces aimed at the kernel's valid ranges, with the model's page sizes so that
    // huge-page sized operations happen.
    let info = DmaInfo {
        iova_ranges: kernel.ranges.iter().copied().collect(),
        page_sizes: sim.info().map_or(kernel.alignment, |i| i.page_sizes),
        dma_avail: None,
    };
    replay_random(r, ioas, &mut sim, &arena, &info, seed);
    let (mut total, mut bad_total) = (0, 0);
    for k in 0..3u64 {
        let s = seed.wrapping_mul(1000).wrapping_add(500 + k);
        let (n, bad) = auto_sequence(r, s, ioas, &mut sim, &arena);
        r.eq(&format!("diff-auto-seed-{s}-{n}-ops-agree"), bad, 0);
        total += n;
        bad_total += bad;
    }
    r.note(&format!(
        "automatic allocation: {total} operations, {bad_total} disagreements on the {}",
        crate::facts::kernel_label()
    ));
    drop(arena);
}
