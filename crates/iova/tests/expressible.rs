//! Issue 15, "not expressible today": IOMMU_IOAS_COPY, reserved IOVA ranges that arrive
//! at run time with a device, BAR-backed host addresses, and the IOVA_RANGES EMSGSIZE
//! protocol, each as trace operations answered as the kernel answers them.
//!
//! Expected answers come from the kernel sources, not from the model:
//! - copy: `drivers/iommu/iommufd/ioas.c: iommufd_ioas_copy` (flags, the `ULONG_MAX`
//!   fields, no access), `io_pagetable.c: iopt_get_pages` (length 0, wrap, contiguous
//!   areas or ENOENT), `iopt_alloc_area_pages` / `iopt_check_iova` / `iopt_alloc_iova`
//!   (the destination as a map), `iopt_insert_area` (EPERM for WRITE on pages first
//!   mapped read-only; the page offset);
//! - reserved at run time: `iopt_table_enforce_dev_resv_regions` -> `iopt_reserve_iova`
//!   (EADDRINUSE over an area or an allowed range), `vfio_iommu_resv_conflict` (type1:
//!   EINVAL), `iopt_check_iova` (a map into a reserved range: EINVAL);
//! - BAR: `mm/gup.c: check_vma_flags` (`VM_IO | VM_PFNMAP`: EFAULT) reached from
//!   `iopt_fill_domains_pages` only when the IOAS has a domain (`iopt_map_user_pages`:
//!   "for non-domain page tables this will only setup a lazy reference"), type1's
//!   `vaddr_get_pfns` -> `follow_fault_pfn` for `VM_PFNMAP` (accepted);
//! - IOVA_RANGES: `ioas.c: iommufd_ioas_iova_ranges` (the count and alignment written
//!   back, the first `num_iovas` entries filled, then EMSGSIZE).

mod common;

use common::{group, intel39};
use iova::container::{Container, ContainerConfig, CopyError, Flavour, KernelVersion};
use iova::dma::{Access, Backing, DmaSpace, Errno, MapError};
use iova::host::{Host, IommuUnit, IommuVendor, ReservedKind};
use iova::trace::{apply_sim, format_outcome, parse_trace};
use proptest::prelude::*;

const HOST: u64 = 0x7f00_0000_0000;

fn run(c: &mut Container, host: &Host, trace: &str) -> Vec<String> {
    parse_trace(trace)
        .unwrap()
        .iter()
        .map(|l| format_outcome(&apply_sim(c, host, &l.op)))
        .collect()
}

fn cfg(f: Flavour) -> ContainerConfig {
    ContainerConfig::with_flavour(f)
}

/// Each trace line with its expected answer, `op => answer` per line.
fn check(c: &mut Container, host: &Host, rows: &str) {
    let (ops, want): (Vec<&str>, Vec<&str>) = rows
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once("=>").expect("op => answer"))
        .map(|(o, a)| (o.trim(), a.trim()))
        .unzip();
    let got = run(c, host, &ops.join("\n"));
    for ((op, g), w) in ops.iter().zip(&got).zip(&want) {
        assert_eq!(g, w, "{op}");
    }
}

fn ioas_with_group_1() -> (Container, Host) {
    let host = intel39();
    let mut c = Container::new(cfg(Flavour::Iommufd));
    c.attach(&host, 1).unwrap();
    (c, host)
}

// ---------------------------------------------------------------------------------
// 1. IOMMU_IOAS_COPY
// ---------------------------------------------------------------------------------

/// A copy takes the source's pages, area by area: a source range over two contiguous
/// areas becomes two destination areas (unmapped separately), a part of an area is
/// fine, and the copy translates to the source's host addresses.
#[test]
fn copy_spans_areas_and_parts_of_areas() {
    let (mut c, host) = ioas_with_group_1();
    check(
        &mut c,
        &host,
        "map 0x100000 0x4000 0x7f0000000000 => ok
         map 0x104000 0x2000 0x7f0000100000 r => ok
         copy 0x100000 0x6000 0x200000 r => ok 0x200000
         copy 0x101000 0x1000 0x300000 => ok 0x300000",
    );
    assert_eq!(c.translate(0x20_3fff, Access::READ), Ok(HOST + 0x3fff));
    assert_eq!(c.translate(0x20_4000, Access::READ), Ok(HOST + 0x10_0000));
    assert_eq!(c.translate(0x30_0000, Access::WRITE), Ok(HOST + 0x1000));
    // The copy is read-only: a device write through it faults.
    assert!(c.translate(0x20_0000, Access::WRITE).is_err());
    check(
        &mut c,
        &host,
        "unmap 0x200000 0x6000 => ok 0x6000
         unmap 0x300000 0x1000 => ok 0x1000",
    );
    // Two destination areas: a range covering only the first unmaps it alone.
    check(
        &mut c,
        &host,
        "copy 0x100000 0x6000 0x200000 r => ok 0x200000
         unmap 0x200000 0x4000 => ok 0x4000
         unmap 0x204000 0x2000 => ok 0x2000",
    );
    // The copy keeps the pages when the source goes.
    check(
        &mut c,
        &host,
        "copy 0x100000 0x1000 0x400000 => ok 0x400000
         unmap 0x100000 0x4000 => ok 0x4000",
    );
    assert_eq!(c.translate(0x40_0000, Access::READ), Ok(HOST));
}

