//! The iommufd backend against the real kernel: IOVA_RANGES (with the EMSGSIZE retry),
//! MAP with fixed and automatic IOVA, the UNMAP ENOENT cases, ALLOW_IOVAS, attach
//! refusals, edu DMA through an IOAS, differential traces against the simulated
//! container (`differential`), and IOAS_COPY, IOVA_RANGES with a fixed capacity and a
//! BAR map (`expressible`).
//!
//! Expected answers are facts: the guest's sysfs (aperture width, reserved regions)
//! and the kernel's iommufd source (drivers/iommu/iommufd/ioas.c, io_pagetable.c,
//! pages.c of 6.12), each cited at its check. Addresses used by automatic allocation
//! are derived by hand from `iopt_alloc_iova` (first fit from IOVA `PAGE_SIZE` up,
//! alignment `min(roundup_pow_of_two(len), 1 << ffs(uptr), HPAGE_SIZE)` keeping the
//! user address's page offset).

mod differential;
mod expressible;

use std::sync::Arc;

use iova::dma::{Access, Errno};
use iova::range::{IovaRange, IovaSet};
use iova_linux::device::Device;
use iova_linux::iommufd::{Ioas, Iommufd, MAP_FIXED_IOVA, MAP_READABLE, MAP_WRITEABLE};
use iova_linux::memory::{AnonMemory, HoldMemory, MapRawError};

use crate::report::Report;
use crate::{edu, facts};

const K4: u64 = 0x1000;
const M1: u64 = 0x10_0000;
const M2: u64 = 0x20_0000;
const RW: u32 = MAP_READABLE | MAP_WRITEABLE;

fn name<T>(x: Result<T, MapRawError>) -> String {
    x.map_or_else(|e| e.name(), |_| "ok".to_owned())
}

/// The kernel's refusal of a map.
fn k(e: Errno) -> MapRawError {
    MapRawError::Kernel(e)
}

/// `addr` rounded up to a multiple of `align` (a power of two).
fn align_up(addr: u64, align: u64) -> u64 {
    addr.checked_add(align - 1)
        .map_or(u64::MAX, |a| a & !(align - 1))
}

