//! Cases the fuzz targets found, each as a named test of the container itself (the
//! raw inputs are replayed by `crates/iova-fuzzing/tests/replay.rs`). Expected answers
//! come from the kernel source named in each test, not from the code under test.

use iova::container::{Container, ContainerConfig, Flavour, KernelVersion};
use iova::dma::{Access, DmaSpace, Errno};
use iova::host::{Group, Host, IommuUnit, IommuVendor};

/// Maps, and on failure checks the container is exactly as before.
fn map(c: &mut Container, iova: u64, host: u64, size: u64, access: Access) -> Result<(), Errno> {
    let before = c.clone();
    let r = c.map(iova, host, size, access).map_err(|e| e.errno());
    if r.is_err() {
        assert_eq!(*c, before, "a failed map changed the container");
    }
    r
}

/// Issue 27 (`container_diff`, iommufd, 6.12): an IOAS with no domain has an IOVA
/// alignment of 1 (`iopt_init_table`), so areas may start and end inside a CPU page.
/// A fixed-IOVA map is refused with EEXIST when any area meets its range, to the byte
/// (`iopt_check_iova`: `iopt_area_iter_first(iopt, iova, last)`), and allowed when
/// it only shares a page with one. The fuzz harness's reference model searched page
/// by page and answered `Ok` for the second map below; the container was right.
#[test]
fn issue_27_iommufd_sub_page_map_over_an_area_is_eexist() {
    for kernel in [
        KernelVersion::V6_1,
        KernelVersion::V6_12,
        KernelVersion::V6_18,
        KernelVersion::NEWEST,
    ] {
        let mut c = Container::new(ContainerConfig::with_flavour(Flavour::Iommufd).kernel(kernel));
        // The fuzz input's first map: [4 GiB + 0x800, 4 GiB + 0x27ff], write only.
        let host = 16123 * 0x1000 + 0x800;
        assert_eq!(
            map(&mut c, 0x1_0000_0800, host, 0x2000, Access::WRITE),
            Ok(()),
            "{kernel}"
        );
        // Its second: 0x800 bytes at the same IOVA.
        assert_eq!(
            map(&mut c, 0x1_0000_0800, 0x800, 0x800, Access::RW),
            Err(Errno::EEXIST),
            "{kernel}"
        );
        // Meeting only the area's last byte, or its first.
        assert_eq!(
            map(&mut c, 0x1_0000_27ff, 0x7ff, 1, Access::RW),
            Err(Errno::EEXIST),
            "{kernel}"
        );
        assert_eq!(
            map(&mut c, 0x1_0000_0000, 0x0, 0x801, Access::RW),
            Err(Errno::EEXIST),
            "{kernel}"
        );
        // Sharing its first and last pages, but not a byte of the area: allowed.
        assert_eq!(
            map(&mut c, 0x1_0000_0000, 0x0, 0x800, Access::RW),
            Ok(()),
            "{kernel}"
        );
        assert_eq!(
            map(&mut c, 0x1_0000_2800, 0x800, 0x800, Access::READ),
            Ok(()),
            "{kernel}"
        );
        let got: Vec<(u64, u64)> = c
            .mappings()
            .map(|m| (m.iova.first(), m.iova.last()))
            .collect();
        assert_eq!(
            got,
            [
                (0x1_0000_0000, 0x1_0000_07ff),
                (0x1_0000_0800, 0x1_0000_27ff),
                (0x1_0000_2800, 0x1_0000_2fff),
            ],
            "{kernel}"
        );
    }
}

/// A host whose one group may map all of `[0, 2^64-1]` (an IOMMU of unknown aperture,
/// as virtio-iommu reports it), with interrupt remapping.
fn full_space_host() -> Host {
    let mut group = Group::new(3);
    group.iommu = Some("u3".to_owned());
    Host {
        iommus: vec![IommuUnit::new("u3", IommuVendor::Unknown).with_interrupt_remapping(true)],
        groups: vec![group],
        ..Host::default()
    }
}

const LAST_PAGE: u64 = 0xffff_ffff_ffff_f000;

/// The `container_diff` input kept as `fuzz/artifacts/container_diff/crash-8fac094d...`
/// (type1 v2, 6.12): map the last page, then a page at 4 GiB, then
/// `VFIO_DMA_UNMAP_FLAG_ALL`. Before 6.18 `vfio_find_dma_first_node(iommu, 0,
/// U64_MAX)` tests `start < dma->iova + dma->size`, which is `0 < 0` for the
/// last-page mapping: at the root (the first mapping linked) it turns right, finds
/// nothing, and the unmap answers success with 0 bytes, both mappings kept. Linked the
/// other way round, the 4 GiB mapping is the root: the walk starts there and
/// `vfio_dma_do_unmap` follows `rb_next` to the last page (`dma->iova >= iova + size`
/// is false), removing both. The harness's reference model removed everything in both
/// orders; it now stops comparing once a 6.12 type1 container holds a mapping ending at
/// 2^64-1. From 6.18 (inclusive ends) both orders remove both.
#[test]
fn fuzz_type1_6_12_unmap_all_depends_on_which_mapping_is_the_tree_root() {
    let host = full_space_host();
    for flavour in [Flavour::Type1V1, Flavour::Type1V2] {
        for (kernel, last_first, want) in [
            (KernelVersion::V6_12, true, 0u128),
            (KernelVersion::V6_12, false, 0x2000),
            (KernelVersion::V6_18, true, 0x2000),
            (KernelVersion::V6_18, false, 0x2000),
        ] {
            let what = format!("{flavour:?} {kernel} last page first: {last_first}");
            let mut c = Container::new(ContainerConfig::with_flavour(flavour).kernel(kernel));
            c.attach(&host, 3).unwrap();
            let order = if last_first {
                [LAST_PAGE, 0x1_0000_0000]
            } else {
                [0x1_0000_0000, LAST_PAGE]
            };
            for iova in order {
                assert_eq!(
                    map(&mut c, iova, 0x45000, 0x1000, Access::RW),
                    Ok(()),
                    "{what}"
                );
            }
            assert_eq!(c.unmap_all().map_err(|e| e.errno()), Ok(want), "{what}");
            let left = if want == 0 { 2 } else { 0 };
            assert_eq!(c.mapping_count(), left, "{what}");
        }
    }
}
