//! `check`, `plan` and the virtio-iommu export on hosts built in code.

#[path = "guest_support.rs"]
mod support;

use iova::host::{GroupIssue, ReservedKind};
use iova::range::IovaRange;
use iova_guest::virtio_iommu::{self, ResvSubtype};
use iova_guest::{
    CheckError, ConflictReason, Container, CpuVendor, GuestConfig, Layout, PlanInput, Preset,
    Section, SectionKind, check, plan,
};
use support::{GIB, HT, MSI};

const NIC: &str = "0000:03:00.0";
const AMD_NIC: &str = "0000:41:00.0";

fn q35(mem: u64, v: CpuVendor) -> Layout {
    Preset::QemuQ35.layout(&GuestConfig::new(mem, v)).unwrap()
}

#[test]
fn q35_600g_on_a_39_bit_host_fails_above_512g() {
    let host = support::intel39();
    let r = check(&q35(600 * GIB, CpuVendor::Intel), &host, &[NIC]).unwrap();
    assert!(!r.ok);
    let fatal: Vec<_> = r.fatal().collect();
    assert_eq!(fatal.len(), 1, "{fatal:?}");
    let c = fatal[0];
    assert_eq!(c.section, "ram-above-4g");
    // 598 GiB above 4 GiB ends at 602 GiB - 1; the 39-bit aperture ends at 512 GiB - 1.
    assert_eq!(c.range, IovaRange::new(1 << 39, 602 * GIB - 1).unwrap());
    match &c.reason {
        ConflictReason::BeyondAperture { unit, width, .. } => {
            assert_eq!(unit.as_deref(), Some("dmar0"));
            assert_eq!(*width, Some(39));
        }
        other => panic!("{other:?}"),
    }
    assert!(c.reason.to_string().contains("39-bit"));
    // The 64-bit PCI hole is past the aperture too, but only a warning.
    assert!(
        r.conflicts
            .iter()
            .any(|c| c.section == "pci-hole64" && !c.fatal)
    );

    let p = plan(
        &PlanInput::Preset(
            Preset::QemuQ35,
            GuestConfig::new(600 * GIB, CpuVendor::Intel),
        ),
        &r.container,
    );
    assert!(p.feasible);
    let cfg = p.config.unwrap();
    // All RAM above 4 GiB must end by 512 GiB: 2 GiB low + 508 GiB high.
    assert_eq!(cfg.memory, 510 * GIB);
    assert!(p.options.iter().any(|o| o == "-m 510G"), "{:?}", p.options);
    assert!(
        p.changes.iter().any(|c| c.contains("90 GiB")),
        "{:?}",
        p.changes
    );
    // Without p2p warnings the 32 GiB hole must end by 512 GiB too:
    // ROUND_UP(4G + above, 1G) + 32G <= 512G -> above <= 476G -> 478 GiB.
    let (clean, opts) = p.without_warnings.clone().unwrap();
    assert_eq!(clean.memory, 478 * GIB);
    assert!(opts.iter().any(|o| o == "-m 478G"));
    let again = check(p.layout.as_ref().unwrap(), &host, &[NIC]).unwrap();
    assert!(again.ok, "{:?}", again.conflicts);
}

#[test]
fn clean_case_passes() {
    let host = support::intel39();
    let r = check(&q35(8 * GIB, CpuVendor::Intel), &host, &[NIC]).unwrap();
    assert!(r.ok, "{:?}", r.conflicts);
    assert!(r.conflicts.is_empty());
    assert!(r.blockers.is_empty());
    let p = plan(
        &PlanInput::Preset(Preset::QemuQ35, GuestConfig::new(8 * GIB, CpuVendor::Intel)),
        &r.container,
    );
    assert!(p.changes.is_empty());
    assert_eq!(p.memory_planned, u128::from(8 * GIB));
}

#[test]
fn amd_1t_q35_is_relocated_and_fits() {
    let host = support::amd();
    assert_eq!(CpuVendor::of_host(&host), Some(CpuVendor::Amd));
    let l = q35(1 << 40, CpuVendor::Amd);
    assert_eq!(l.section("ram-above-4g").unwrap().range.first(), 1 << 40);
    let r = check(&l, &host, &[AMD_NIC]).unwrap();
    assert!(r.ok, "{:?}", r.conflicts);
}