/// Runs every iommufd check (the caller has checked that `/dev/iommu` exists).
pub fn run(r: &mut Report, bdf: &str, seed: u64) {
    let fd = match Iommufd::open() {
        Ok(f) => f,
        Err(e) => return r.fail("open-dev-iommu", &e.name()),
    };
    r.pass("open-dev-iommu");
    let mut ioas = match fd.alloc_ioas() {
        Ok(i) => i,
        Err(e) => return r.fail("ioas-alloc", &e.name()),
    };
    r.pass("ioas-alloc");
    // An IOAS without a device reserves nothing: one range, the whole space; a zero-sized
    // array gets EMSGSIZE with the count, then the retry succeeds (ioas.c).
    match ioas.iova_ranges_with(0) {
        Ok(rep) => {
            r.eq("empty-ioas-full-range", rep.ranges, vec![IovaRange::FULL]);
            r.eq("empty-ioas-emsgsize-then-retry", rep.calls, 2);
        }
        Err(e) => r.fail("empty-ioas-full-range", &e.name()),
    }
    let Ok(buf) = AnonMemory::new(0x80_0000).map(Arc::new) else {
        return r.fail("alloc", "mmap");
    };
    // The IOAS holds it, so its safe maps send ranges inside it.
    ioas.add_memory(Arc::clone(&buf));
    let va = align_up(buf.addr(), M2);
    let group = match facts::group_of(bdf) {
        Ok(g) => g,
        Err(e) => return r.fail("setup", &e),
    };
    let (want_valid, top) = match facts::expected_valid(group) {
        Ok(v) => v,
        Err(e) => return r.fail("setup", &e),
    };
    let msi = facts::excluded_regions(group)
        .ok()
        .and_then(|v| v.into_iter().find(|x| x.contains(0xfee0_0000)));
    r.eq("sysfs-msi-window-reserved", msi.is_some(), true);
    let msi_first = msi.map_or(0xfee0_0000, |m| m.first());

    // Before any device: no reserved ranges, so the MSI window maps (io_pagetable.c
    // iopt_check_iova only refuses reserved_itree hits).
    r.eq(
        "no-device-map-msi-window-ok",
        name(ioas.map_fixed(msi_first, va, K4, Access::RW)),
        "ok".into(),
    );

    let cdev = match facts::vfio_cdev(bdf) {
        Ok(c) => c,
        Err(e) => return r.fail("vfio-cdev", &e),
    };
    let dev = match Device::open_cdev_name(&cdev) {
        Ok(d) => d,
        Err(e) => return r.fail("open-vfio-cdev", &e.name()),
    };
    let devid = match fd.bind_device(&dev) {
        Ok(d) => {
            r.pass("bind-device");
            d
        }
        Err(e) => return r.fail("bind-device", &e.name()),
    };
    // Attach reserves the device's regions: a mapped one refuses with EADDRINUSE
    // (iopt_table_enforce_dev_resv_regions -> iopt_reserve_iova), reserving nothing.
    r.eq(
        "attach-over-mapped-msi-window-eaddrinuse",
        ioas.attach_bound(&dev, devid),
        Err(Errno::EADDRINUSE),
    );
    r.eq(
        "failed-attach-reserves-nothing",
        ioas.iova_ranges().map(|x| x.ranges),
        Ok(vec![IovaRange::FULL]),
    );
    r.eq(
        "unmap-msi-window-mapping",
        ioas.unmap_raw(msi_first, K4),
        Ok(K4),
    );
    // An allowed range over a region to reserve refuses the same way (iopt_reserve_iova
    // checks allowed_itree too).
    let over_msi = IovaRange::new(msi_first - M1, msi_first + M1 - 1).unwrap_or(IovaRange::FULL);
    r.eq(
        "no-device-allow-iovas-ok",
        ioas.allow_iovas(&[over_msi]),
        Ok(()),
    );
    r.eq(
        "attach-over-allowed-msi-window-eaddrinuse",
        ioas.attach_bound(&dev, devid),
        Err(Errno::EADDRINUSE),
    );
    r.eq("allow-iovas-clear", ioas.allow_iovas(&[]), Ok(()));
    r.check(
        "attach-device",
        ioas.attach_bound(&dev, devid).map_err(|e| e.name()),
    );

    // IOVA_RANGES: the holes of the reserved set = aperture minus reserved regions,
    // as the guest's sysfs says (ioas.c iommufd_ioas_iova_ranges).
    match ioas.iova_ranges_with(1) {
        Ok(rep) => {
            r.note(&format!(
                "IOVA_RANGES {:?} align {:#x} in {} calls",
                rep.ranges, rep.alignment, rep.calls
            ));
            r.eq(
                "iova-ranges-emsgsize-retry",
                rep.calls > 1,
                rep.ranges.len() > 1,
            );
            r.eq("iova-ranges-alignment-cpu-page", rep.alignment, K4);
            r.eq(
                "iova-ranges-sorted-disjoint",
                rep.ranges.windows(2).all(|w| w[0].last() < w[1].first()),
                true,
            );
            r.eq(
                "iova-ranges-match-sysfs",
                rep.ranges.into_iter().collect::<IovaSet>(),
                want_valid.clone(),
            );
        }
        Err(e) => r.fail("iova-ranges-match-sysfs", &e.name()),
    }

    map_checks(r, &mut ioas, va, top, msi_first);
    auto_checks(r, &mut ioas, va, &want_valid);
    unmap_checks(r, &mut ioas, va);
    allow_checks(r, &mut ioas, va, msi_first);

    differential::run(r, &mut ioas, group, seed);
    let _ = ioas.unmap_raw(0, u64::MAX);
    let _ = ioas.allow_iovas(&[]);
    if let Some(mut sim) = differential::simulated(r, group) {
        expressible::run(r, &fd, &mut ioas, &dev, &mut sim);
    }

    if let Some(e) = edu::Edu::open(r, dev) {
        let mut sim = differential::simulated(r, group);
        edu::dma_tests(
            r,
            &mut ioas,
            &e,
            sim.as_mut().map(|s| s as &mut dyn edu::SimSpace),
        );
    }
}