/// ioas.c and iopt_get_pages run before anything about the destination: the order of
/// the refusals.
#[test]
fn copy_refusals_in_the_kernels_order() {
    let (mut c, host) = ioas_with_group_1();
    check(
        &mut c,
        &host,
        "map 0x100000 0x4000 0x7f0000000000 => ok
         map 0x104000 0x2000 0x7f0000100000 r => ok",
    );
    let before = c.clone();
    check(
        &mut c,
        &host,
        // ioas.c: any field at ULONG_MAX, then no access.
        "copy 0xffffffffffffffff 0x1000 0x200000 => EOVERFLOW
         copy 0x100000 0xffffffffffffffff 0x200000 => EOVERFLOW
         copy 0x100000 0x1000 0xffffffffffffffff => EOVERFLOW
         copy 0x500000 0x1000 0x200000 - => EINVAL
         copy 0x100000 0x1000 0xffffffffffffffff - => EOVERFLOW
         # iopt_get_pages: length 0, wrap, then coverage.
         copy 0x500000 0 0x200000 => EINVAL
         copy 0xfffffffffffff000 0x2000 0x200000 => EOVERFLOW
         copy 0x500000 0x1000 0x200000 => ENOENT
         copy 0xff000 0x2000 0x200000 => ENOENT
         copy 0x100000 0x7000 0x200000 => ENOENT
         # a misaligned length is the destination's check, after the source's
         copy 0x500000 0x1800 0x200000 => ENOENT
         copy 0x100000 0x1800 0x200000 => EINVAL
         # iopt_check_iova on the destination
         copy 0x100000 0x1000 0x200800 => EINVAL
         copy 0x100000 0x2000 0xfffffffffffff000 => EOVERFLOW
         copy 0x100000 0x1000 0xfee00000 => EINVAL
         copy 0x100000 0x1000 0x8000000000 => EINVAL
         copy 0x100000 0x1000 0x103000 => EEXIST
         copy 0x100000 0x1000 0x100000 => EEXIST
         # iopt_insert_area: WRITE on pages first mapped read-only
         copy 0x104000 0x1000 0x200000 rw => EPERM
         copy 0x104000 0x1000 0x200000 w => EPERM
         copy 0x100000 0x6000 0x200000 => EPERM",
    );
    assert_eq!(c, before, "a refused copy changes nothing");
}

/// The pages object decides writability: a read-only copy of a writeable map shares
/// writable pages, so a writeable copy of the copy is accepted.
#[test]
fn copy_writability_follows_the_shared_pages() {
    let (mut c, host) = ioas_with_group_1();
    check(
        &mut c,
        &host,
        "map 0x400000 0x1000 0x7f0000200000 => ok
         copy 0x400000 0x1000 0x500000 r => ok 0x500000
         copy 0x500000 0x1000 0x600000 rw => ok 0x600000
         unmap 0x400000 0x1000 => ok 0x1000",
    );
    assert_eq!(c.translate(0x60_0000, Access::WRITE), Ok(HOST + 0x20_0000));
}

/// Without FIXED_IOVA the destination is allocated as a map of the source's host
/// address is (iopt_alloc_area_pages uses the first piece's address): first fit from
/// PAGE_SIZE, aligned to roundup_pow_of_two(length) (capped by the host alignment).
#[test]
fn copy_auto_allocates_like_map_auto() {
    let (mut c, host) = ioas_with_group_1();
    check(
        &mut c,
        &host,
        "map 0x100000 0x4000 0x7f0000000000 => ok
         copy 0x100000 0x1000 auto => ok 0x1000
         copy 0x100000 0x4000 auto => ok 0x4000
         copy 0x101000 0x1000 auto r => ok 0x2000",
    );
    assert_eq!(c.translate(0x2000, Access::READ), Ok(HOST + 0x1000));
}

