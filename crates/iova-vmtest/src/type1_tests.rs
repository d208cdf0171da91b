//! The type1 backend against the real kernel: open, GET_INFO, the MAP/UNMAP errno
//! table of docs/semantics.md, edu DMA, and the differential traces.

use std::sync::Arc;

use iova::dma::{DmaSpace, Errno};
use iova_linux::capchain;
use iova_linux::memory::{AnonMemory, HoldMemory, MapRawError};
use iova_linux::type1::{self, Container, Extension, Group, IommuType};

use crate::report::Report;
use crate::{diff, edu, facts};

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const RW: u32 = type1::DMA_MAP_FLAG_READ | type1::DMA_MAP_FLAG_WRITE;

fn name(e: Result<(), Errno>) -> String {
    match e {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.name(),
    }
}

fn held_name(e: Result<(), MapRawError>) -> String {
    e.map_or_else(|e| e.name(), |()| "ok".to_owned())
}

/// Runs every type1 check.
pub fn run(r: &mut Report, bdf: &str, seed: u64) {
    let group_id = match facts::group_of(bdf) {
        Ok(g) => g,
        Err(e) => return r.fail("setup", &e),
    };
    let mut c = match Container::open() {
        Ok(c) => {
            r.pass("open-container-api-version-0");
            c
        }
        Err(e) => return r.fail("open-container-api-version-0", &e.to_string()),
    };
    let ext = |e| c.check_extension(e).unwrap_or(false);
    r.eq(
        "extensions-type1-type1v2",
        (ext(Extension::Type1), ext(Extension::Type1v2)),
        (true, true),
    );
    let unmap_all_ext = ext(Extension::UnmapAll);
    r.note(&format!("UNMAP_ALL extension: {unmap_all_ext}"));

    // GET_INFO before SET_IOMMU: EINVAL [SEMANTICS: GET_INFO].
    r.eq(
        "get-info-before-set-iommu-einval",
        c.get_info_raw(capchain::INFO_HEADER_LEN).err(),
        Some(Errno::EINVAL),
    );
    r.eq(
        "dma-info-not-ready",
        c.info().err().map(|e| e.errno()),
        Some(Errno::EINVAL),
    );

    let group = match Group::open(group_id) {
        Ok(g) => g,
        Err(e) => return r.fail("open-group", &e.to_string()),
    };
    r.eq(
        "group-viable",
        group
            .status()
            .map(|f| f & type1::GROUP_FLAGS_VIABLE != 0)
            .ok(),
        Some(true),
    );
    if let Err(e) = c.attach(group, IommuType::Type1v2) {
        return r.fail("attach-group-type1v2", &e.to_string());
    }
    r.pass("attach-group-type1v2");

    // Size negotiation: a bare header gets argsz raised and cap_offset 0.
    match c.get_info_raw(capchain::INFO_HEADER_LEN) {
        Ok(b) => {
            let argsz = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            let cap_off = u32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            r.note(&format!(
                "GET_INFO with 24 bytes: argsz {argsz}, cap_offset {cap_off}"
            ));
            if argsz > 24 && cap_off == 0 {
                r.pass("get-info-argsz-raised-cap-offset-0");
            } else {
                r.fail(
                    "get-info-argsz-raised-cap-offset-0",
                    &format!("argsz {argsz} cap_offset {cap_off}"),
                );
            }
        }
        Err(e) => r.fail("get-info-argsz-raised-cap-offset-0", &e.name()),
    }
    let info = match c.get_info() {
        Ok(i) => {
            r.pass("get-info-chain-parses");
            i
        }
        Err(e) => return r.fail("get-info-chain-parses", &e.to_string()),
    };
    r.note(&format!("GET_INFO: {info:?}"));
    let (expected, top) = match facts::expected_valid(group_id) {
        Ok(x) => x,
        Err(e) => return r.fail("expected-ranges", &e),
    };
    let got: Option<iova::IovaSet> = info.iova_ranges.clone().map(|v| v.into_iter().collect());
    r.eq("iova-ranges-match-sysfs", got, Some(expected.clone()));
    r.eq(
        "page-sizes-include-4k",
        info.iova_pgsizes.map(|p| p & 0xfff == 0 && p & K4 != 0),
        Some(true),
    );
    let avail0 = info.dma_avail;
    r.eq("dma-avail-default-65535", avail0, Some(65535));

    errno_table(r, &mut c, top, avail0);

    if let Err(e) = c.unmap_all() {
        r.fail("unmap-all-before-edu", &e.to_string());
    }
    let mut sim = diff::simulated_type1(r, group_id);
    let sim_ref: Option<&mut dyn edu::SimSpace> = match &mut sim {
        Some(b) => Some(&mut **b),
        None => None,
    };
    edu::type1_dma_tests(r, &mut c, bdf, sim_ref);
    let _ = c.unmap_all();
    diff::run_type1(r, &mut c, group_id, seed);
}