#[test]
fn amd_1t_fails_inside_the_ht_window_without_relocation() {
    let host = support::amd();
    for layout in [
        Preset::CloudHypervisor
            .layout(&GuestConfig::new(1 << 40, CpuVendor::Amd))
            .unwrap(),
        Preset::Crosvm
            .layout(&GuestConfig::new(1 << 40, CpuVendor::Amd))
            .unwrap(),
        q35(1 << 40, CpuVendor::Intel),
    ] {
        let r = check(&layout, &host, &[AMD_NIC]).unwrap();
        assert!(!r.ok, "{}", layout.name);
        let c = r.fatal().next().unwrap();
        assert_eq!(c.section, "ram-above-4g");
        assert_eq!(
            c.range,
            IovaRange::new(HT.0, HT.1).unwrap(),
            "{}",
            layout.name
        );
        match c.reason {
            ConflictReason::Reserved {
                group, region_kind, ..
            } => {
                assert_eq!(group, 20);
                assert_eq!(region_kind, ReservedKind::Reserved);
            }
            ref o => panic!("{o:?}"),
        }
    }
}

#[test]
fn plans_for_the_amd_host() {
    let host = support::amd();
    let c = Container::of_devices(&host, &[AMD_NIC]).unwrap();
    // cloud-hypervisor cannot skip the window: cap so RAM above 4 GiB ends at the
    // window's start (1012 GiB): 3 GiB low + 1008 GiB high.
    let p = plan(
        &PlanInput::Preset(
            Preset::CloudHypervisor,
            GuestConfig::new(1 << 40, CpuVendor::Amd),
        ),
        &c,
    );
    assert_eq!(p.config.unwrap().memory, 1011 * GIB);
    assert!(
        p.notes.iter().any(|n| n.contains("HyperTransport")),
        "{:?}",
        p.notes
    );
    // q35 with an Intel vCPU: switching to an AMD vCPU keeps all the RAM.
    let p = plan(
        &PlanInput::Preset(Preset::QemuQ35, GuestConfig::new(1 << 40, CpuVendor::Intel)),
        &c,
    );
    let cfg = p.config.unwrap();
    assert_eq!(cfg.memory, 1 << 40);
    assert_eq!(cfg.cpu_vendor, CpuVendor::Amd);
    assert!(p.notes.iter().any(|n| n.contains("physical address bits")));
}

#[test]
fn direct_rmrr_is_a_blocker_and_identity_domain_a_note() {
    let host = support::intel39();
    let l = q35(4 * GIB, CpuVendor::Intel);
    let r = check(&l, &host, &["0000:00:14.0"]).unwrap();
    assert!(!r.ok);
    assert!(matches!(
        r.blockers[0].issue,
        GroupIssue::DirectRegion { .. }
    ));
    assert_eq!(r.blockers[0].devices, vec!["0000:00:14.0".to_owned()]);
    // Group 9 (the GPU) is identity, as on a host booted with iommu=pt: VFIO claims
    // it and installs its own domain.
    let r = check(&l, &host, &["00:02.0"]).unwrap();
    assert!(r.blockers.is_empty(), "{:?}", r.blockers);
    assert!(
        r.notes.iter().any(|n| n.contains("identity (iommu=pt)")),
        "{:?}",
        r.notes
    );
    // The direct RMRR sits in guest RAM: it is a fatal conflict as well.
    let r = check(&l, &host, &["0000:00:14.0", NIC]).unwrap();
    assert!(
        r.fatal()
            .any(|c| c.range == IovaRange::new(0x7c00_0000, 0x7c0f_ffff).unwrap())
    );
    assert_eq!(r.container.groups, vec![7, 12]);
}

#[test]
fn direct_relaxable_regions_do_not_conflict() {
    let host = support::intel39();
    let r = check(&q35(4 * GIB, CpuVendor::Intel), &host, &["0000:00:1f.0"]).unwrap();
    assert!(r.ok, "{:?}", r.conflicts);
}