/// An IOAS with no device copies too (alignment 1); type1 and the compatibility
/// container have no IOAS_COPY.
#[test]
fn copy_without_a_domain_and_per_flavour() {
    let host = intel39();
    let mut c = Container::new(cfg(Flavour::Iommufd));
    check(
        &mut c,
        &host,
        "map 0x100 0x10 0x7f0000000100 => ok
         copy 0x100 0x10 0x1000 => ok 0x1000",
    );
    for f in [
        Flavour::Type1V1,
        Flavour::Type1V2,
        Flavour::CompatType1V1,
        Flavour::CompatType1V2,
    ] {
        let mut c = Container::new(cfg(f));
        check(
            &mut c,
            &host,
            "attach 1 => ok
             map 0x100000 0x1000 0x7f0000000000 => ok
             copy 0x100000 0x1000 0x200000 => ENOTTY",
        );
    }
    let mut c = Container::new(cfg(Flavour::Type1V2));
    assert_eq!(
        c.copy(0, 0x1000, None, Access::RW),
        Err(CopyError::Unsupported)
    );
}

// ---------------------------------------------------------------------------------
// 2. Reserved IOVA ranges added at run time: a device attached mid-trace
// ---------------------------------------------------------------------------------

/// Group 1: the MSI window only. Group 2: also a firmware-reserved range
/// 0x40000000-0x4fffffff (as an AMD HyperTransport window or an ARM SW_MSI window
/// would be), on the same 48-bit unit.
fn two_reservations() -> Host {
    let msi = (0xfee0_0000, 0xfeef_ffff, ReservedKind::Msi);
    Host {
        iommus: vec![
            IommuUnit::new("dmar0", IommuVendor::Intel)
                .with_address_width(48)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
        ],
        groups: vec![
            group(1, "dmar0", &[msi]),
            group(
                2,
                "dmar0",
                &[(0x4000_0000, 0x4fff_ffff, ReservedKind::Reserved), msi],
            ),
        ],
        ..Host::default()
    }
}

/// iommufd: a device whose reserved range is mapped cannot attach (EADDRINUSE, nothing
/// reserved); once it is attached the range is reserved (maps EINVAL, IOVA_RANGES
/// shows the hole); once it leaves the range maps again.
#[test]
fn iommufd_reserved_range_arrives_with_a_device() {
    let host = two_reservations();
    let mut c = Container::new(cfg(Flavour::Iommufd));
    check(
        &mut c,
        &host,
        "attach 1 => ok
         map 0x40000000 0x200000 0x7f0000000000 => ok
         attach 2 => EADDRINUSE
         map 0x48000000 0x1000 0x7f0000000000 => ok
         unmap-all => ok 0x201000
         allow-iovas 0x3ff00000-0x400fffff => ok
         attach 2 => EADDRINUSE
         allow-iovas => ok
         attach 2 => ok
         map 0x40000000 0x1000 0x7f0000000000 => EINVAL
         map 0x4ffff000 0x2000 0x7f0000000000 => EINVAL
         map 0x3ffff000 0x1000 0x7f0000000000 => ok
         iova-ranges => ok 0x0-0x3fffffff,0x50000000-0xfedfffff,0xfef00000-0xffffffffffff align 0x1000
         allow-iovas 0x48000000-0x48ffffff => EADDRINUSE
         detach 2 => ok
         map 0x40000000 0x1000 0x7f0000000000 => ok",
    );
}

/// type1: the same conflict is EINVAL (vfio_iommu_resv_conflict), and the reserved
/// range is excluded once the group is in.
#[test]
fn type1_reserved_range_arrives_with_a_group() {
    let host = two_reservations();
    for f in [Flavour::Type1V1, Flavour::Type1V2] {
        let mut c = Container::new(cfg(f));
        check(
            &mut c,
            &host,
            "attach 1 => ok
             map 0x40000000 0x200000 0x7f0000000000 => ok
             attach 2 => EINVAL
             unmap-all => ok 0x200000
             attach 2 => ok
             map 0x40000000 0x1000 0x7f0000000000 => EINVAL
             map 0x50000000 0x1000 0x7f0000000000 => ok",
        );
    }
}

// ---------------------------------------------------------------------------------
// 3. BAR-backed host addresses
// ---------------------------------------------------------------------------------