/// The MAP/UNMAP errno table of docs/semantics.md (type1 v2). A range that wraps past
/// 2^64-1 is EINVAL before 6.18 and EOVERFLOW from 6.18 on ("vfio/type1: sanitize for
/// overflow using check_*_overflow()"), decided here from the guest's `uname -r`.
fn errno_table(r: &mut Report, c: &mut Container, top: u64, avail0: Option<u32>) {
    let release = iova_linux::hostfacts::kernel_release().unwrap_or_default();
    let (wrap, wrap_name) = match iova::kernel::KernelVersion::parse(&release) {
        Ok(v) if v >= iova::kernel::KernelVersion::new(6, 18) => (Errno::EOVERFLOW, "eoverflow"),
        Ok(_) => (Errno::EINVAL, "einval"),
        Err(_) => {
            return r.fail(
                "kernel-release",
                &format!("cannot read the kernel release {release:?}"),
            );
        }
    };
    let (buf, none) = match (
        AnonMemory::new(usize::try_from(2 * M2).unwrap_or(0)),
        AnonMemory::inaccessible(usize::try_from(K4).unwrap_or(0)),
    ) {
        (Ok(b), Ok(n)) => (Arc::new(b), Arc::new(n)),
        (Err(e), _) | (_, Err(e)) => return r.fail("alloc", &e.name()),
    };
    // The container holds both, so its safe map sends ranges inside them.
    c.add_memory(Arc::clone(&buf));
    c.add_memory(Arc::clone(&none));
    let va = buf.addr();
    let map = |r: &mut Report,
               what: &str,
               vaddr: u64,
               iova: u64,
               size: u64,
               flags: u32,
               want: Result<(), Errno>| {
        let got = c.map_held(vaddr, iova, size, flags);
        if got.is_ok() && want.is_err() {
            let _ = c.unmap_raw(iova, size, 0);
        }
        r.eq(&format!("map-{what}"), held_name(got), name(want));
        got
    };
    let _ = map(r, "good-2m", va, 0x10_0000, M2, RW, Ok(()));
    let msi = 0xfee0_0000u64;
    let _ = map(
        r,
        "in-msi-window-einval",
        va,
        msi,
        K4,
        RW,
        Err(Errno::EINVAL),
    );
    let _ = map(
        r,
        "last-page-of-msi-window-einval",
        va,
        msi + 0xff000,
        K4,
        RW,
        Err(Errno::EINVAL),
    );
    let _ = map(
        r,
        "straddling-msi-window-einval",
        va,
        msi - K4,
        2 * K4,
        RW,
        Err(Errno::EINVAL),
    );
    if map(r, "just-below-msi-window", va, msi - K4, K4, RW, Ok(())).is_ok() {
        r.eq(
            "unmap-just-below-msi-window-bytes",
            c.unmap_raw(msi - K4, K4, 0),
            Ok(K4),
        );
    }
    if map(
        r,
        "last-page-of-aperture",
        va,
        top - (K4 - 1),
        K4,
        RW,
        Ok(()),
    )
    .is_ok()
    {
        let _ = c.unmap_raw(top - (K4 - 1), K4, 0);
    }
    if let Some(past) = top.checked_add(1) {
        let _ = map(
            r,
            "first-page-past-aperture-einval",
            va,
            past,
            K4,
            RW,
            Err(Errno::EINVAL),
        );
    }
    let _ = map(
        r,
        "straddling-aperture-end-einval",
        va,
        top - (K4 - 1),
        2 * K4,
        RW,
        Err(Errno::EINVAL),
    );
    let _ = map(
        r,
        "overlap-inside-eexist",
        va,
        0x10_1000,
        K4,
        RW,
        Err(Errno::EEXIST),
    );
    let _ = map(
        r,
        "overlap-straddles-start-eexist",
        va,
        0xf_f000,
        2 * K4,
        RW,
        Err(Errno::EEXIST),
    );
    let _ = map(
        r,
        "overlap-identical-eexist",
        va,
        0x10_0000,
        M2,
        RW,
        Err(Errno::EEXIST),
    );
    let _ = map(
        r,
        "unaligned-iova-einval",
        va,
        0x40_0800,
        K4,
        RW,
        Err(Errno::EINVAL),
    );
    let _ = map(
        r,
        "unaligned-size-einval",
        va,
        0x40_0000,
        0x800,
        RW,
        Err(Errno::EINVAL),
    );
    let _ = map(
        r,
        "unaligned-vaddr-einval",
        va + 0x800,
        0x40_0000,
        K4,
        RW,
        Err(Errno::EINVAL),
    );
    let _ = map(r, "size-0-einval", va, 0x40_0000, 0, RW, Err(Errno::EINVAL));
    let _ = map(
        r,
        &format!("iova-wraps-{wrap_name}"),
        va,
        u64::MAX - (K4 - 1),
        2 * K4,
        RW,
        Err(wrap),
    );
    let _ = map(
        r,
        &format!("vaddr-wraps-{wrap_name}"),
        u64::MAX - (K4 - 1),
        0x40_0000,
        2 * K4,
        RW,
        Err(wrap),
    );
    let _ = map(
        r,
        "no-access-flags-einval",
        va,
        0x40_0000,
        K4,
        0,
        Err(Errno::EINVAL),
    );
    let _ = map(
        r,
        "unknown-flag-einval",
        va,
        0x40_0000,
        K4,
        RW | 0x80,
        Err(Errno::EINVAL),
    );
    // Memory the kernel cannot pin (PROT_NONE): EFAULT (vaddr_get_pfns).
    let _ = map(
        r,
        "vaddr-inaccessible-efault",
        none.addr(),
        0x40_0000,
        K4,
        RW,
        Err(Errno::EFAULT),
    );
    // Memory the container does not hold: refused before any system call.
    r.eq(
        "vaddr-not-held-refused-without-syscall",
        c.map_held(0x1_0000, 0x40_0000, K4, RW),
        Err(MapRawError::NotHeld {
            host: 0x1_0000,
            size: K4,
        }),
    );
    // A failed map leaves nothing behind: one mapping exists, so one fewer slot.
    r.eq(
        "failed-maps-leave-nothing",
        c.get_info().ok().and_then(|i| i.dma_avail),
        avail0.map(|a| a - 1),
    );
    let unmap =
        |r: &mut Report, what: &str, iova: u64, size: u64, flags: u32, want: Result<u64, Errno>| {
            r.eq(
                &format!("unmap-{what}"),
                c.unmap_raw(iova, size, flags),
                want,
            );
        };
    unmap(
        r,
        "bisects-mapping-einval",
        0x10_1000,
        K4,
        0,
        Err(Errno::EINVAL),
    );
    unmap(
        r,
        "start-of-mapping-einval",
        0x10_0000,
        K4,
        0,
        Err(Errno::EINVAL),
    );
    unmap(r, "nothing-mapped-0-bytes", 0x1000_0000, K4, 0, Ok(0));
    unmap(r, "unaligned-einval", 0x10_0800, K4, 0, Err(Errno::EINVAL));
    unmap(r, "size-0-einval", 0x10_0000, 0, 0, Err(Errno::EINVAL));
    unmap(
        r,
        &format!("wraps-{wrap_name}"),
        u64::MAX - (K4 - 1),
        2 * K4,
        0,
        Err(wrap),
    );
    unmap(
        r,
        "superset-returns-mapping-bytes",
        0,
        0x1000_0000,
        0,
        Ok(M2),
    );
    let _ = c.map_held(va, 0x10_0000, M2, RW);
    let _ = c.map_held(va, 0x30_0000, K4, RW);
    let _ = c.map_held(va, 0x30_2000, K4, RW);
    r.eq(
        "dma-avail-counts-mappings",
        c.get_info().ok().and_then(|i| i.dma_avail),
        avail0.map(|a| a - 3),
    );
    unmap(
        r,
        "all-with-nonzero-iova-einval",
        0x10_0000,
        0,
        type1::DMA_UNMAP_FLAG_ALL,
        Err(Errno::EINVAL),
    );
    unmap(
        r,
        "all-returns-total-bytes",
        0,
        0,
        type1::DMA_UNMAP_FLAG_ALL,
        Ok(M2 + 2 * K4),
    );
    unmap(r, "after-all-nothing-left", 0x10_0000, M2, 0, Ok(0));
}