#[test]
fn unknown_devices_are_input_errors() {
    let host = support::intel39();
    let e = check(&q35(GIB, CpuVendor::Intel), &host, &["0000:99:00.0"]).unwrap_err();
    assert!(matches!(e, CheckError::UnknownDevice { .. }));
    assert!(e.to_string().contains("0000:99:00.0"));
    let none: [&str; 0] = [];
    assert_eq!(
        check(&q35(GIB, CpuVendor::Intel), &host, &none).unwrap_err(),
        CheckError::NoDevices
    );
}

#[test]
fn ram_over_the_msi_window_and_misalignment() {
    let host = support::intel39();
    let l = Layout::new(
        "t",
        vec![
            Section::new(
                "ram",
                SectionKind::Ram,
                IovaRange::new(0, (1 << 32) - 1).unwrap(),
            ),
            Section::new(
                "odd",
                SectionKind::Rom,
                IovaRange::new(0x1_0000_0800, 0x1_0000_17ff).unwrap(),
            ),
        ],
    )
    .unwrap();
    let r = check(&l, &host, &[NIC]).unwrap();
    let msi = r.conflicts.iter().find(|c| c.section == "ram").unwrap();
    assert_eq!(msi.range, IovaRange::new(MSI.0, MSI.1).unwrap());
    assert!(msi.reason.to_string().contains("msi"));
    let odd: Vec<_> = r.conflicts.iter().filter(|c| c.section == "odd").collect();
    assert_eq!(odd.len(), 2);
    assert_eq!(
        odd[0].range,
        IovaRange::new(0x1_0000_0800, 0x1_0000_0fff).unwrap()
    );
    assert_eq!(
        odd[1].range,
        IovaRange::new(0x1_0000_1000, 0x1_0000_17ff).unwrap()
    );
    assert!(
        odd.iter()
            .all(|c| c.fatal && matches!(c.reason, ConflictReason::Misaligned { page_size: 4096 }))
    );
}

#[test]
fn two_units_intersect_their_apertures() {
    let mut host = support::intel39();
    let amd = support::amd();
    host.iommus.extend(amd.iommus);
    host.groups.extend(amd.groups);
    host.devices.extend(amd.devices);
    let c = Container::of_devices(&host, &[NIC, AMD_NIC]).unwrap();
    assert_eq!(
        c.valid.span(),
        Some(IovaRange::new(0, (1 << 39) - 1).unwrap())
    );
    assert_eq!(c.apertures.len(), 2);
}

#[test]
fn virtio_iommu_export_for_the_39_bit_host() {
    let host = support::intel39();
    let c = Container::of_devices(&host, &[NIC]).unwrap();
    let cfg = virtio_iommu::export(&c).unwrap();
    assert_eq!(cfg.input_range, IovaRange::new(0, (1 << 39) - 1).unwrap());
    assert_eq!(cfg.page_size_mask, 0x4020_1000);
    let msi: Vec<_> = cfg
        .reserved
        .iter()
        .filter(|r| r.subtype == ResvSubtype::Msi)
        .collect();
    assert_eq!(msi.len(), 1);
    assert_eq!((msi[0].start, msi[0].end), MSI);
    assert!(
        cfg.reserved
            .iter()
            .any(|r| r.subtype == ResvSubtype::Reserved && r.start == 1 << 39 && r.end == u64::MAX)
    );
    assert_eq!(ResvSubtype::Msi.value(), 1);
    // Reserved regions and valid ranges partition the space.
    let resv = virtio_iommu::reserved_set(&cfg);
    assert!(resv.intersection(&c.valid).is_empty());
    assert_eq!(resv.union(&c.valid), iova::IovaSet::full());
}

#[test]
fn conflict_reason_kind_is_the_json_tag() {
    use iova::range::IovaRange;
    use iova_guest::ConflictReason;
    let r = IovaRange::new(0, 0xfff).unwrap();
    let all = [
        ConflictReason::BeyondAperture {
            unit: None,
            aperture: r,
            width: Some(39),
        },
        ConflictReason::Reserved {
            group: 1,
            region: r,
            region_kind: iova::host::ReservedKind::Msi,
        },
        ConflictReason::Misaligned { page_size: 4096 },
    ];
    for c in all {
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["kind"], c.kind(), "{c:?}");
    }
}
