//! The top of the address space against the real kernel: maps and unmaps that end at,
//! or wrap past, 2^64-1.
//!
//! Emulated VT-d apertures end at 2^39 or 2^48, so these rows run on guests whose IOMMU
//! translates the whole 64-bit space: QEMU's `virtio-iommu-pci` (input range
//! `[0, 2^64-1]`, `vmtest/run` IOMMU `virtio`) or its AMD IOMMU (`amd`). Modes:
//! `top-type1` (the real type1 container, v2 then v1) and `top-compat` (iommufd's VFIO
//! compatibility container as type1 v2 and v1, then the native IOAS).
//!
//! Every case is a short trace run on a **fresh** real space and a fresh simulated
//! [`Container`] for the guest's own kernel version (`crate::diff::guest_config`),
//! attached to the same group of the sysfs model, so a mapping the kernel cannot remove
//! (6.12 keeps a last-page mapping after an unmap) never leaks into the next case. A
//! case passes when every outcome, and the final unmap-all, agrees; the kernel's
//! answers are printed (`vmtest-guest: [...] top ...`) so that docs/kernel-facts.md can
//! quote them. The facts the cases probe (docs/semantics.md §5, §6, §7, §9):
//! - type1 before 6.18 compares `iova + size`, which is 0 for a range ending at
//!   2^64-1: a map there never finds an overlap, an unmap ending there removes nothing;
//!   a wrapping range is EINVAL;
//! - type1 from 6.18 answers a wrap with EOVERFLOW, checked before the flags and the
//!   alignment, and handles the last page like any other;
//! - iommufd and its compat container refuse a wrap with EOVERFLOW after the alignment
//!   checks, and use inclusive ends throughout.
//!
//! Then five seeded random traces confined to the last 16 MiB of the space (plus wraps,
//! huge unmaps and unmap-all) run on one real space per flavour against the
//! simulation; at least 500 operations must run (type1 before 6.18 skips the maps that
//! could hang the guest, see [`hangs_legacy`]).

use std::path::Path;

use iova::container::{Container, Flavour};
use iova::dma::DmaSpace;
use iova::host::Host;
use iova::testing::SplitMix;
use iova::trace::{TraceOp, apply, format_outcome, parse_trace};
use iova_linux::arena::TraceArena;
use iova_linux::device::Device;
use iova_linux::iommufd::{Ioas, Iommufd};
use iova_linux::memory::HoldMemory;
use iova_linux::type1::{Container as Type1, IommuType};

use crate::diff::guest_config;
use crate::facts;
use crate::report::Report;

/// The last page of the space.
const TOP: u64 = 0xffff_ffff_ffff_f000;

