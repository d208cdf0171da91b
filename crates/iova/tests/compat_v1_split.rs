//! The compatibility container in type1 (v1) mode disables large pages
//! (`iopt_disable_large_pages`), so an unmap in the middle of a 2 MiB-aligned area cuts
//! it: the page table must hold small pages there, or the cut page would still
//! translate (found by the `trace` fuzz target: the page table kept 4 KiB more than the
//! mappings).

mod common;

use common::intel39;
use iova::container::{Container, ContainerConfig, Flavour};
use iova::dma::{Access, DmaSpace};

#[test]
fn a_cut_in_a_large_aligned_area_stops_translating() {
    for flavour in [
        Flavour::CompatType1V1,
        Flavour::CompatType1V2,
        Flavour::Iommufd,
    ] {
        let mut c = Container::new(ContainerConfig::with_flavour(flavour));
        c.attach(&intel39(), 1).unwrap();
        c.map(0, 0x4000_0000, 0x20_0000, Access::RW).unwrap();
        let out = c.unmap(0x10_1000, 0x1000);
        let bytes: u128 = c.mappings().map(|m| m.iova.len()).sum();
        let table = c.page_table().expect("a page table").mapped_bytes();
        assert_eq!(table, bytes, "{flavour:?}: table and mappings");
        if flavour == Flavour::CompatType1V1 {
            // v1 cuts the area and unmaps the one page.
            assert_eq!(out, Ok(0x1000), "{flavour:?}");
            assert!(c.translate(0x10_1000, Access::READ).is_err(), "{flavour:?}");
            assert_eq!(c.translate(0x10_0fff, Access::READ), Ok(0x4010_0fff));
            assert_eq!(c.translate(0x10_2000, Access::READ), Ok(0x4010_2000));
            assert_eq!(c.mappings().count(), 2);
        } else {
            // v2 and iommufd refuse to cut an area: nothing changes.
            assert!(out.is_err(), "{flavour:?}: {out:?}");
            assert_eq!(c.translate(0x10_1000, Access::READ), Ok(0x4010_1000));
            assert_eq!(c.mappings().count(), 1);
        }
    }
}