/// type1 maps a BAR mmap on every modelled version; iommufd and the compatibility
/// container with a domain refuse it with EFAULT after every other check of the map.
#[test]
fn bar_backing_per_flavour_and_version() {
    let host = intel39();
    for kernel in [
        KernelVersion::V6_1,
        KernelVersion::V6_12,
        KernelVersion::V6_18,
        KernelVersion::NEWEST,
    ] {
        for (f, want) in [
            (Flavour::Type1V1, "ok"),
            (Flavour::Type1V2, "ok"),
            (Flavour::Iommufd, "EFAULT"),
            (Flavour::CompatType1V1, "EFAULT"),
            (Flavour::CompatType1V2, "EFAULT"),
        ] {
            let mut c = Container::new(cfg(f).kernel(kernel));
            let got = run(
                &mut c,
                &host,
                "attach 1\nmap 0x100000 0x1000 0x7f0000000000 bar\n\
                 map 0x200000 0x1000 0x7f0000000000 r bar\n",
            );
            assert_eq!(got, ["ok", want, want], "{f:?} {kernel}");
            // The same map of memory is accepted by all.
            assert_eq!(
                run(&mut c, &host, "map 0x300000 0x1000 0x7f0000000000"),
                ["ok"]
            );
        }
    }
}

#[test]
fn bar_backing_checks_come_after_the_maps_own() {
    let (mut c, host) = ioas_with_group_1();
    check(
        &mut c,
        &host,
        "map 0x100000 0x1000 0x7f0000000000 => ok
         map 0xfee00000 0x1000 0x7f0000000000 bar => EINVAL
         map 0x100000 0x1000 0x7f0000000000 bar => EEXIST
         map 0x200000 0x1000 0x7f0000000800 bar => EINVAL
         map 0x200000 0 0x7f0000000000 bar => EINVAL
         map 0x200000 0x1000 0x7f0000000000 - bar => EINVAL
         map 0x200000 0x1000 0x7f0000000000 bar => EFAULT",
    );
    assert_eq!(c.mapping_count(), 1);
    assert_eq!(
        c.map_backed(0x20_0000, HOST, 0x1000, Access::RW, Backing::Bar),
        Err(MapError::Unpinnable)
    );
    assert_eq!(MapError::Unpinnable.errno(), Errno::EFAULT);
}

/// With no domain nothing is pinned: the BAR map is accepted (and may be copied), and
/// the attach that would pin it fails with EFAULT, changing nothing.
#[test]
fn bar_backing_without_a_domain_fails_at_attach() {
    let host = intel39();
    for f in [Flavour::Iommufd, Flavour::CompatType1V2] {
        let mut c = Container::new(cfg(f));
        if f.is_compat() {
            // The compatibility container's IOAS exists once a group was set.
            check(&mut c, &host, "attach 1 => ok\ndetach 1 => ok");
        }
        check(
            &mut c,
            &host,
            "map 0x100000 0x1000 0x7f0000000000 bar => ok",
        );
        assert_eq!(c.backing_at(0x10_0000), Some(Backing::Bar));
        let before = c.clone();
        check(&mut c, &host, "attach 1 => EFAULT");
        assert_eq!(c, before);
        check(
            &mut c,
            &host,
            "unmap 0x100000 0x1000 => ok 0x1000
             attach 1 => ok",
        );
    }
    // A copy of a BAR area shares its pages: it is BAR-backed too.
    let mut c = Container::new(cfg(Flavour::Iommufd));
    check(
        &mut c,
        &host,
        "map 0x100000 0x1000 0x7f0000000000 bar => ok
         copy 0x100000 0x1000 0x200000 => ok 0x200000
         unmap 0x100000 0x1000 => ok 0x1000
         attach 1 => EFAULT",
    );
    assert_eq!(c.backing_at(0x20_0000), Some(Backing::Bar));
    assert_eq!(c.backing_at(0x30_0000), None);
}

/// type1 keeps a BAR mapping across a later attach (vfio_iommu_replay maps its PFNs).
#[test]
fn type1_bar_mapping_survives_attach() {
    let host = intel39();
    let mut c = Container::new(cfg(Flavour::Type1V2));
    check(
        &mut c,
        &host,
        "attach 1 => ok
         map 0x100000 0x1000 0x7f0000000000 bar => ok
         attach 2 => ok
         unmap 0x100000 0x1000 => ok 0x1000",
    );
}

// ---------------------------------------------------------------------------------
// 4. IOVA_RANGES with a capacity
// ---------------------------------------------------------------------------------