/// The cases: a name and a trace (`docs/trace-format` lines; host addresses are moved
/// into the arena, so only their page offset and wrapping matter).
const CASES: &[(&str, &str)] = &[
    (
        "last-page-map-unmap",
        "map 0xfffffffffffff000 0x1000 0x0 rw\nunmap 0xfffffffffffff000 0x1000\nunmap 0xfffffffffffff000 0x1000",
    ),
    ("map-wrap", "map 0xfffffffffffff000 0x2000 0x0 rw"),
    ("unmap-wrap", "unmap 0xfffffffffffff000 0x2000"),
    (
        "unmap-wrap-after-map",
        "map 0xfffffffffffff000 0x1000 0x0 rw\nunmap 0xfffffffffffff000 0x2000",
    ),
    (
        "last-page-mapped-twice",
        "map 0xfffffffffffff000 0x1000 0x0 rw\nmap 0xfffffffffffff000 0x1000 0x0 rw\nunmap 0xfffffffffffff000 0x1000",
    ),
    (
        "map-64k-ending-at-top",
        "map 0xffffffffffff0000 0x10000 0x0 rw\nunmap 0xffffffffffff0000 0x10000",
    ),
    (
        "map-2m-ending-at-top",
        "map 0xffffffffffe00000 0x200000 0x0 rw\nunmap 0xffffffffffe00000 0x200000",
    ),
    (
        "map-16m-ending-at-top",
        "map 0xffffffffff000000 0x1000000 0x0 rw\nunmap 0xffffffffff000000 0x1000000",
    ),
    (
        "overlap-inside-mapping-ending-at-top",
        "map 0xffffffffffff0000 0x10000 0x0 rw\nmap 0xffffffffffff8000 0x1000 0x0 rw\nmap 0xffffffffffffe000 0x2000 0x0 rw\nmap 0xfffffffffffef000 0x2000 0x0 rw",
    ),
    (
        "unmap-inside-mapping-ending-at-top",
        "map 0xffffffffffff0000 0x10000 0x0 rw\nunmap 0xfffffffffffff000 0x1000\nunmap 0xffffffffffff8000 0x1000\nunmap 0xffffffffffff0000 0x1000",
    ),
    (
        "unmap-superset-ending-at-top",
        "map 0xfffffffffffff000 0x1000 0x0 rw\nmap 0xffffffffffff0000 0x1000 0x0 rw\nunmap 0xffffffffffff0000 0x10000",
    ),
    (
        "unmap-superset-below-top",
        "map 0xffffffffffff0000 0x1000 0x0 rw\nmap 0xffffffffffff4000 0x2000 0x0 rw\nunmap 0xffffffffffff0000 0xf000",
    ),
    (
        "neighbour-below-last-page",
        "map 0xffffffffffffe000 0x1000 0x0 rw\nmap 0xfffffffffffff000 0x1000 0x0 rw\nunmap 0xffffffffffffe000 0x1000\nunmap 0xfffffffffffff000 0x1000",
    ),
    (
        "last-page-then-neighbour",
        "map 0xfffffffffffff000 0x1000 0x0 rw\nmap 0xffffffffffffe000 0x1000 0x0 rw\nunmap 0xffffffffffffe000 0x2000\nunmap 0xffffffffffffe000 0x1000",
    ),
    (
        "unmap-huge-ending-at-top",
        "map 0xfffffffffffff000 0x1000 0x0 rw\nmap 0x100000 0x1000 0x0 rw\nunmap 0x1000 0xfffffffffffff000\nunmap 0x0 0xfffffffffffff000",
    ),
    (
        "unmap-huge-wraps",
        "map 0x100000 0x1000 0x0 rw\nunmap 0x100000 0xfffffffffffff000\nunmap 0xfffffffffffff000 0xfffffffffffff000\nunmap 0x1000 0xffffffffffffffff",
    ),
    (
        "map-wrap-misaligned",
        "map 0xfffffffffffff800 0x1000 0x0 rw\nmap 0xfffffffffffff000 0x1800 0x0 rw\nmap 0xfffffffffffff000 0x2000 0x800 rw",
    ),
    ("map-wrap-no-access", "map 0xfffffffffffff000 0x2000 0x0 -"),
    (
        "map-wrap-size-0",
        "map 0xfffffffffffff000 0x0 0x0 rw\nunmap 0xfffffffffffff000 0x0",
    ),
    (
        "map-host-wraps",
        "map 0x400000 0x2000 0xfffffffffffff000 rw\nmap 0xfffffffffffff000 0x1000 0xfffffffffffff000 rw\nmap 0xffffffffffffe000 0x2000 0xfffffffffffff000 rw",
    ),
    (
        "map-iova-and-host-wrap",
        "map 0xfffffffffffff000 0x2000 0xfffffffffffff000 rw",
    ),
    (
        "unmap-all-with-last-page",
        "map 0xfffffffffffff000 0x1000 0x0 rw\nmap 0x100000 0x1000 0x0 rw\nunmap-all\nunmap 0xfffffffffffff000 0x1000",
    ),
    (
        "unmap-wrap-misaligned",
        "unmap 0xfffffffffffff800 0x1000\nunmap 0xfffffffffffff000 0x1800",
    ),
];

/// One real DMA space of a flavour, with what keeps it alive.
enum Real {
    /// A type1 container (or the compat container), with the device opened for compat
    /// (dropped after the container).
    Type1 {
        /// The container.
        c: Type1,
        /// Keeps the compat IOAS's domain.
        _device: Option<Device>,
    },
    /// A native IOAS with its device attached (dropped after the IOAS).
    Ioas {
        /// The IOAS.
        ioas: Ioas,
        /// The attached device.
        _device: Device,
    },
}

impl Real {
    fn space(&mut self) -> &mut dyn DmaSpace {
        match self {
            Real::Type1 { c, .. } => c,
            Real::Ioas { ioas, .. } => ioas,
        }
    }

    fn hold(&mut self, arena: &TraceArena) {
        match self {
            Real::Type1 { c, .. } => c.add_memory(arena.memory()),
            Real::Ioas { ioas, .. } => ioas.add_memory(arena.memory()),
        }
    }
}