/// MAP with a fixed IOVA: the order of ioas.c / iopt_alloc_pages / iopt_check_iova /
/// iopt_insert_area.
fn map_checks(r: &mut Report, ioas: &mut Ioas, va: u64, top: u64, msi: u64) {
    let map = |ioas: &Ioas, flags: u32, uptr: u64, len: u64, iova: u64| {
        name(ioas.map_held(flags, uptr, len, iova))
    };
    let fx = MAP_FIXED_IOVA | RW;
    r.eq("map-fixed-ok", map(ioas, fx, va, M2, M1), "ok".into());
    // iopt_check_iova: an area in the range -> EEXIST (inside, straddling, identical).
    r.eq(
        "map-fixed-inside-eexist",
        map(ioas, fx, va, K4, M1 + K4),
        "EEXIST".into(),
    );
    r.eq(
        "map-fixed-straddling-start-eexist",
        map(ioas, fx, va, 2 * K4, M1 - K4),
        "EEXIST".into(),
    );
    r.eq(
        "map-fixed-identical-eexist",
        map(ioas, fx, va, M2, M1),
        "EEXIST".into(),
    );
    // A reserved range in the way -> EINVAL (before the EEXIST check).
    r.eq(
        "map-fixed-msi-window-einval",
        map(ioas, fx, va, K4, msi),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-straddling-msi-start-einval",
        map(ioas, fx, va, 2 * K4, msi - K4),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-last-aperture-page-ok",
        map(ioas, fx, va, K4, top - (K4 - 1)),
        "ok".into(),
    );
    r.eq(
        "unmap-last-aperture-page",
        ioas.unmap_raw(top - (K4 - 1), K4),
        Ok(K4),
    );
    r.eq(
        "map-fixed-beyond-aperture-einval",
        map(ioas, fx, va, K4, top.wrapping_add(1)),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-straddling-aperture-end-einval",
        map(ioas, fx, va, 2 * K4, top - (K4 - 1)),
        "EINVAL".into(),
    );
    // Alignment: iova (iopt_check_iova), length (iopt_alloc_area_pages), the user
    // address's page offset (iopt_insert_area) -> EINVAL.
    r.eq(
        "map-fixed-unaligned-iova-einval",
        map(ioas, fx, va, K4, 0x40_0800),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-unaligned-length-einval",
        map(ioas, fx, va, 0x800, 0x40_0000),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-unaligned-va-einval",
        map(ioas, fx, va + 0x800, K4, 0x40_0000),
        "EINVAL".into(),
    );
    // iopt_alloc_pages: length 0 -> EINVAL; user address + length wraps -> EOVERFLOW.
    r.eq(
        "map-fixed-zero-length-einval",
        map(ioas, fx, va, 0, 0x40_0000),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-va-wrap-eoverflow",
        map(ioas, fx, u64::MAX - (K4 - 1), 2 * K4, 0x40_0000),
        "EOVERFLOW".into(),
    );
    // ...and a length above SIZE_MAX - PAGE_SIZE is EINVAL there, before the wrap, up
    // to 6.12; from 6.13 iopt_alloc_user_pages checks the wrap first (EOVERFLOW).
    let wrap_first = iova_linux::hostfacts::kernel_release()
        .and_then(|v| iova::kernel::KernelVersion::parse(&v).ok())
        .is_some_and(|v| v.iommufd_user_range_checked_first());
    r.eq(
        if wrap_first {
            "map-fixed-huge-length-eoverflow-from-6.13"
        } else {
            "map-fixed-huge-length-einval"
        },
        map(ioas, fx, va, u64::MAX - (K4 - 1), 0x40_0000),
        if wrap_first { "EOVERFLOW" } else { "EINVAL" }.into(),
    );
    // ioas.c: iova or length >= ULONG_MAX -> EOVERFLOW, before anything else.
    r.eq(
        "map-fixed-length-u64max-eoverflow",
        map(ioas, fx, va, u64::MAX, 0x40_0000),
        "EOVERFLOW".into(),
    );
    r.eq(
        "map-fixed-iova-u64max-eoverflow",
        map(ioas, fx, va, K4, u64::MAX),
        "EOVERFLOW".into(),
    );
    // iopt_check_iova: iova + length - 1 wraps -> EOVERFLOW.
    r.eq(
        "map-fixed-wrap-eoverflow",
        map(ioas, fx, va, 2 * K4, u64::MAX - (K4 - 1)),
        "EOVERFLOW".into(),
    );
    // ioas.c: neither READ nor WRITE -> EINVAL; an unknown flag -> EOPNOTSUPP.
    r.eq(
        "map-no-access-einval",
        map(ioas, MAP_FIXED_IOVA, va, K4, 0x40_0000),
        "EINVAL".into(),
    );
    r.eq(
        "map-unknown-flag-eopnotsupp",
        map(ioas, fx | 8, va, K4, 0x40_0000),
        "EOPNOTSUPP".into(),
    );
    // Pinning memory the process cannot access fails (EFAULT) and leaves no area.
    match AnonMemory::inaccessible(0x2000).map(Arc::new) {
        Ok(none) => {
            ioas.add_memory(Arc::clone(&none));
            r.eq(
                "map-inaccessible-memory-efault",
                map(ioas, fx, none.addr(), 0x2000, 0x40_0000),
                "EFAULT".into(),
            );
            r.eq(
                "failed-map-leaves-nothing",
                ioas.unmap_raw(0x40_0000, 0x2000),
                Err(Errno::ENOENT),
            );
        }
        Err(e) => r.fail("map-inaccessible-memory-efault", &e.name()),
    }
    // Memory the IOAS does not hold: refused before any system call.
    r.eq(
        "map-not-held-refused-without-syscall",
        ioas.map_held(fx, 0x1_0000, K4, 0x40_0000),
        Err(MapRawError::NotHeld {
            host: 0x1_0000,
            size: K4,
        }),
    );
    // A read-only mapping of writable memory, and a write-only one, are fine.
    r.eq(
        "map-fixed-read-only-ok",
        map(ioas, MAP_FIXED_IOVA | MAP_READABLE, va, K4, 0x40_0000),
        "ok".into(),
    );
    r.eq(
        "map-fixed-write-only-ok",
        map(ioas, MAP_FIXED_IOVA | MAP_WRITEABLE, va, K4, 0x40_1000),
        "ok".into(),
    );
    r.eq(
        "unmap-two-areas-sums-bytes",
        ioas.unmap_raw(0x40_0000, 0x2000),
        Ok(0x2000),
    );
}