#[test]
fn iova_ranges_capacity_emsgsize() {
    let (mut c, host) = ioas_with_group_1();
    check(
        &mut c,
        &host,
        "iova-ranges 0 => EMSGSIZE need 2 got - align 0x1000
         iova-ranges 1 => EMSGSIZE need 2 got 0x0-0xfedfffff align 0x1000
         iova-ranges 2 => ok 0x0-0xfedfffff,0xfef00000-0x7fffffffff align 0x1000
         iova-ranges 4096 => ok 0x0-0xfedfffff,0xfef00000-0x7fffffffff align 0x1000
         iova-ranges => ok 0x0-0xfedfffff,0xfef00000-0x7fffffffff align 0x1000",
    );
    // No device: one range, the whole space, alignment 1.
    let mut c = Container::new(cfg(Flavour::Iommufd));
    check(
        &mut c,
        &host,
        "iova-ranges 0 => EMSGSIZE need 1 got - align 0x1
         iova-ranges 1 => ok 0x0-0xffffffffffffffff align 0x1",
    );
    for f in [Flavour::Type1V2, Flavour::CompatType1V2] {
        let mut c = Container::new(cfg(f));
        check(&mut c, &host, "attach 1 => ok\niova-ranges 0 => ENOTTY");
    }
}

// ---------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Map(u64, u64, bool, bool),
    Copy(u64, u64, Option<u64>, bool),
    Unmap(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0x1000u64;
    prop_oneof![
        (
            0u64..48,
            1u64..6,
            any::<bool>(),
            proptest::bool::weighted(0.2)
        )
            .prop_map(move |(p, n, w, bar)| Op::Map(
                0x10_0000 + p * page,
                n * page,
                w,
                bar
            )),
        (
            0u64..48,
            1u64..8,
            proptest::option::weighted(0.8, 0u64..64),
            any::<bool>()
        )
            .prop_map(move |(p, n, d, w)| Op::Copy(
                0x10_0000 + p * page,
                n * page,
                d.map(|d| 0x10_0000 + d * page),
                w
            )),
        (0u64..48, 1u64..6).prop_map(move |(p, n)| Op::Unmap(0x10_0000 + p * page, n * page)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// On an IOAS with no domain (BAR maps allowed): a refused copy or map changes
    /// nothing; a successful copy translates, byte for byte, as its source did before
    /// (the same pages), and its access is the one asked for.
    #[test]
    fn copy_is_atomic_and_shares_the_source_pages(
        ops in proptest::collection::vec(op(), 1..40),
        attached in any::<bool>(),
    ) {
        let host = intel39();
        let mut c = Container::new(cfg(Flavour::Iommufd));
        if attached {
            c.attach(&host, 1).unwrap();
        }
        for o in ops {
            let before = c.clone();
            match o {
                Op::Map(iova, size, w, bar) => {
                    let access = if w { Access::RW } else { Access::READ };
                    let backing = if bar { Backing::Bar } else { Backing::Memory };
                    if c.map_backed(iova, HOST + iova, size, access, backing).is_err() {
                        prop_assert_eq!(&c, &before);
                    }
                }
                Op::Copy(src, len, dst, w) => {
                    let access = if w { Access::RW } else { Access::READ };
                    match c.copy(src, len, dst, access) {
                        Err(_) => prop_assert_eq!(&c, &before),
                        Ok(d) => {
                            if let Some(want) = dst {
                                prop_assert_eq!(d, want);
                            }
                            for off in (0..len).step_by(0x800) {
                                let src_map = before.mapping_at(src + off).unwrap();
                                let src_host = src_map.host_addr + (src + off - src_map.iova.first());
                                let m = c.mapping_at(d + off).unwrap();
                                prop_assert_eq!(m.host_addr + (d + off - m.iova.first()), src_host);
                                prop_assert_eq!(m.access, access);
                                prop_assert_eq!(c.backing_at(d + off), before.backing_at(src + off));
                                if attached {
                                    prop_assert_eq!(c.translate(d + off, Access::READ), before.translate(src + off, Access::READ));
                                }
                            }
                            prop_assert!(c.mapping_count() > before.mapping_count());
                        }
                    }
                }
                Op::Unmap(iova, size) => {
                    let _ = c.unmap(iova, size);
                }
            }
            // No BAR-backed area ever sits in an IOAS with a domain.
            if c.domain().is_some() {
                prop_assert!(c.mappings().all(|m| c.backing_at(m.iova.first()) == Some(Backing::Memory)));
            }
        }
    }
}
