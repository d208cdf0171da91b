//! Locked-memory accounting (docs/semantics.md §3.5): pinning charges whole CPU pages
//! against RLIMIT_MEMLOCK; over it a map (or iommufd's first attach) fails with ENOMEM
//! and changes nothing. Expectations from the kernel functions cited there
//! (`vfio_pin_pages_remote` / `__account_locked_vm` for type1, `iopt_alloc_pages` /
//! `incr_user_locked_vm` / `update_mm_locked_vm` for iommufd), and a reference model
//! of the charge: the sum of the pages of every plain mapping.

mod common;

use common::intel39;
use iova::container::{AttachError, Container, ContainerConfig, Flavour, KernelVersion, Memlock};
use iova::dma::{Access, Backing, DmaSpace, Errno};
use proptest::prelude::*;

const HOST: u64 = 0x7f00_0000_0000;
const PG: u64 = 0x1000;

fn limit(bytes: u64) -> Memlock {
    Memlock {
        limit: Some(bytes),
        cap_ipc_lock: false,
        already_locked: 0,
    }
}

fn ready(flavour: Flavour, m: Memlock) -> Container {
    let mut c = Container::new(
        ContainerConfig::with_flavour(flavour)
            .kernel(KernelVersion::V6_12)
            .memlock(m),
    );
    c.attach(&intel39(), 1).unwrap();
    c
}

/// A map that fails must leave the container exactly as it was.
fn map(c: &mut Container, iova: u64, host: u64, size: u64) -> Result<(), Errno> {
    let before = c.clone();
    let r = c.map(iova, host, size, Access::RW).map_err(|e| e.errno());
    if r.is_err() {
        assert_eq!(*c, before, "a failed map changed the container");
    }
    r
}

#[test]
fn every_flavour_stops_at_the_limit_in_whole_pages() {
    for f in Flavour::ALL {
        // 16 pages and a half: the kernel rounds the limit down (rlimit >> PAGE_SHIFT).
        let mut c = ready(f, limit(16 * PG + PG / 2));
        assert_eq!(map(&mut c, 0x10_0000, HOST, 12 * PG), Ok(()), "{f:?}");
        assert_eq!(c.locked_bytes(), u128::from(12 * PG), "{f:?}");
        assert_eq!(map(&mut c, 0x20_0000, HOST, 4 * PG), Ok(()), "{f:?}");
        // One page more than the 16 the limit allows.
        assert_eq!(
            map(&mut c, 0x30_0000, HOST + 0x10_0000, PG),
            Err(Errno::ENOMEM),
            "{f:?}"
        );
        // EEXIST still wins over ENOMEM: the overlap is checked before pinning.
        assert_eq!(
            map(&mut c, 0x10_0000, HOST, PG),
            Err(Errno::EEXIST),
            "{f:?}"
        );
        // Unmapping uncharges; the page then fits.
        assert_eq!(
            c.unmap(0x20_0000, 4 * PG).map_err(|e| e.errno()),
            Ok(u128::from(4 * PG))
        );
        assert_eq!(c.locked_bytes(), u128::from(12 * PG), "{f:?}");
        assert_eq!(
            map(&mut c, 0x30_0000, HOST + 0x10_0000, PG),
            Ok(()),
            "{f:?}"
        );
        assert_eq!(
            c.unmap_all().map(|_| ()).map_err(|e| e.errno()),
            Ok(()),
            "{f:?}"
        );
        assert_eq!(c.locked_bytes(), 0, "{f:?}");
    }
}

#[test]
fn the_same_memory_twice_is_charged_twice() {
    // Each vfio_dma (type1) and each IOAS_MAP (iommufd) pins its own pages.
    for f in Flavour::ALL {
        let mut c = ready(f, limit(8 * PG));
        assert_eq!(map(&mut c, 0x10_0000, HOST, 4 * PG), Ok(()));
        assert_eq!(map(&mut c, 0x20_0000, HOST, 4 * PG), Ok(()));
        assert_eq!(
            map(&mut c, 0x30_0000, HOST, PG),
            Err(Errno::ENOMEM),
            "{f:?}"
        );
    }
}

#[test]
fn already_locked_memory_counts() {
    // Other containers of the process (type1) or processes of the user (iommufd).
    for f in Flavour::ALL {
        let mut c = ready(
            f,
            Memlock {
                already_locked: 6 * PG + 1,
                ..limit(10 * PG)
            },
        );
        // 6 pages and a byte already: 7 pages; 3 more fit, 4 do not.
        assert_eq!(
            map(&mut c, 0x10_0000, HOST, 4 * PG),
            Err(Errno::ENOMEM),
            "{f:?}"
        );
        assert_eq!(map(&mut c, 0x10_0000, HOST, 3 * PG), Ok(()), "{f:?}");
    }
}

#[test]
fn cap_ipc_lock_skips_the_check_and_iommufd_does_not_count() {
    for f in Flavour::ALL {
        let mut c = ready(
            f,
            Memlock {
                cap_ipc_lock: true,
                ..limit(PG)
            },
        );
        assert_eq!(map(&mut c, 0x10_0000, HOST, 64 * PG), Ok(()), "{f:?}");
        // type1 still charges locked_vm (only the check is skipped); iommufd uses
        // IOPT_PAGES_ACCOUNT_NONE.
        let want = if f.is_type1() { u128::from(64 * PG) } else { 0 };
        assert_eq!(c.locked_bytes(), want, "{f:?}");
    }
}

#[test]
fn unlimited_and_unmodelled_never_refuse() {
    for m in [
        None,
        Some(Memlock {
            limit: None,
            ..limit(0)
        }),
    ] {
        let mut cfg = ContainerConfig::with_flavour(Flavour::Type1V2);
        cfg.memlock = m;
        let mut c = Container::new(cfg);
        c.attach(&intel39(), 1).unwrap();
        assert_eq!(map(&mut c, 0x10_0000, HOST, 1 << 30), Ok(()));
        assert_eq!(c.locked_bytes(), 1 << 30);
    }
}

