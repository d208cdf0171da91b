//! Differential checks: the kernel's answers against the project's model of the guest,
//! built by `iova_linux::sysfs::read_host` from the guest's own `/sys`.
//!
//! Two comparisons:
//! - the valid IOVA ranges and page sizes the model predicts for the group
//!   (`Host::valid_iova_ranges`) against what the real container reports in GET_INFO;
//! - trace replay: a fixed corpus (the vm-spike sequence) and seeded random traces
//!   (`iova::trace::random_trace`) run on the real container and on the simulated
//!   `iova::container::Container` attached to the same group of the same sysfs model.
//!   Every outcome line (`ok`, `ok 0x<bytes>`, errno name) must agree; each
//!   disagreement is printed.
//!
//! Host addresses: each map's host address is moved into real process memory by
//! `iova_linux::arena::TraceArena` (see there); both sides get the moved operation. The
//! real backend holds the arena's memory, so its safe map sends every placed range.

use std::path::Path;

use iova::container::{Container, ContainerConfig, Flavour};
use iova::dma::{Access, DmaInfo, DmaSpace};
use iova::testing::random_trace;
use iova::trace::{TraceOp, apply, format_outcome, parse_trace};
use iova_linux::arena::TraceArena;
use iova_linux::memory::HoldMemory;

use crate::edu::SimSpace;
use crate::report::Report;

/// Mirrors maps into the simulated container for the edu tests.
impl SimSpace for Container {
    fn map(&mut self, iova: u64, host: u64, size: u64, access: Access) {
        let _ = DmaSpace::map(self, iova, host, size, access);
    }
    fn unmap(&mut self, iova: u64, size: u64) {
        let _ = DmaSpace::unmap(self, iova, size);
    }
    fn translate(&self, iova: u64, access: Access) -> Option<u64> {
        Container::translate(self, iova, access).ok()
    }
}

fn simulated(r: &mut Report, group: u32) -> Option<Container> {
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => h,
        Err(e) => {
            r.fail("sim-read-host", &e.to_string());
            return None;
        }
    };
    let mut c = Container::new(guest_config(Flavour::Type1V2));
    match c.attach(&host, group) {
        Ok(()) => Some(c),
        Err(e) => {
            r.fail("sim-attach", &e.to_string());
            None
        }
    }
}

/// The configuration that answers as this guest's kernel does: its version
/// (`uname -r`) and CPU page size, read from the running kernel, not assumed.
pub(crate) fn guest_config(flavour: Flavour) -> ContainerConfig {
    let mut cfg = ContainerConfig::with_flavour(flavour);
    // The guest's own allow_unsafe_interrupts (vmtest/init sets type1's on guests
    // whose IOMMU does not remap interrupts, the kernel command line iommufd's).
    if let Ok(h) = iova_linux::sysfs::read_host(std::path::Path::new("/sys")) {
        cfg.domain.allow_unsafe_interrupts = h.settings.allows_unsafe_interrupts(flavour);
    }
    cfg.kernel = crate::facts::kernel().1;
    if let Some(p) = iova_linux::hostfacts::cpu_page_size() {
        cfg.domain.cpu_page_size = p;
    }
    cfg
}

/// The simulated type1 container for `group`, built from the guest's sysfs.
pub fn simulated_type1(r: &mut Report, group: u32) -> Option<Box<dyn SimSpace>> {
    simulated(r, group).map(|c| Box::new(c) as Box<dyn SimSpace>)
}

/// The vm-spike sequence (a C test run on a 6.1 guest with VT-d aw-bits=39 and the
/// edu device, before this project had its own backends), as a trace.
pub(crate) const CORPUS: &str = "
map 0x100000 0x200000 0x0 rw
map 0xfee00000 0x1000 0x0 rw
map 0xfeeff000 0x1000 0x0 rw
map 0xfedff000 0x2000 0x0 rw
map 0xfedff000 0x1000 0x0 rw
unmap 0xfedff000 0x1000
map 0xfef00000 0x1000 0x0 rw
unmap 0xfef00000 0x1000
map 0x8000000 0x1000 0x0 rw
unmap 0x8000000 0x1000
map 0x7ffffff000 0x1000 0x0 rw
unmap 0x7ffffff000 0x1000
map 0x8000000000 0x1000 0x0 rw
unmap 0x8000000000 0x1000
map 0xfffffffff000 0x1000 0x0 rw
unmap 0xfffffffff000 0x1000
map 0x1000000000000 0x1000 0x0 rw
map 0x101000 0x1000 0x0 rw
map 0xff000 0x2000 0x0 rw
map 0x100000 0x200000 0x0 rw
map 0x400800 0x1000 0x0 rw
map 0x400000 0x800 0x0 rw
map 0x400000 0x1000 0x800 rw
map 0x400000 0x0 0x0 rw
map 0xfffffffffffff000 0x2000 0x0 rw
map 0xfffffffffffff000 0x1000 0x0 rw
map 0x400000 0x2000 0xfffffffffffff000 rw
map 0x400000 0x1000 0x0 -
unmap 0x101000 0x1000
unmap 0x100000 0x1000
unmap 0x10000000 0x1000
unmap 0x100800 0x1000
unmap 0x100000 0x0
unmap 0xfffffffffffff000 0x2000
unmap 0x0 0x10000000
map 0x100000 0x200000 0x0 rw
map 0x300000 0x1000 0x0 rw
map 0x302000 0x1000 0x0 r
unmap-all
unmap 0x100000 0x200000
";