/// MAP without FIXED_IOVA: the kernel picks the IOVA (io_pagetable.c iopt_alloc_iova).
/// On entry [1 MiB, 3 MiB) is mapped and nothing else.
fn auto_checks(r: &mut Report, ioas: &mut Ioas, va: u64, valid: &IovaSet) {
    // The valid set must allow the low addresses these expectations assume.
    let low = IovaRange::new(0, 0xfff_ffff).unwrap_or(IovaRange::FULL);
    if !valid.contains_range(&low) {
        return r.fail("map-auto-setup", "the low 256 MiB are not all valid");
    }
    // 4 KiB from a 2 MiB-aligned VA: alignment 4 KiB, first fit from PAGE_SIZE.
    r.eq(
        "map-auto-first-fit-from-page-size",
        ioas.map_auto(va, K4, Access::RW),
        Ok(K4),
    );
    // 12 KiB from a VA aligned to 4 KiB only: alignment min(16K, 4K) = 4K.
    r.eq(
        "map-auto-alignment-capped-by-va",
        ioas.map_auto(va + K4, 3 * K4, Access::RW),
        Ok(2 * K4),
    );
    // 8 KiB from a 2 MiB-aligned VA: alignment 8K; the hole starts at 0x5000.
    r.eq(
        "map-auto-aligned-to-length",
        ioas.map_auto(va, 2 * K4, Access::RW),
        Ok(0x6000),
    );
    // 2 MiB from a 2 MiB-aligned VA: alignment 2 MiB; [2M, 4M) is taken by the fixed
    // mapping at 1M..3M, so 4 MiB.
    r.eq(
        "map-auto-huge-page-aligned",
        ioas.map_auto(va, M2, Access::RW),
        Ok(0x40_0000),
    );
    // 4 MiB: the alignment is capped at the huge page size (2 MiB) -> 6 MiB.
    r.eq(
        "map-auto-alignment-capped-at-huge-page",
        ioas.map_auto(va, 2 * M2, Access::RW),
        Ok(0x60_0000),
    );
    // A VA off the page grid: alignment 2K < IOVA alignment 4K -> EINVAL.
    r.eq(
        "map-auto-unaligned-va-einval",
        ioas.map_auto(va + 0x800, K4, Access::RW),
        Err(k(Errno::EINVAL)),
    );
    r.eq(
        "map-auto-zero-length-einval",
        ioas.map_auto(va, 0, Access::RW),
        Err(k(Errno::EINVAL)),
    );
    // Only automatic allocation honours ALLOW_IOVAS: a one-page allowed range takes a
    // one-page map, then nothing more (ENOSPC).
    let one = IovaRange::new(0x800_0000, 0x800_0fff).unwrap_or(IovaRange::FULL);
    r.eq("allow-iovas-one-page", ioas.allow_iovas(&[one]), Ok(()));
    r.eq(
        "map-auto-inside-allowed",
        ioas.map_auto(va, K4, Access::RW),
        Ok(0x800_0000),
    );
    r.eq(
        "map-auto-allowed-full-enospc",
        ioas.map_auto(va, K4, Access::RW),
        Err(k(Errno::ENOSPC)),
    );
    r.eq(
        "map-fixed-outside-allowed-ok",
        name(ioas.map_fixed(0x900_0000, va, K4, Access::RW)),
        "ok".into(),
    );
    r.eq("allow-iovas-lift", ioas.allow_iovas(&[]), Ok(()));
    let total = M2 + K4 + 3 * K4 + 2 * K4 + M2 + 2 * M2 + K4 + K4;
    r.eq(
        "unmap-all-after-auto-bytes",
        ioas.unmap_raw(0, u64::MAX),
        Ok(total),
    );
}

