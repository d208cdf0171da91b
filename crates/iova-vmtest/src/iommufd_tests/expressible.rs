//! Issue 15's operations on the real kernel: IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES
//! with a fixed capacity (EMSGSIZE), and a map of a device BAR `mmap` into an IOAS.
//!
//! Each check states the kernel's answer as read in the source (ioas.c:
//! iommufd_ioas_copy, iommufd_ioas_iova_ranges; io_pagetable.c: iopt_get_pages,
//! iopt_alloc_area_pages, iopt_insert_area, iopt_map_user_pages; mm/gup.c:
//! check_vma_flags), and the same trace is replayed on the simulated IOAS, every
//! answer compared.

use std::path::Path;

use iova::container::Container;
use iova::dma::{Access, DmaSpace};
use iova::range::IovaSet;
use iova::trace::{Outcome, Reply, TraceOp, apply, apply_sim, format_outcome, parse_trace};
use iova_linux::arena::TraceArena;
use iova_linux::device::{Device, PCI_BAR0_REGION_INDEX};
use iova_linux::iommufd::{Ioas, Iommufd};
use iova_linux::memory::HoldMemory;

use crate::report::Report;

/// The answer of the real IOAS to a trace operation, in the trace's terms.
fn real(ioas: &mut Ioas, op: &TraceOp) -> Outcome {
    match op {
        TraceOp::Copy {
            src_iova,
            length,
            dst_iova,
            access,
        } => ioas
            .copy(*src_iova, *length, *dst_iova, *access)
            .map(Reply::Iova)
            .map_err(|e| match e {
                iova_linux::iommufd::CopyError::Kernel(e) => e,
                _ => iova::dma::Errno::ENOTTY,
            }),
        TraceOp::IovaRanges { capacity: Some(c) } => {
            let call = ioas.iova_ranges_once(*c)?;
            let set: IovaSet = call.filled.iter().copied().collect();
            Ok(if call.too_small {
                Reply::RangesTooSmall {
                    needed: call.num_iovas,
                    got: set,
                    alignment: call.alignment,
                }
            } else {
                Reply::Ranges {
                    ranges: set,
                    alignment: call.alignment,
                }
            })
        }
        TraceOp::IovaRanges { capacity: None } => {
            let rep = ioas.iova_ranges()?;
            Ok(Reply::Ranges {
                ranges: rep.ranges.into_iter().collect(),
                alignment: rep.alignment,
            })
        }
        other => apply(ioas, other),
    }
}

/// The copy trace: two areas (the second read-only), copies across them, refusals in
/// the kernel's order, automatic destinations, writability of shared pages, and
/// IOVA_RANGES with every capacity around the count. Each line: the operation and the
/// kernel's answer where it does not depend on the arena's addresses (`*`: compared
/// with the simulation only).
const TRACE: &str = "\
map 0x100000 0x4000 0x100000              => ok
map 0x104000 0x2000 0x200000 r            => ok
copy 0x100000 0x6000 0x300000 r           => ok 0x300000
copy 0x100000 0x6000 0x400000             => EPERM
copy 0x100000 0x7000 0x400000 r           => ENOENT
copy 0xff000 0x2000 0x400000 r            => ENOENT
copy 0x500000 0 0x400000                  => EINVAL
copy 0x500000 0x1000 0x400000 -           => EINVAL
copy 0xffffffffffffffff 0x1000 0x400000   => EOVERFLOW
copy 0x100000 0x1000 0xffffffffffffffff   => EOVERFLOW
copy 0xfffffffffffff000 0x2000 0x400000   => EOVERFLOW
copy 0x100000 0x2000 0xfffffffffffff000   => EOVERFLOW
copy 0x500000 0x1800 0x400000             => ENOENT
copy 0x100000 0x1800 0x400000             => EINVAL
copy 0x100000 0x1000 0x400800             => EINVAL
copy 0x100000 0x1000 0xfee00000           => EINVAL
copy 0x100000 0x1000 0x103000             => EEXIST
copy 0x101000 0x1000 0x400000             => ok 0x400000
copy 0x100000 0x1000 auto                 => *
copy 0x100000 0x4000 auto r               => *
unmap 0x300000 0x4000                     => ok 0x4000
unmap 0x304000 0x2000                     => ok 0x2000
map 0x600000 0x1000 0x600000              => ok
copy 0x600000 0x1000 0x700000 r           => ok 0x700000
copy 0x700000 0x1000 0x800000             => ok 0x800000
unmap 0x600000 0x1000                     => ok 0x1000
unmap 0x800000 0x1000                     => ok 0x1000
iova-ranges 0                             => *
iova-ranges 1                             => *
iova-ranges 64                            => *
iova-ranges                               => *
unmap-all                                 => *
";