#[test]
fn a_device_bar_is_not_charged() {
    // type1 maps a BAR mmap (PFNMAP pages have no struct page: is_invalid_reserved_pfn).
    let mut c = ready(Flavour::Type1V2, limit(PG));
    assert_eq!(
        c.map_backed(0x10_0000, HOST, 16 * PG, Access::RW, Backing::Bar)
            .map_err(|e| e.errno()),
        Ok(())
    );
    assert_eq!(c.locked_bytes(), 0);
    assert_eq!(
        c.unmap(0x10_0000, 16 * PG).map_err(|e| e.errno()),
        Ok(u128::from(16 * PG))
    );
    assert_eq!(c.locked_bytes(), 0);
}

#[test]
fn an_ioas_copy_shares_the_pages() {
    let mut c = ready(Flavour::Iommufd, limit(4 * PG));
    assert_eq!(map(&mut c, 0x10_0000, HOST, 4 * PG), Ok(()));
    let dst = c
        .copy(0x10_0000, 4 * PG, Some(0x20_0000), Access::RW)
        .map_err(|e| e.errno());
    assert_eq!(dst, Ok(0x20_0000));
    assert_eq!(c.locked_bytes(), u128::from(4 * PG));
    assert_eq!(
        c.unmap(0x20_0000, 4 * PG).map_err(|e| e.errno()),
        Ok(u128::from(4 * PG))
    );
    assert_eq!(c.locked_bytes(), u128::from(4 * PG));
}

#[test]
fn iommufd_pins_when_the_first_domain_comes() {
    let cfg = ContainerConfig::with_flavour(Flavour::Iommufd)
        .kernel(KernelVersion::V6_12)
        .memlock(limit(4 * PG));
    let mut c = Container::new(cfg);
    // No domain: nothing is pinned, nothing charged.
    assert_eq!(map(&mut c, 0x10_0000, HOST, 8 * PG), Ok(()));
    assert_eq!(c.locked_bytes(), 0);
    // The first domain pins all 8 pages: over the limit, refused whole.
    let before = c.clone();
    let e = c.attach(&intel39(), 1).unwrap_err();
    assert_eq!(e, AttachError::NoMemory { pages: 8 });
    assert_eq!(e.errno(), Errno::ENOMEM);
    assert_eq!(c, before);
    // Unmap half: the fill fits; detaching the last domain unpins.
    assert_eq!(
        c.unmap(0x10_0000, 8 * PG)
            .map(|_| ())
            .map_err(|e| e.errno()),
        Ok(())
    );
    assert_eq!(map(&mut c, 0x10_0000, HOST, 4 * PG), Ok(()));
    c.attach(&intel39(), 1).unwrap();
    assert_eq!(c.locked_bytes(), u128::from(4 * PG));
    c.detach(1).unwrap();
    assert_eq!(c.locked_bytes(), 0);
    assert_eq!(c.mapping_count(), 1, "the IOAS keeps its areas");
}

#[test]
fn type1_detaching_the_last_group_unpins_everything() {
    let mut c = ready(Flavour::Type1V2, limit(64 * PG));
    assert_eq!(map(&mut c, 0x10_0000, HOST, 8 * PG), Ok(()));
    c.detach(1).unwrap();
    assert_eq!(c.locked_bytes(), 0);
}

/// One operation of the property test.
#[derive(Debug, Clone)]
enum Op {
    Map { slot: u8, pages: u8, host_page: u8 },
    Unmap { slot: u8 },
    UnmapAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..16, 1u8..9, 0u8..64).prop_map(|(slot, pages, host_page)| Op::Map { slot, pages, host_page }),
        3 => (0u8..16).prop_map(|slot| Op::Unmap { slot }),
        1 => Just(Op::UnmapAll),
    ]
}

proptest! {
    /// Against a reference: the charge is the sum of the pages of the live mappings;
    /// a map of a free slot succeeds exactly when that sum plus its pages stays within
    /// the limit; a refused map changes nothing.
    #[test]
    fn the_charge_is_the_sum_of_the_mappings(
        flavour in prop::sample::select(Flavour::ALL.to_vec()),
        limit_pages in 0u64..40,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut c = ready(flavour, limit(limit_pages * PG));
        // slot -> pages of its live mapping
        let mut live: [u64; 16] = [0; 16];
        for o in ops {
            match o {
                Op::Map { slot, pages, host_page } => {
                    let s = usize::from(slot);
                    let iova = 0x100_0000 + u64::from(slot) * 0x10_0000;
                    let n = u64::from(pages);
                    let got = map(&mut c, iova, HOST + u64::from(host_page) * PG, n * PG);
                    let want = if live[s] != 0 {
                        Err(Errno::EEXIST)
                    } else if live.iter().sum::<u64>() + n > limit_pages {
                        Err(Errno::ENOMEM)
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(got, want);
                    if got.is_ok() {
                        live[s] = n;
                    }
                }
                Op::Unmap { slot } => {
                    let s = usize::from(slot);
                    if live[s] != 0 {
                        let iova = 0x100_0000 + u64::from(slot) * 0x10_0000;
                        prop_assert!(c.unmap(iova, live[s] * PG).is_ok());
                        live[s] = 0;
                    }
                }
                Op::UnmapAll => {
                    prop_assert!(c.unmap_all().is_ok());
                    live = [0; 16];
                }
            }
            prop_assert_eq!(c.locked_bytes(), u128::from(live.iter().sum::<u64>() * PG));
        }
    }
}