/// The flavours a mode runs: (check-name prefix, simulated flavour).
fn flavours(mode: &str) -> &'static [(&'static str, Flavour)] {
    match mode {
        "top-compat" => &[
            ("compat-type1v2", Flavour::CompatType1V2),
            ("compat-type1v1", Flavour::CompatType1V1),
            ("iommufd", Flavour::Iommufd),
        ],
        _ => &[("type1v2", Flavour::Type1V2), ("type1v1", Flavour::Type1V1)],
    }
}

/// Opens a fresh real space of `flavour` holding `group` (`bdf`).
fn open_real(flavour: Flavour, group: u32, bdf: &str) -> Result<Real, String> {
    let iommu = match flavour {
        Flavour::Type1V1 | Flavour::CompatType1V1 => IommuType::Type1,
        Flavour::Type1V2 | Flavour::CompatType1V2 => IommuType::Type1v2,
        Flavour::Iommufd => {
            let fd = Iommufd::open().map_err(|e| format!("open /dev/iommu: {}", e.name()))?;
            let mut ioas = fd
                .alloc_ioas()
                .map_err(|e| format!("IOAS_ALLOC: {}", e.name()))?;
            let cdev = facts::vfio_cdev(bdf)?;
            let dev =
                Device::open_cdev_name(&cdev).map_err(|e| format!("open {cdev}: {}", e.name()))?;
            ioas.attach_device(&dev)
                .map_err(|e| format!("bind/attach {cdev}: {}", e.name()))?;
            return Ok(Real::Ioas { ioas, _device: dev });
        }
        other => return Err(format!("flavour {other:?} has no real backend here")),
    };
    let mut c = Type1::open().map_err(|e| e.to_string())?;
    c.attach_group(group, iommu).map_err(|e| e.to_string())?;
    // The compat IOAS gets its IOMMU domain when a device of the group is opened.
    let dev = if flavour.is_type1() {
        None
    } else {
        Some(c.device(bdf).map_err(|e| e.to_string())?)
    };
    Ok(Real::Type1 { c, _device: dev })
}

