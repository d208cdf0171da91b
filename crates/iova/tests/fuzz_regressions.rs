//! Cases the fuzz targets found, each as a named test of the container itself (the
//! raw inputs are replayed by `crates/iova-fuzzing/tests/replay.rs`). Expected answers
//! come from the kernel source named in each test, not from the code under test.

use iova::container::{Container, ContainerConfig, Flavour, KernelVersion};
use iova::dma::{Access, DmaSpace, Errno};

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