/// UNMAP (io_pagetable.c iopt_unmap_iova_range): areas are removed in IOVA order
/// until one is not wholly inside the range; that one answers ENOENT, and the areas
/// already removed stay removed.
fn unmap_checks(r: &mut Report, ioas: &mut Ioas, va: u64) {
    let m = |ioas: &Ioas, iova: u64, len: u64| name(ioas.map_fixed(iova, va, len, Access::RW));
    let setup = [m(ioas, M1, M1), m(ioas, 2 * M1, M1), m(ioas, 4 * M1, M1)];
    r.eq("unmap-setup", setup.to_vec(), vec!["ok".to_owned(); 3]);
    r.eq(
        "unmap-starting-inside-area-enoent",
        ioas.unmap_raw(M1 + K4, M1),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-unaligned-start-inside-area-enoent",
        ioas.unmap_raw(M1 + 0x800, K4),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-nothing-enoent",
        ioas.unmap_raw(0x1000_0000, K4),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-unaligned-nothing-enoent",
        ioas.unmap_raw(0x1000_0800, 0x800),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-zero-length-einval",
        ioas.unmap_raw(M1, 0),
        Err(Errno::EINVAL),
    );
    r.eq(
        "unmap-wrap-eoverflow",
        ioas.unmap_raw(u64::MAX - (K4 - 1), 2 * K4),
        Err(Errno::EOVERFLOW),
    );
    r.eq(
        "unmap-length-u64max-eoverflow",
        ioas.unmap_raw(K4, u64::MAX),
        Err(Errno::EOVERFLOW),
    );
    // [1M, 2M) whole, [2M, 3M) cut at 2.5M: the first goes, the second answers ENOENT.
    r.eq(
        "unmap-ending-inside-second-area-enoent",
        ioas.unmap_raw(M1, M1 + M1 / 2),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-enoent-kept-earlier-removal",
        ioas.unmap_raw(M1, M1),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-enoent-left-bisected-area",
        ioas.unmap_raw(2 * M1, M1),
        Ok(M1),
    );
    // A range with holes around whole areas: success, the bytes of the areas.
    r.eq("unmap-remap", m(ioas, M1, M1), "ok".to_owned());
    r.eq(
        "unmap-superset-with-holes",
        ioas.unmap_raw(0, 8 * M1),
        Ok(2 * M1),
    );
    r.eq("unmap-all-empty-ok", ioas.unmap_raw(0, u64::MAX), Ok(0));
}