/// A fresh simulated container of `flavour` attached to `group`.
fn open_sim(host: &Host, flavour: Flavour, group: u32) -> Result<Container, String> {
    let mut c = Container::new(guest_config(flavour));
    c.attach(host, group).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Whether `op` would give type1 before 6.18 two overlapping mappings: a map over a
/// mapping, one of the two ending at 2^64-1. The kernel's search misses the overlap and
/// virtio-iommu accepts the IOVAs again; unmapping one of the pair later can make
/// `vfio_unmap_unpin` step past 2^64-1 (the driver reports both mappings unmapped) and
/// walk the whole space page by page: the 6.12 guest hung in the first version of the
/// `last-page-then-neighbour` case. The deterministic cases keep the overlaps that
/// are safe (`last-page-mapped-twice`, `overlap-inside-mapping-ending-at-top`); the
/// random traces skip these maps.
///
/// `stale` holds the IOVAs of mappings ending at 2^64-1 that the kernel has dropped:
/// `vfio_unmap_unpin` never unmaps them from the IOMMU (its loop runs while
/// `iova < iova + size`, which is 0), so virtio-iommu keeps them and a new map there
/// makes the same overlap.
fn hangs_legacy(sim: &Container, stale: &[(u64, u64)], op: &TraceOp) -> bool {
    if !legacy(sim) {
        return false;
    }
    let TraceOp::Map { iova, size, .. } = *op else {
        return false;
    };
    let Some(last) = size.checked_sub(1).and_then(|s| iova.checked_add(s)) else {
        return false;
    };
    sim.mappings().any(|m| {
        m.iova.first() <= last
            && iova <= m.iova.last()
            && (last == u64::MAX || m.iova.last() == u64::MAX)
    }) || stale.iter().any(|&(f, l)| f <= last && iova <= l)
}

/// Whether the simulation answers as type1 before 6.18.
fn legacy(sim: &Container) -> bool {
    sim.config().flavour().is_type1() && !sim.config().kernel.type1_top_page_fixed()
}

/// The mappings of `sim` that end at 2^64-1.
fn top_mappings(sim: &Container) -> Vec<(u64, u64)> {
    sim.mappings()
        .filter(|m| m.iova.last() == u64::MAX)
        .map(|m| (m.iova.first(), m.iova.last()))
        .collect()
}

/// Replays `ops` on both, then an unmap-all. `random` is `None` for a fixed case
/// (every answer printed, every operation sent) and, for a random trace, the stale
/// ranges of [`hangs_legacy`] (only disagreements printed; the maps it flags are
/// skipped). Returns (operations run, disagreements).
fn replay_noted(
    r: &mut Report,
    what: &str,
    real: &mut dyn DmaSpace,
    sim: &mut Container,
    ops: &[TraceOp],
    arena: &TraceArena,
    mut random: Option<&mut Vec<(u64, u64)>>,
) -> (usize, usize) {
    let mut bad = 0;
    let all = ops.iter().cloned().chain([TraceOp::UnmapAll]);
    let mut n = 0;
    for (i, op) in all.enumerate() {
        if let Some(stale) = random.as_deref() {
            if hangs_legacy(sim, stale, &op) {
                continue;
            }
        }
        n += 1;
        let op = arena.place(op);
        let tops = if legacy(sim) {
            top_mappings(sim)
        } else {
            Vec::new()
        };
        let got = format_outcome(&apply(real, &op));
        let want = format_outcome(&apply(sim, &op));
        if let Some(stale) = random.as_deref_mut() {
            let left = top_mappings(sim);
            stale.extend(tops.into_iter().filter(|t| !left.contains(t)));
        }
        if got != want {
            bad += 1;
            r.note(&format!(
                "DISAGREE {what} op {}: {op}: kernel {got}, simulation {want}; {}",
                i + 1,
                crate::facts::kernel_label()
            ));
        } else if random.is_none() {
            r.note(&format!("top {what}: {op} -> {got}"));
        }
    }
    (n, bad)
}

/// Runs the top-of-space cases and random traces for `mode` (`top-type1` or
/// `top-compat`).
pub fn run(r: &mut Report, mode: &str, bdf: &str, seed: u64) {
    let group = match facts::group_of(bdf) {
        Ok(g) => g,
        Err(e) => return r.fail("top-setup", &e),
    };
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => h,
        Err(e) => return r.fail("top-read-host", &e.to_string()),
    };
    r.note(&format!(
        "IOMMU units: {:?}; group {group}: {:?}",
        host.iommus
            .iter()
            .map(|u| (u.name.clone(), u.vendor))
            .collect::<Vec<_>>(),
        host.group(group).ok().map(|g| g.iommu.clone())
    ));
    if let Ok(text) =
        std::fs::read_to_string(format!("/sys/kernel/iommu_groups/{group}/reserved_regions"))
    {
        r.note(&format!("reserved_regions of group {group}: {text:?}"));
    }
    let arena = match TraceArena::new(32 << 20) {
        Ok(a) => a,
        Err(e) => return r.fail("top-arena", &e.name()),
    };
    let cases: Vec<(&str, Vec<TraceOp>)> = match CASES
        .iter()
        .map(|(n, t)| parse_trace(t).map(|l| (*n, l.into_iter().map(|l| l.op).collect())))
        .collect()
    {
        Ok(c) => c,
        Err(e) => return r.fail("top-cases-parse", &e.to_string()),
    };
    for &(name, flavour) in flavours(mode) {
        // What the real space reports, which must reach 2^64-1 for these rows to mean
        // anything.
        let mut real = match open_real(flavour, group, bdf) {
            Ok(x) => x,
            Err(e) => {
                r.fail(&format!("top/{name}/open"), &e);
                continue;
            }
        };
        let info = real.space().info();
        r.note(&format!("top {name} info: {info:?}"));
        match &info {
            Ok(i) => r.eq(
                &format!("top/{name}/space-reaches-2^64-1"),
                i.iova_ranges.contains(u64::MAX),
                true,
            ),
            Err(e) => r.fail(&format!("top/{name}/space-reaches-2^64-1"), &e.to_string()),
        }
        match (open_sim(&host, flavour, group), &info) {
            (Ok(s), Ok(i)) => match s.info() {
                Ok(si) => r.eq(
                    &format!("top/{name}/sim-ranges-equal-kernel"),
                    si.iova_ranges,
                    i.iova_ranges.clone(),
                ),
                Err(e) => r.fail(
                    &format!("top/{name}/sim-ranges-equal-kernel"),
                    &e.to_string(),
                ),
            },
            (Err(e), _) => r.fail(&format!("top/{name}/sim-attach"), &e),
            (_, Err(_)) => {}
        }
        drop(real);

        let mut total = 0;
        for (case, ops) in &cases {
            let check = format!("top/{name}/{case}");
            let (mut real, mut sim) = match (
                open_real(flavour, group, bdf),
                open_sim(&host, flavour, group),
            ) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    r.fail(&check, &e);
                    continue;
                }
            };
            real.hold(&arena);
            let (n, bad) = replay_noted(
                r,
                &format!("{name} {case}"),
                real.space(),
                &mut sim,
                ops,
                &arena,
                None,
            );
            total += n;
            r.eq(&format!("{check}-{n}-ops-agree"), bad, 0);
        }
        r.note(&format!(
            "top {name}: {total} operations in {} cases",
            cases.len()
        ));

        // Random traces near the top, on one real space per flavour.
        let (mut real, mut sim) = match (
            open_real(flavour, group, bdf),
            open_sim(&host, flavour, group),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                r.fail(&format!("top/{name}/random"), &e);
                continue;
            }
        };
        real.hold(&arena);
        let (mut n_total, mut bad_total) = (0, 0);
        let mut stale = Vec::new();
        for k in 0..5u64 {
            let s = seed.wrapping_mul(1000).wrapping_add(k);
            let ops = top_trace(s, 150);
            let (n, bad) = replay_noted(
                r,
                &format!("{name} top-seed {s}"),
                real.space(),
                &mut sim,
                &ops,
                &arena,
                Some(&mut stale),
            );
            r.eq(&format!("top/{name}/random-seed-{s}-{n}-ops-agree"), bad, 0);
            n_total += n;
            bad_total += bad;
        }
        r.note(&format!(
            "top {name}: {n_total} random operations near 2^64-1, {bad_total} disagreements on the {}",
            crate::facts::kernel_label()
        ));
        r.eq(
            &format!("top/{name}/at-least-500-random-ops"),
            n_total >= 500,
            true,
        );
    }
}

