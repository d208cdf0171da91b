//! The pseries example host: a sPAPR unit without capability files, and the saved
//! GET_INFO answer read into the group.

use iova::spapr::{SpaprConfig, SpaprVersion};

#[test]
fn pseries_example_host() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hosts/pseries-qemu");
    let host = iova_linux::sysfs::read_host(&root).expect("reads");
    assert_eq!(host.groups.len(), 1);
    let g = &host.groups[0];
    assert_eq!(g.devices, ["0000:00:00.0"]);
    assert_eq!(g.iommu.as_deref(), Some("iommu-phb0000"));
    assert_eq!(
        g.spapr,
        Some(SpaprConfig::qemu_pseries(SpaprVersion::V2).info())
    );
    let v = host.valid_iova_ranges(0).unwrap();
    assert_eq!(
        v.ranges.span().map(|r| (r.first(), r.last())),
        Some((0, 0x3fff_ffff))
    );
}

#[test]
fn a_malformed_saved_answer_names_the_file() {
    let dir = std::env::temp_dir().join(format!("iova-spapr-sysfs-{}", std::process::id()));
    let g = dir.join("kernel/iommu_groups/3");
    std::fs::create_dir_all(g.join("devices")).unwrap();
    std::fs::write(g.join("iova-spapr-tce-info"), "dma32_window_start=zz\n").unwrap();
    // A group without reserved_regions is refused before this (unknown is not "none").
    std::fs::write(g.join("reserved_regions"), "").unwrap();
    let e = iova_linux::sysfs::read_host(&dir).unwrap_err().to_string();
    assert!(e.contains("iova-spapr-tce-info"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
