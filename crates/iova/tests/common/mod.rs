//! Hosts built in code for the container tests.
#![allow(dead_code)]

use iova::host::{DomainType, Group, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
use iova::range::IovaRange;

pub fn r(a: u64, b: u64) -> IovaRange {
    IovaRange::new(a, b).unwrap()
}

pub fn group(id: u32, unit: &str, reserved: &[(u64, u64, ReservedKind)]) -> Group {
    let mut g = Group::new(id);
    g.iommu = Some(unit.to_owned());
    g.reserved_regions = reserved
        .iter()
        .map(|&(a, b, kind)| ReservedRegion {
            range: r(a, b),
            kind,
        })
        .collect();
    g
}

/// The Intel VT-d guest of the vm-spike run with aw-bits=39: aperture 39 bits, MSI
/// window 0xfee00000-0xfeefffff, page sizes 0x40201000, interrupt remapping on.
/// Group 1 is the edu device; group 2 also has the ISA bridge's direct-relaxable RMRR.
pub fn intel39() -> Host {
    let msi = (0xfee0_0000, 0xfeef_ffff, ReservedKind::Msi);
    Host {
        iommus: vec![
            IommuUnit::new("dmar0", IommuVendor::Intel)
                .with_address_width(39)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
        ],
        groups: vec![
            group(1, "dmar0", &[msi]),
            group(
                2,
                "dmar0",
                &[(0, 0xff_ffff, ReservedKind::DirectRelaxable), msi],
            ),
        ],
        ..Host::default()
    }
}

/// A mixed host: a 39-bit and a 48-bit VT-d unit, a unit of unknown aperture, a unit
/// without interrupt remapping, a bypass group, a 64K-granule unit.
pub fn mixed() -> Host {
    let msi = (0xfee0_0000, 0xfeef_ffff, ReservedKind::Msi);
    let mut bypass = group(5, "dmar1", &[msi]);
    bypass.domain_type = DomainType::Identity;
    Host {
        iommus: vec![
            IommuUnit::new("dmar0", IommuVendor::Intel)
                .with_address_width(39)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
            IommuUnit::new("dmar1", IommuVendor::Intel)
                .with_address_width(48)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
            IommuUnit::new("amd0", IommuVendor::Amd),
            IommuUnit::new("noir", IommuVendor::Intel)
                .with_address_width(48)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(false),
            IommuUnit::new("smmu64k", IommuVendor::ArmSmmuV3)
                .with_address_width(48)
                .with_page_sizes(0x2001_0000)
                .with_interrupt_remapping(true),
        ],
        groups: vec![
            group(1, "dmar0", &[msi]),
            group(2, "dmar1", &[msi]),
            group(
                3,
                "amd0",
                &[(0xfd_0000_0000, 0xff_ffff_ffff, ReservedKind::Reserved)],
            ),
            group(4, "noir", &[msi]),
            bypass,
            group(6, "smmu64k", &[(0x800_0000, 0x80f_ffff, ReservedKind::Msi)]),
        ],
        ..Host::default()
    }
}