/// A seeded trace of `len` operations confined to the last 16 MiB of the space: maps
/// and unmaps of 1-16 pages or 2 MiB, most of them ending at or near 2^64-1, with
/// overlaps, wraps, misaligned and size-0 requests, huge unmaps and unmap-all.
pub fn top_trace(seed: u64, len: usize) -> Vec<TraceOp> {
    const PAGE: u64 = 0x1000;
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let pages = match rng.below(8) {
            0..=2 => 1,
            3 => 2,
            4 => 1 + rng.below(16),
            5 => 512,
            _ => 1 + rng.below(4),
        };
        let mut size = pages * PAGE;
        // The first page: mostly so that the range ends exactly at 2^64-1 or a few
        // pages below it; sometimes anywhere in the last 16 MiB.
        let below_top = match rng.below(4) {
            0 | 1 => 0,
            2 => rng.below(8) * PAGE,
            _ => rng.below(4096) * PAGE,
        };
        let mut iova = (TOP - below_top).saturating_sub(size - PAGE);
        match rng.below(20) {
            0 => size = size.wrapping_add(PAGE), // may wrap past 2^64-1
            1 => iova |= 0x800,
            2 => size = 0,
            3 => iova = TOP - below_top, // wraps when larger than a page
            _ => {}
        }
        let access = match rng.below(10) {
            0 => iova::dma::Access::READ,
            1 => iova::dma::Access::NONE,
            _ => iova::dma::Access::RW,
        };
        let op = match rng.below(12) {
            0..=5 => TraceOp::Map {
                iova,
                size,
                host_addr: rng.below(16) * PAGE,
                access,
            },
            6..=9 => TraceOp::Unmap { iova, size },
            10 => {
                // Huge unmaps: from a low address to the top, or wrapping.
                let first = rng.below(16) * 0x10_0000;
                TraceOp::Unmap {
                    iova: first,
                    size: (0u64.wrapping_sub(first)).wrapping_sub(rng.below(2) * PAGE),
                }
            }
            _ => {
                if rng.below(3) == 0 {
                    TraceOp::UnmapAll
                } else {
                    TraceOp::Unmap {
                        iova: TOP - rng.below(64) * PAGE,
                        size: 64 * PAGE,
                    }
                }
            }
        };
        out.push(op);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_and_traces_stay_near_the_top() {
        for (n, t) in CASES {
            assert!(parse_trace(t).is_ok(), "{n}");
        }
        let ops = top_trace(7, 300);
        assert_eq!(ops.len(), 300);
        assert_eq!(ops, top_trace(7, 300));
        let near = ops
            .iter()
            .filter(|o| matches!(o, TraceOp::Map { iova, .. } if *iova >= TOP - (32 << 20)))
            .count();
        assert!(near > 100, "{near}");
    }
}
