//! One test per row of the MAP/UNMAP tables of docs/semantics.md, per flavour, plus the
//! attach rules. Expected errnos come from the tables (and the kernel sources they
//! cite), not from the code under test.

mod common;

use common::{group, intel39, mixed, r};
use iova::container::{AttachError, Container, ContainerConfig, Flavour, KernelVersion};
use iova::dma::{Access, DmaSpace, Errno};
use iova::domain::{DomainConfig, Refusal};
use iova::host::ReservedKind;
use iova::pagetable::Fault;
use iova::range::IovaSet;

const HOST: u64 = 0x7f00_0000_0000;

/// A container with group 1 of `intel39`, answering as 6.12 does (the rows below were
/// checked against 6.1 and 6.12; `type1_wrap_is_eoverflow_from_6_18` and
/// tests/fidelity_rows.rs cover what later kernels changed).
fn ready(flavour: Flavour) -> Container {
    let mut c = Container::new(ContainerConfig::with_flavour(flavour).kernel(KernelVersion::V6_12));
    c.attach(&intel39(), 1).unwrap();
    c
}

/// Runs `f`; when it fails, the container must be exactly as before.
fn check_map(
    c: &mut Container,
    iova: u64,
    host: u64,
    size: u64,
    access: Access,
) -> Result<(), Errno> {
    let before = c.clone();
    let r = c.map(iova, host, size, access).map_err(|e| e.errno());
    if r.is_err() {
        assert_eq!(*c, before, "failed map changed the container");
    }
    r
}

fn check_unmap(c: &mut Container, iova: u64, size: u64) -> Result<u128, Errno> {
    let before = c.clone();
    let r = c.unmap(iova, size).map_err(|e| e.errno());
    if r.is_err() {
        assert_eq!(*c, before, "failed unmap changed the container");
    }
    r
}

/// type1 answers EINVAL before VFIO_SET_IOMMU; the iommufd compatibility container
/// has no IOAS before its first group (`get_compat_ioas`: ENODEV). An iommufd IOAS is
/// usable at once (tests/fidelity_rows.rs).
#[test]
fn not_ready_before_attach() {
    for (f, errno) in [
        (Flavour::Type1V1, Errno::EINVAL),
        (Flavour::Type1V2, Errno::EINVAL),
        (Flavour::CompatType1V1, Errno::ENODEV),
        (Flavour::CompatType1V2, Errno::ENODEV),
    ] {
        let mut c = Container::new(ContainerConfig::with_flavour(f));
        assert!(!c.is_ready());
        assert_eq!(c.info().unwrap_err().errno(), errno);
        assert_eq!(check_map(&mut c, 0, 0, 0x1000, Access::RW), Err(errno));
        assert_eq!(check_unmap(&mut c, 0, 0x1000), Err(errno));
        assert_eq!(c.unmap_all().unwrap_err().errno(), errno);
        assert_eq!(
            c.translate(0, Access::READ),
            Err(Fault::Unmapped { iova: 0 })
        );
    }
}

