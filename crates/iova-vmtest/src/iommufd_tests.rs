//! The iommufd backend against the real kernel: IOVA_RANGES (with the EMSGSIZE retry),
//! MAP with fixed and automatic IOVA, the UNMAP ENOENT cases, ALLOW_IOVAS, and edu DMA
//! through an IOAS. Expected answers: SEMANTICS.md "iommufd (IOAS) differences" and
//! the guest's sysfs.

use std::path::Path;

use iova::dma::{Access, Errno};
use iova::range::{IovaRange, IovaSet};
use iova_linux::device::Device;
use iova_linux::iommufd::Iommufd;
use iova_linux::sys::AnonMemory;

use crate::report::Report;
use crate::{edu, facts};

const K4: u64 = 0x1000;

/// Runs every iommufd check (the caller has checked that `/dev/iommu` exists).
pub fn run(r: &mut Report, bdf: &str, _seed: u64) {
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
    match ioas.iova_ranges_with(0) {
        Ok(rep) => {
            r.eq("empty-ioas-full-range", rep.ranges, vec![IovaRange::FULL]);
        }
        Err(e) => r.fail("empty-ioas-full-range", &e.name()),
    }
    let cdev = match facts::vfio_cdev(bdf) {
        Ok(c) => c,
        Err(e) => return r.fail("vfio-cdev", &e),
    };
    let dev = match Device::open_cdev(Path::new(&format!("/dev/vfio/devices/{cdev}"))) {
        Ok(d) => d,
        Err(e) => return r.fail("open-vfio-cdev", &e.name()),
    };
    r.check(
        "bind-and-attach-device",
        ioas.attach_device(&dev).map(|_| ()),
    );
    let group = facts::group_of(bdf).unwrap_or(0);
    match (ioas.iova_ranges_with(1), facts::expected_valid(group)) {
        (Ok(rep), Ok((want, _))) => {
            r.note(&format!(
                "IOVA_RANGES {:?} align {:#x} in {} calls",
                rep.ranges, rep.alignment, rep.calls
            ));
            r.eq(
                "iova-ranges-emsgsize-retry",
                rep.calls > 1,
                rep.ranges.len() > 1,
            );
            r.eq(
                "iova-ranges-match-sysfs",
                rep.ranges.into_iter().collect::<IovaSet>(),
                want,
            );
        }
        (a, b) => r.fail("iova-ranges-match-sysfs", &format!("{a:?} {b:?}")),
    }
    let Ok(buf) = AnonMemory::new(0x20_0000) else {
        return r.fail("alloc", "mmap");
    };
    let va = buf.addr();
    let name = |x: Result<(), Errno>| x.map_or_else(|e| e.name(), |()| "ok".to_owned());
    r.eq(
        "map-fixed-ok",
        name(ioas.map_fixed(0x10_0000, va, 0x20_0000, Access::RW)),
        "ok".into(),
    );
    r.eq(
        "map-fixed-overlap-eexist",
        name(ioas.map_fixed(0x10_1000, va, K4, Access::RW)),
        "EEXIST".into(),
    );
    r.eq(
        "map-fixed-msi-window-einval",
        name(ioas.map_fixed(0xfee0_0000, va, K4, Access::RW)),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-unaligned-einval",
        name(ioas.map_fixed(0x40_0800, va, K4, Access::RW)),
        "EINVAL".into(),
    );
    r.eq(
        "map-fixed-wrap-eoverflow",
        name(ioas.map_fixed(u64::MAX - (K4 - 1), va, 2 * K4, Access::RW)),
        "EOVERFLOW".into(),
    );
    match ioas.map_auto(va, K4, Access::RW) {
        Ok(iova) => {
            let ok = iova % K4 == 0 && iova != 0 && !(0x10_0000..0x30_0000).contains(&iova);
            r.eq("map-auto-picks-free-aligned-iova", ok, true);
            r.eq("unmap-auto-mapping", ioas.unmap_raw(iova, K4), Ok(K4));
        }
        Err(e) => r.fail("map-auto-picks-free-aligned-iova", &e.name()),
    }
    r.eq(
        "unmap-bisect-enoent",
        ioas.unmap_raw(0x10_1000, K4),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-nothing-enoent",
        ioas.unmap_raw(0x1000_0000, K4),
        Err(Errno::ENOENT),
    );
    r.eq(
        "unmap-whole-area",
        ioas.unmap_raw(0x10_0000, 0x20_0000),
        Ok(0x20_0000),
    );
    r.eq("unmap-all-empty-ok", ioas.unmap_raw(0, u64::MAX), Ok(0));
    r.eq(
        "allow-iovas-inverted-einval",
        ioas.allow_iovas_pairs(&[(0x2000, 0x1000)]),
        Err(Errno::EINVAL),
    );
    r.eq(
        "allow-iovas-reserved-eaddrinuse",
        ioas.allow_iovas_pairs(&[(0xfee0_0000, 0xfee0_ffff)]),
        Err(Errno::EADDRINUSE),
    );
    let allowed = IovaRange::new(0x800_0000, 0x80f_ffff).unwrap_or(IovaRange::FULL);
    r.eq("allow-iovas-ok", ioas.allow_iovas(&[allowed]), Ok(()));
    match ioas.map_auto(va, K4, Access::RW) {
        Ok(iova) => r.eq("map-auto-inside-allowed", allowed.contains(iova), true),
        Err(e) => r.fail("map-auto-inside-allowed", &e.name()),
    }
    let _ = ioas.unmap_raw(0, u64::MAX);
    let _ = ioas.allow_iovas(&[]);
    if let Some(e) = edu::Edu::open(r, dev) {
        edu::dma_tests(r, &mut ioas, &e, None);
    }
}