/// ALLOW_IOVAS (ioas.c iommufd_ioas_load_iovas, io_pagetable.c iopt_set_allow_iova).
fn allow_checks(r: &mut Report, ioas: &mut Ioas, va: u64, msi: u64) {
    r.eq(
        "allow-iovas-inverted-einval",
        ioas.allow_iovas_pairs(&[(0x2000, 0x1000)]),
        Err(Errno::EINVAL),
    );
    r.eq(
        "allow-iovas-start-equals-last-einval",
        ioas.allow_iovas_pairs(&[(0x2000, 0x2000)]),
        Err(Errno::EINVAL),
    );
    r.eq(
        "allow-iovas-overlapping-list-einval",
        ioas.allow_iovas_pairs(&[(0x10_0000, 0x1f_ffff), (0x1f_f000, 0x2f_ffff)]),
        Err(Errno::EINVAL),
    );
    r.eq(
        "allow-iovas-reserved-eaddrinuse",
        ioas.allow_iovas_pairs(&[(0x10_0000, 0x1f_ffff), (msi, msi + 0xffff)]),
        Err(Errno::EADDRINUSE),
    );
    // A refused list changes nothing: the earlier (empty) list still lets automatic
    // allocation start at PAGE_SIZE.
    r.eq(
        "allow-iovas-refused-changes-nothing",
        ioas.map_auto(va, K4, Access::RW),
        Ok(K4),
    );
    let allowed = IovaRange::new(0x800_0000, 0x80f_ffff).unwrap_or(IovaRange::FULL);
    r.eq("allow-iovas-ok", ioas.allow_iovas(&[allowed]), Ok(()));
    match ioas.map_auto(va, K4, Access::RW) {
        Ok(iova) => r.eq("map-auto-lowest-allowed", iova, allowed.first()),
        Err(e) => r.fail("map-auto-lowest-allowed", &e.name()),
    }
    // The allowed list may cover mapped IOVAs; allocation skips them.
    r.eq(
        "allow-iovas-over-mapping-ok",
        ioas.allow_iovas(&[IovaRange::new(0, 0x80f_ffff).unwrap_or(IovaRange::FULL)]),
        Ok(()),
    );
    r.eq(
        "map-auto-skips-mapped",
        ioas.map_auto(va, K4, Access::RW),
        Ok(2 * K4),
    );
    let _ = ioas.unmap_raw(0, u64::MAX);
    let _ = ioas.allow_iovas(&[]);
}
