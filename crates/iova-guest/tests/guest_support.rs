//! Hosts built in code for the guest-layout tests (shared with `#[path]`).
#![allow(dead_code)]

use iova::host::{
    DomainType, Group, Host, HostSettings, IommuUnit, IommuVendor, PGSIZES_4K_2M_1G, ReservedKind,
    ReservedRegion,
};
use iova::range::IovaRange;

pub const MSI: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);
pub const HT: (u64, u64) = (0xfd_0000_0000, 0xff_ffff_ffff);
pub const GIB: u64 = 1 << 30;

pub fn region(first: u64, last: u64, kind: ReservedKind) -> ReservedRegion {
    ReservedRegion {
        range: IovaRange::new(first, last).unwrap(),
        kind,
    }
}

fn device(name: &str, group: u32, unit: &str) -> iova::host::Device {
    let mut d = iova::host::Device::new(name);
    d.group = Some(group);
    d.iommu = Some(unit.to_owned());
    d
}

fn group(id: u32, dev: &str, unit: &str, regions: Vec<ReservedRegion>) -> Group {
    let mut g = Group::new(id);
    g.devices = vec![dev.to_owned()];
    g.iommu = Some(unit.to_owned());
    g.reserved_regions = regions;
    g
}

/// A 39-bit VT-d host like examples/hosts/intel-vtd-39: group 12 is a NIC with the MSI
/// window; group 5 an ISA bridge with a direct-relaxable RMRR; group 7 a USB controller
/// with a direct RMRR; group 9 an identity-domain GPU.
pub fn intel39() -> Host {
    let unit = IommuUnit::new("dmar0", IommuVendor::Intel)
        .with_address_width(39)
        .with_page_sizes(PGSIZES_4K_2M_1G)
        .with_interrupt_remapping(true);
    let msi = region(MSI.0, MSI.1, ReservedKind::Msi);
    let mut gpu = group(9, "0000:00:02.0", "dmar0", vec![msi]);
    gpu.domain_type = DomainType::Identity;
    Host {
        iommus: vec![unit],
        groups: vec![
            group(
                5,
                "0000:00:1f.0",
                "dmar0",
                vec![region(0, 0xff_ffff, ReservedKind::DirectRelaxable), msi],
            ),
            group(
                7,
                "0000:00:14.0",
                "dmar0",
                vec![region(0x7c00_0000, 0x7c0f_ffff, ReservedKind::Direct), msi],
            ),
            gpu,
            group(12, "0000:03:00.0", "dmar0", vec![msi]),
        ],
        devices: vec![
            device("0000:00:02.0", 9, "dmar0"),
            device("0000:00:14.0", 7, "dmar0"),
            device("0000:00:1f.0", 5, "dmar0"),
            device("0000:03:00.0", 12, "dmar0"),
        ],
        settings: HostSettings {
            cpu_vendor: Some("intel".to_owned()),
            ..HostSettings::default()
        },
    }
}

/// An AMD host with a 48-bit IOMMU: group 20 (0000:41:00.0) has the MSI window and the
/// HyperTransport reservation.
pub fn amd() -> Host {
    let unit = IommuUnit::new("ivhd0", IommuVendor::Amd)
        .with_address_width(48)
        .with_page_sizes(PGSIZES_4K_2M_1G)
        .with_interrupt_remapping(true);
    Host {
        iommus: vec![unit],
        groups: vec![group(
            20,
            "0000:41:00.0",
            "ivhd0",
            vec![
                region(MSI.0, MSI.1, ReservedKind::Msi),
                region(HT.0, HT.1, ReservedKind::Reserved),
            ],
        )],
        devices: vec![device("0000:41:00.0", 20, "ivhd0")],
        settings: HostSettings {
            cpu_vendor: Some("amd".to_owned()),
            ..HostSettings::default()
        },
    }
}

/// A one-unit, one-group host with the given aperture width, page sizes and regions.
pub fn custom(width: u8, pgsizes: u64, regions: Vec<ReservedRegion>) -> Host {
    let unit = IommuUnit::new("u0", IommuVendor::Unknown)
        .with_address_width(width)
        .with_page_sizes(pgsizes)
        .with_interrupt_remapping(true);
    Host {
        iommus: vec![unit],
        groups: vec![group(1, "0000:01:00.0", "u0", regions)],
        devices: vec![device("0000:01:00.0", 1, "u0")],
        settings: HostSettings::default(),
    }
}