/// Replays `ops` on both; returns (operations, disagreements).
pub(crate) fn replay(
    r: &mut Report,
    what: &str,
    real: &mut dyn DmaSpace,
    sim: &mut Container,
    ops: &[TraceOp],
    arena: &TraceArena,
) -> (usize, usize) {
    let mut bad = 0;
    for (i, op) in ops.iter().enumerate() {
        let op = arena.place(op.clone());
        let got = format_outcome(&apply(real, &op));
        let want = format_outcome(&apply(sim, &op));
        if got != want {
            bad += 1;
            r.note(&format!(
                "DISAGREE {what} op {}: {op}: kernel {} {got}, simulation as {} {want}",
                i + 1,
                crate::facts::kernel().0.unwrap_or_default(),
                sim.config().kernel
            ));
        }
    }
    let a = format_outcome(&apply(real, &TraceOp::UnmapAll));
    let b = format_outcome(&apply(sim, &TraceOp::UnmapAll));
    if a != b {
        bad += 1;
        r.note(&format!(
            "DISAGREE {what} final unmap-all: kernel {} {a}, simulation as {} {b}",
            crate::facts::kernel().0.unwrap_or_default(),
            sim.config().kernel
        ));
    }
    (ops.len() + 1, bad)
}

/// Compares the sysfs-built host model with the real container, then replays traces.
pub fn run_type1(r: &mut Report, c: &mut iova_linux::type1::Container, group: u32, seed: u64) {
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => {
            r.pass("sysfs-read-host");
            h
        }
        Err(e) => return r.fail("sysfs-read-host", &e.to_string()),
    };
    let info = match c.info() {
        Ok(i) => i,
        Err(e) => return r.fail("sysfs-model-vs-kernel", &e.to_string()),
    };
    match host.valid_iova_ranges(group) {
        Ok(v) => {
            r.eq("sysfs-model-aperture-known", v.aperture_known(), true);
            r.eq(
                "sysfs-model-valid-ranges-equal-get-info",
                v.ranges,
                info.iova_ranges.clone(),
            );
        }
        Err(e) => r.fail("sysfs-model-valid-ranges-equal-get-info", &e.to_string()),
    }
    let unit = host.group(group).ok().and_then(|g| host.iommu_of_group(g));
    match unit.map(|u| u.page_sizes) {
        Some(ps) => r.eq(
            "sysfs-model-page-sizes-equal-get-info",
            ps,
            Some(info.page_sizes),
        ),
        None => r.fail(
            "sysfs-model-page-sizes-equal-get-info",
            "no IOMMU unit for the group",
        ),
    }

    let Some(mut sim) = simulated(r, group) else {
        return;
    };
    match sim.info() {
        Ok(si) => r.eq("sim-info-equals-kernel-info", si, info.clone()),
        Err(e) => r.fail("sim-info-equals-kernel-info", &e.to_string()),
    }
    let arena = match TraceArena::new(TraceArena::DEFAULT_LEN) {
        Ok(a) => a,
        Err(e) => return r.fail("diff-arena", &e.name()),
    };
    c.add_memory(arena.memory());
    let _ = c.unmap_all();
    let _ = sim.unmap_all();
    match parse_trace(CORPUS) {
        Ok(lines) => {
            let ops: Vec<TraceOp> = lines.iter().map(|l| l.op.clone()).collect();
            let (n, bad) = replay(r, "corpus", c, &mut sim, &ops, &arena);
            r.eq(&format!("diff-corpus-{n}-ops-agree"), bad, 0);
        }
        Err(e) => r.fail("diff-corpus-parse", &e.to_string()),
    }
    replay_random(r, c, &mut sim, &arena, &info, seed);
    drop(arena);
}

/// Replays four seeded random traces of 150 operations aimed at `info` on both and
/// checks every one agrees, and that at least 500 operations ran.
pub(crate) fn replay_random(
    r: &mut Report,
    real: &mut dyn DmaSpace,
    sim: &mut Container,
    arena: &TraceArena,
    info: &DmaInfo,
    seed: u64,
) {
    let (mut total, mut bad_total) = (0, 0);
    for k in 0..4u64 {
        let s = seed.wrapping_mul(1000).wrapping_add(k);
        let ops = random_trace(s, 150, info);
        let (n, bad) = replay(r, &format!("seed {s}"), real, sim, &ops, arena);
        r.eq(&format!("diff-random-seed-{s}-{n}-ops-agree"), bad, 0);
        total += n;
        bad_total += bad;
    }
    r.note(&format!(
        "differential: {total} random operations, {bad_total} disagreements on the {}",
        crate::facts::kernel_label()
    ));
    r.eq("diff-at-least-500-random-ops", total >= 500, true);
}