/// Runs the checks. `ioas` has the device attached and nothing mapped; `dev` is the
/// device (its BAR0 is mapped for the BAR check); `sim` the simulated IOAS of its
/// group, also empty.
pub fn run(r: &mut Report, fd: &Iommufd, ioas: &mut Ioas, dev: &Device, sim: &mut Container) {
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => h,
        Err(e) => return r.fail("expr-read-host", &e.to_string()),
    };
    let arena = match TraceArena::new(TraceArena::DEFAULT_LEN) {
        Ok(a) => a,
        Err(e) => return r.fail("expr-arena", &e.name()),
    };
    ioas.add_memory(arena.memory());
    let mut disagree = 0;
    let mut n = 0;
    for line in TRACE.lines().filter(|l| !l.trim().is_empty()) {
        let (text, want) = line.split_once("=>").unwrap_or((line, "*"));
        let (text, want) = (text.trim(), want.trim());
        let op = match parse_trace(text) {
            Ok(v) if v.len() == 1 => arena.place(v[0].op.clone()),
            _ => return r.fail("expr-trace-parse", text),
        };
        n += 1;
        let got = format_outcome(&real(ioas, &op));
        let simulated = format_outcome(&apply_sim(sim, &host, &op));
        if want != "*" {
            r.eq(&format!("expr-kernel {text}"), got.clone(), want.to_owned());
        }
        if got != simulated {
            disagree += 1;
            r.note(&format!(
                "DISAGREE expressible: {op}: kernel {got}, simulation {simulated}"
            ));
        }
    }
    r.eq(&format!("diff-expressible-{n}-ops-agree"), disagree, 0);

    // EMSGSIZE writes the count back: asking again with that many fits.
    match ioas.iova_ranges_once(0) {
        Ok(call) => {
            r.eq("iova-ranges-capacity-0-emsgsize", call.too_small, true);
            r.eq("iova-ranges-capacity-0-fills-nothing", call.filled.len(), 0);
            match ioas.iova_ranges_once(call.num_iovas) {
                Ok(again) => {
                    r.eq("iova-ranges-needed-count-fits", again.too_small, false);
                    r.eq(
                        "iova-ranges-needed-count-is-the-count",
                        again.filled.len(),
                        usize::try_from(call.num_iovas).unwrap_or(0),
                    );
                    r.eq(
                        "iova-ranges-emsgsize-alignment-written",
                        call.alignment,
                        again.alignment,
                    );
                }
                Err(e) => r.fail("iova-ranges-needed-count-fits", &e.name()),
            }
        }
        Err(e) => r.fail("iova-ranges-capacity-0-emsgsize", &e.name()),
    }

    // An IOAS with no device: one range, the whole space, alignment 1; a copy works.
    match fd.alloc_ioas() {
        Ok(mut bare) => {
            bare.add_memory(arena.memory());
            let call = bare
                .iova_ranges_once(0)
                .map(|c| (c.too_small, c.num_iovas, c.alignment));
            r.eq(
                "no-device-iova-ranges-0-emsgsize-need-1",
                call,
                Ok((true, 1, 1)),
            );
            let base = arena.addr();
            r.eq(
                "no-device-map-then-copy",
                bare.map_fixed(0x10_0000, base, 0x2000, Access::RW)
                    .map_err(|e| e.name())
                    .and_then(|()| {
                        bare.copy(0x10_0000, 0x2000, Some(0x20_0000), Access::READ)
                            .map_err(|e| e.name())
                    }),
                Ok(0x20_0000),
            );
            bar_checks(r, ioas, &mut bare, dev);
            let _ = bare.unmap_raw(0, u64::MAX);
        }
        Err(e) => r.fail("no-device-ioas-alloc", &e.name()),
    }
    let _ = ioas.unmap_raw(0, u64::MAX);
    let _ = sim.unmap_all();
}

/// A BAR `mmap` (VM_IO | VM_PFNMAP): iommufd must pin it once a domain is attached,
/// and pin_user_pages refuses (check_vma_flags: EFAULT); an IOAS with no domain only
/// takes a lazy reference and accepts the map.
fn bar_checks(r: &mut Report, with_domain: &mut Ioas, bare: &mut Ioas, dev: &Device) {
    let bar = match dev
        .region_info(PCI_BAR0_REGION_INDEX)
        .and_then(|ri| dev.map_region(&ri))
    {
        Ok(b) => b,
        Err(e) => return r.fail("bar-mmap", &e.name()),
    };
    r.eq(
        "map-bar-mmap-with-domain-efault",
        with_domain.probe_map_region(&bar, 0, 0x1000, 0x90_0000, Access::RW),
        Err(iova::dma::Errno::EFAULT),
    );
    r.eq(
        "map-bar-mmap-without-domain-ok",
        bare.probe_map_region(&bar, 0, 0x1000, 0x90_0000, Access::RW),
        Ok(()),
    );
}