#[test]
fn type1_map_rows() {
    for f in [Flavour::Type1V1, Flavour::Type1V2] {
        let mut c = ready(f);
        c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
        // unknown flag is not expressible; neither READ nor WRITE:
        assert_eq!(
            check_map(&mut c, 0x40_0000, HOST, 0x1000, Access::NONE),
            Err(Errno::EINVAL)
        );
        // size 0, misaligned iova/size/vaddr
        assert_eq!(
            check_map(&mut c, 0x40_0000, HOST, 0, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, 0x40_0800, HOST, 0x1000, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, 0x40_0000, HOST, 0x800, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, 0x40_0000, HOST + 0x800, 0x1000, Access::RW),
            Err(Errno::EINVAL)
        );
        // wraps (pre-6.18: EINVAL)
        assert_eq!(
            check_map(&mut c, u64::MAX - 0xfff, HOST, 0x2000, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, 0x40_0000, u64::MAX - 0xfff, 0x2000, Access::RW),
            Err(Errno::EINVAL)
        );
        // overlaps: inside, straddling, identical
        assert_eq!(
            check_map(&mut c, 0x10_1000, HOST, 0x1000, Access::RW),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            check_map(&mut c, 0xf_f000, HOST, 0x2000, Access::RW),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            check_map(&mut c, 0x10_0000, HOST, 0x20_0000, Access::RW),
            Err(Errno::EEXIST)
        );
        // an overlap that is also outside the valid ranges: EEXIST comes first
        assert_eq!(
            check_map(&mut c, 0x2f_f000, HOST, 0x2000, Access::RW),
            Err(Errno::EEXIST)
        );
        // not inside one valid range: reserved window, beyond aperture, straddling
        assert_eq!(
            check_map(&mut c, 0xfee0_0000, HOST, 0x1000, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, 0xfedf_f000, HOST, 0x2000, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, 0x80_0000_0000, HOST, 0x1000, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, 0x7f_ffff_f000, HOST, 0x2000, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_map(&mut c, u64::MAX - 0xfff, HOST, 0x1000, Access::RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(c.mapping_count(), 1);
    }
}

/// §5 row 3 and §6 row 5: a wrapping range is EINVAL up to 6.17 and EOVERFLOW from
/// 6.18 ("vfio/type1: sanitize for overflow using check_*_overflow()").
#[test]
fn type1_wrap_is_eoverflow_from_6_18() {
    for (kernel, errno) in [
        (KernelVersion::V6_1, Errno::EINVAL),
        (KernelVersion::V6_12, Errno::EINVAL),
        (KernelVersion::V6_18, Errno::EOVERFLOW),
        (KernelVersion::NEWEST, Errno::EOVERFLOW),
    ] {
        let mut c = Container::new(ContainerConfig::default().kernel(kernel));
        c.attach(&intel39(), 1).unwrap();
        assert_eq!(
            check_map(&mut c, u64::MAX - 0xfff, HOST, 0x2000, Access::RW),
            Err(errno),
            "{kernel}"
        );
        assert_eq!(
            check_unmap(&mut c, u64::MAX - 0xfff, 0x2000),
            Err(errno),
            "{kernel}"
        );
    }
}

#[test]
fn entry_limit_then_enospc() {
    // 65535 mappings (the kernel default), then ENOSPC; ENOSPC is checked after EEXIST
    // and before the valid-range check.
    let mut c = ready(Flavour::Type1V2);
    for i in 0..65535u64 {
        c.map(i * 0x1000, HOST + i * 0x1000, 0x1000, Access::RW)
            .unwrap();
    }
    assert_eq!(c.info().unwrap().dma_avail, Some(0));
    let before = c.clone();
    assert_eq!(
        c.map(0x1_0000_0000, HOST, 0x1000, Access::RW)
            .unwrap_err()
            .errno(),
        Errno::ENOSPC
    );
    assert_eq!(
        c.map(0x1000, HOST, 0x1000, Access::RW).unwrap_err().errno(),
        Errno::EEXIST
    );
    assert_eq!(
        c.map(0xfee0_0000, HOST, 0x1000, Access::RW)
            .unwrap_err()
            .errno(),
        Errno::ENOSPC
    );
    assert!(c == before);
    assert_eq!(c.unmap(0x1000, 0x1000), Ok(0x1000));
    assert_eq!(c.info().unwrap().dma_avail, Some(1));
    c.map(0x1_0000_0000, HOST, 0x1000, Access::RW).unwrap();
    assert_eq!(c.unmap_all(), Ok(65535 * 0x1000));
}

#[test]
fn type1_v2_unmap_rows() {
    let mut c = ready(Flavour::Type1V2);
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    assert_eq!(check_unmap(&mut c, 0x10_0800, 0x1000), Err(Errno::EINVAL));
    assert_eq!(check_unmap(&mut c, 0x10_0000, 0x800), Err(Errno::EINVAL));
    assert_eq!(check_unmap(&mut c, 0x10_0000, 0), Err(Errno::EINVAL));
    assert_eq!(
        check_unmap(&mut c, u64::MAX - 0xfff, 0x2000),
        Err(Errno::EINVAL)
    );
    // would split: starts inside, ends inside
    assert_eq!(check_unmap(&mut c, 0x10_1000, 0x1000), Err(Errno::EINVAL));
    assert_eq!(check_unmap(&mut c, 0x10_0000, 0x1000), Err(Errno::EINVAL));
    assert_eq!(check_unmap(&mut c, 0, 0x10_1000), Err(Errno::EINVAL));
    // nothing mapped: success, 0 bytes
    assert_eq!(check_unmap(&mut c, 0x1000_0000, 0x1000), Ok(0));
    // covers whole mappings
    c.map(0x40_0000, HOST, 0x1000, Access::READ).unwrap();
    assert_eq!(check_unmap(&mut c, 0, 0x1000_0000), Ok(0x20_1000));
    assert_eq!(c.mapping_count(), 0);
    assert_eq!(
        c.translate(0x10_0000, Access::READ),
        Err(Fault::Unmapped { iova: 0x10_0000 })
    );
}

#[test]
fn type1_v1_unmap_takes_whole_mappings_from_their_first_iova() {
    let mut c = ready(Flavour::Type1V1);
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    c.map(0x30_0000, HOST + 0x20_0000, 0x2000, Access::RW)
        .unwrap();
    // starts inside a mapping: ignored, success with 0 bytes
    assert_eq!(check_unmap(&mut c, 0x10_1000, 0x1000), Ok(0));
    assert_eq!(check_unmap(&mut c, 0x10_1000, 0x30_0000), Ok(0));
    assert_eq!(c.mapping_count(), 2);
    // covers the first IOVA of the 2 MiB mapping only: the whole mapping goes
    assert_eq!(check_unmap(&mut c, 0x10_0000, 0x1000), Ok(0x20_0000));
    // covers the first IOVA of the last one
    assert_eq!(check_unmap(&mut c, 0x2f_f000, 0x2000), Ok(0x2000));
    assert_eq!(c.mapping_count(), 0);
    assert_eq!(check_unmap(&mut c, 0x10_0000, 0), Err(Errno::EINVAL));
}

#[test]
fn unmap_all_type1() {
    let mut c = ready(Flavour::Type1V2);
    assert_eq!(c.unmap_all(), Ok(0));
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    c.map(0x30_0000, HOST, 0x1000, Access::RW).unwrap();
    c.map(0x30_2000, HOST, 0x1000, Access::RW).unwrap();
    assert_eq!(c.unmap_all(), Ok(0x20_2000));
    assert_eq!(c.info().unwrap().dma_avail, Some(65535));
    assert_eq!(c.page_table().unwrap().table_count(), 1);
}

#[test]
fn last_page_maps_and_unmaps_when_valid() {
    // A unit of unknown aperture: the whole 64-bit space is valid.
    for f in [Flavour::Type1V1, Flavour::Type1V2, Flavour::Iommufd] {
        let mut c = Container::new(ContainerConfig::with_flavour(f));
        c.attach(&mixed(), 3).unwrap();
        let last = 0xffff_ffff_ffff_f000;
        assert_eq!(
            c.info().unwrap().iova_ranges.span().unwrap().last(),
            u64::MAX
        );
        c.map(last, 0x1000, 0x1000, Access::RW).unwrap();
        assert_eq!(c.translate(u64::MAX, Access::WRITE), Ok(0x1fff));
        // overlap at the very end is seen
        assert_eq!(
            check_map(&mut c, last, 0x1000, 0x1000, Access::RW),
            Err(Errno::EEXIST)
        );
        assert_eq!(check_unmap(&mut c, last, 0x1000), Ok(0x1000));
        assert_eq!(c.page_table().unwrap().table_count(), 1);
    }
}

#[test]
fn iommufd_map_rows() {
    let mut c = ready(Flavour::Iommufd);
    assert_eq!(c.info().unwrap().dma_avail, None);
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    assert_eq!(
        check_map(&mut c, u64::MAX, HOST, 0x1000, Access::RW),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        check_map(&mut c, 0x40_0000, HOST, u64::MAX, Access::RW),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        check_map(&mut c, 0x40_0000, HOST, 0x1000, Access::NONE),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        check_map(&mut c, 0x40_0000, u64::MAX - 0xfff, 0x1000, Access::RW),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        check_map(&mut c, 0x40_0000, HOST, 0, Access::RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        check_map(&mut c, 0x40_0000, HOST, 0x800, Access::RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        check_map(&mut c, 0x40_0800, HOST, 0x1000, Access::RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        check_map(&mut c, u64::MAX - 0xfff, HOST, 0x2000, Access::RW),
        Err(Errno::EOVERFLOW)
    );
    // reserved is checked before overlap in iommufd
    assert_eq!(
        check_map(&mut c, 0xfee0_0000, HOST, 0x1000, Access::RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        check_map(&mut c, 0x80_0000_0000, HOST, 0x1000, Access::RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        check_map(&mut c, 0x10_1000, HOST, 0x1000, Access::RW),
        Err(Errno::EEXIST)
    );
    // misaligned host address: checked last
    assert_eq!(
        check_map(&mut c, 0x10_1000, HOST + 0x800, 0x1000, Access::RW),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        check_map(&mut c, 0x40_0000, HOST + 0x800, 0x1000, Access::RW),
        Err(Errno::EINVAL)
    );
}

#[test]
fn iommufd_unmap_rows() {
    let mut c = ready(Flavour::Iommufd);
    // whole-space unmap succeeds when empty; any other unmap of nothing is ENOENT
    assert_eq!(c.unmap(0, u64::MAX), Ok(0));
    assert_eq!(c.unmap_all(), Ok(0));
    assert_eq!(check_unmap(&mut c, 0x10_0000, 0x1000), Err(Errno::ENOENT));
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    c.map(0x30_0000, HOST, 0x1000, Access::RW).unwrap();
    assert_eq!(check_unmap(&mut c, 0x10_1000, 0x1000), Err(Errno::ENOENT));
    // covers the first area, then ends inside the second: as the kernel's
    // iopt_unmap_iova_range does (seen on 6.12), the first is gone, the second stays
    assert_eq!(
        c.unmap(0x10_0000, 0x20_0800).map_err(|e| e.errno()),
        Err(Errno::ENOENT)
    );
    assert_eq!(c.mapping_count(), 1);
    assert!(c.mapping_at(0x30_0000).is_some());
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    assert_eq!(check_unmap(&mut c, 0x10_0000, 0), Err(Errno::EINVAL));
    assert_eq!(
        check_unmap(&mut c, u64::MAX - 0xfff, 0x2000),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(check_unmap(&mut c, 0x1000, u64::MAX), Err(Errno::EOVERFLOW));
    // no alignment rule on unmap: an unaligned superset works
    // clips 0x300000 after covering the first area, which goes
    assert_eq!(
        c.unmap(0xf_f800, 0x20_1000).map_err(|e| e.errno()),
        Err(Errno::ENOENT)
    );
    assert!(c.mapping_at(0x10_0000).is_none());
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    assert_eq!(check_unmap(&mut c, 0xf_f800, 0x20_0800), Ok(0x20_0000));
    assert_eq!(c.unmap(0, u64::MAX), Ok(0x1000));
}

#[test]
fn iommufd_auto_allocation() {
    let mut c = ready(Flavour::Iommufd);
    // first fit from the bottom, never IOVA 0: size 0x1000 -> 0x1000
    assert_eq!(c.map_auto(HOST, 0x1000, Access::RW), Ok(0x1000));
    // 0x3000 rounds up to 0x4000 alignment
    assert_eq!(c.map_auto(HOST, 0x3000, Access::RW), Ok(0x4000));
    // now [0x1000, 0x1fff] and [0x4000, 0x6fff] are used; alignment capped by the host
    // address's (0x1000): the hole at 0x2000 is too small, 0x7000 fits
    assert_eq!(c.map_auto(HOST + 0x1000, 0x3000, Access::RW), Ok(0x7000));
    // 2 MiB buffer: 2 MiB aligned
    assert_eq!(c.map_auto(HOST, 0x20_0000, Access::RW), Ok(0x20_0000));
    assert_eq!(
        c.map_auto(HOST + 0x800, 0x1000, Access::RW)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    // type1 has no automatic allocation
    let mut t = ready(Flavour::Type1V2);
    assert!(t.map_auto(HOST, 0x1000, Access::RW).is_err());
    // allowed list restricts allocation; overlapping a reserved range is refused
    let mut c = ready(Flavour::Iommufd);
    let before = c.clone();
    let e = c
        .allow_iovas(&IovaSet::from(r(0xfe00_0000, 0xfeef_ffff)))
        .unwrap_err();
    assert_eq!(e.errno(), Errno::EADDRINUSE);
    assert!(c == before);
    c.allow_iovas(&IovaSet::from(r(0x1_0000_0000, 0x1_0000_3fff)))
        .unwrap();
    assert_eq!(c.map_auto(HOST, 0x2000, Access::RW), Ok(0x1_0000_0000));
    assert_eq!(c.map_auto(HOST, 0x2000, Access::RW), Ok(0x1_0000_2000));
    let before = c.clone();
    assert_eq!(
        c.map_auto(HOST, 0x1000, Access::RW).unwrap_err().errno(),
        Errno::ENOSPC
    );
    assert!(c == before);
}

#[test]
fn iommufd_auto_allocation_skips_the_last_page() {
    let mut c = Container::new(ContainerConfig::with_flavour(Flavour::Iommufd));
    c.attach(&mixed(), 3).unwrap();
    c.allow_iovas(&IovaSet::from(r(0xffff_ffff_ffff_e000, u64::MAX)))
        .unwrap();
    assert_eq!(
        c.map_auto(HOST, 0x1000, Access::RW),
        Ok(0xffff_ffff_ffff_e000)
    );
    assert_eq!(
        c.map_auto(HOST, 0x1000, Access::RW).unwrap_err().errno(),
        Errno::ENOSPC
    );
}

#[test]
fn heterogeneous_apertures_narrow_to_the_smallest() {
    let host = mixed();
    let mut c = Container::new(ContainerConfig::default());
    c.attach(&host, 2).unwrap(); // 48-bit
    assert_eq!(c.aperture(), Some(r(0, 0xffff_ffff_ffff)));
    c.attach(&host, 1).unwrap(); // 39-bit
    assert_eq!(c.aperture(), Some(r(0, 0x7f_ffff_ffff)));
    assert_eq!(
        c.info().unwrap().iova_ranges.ranges(),
        &[r(0, 0xfedf_ffff), r(0xfef0_0000, 0x7f_ffff_ffff)]
    );
    // the unknown-aperture unit adds only its reserved range
    c.attach(&host, 3).unwrap();
    assert_eq!(c.info().unwrap().iova_ranges.range_count(), 2);
    c.detach(1).unwrap();
    assert_eq!(c.aperture(), Some(r(0, 0xffff_ffff_ffff)));
    assert_eq!(c.info().unwrap().iova_ranges.range_count(), 3);
}

#[test]
fn attach_refused_when_a_mapping_is_above_the_new_aperture() {
    let host = mixed();
    for (f, errno) in [
        (Flavour::Type1V2, Errno::EINVAL),
        (Flavour::Iommufd, Errno::EADDRINUSE),
    ] {
        let mut c = Container::new(ContainerConfig::with_flavour(f));
        c.attach(&host, 2).unwrap();
        c.map(0x100_0000_0000, HOST, 0x1000, Access::RW).unwrap();
        let before = c.clone();
        let e = c.attach(&host, 1).unwrap_err();
        assert_eq!(e.errno(), errno, "{f:?}: {e}");
        assert!(c == before, "{f:?}: failed attach changed the container");
        assert_eq!(c.translate(0x100_0000_0000, Access::READ), Ok(HOST));
    }
}

#[test]
fn attach_refusals() {
    let host = mixed();
    let mut c = Container::new(ContainerConfig::default());
    assert_eq!(
        c.attach(&host, 99).unwrap_err(),
        AttachError::Refused(Refusal::NoSuchGroup(99))
    );
    // no interrupt remapping: EPERM unless allowed
    assert_eq!(c.attach(&host, 4).unwrap_err().errno(), Errno::EPERM);
    assert!(!c.is_ready());
    // identity (iommu=pt) group: VFIO claims it and attaches its own domain
    c.attach(&host, 5).unwrap();
    c.detach(5).unwrap();
    c.attach(&host, 1).unwrap();
    assert_eq!(c.attach(&host, 1).unwrap_err().errno(), Errno::EBUSY);
    // no common page size with a 64K-only unit... 4K|2M|1G & 64K|512M = 0
    assert_eq!(c.attach(&host, 6).unwrap_err().errno(), Errno::EINVAL);
    let cfg = ContainerConfig::from(DomainConfig::default().allow_unsafe(true, false));
    let mut u = Container::new(cfg);
    u.attach(&host, 4).unwrap();
    u.attach(&host, 5).unwrap();
    assert_eq!(c.detach(7).unwrap_err().errno(), Errno::EINVAL);
}

#[test]
fn detaching_the_last_group_drops_every_mapping() {
    let host = mixed();
    let mut c = Container::new(ContainerConfig::default());
    c.attach(&host, 1).unwrap();
    c.attach(&host, 2).unwrap();
    c.map(0x10_0000, HOST, 0x20_0000, Access::RW).unwrap();
    c.detach(1).unwrap();
    assert_eq!(c.mapping_count(), 1);
    assert_eq!(c.translate(0x10_0000, Access::RW), Ok(HOST));
    c.detach(2).unwrap();
    assert_eq!(c.mapping_count(), 0);
    assert!(!c.is_ready());
    assert_eq!(c.info().unwrap_err().errno(), Errno::EINVAL);
    c.attach(&host, 1).unwrap();
    assert_eq!(
        c.translate(0x10_0000, Access::RW),
        Err(Fault::Unmapped { iova: 0x10_0000 })
    );
}

#[test]
fn translate_uses_large_pages_and_permissions() {
    let mut c = ready(Flavour::Type1V2);
    c.map(0x4000_0000, 0x1_4000_0000, 0x4000_0000, Access::READ)
        .unwrap();
    let pt = c.page_table().unwrap();
    assert_eq!(pt.leaf_count(1 << 30), 1);
    assert_eq!(c.translate(0x4000_0010, Access::READ), Ok(0x1_4000_0010));
    assert_eq!(
        c.translate(0x4000_0010, Access::WRITE),
        Err(Fault::Permission {
            iova: 0x4000_0010,
            needed: Access::WRITE
        })
    );
}

#[test]
fn direct_rmrr_groups_are_refused_with_eperm_unless_allowed() {
    // The VT-d driver refuses an RMRR-locked device in an unmanaged domain with EPERM;
    // a direct-relaxable region is no obstacle.
    let mut host = intel39();
    let mut g = group(
        7,
        "dmar0",
        &[
            (0xbd80_0000, 0xbd9f_ffff, ReservedKind::Direct),
            (0xfee0_0000, 0xfeef_ffff, ReservedKind::Msi),
        ],
    );
    g.devices.push("0000:00:14.0".into());
    host.groups.push(g);
    host.groups.push(group(
        8,
        "dmar0",
        &[(0, 0xff_ffff, ReservedKind::DirectRelaxable)],
    ));
    for f in [Flavour::Type1V2, Flavour::Iommufd] {
        let mut c = Container::new(ContainerConfig::with_flavour(f));
        let e = c.attach(&host, 7).unwrap_err();
        assert_eq!(e.errno(), Errno::EPERM, "{f:?}");
        assert!(
            matches!(
                e,
                AttachError::Refused(Refusal::DirectRegion { group: 7, .. })
            ),
            "{e:?}"
        );
        assert_eq!(c.groups().count(), 0);
        c.attach(&host, 8).unwrap();
        let mut unsafe_ok = Container::new(ContainerConfig::from(
            DomainConfig::with_flavour(f).allow_unsafe(false, true),
        ));
        unsafe_ok.attach(&host, 7).unwrap();
        // Even then nothing is ever mapped inside the region.
        assert_eq!(
            unsafe_ok
                .map(0xbd80_0000, HOST, 0x1000, Access::RW)
                .unwrap_err()
                .errno(),
            Errno::EINVAL
        );
    }
}

#[test]
fn huge_maps_forced_into_small_pages_answer_enomem_and_change_nothing() {
    // 256 GiB whose host address allows only 4 KiB pages would need 512 MiB of tables;
    // the simulated page table refuses up front (ENOMEM, as the kernel does when it
    // cannot allocate tables or pin that much), while the same size in 1 GiB pages maps.
    let host = intel39();
    for f in [Flavour::Type1V2, Flavour::Iommufd] {
        let mut c = Container::new(ContainerConfig::with_flavour(f));
        c.attach(&host, 1).unwrap();
        let before = c.clone();
        let e = c
            .map(0x40_0000_0000, 0x1000, 0x40_0000_0000, Access::RW)
            .unwrap_err();
        assert_eq!(e.errno(), Errno::ENOMEM, "{f:?}: {e}");
        assert!(c == before, "{f:?}: a refused map changed the container");
        c.map(0x40_0000_0000, 0x40_0000_0000, 0x40_0000_0000, Access::RW)
            .unwrap();
        assert_eq!(
            c.translate(0x7f_ffff_f123, Access::WRITE),
            Ok(0x7f_ffff_f123)
        );
    }
}
