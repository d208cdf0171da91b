//! What the targets share: small hosts built in code and the container invariants
//! every target checks after every operation.

use iova::container::{Container, ContainerConfig, Flavour};
use iova::dma::Access;
use iova::host::{DomainType, Group, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
use iova::range::IovaRange;

/// A group of `unit` with the given reserved regions.
pub fn group(id: u32, unit: &str, reserved: &[(u64, u64, ReservedKind)]) -> Group {
    let mut g = Group::new(id);
    g.iommu = Some(unit.to_owned());
    g.devices = vec![format!("0000:{id:02x}:00.0")];
    g.reserved_regions = reserved
        .iter()
        .filter_map(|&(a, b, kind)| {
            Some(ReservedRegion {
                range: IovaRange::new(a, b).ok()?,
                kind,
            })
        })
        .collect();
    g
}

/// A host with the shapes real machines have: a 39-bit VT-d unit with the MSI window,
/// a 48-bit one, a unit of unknown aperture, an ARM 64K-granule unit, a unit without
/// interrupt remapping, a bypass group and a group with a direct RMRR.
pub fn mixed_host() -> Host {
    let msi = (0xfee0_0000, 0xfeef_ffff, ReservedKind::Msi);
    let mut bypass = group(5, "dmar1", &[msi]);
    bypass.domain_type = DomainType::Identity;
    let mut h = Host {
        iommus: vec![
            IommuUnit::new("dmar0", IommuVendor::Intel)
                .with_address_width(39)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
            IommuUnit::new("dmar1", IommuVendor::Intel)
                .with_address_width(48)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
            IommuUnit::new("ivhd0", IommuVendor::Amd),
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
            group(
                1,
                "dmar0",
                &[msi, (0, 0xff_ffff, ReservedKind::DirectRelaxable)],
            ),
            group(2, "dmar1", &[msi]),
            group(
                3,
                "ivhd0",
                &[(0xfd_0000_0000, 0xff_ffff_ffff, ReservedKind::Reserved)],
            ),
            group(4, "noir", &[msi]),
            bypass,
            group(6, "smmu64k", &[(0x800_0000, 0x80f_ffff, ReservedKind::Msi)]),
            group(
                7,
                "dmar0",
                &[msi, (0xe000_0000, 0xe00f_ffff, ReservedKind::Direct)],
            ),
        ],
        ..Host::default()
    };
    // Each group's device, so commands that take device names find them.
    h.devices = h
        .groups
        .iter()
        .flat_map(|g| {
            g.devices.iter().map(|d| {
                let mut dev = iova::host::Device::new(d.clone());
                dev.group = Some(g.id);
                dev.iommu = g.iommu.clone();
                dev
            })
        })
        .collect();
    h
}

/// Every flavour (type1 v1/v2, iommufd, the two compatibility-container flavours).
pub const FLAVOURS: [Flavour; 5] = Flavour::ALL;

/// A container of `flavour`, with or without every unsafe permission.
pub fn config(flavour: Flavour, unsafe_ok: bool) -> ContainerConfig {
    let mut c = ContainerConfig::with_flavour(flavour);
    c.domain.allow_unsafe_direct = unsafe_ok;
    c.domain.allow_unsafe_interrupts = unsafe_ok;
    c
}

/// What must hold after any operation, failed or not: mappings are disjoint, inside
/// the valid IOVAs, the page table holds exactly their bytes and translates their
/// edges to the right host addresses (when there is a page table: an IOAS with no
/// domain has none and translates nothing), and nothing is mapped while the container
/// is not ready.
pub fn check_invariants(c: &Container) {
    let table = c.page_table().is_some();
    let valid = c.valid_iovas();
    let mut prev_last: Option<u64> = None;
    let mut bytes = 0u128;
    for m in c.mappings() {
        if let Some(p) = prev_last {
            assert!(m.iova.first() > p, "mappings overlap at {}", m.iova);
        }
        prev_last = Some(m.iova.last());
        assert!(
            valid.contains_range(&m.iova),
            "{} outside {valid:?}",
            m.iova
        );
        bytes += m.iova.len();
        if !table {
            assert!(c.translate(m.iova.first(), m.access).is_err());
            continue;
        }
        for a in [m.iova.first(), m.iova.last()] {
            let want = m.host_addr.wrapping_add(a - m.iova.first());
            assert_eq!(c.translate(a, m.access), Ok(want), "translate {a:#x}");
        }
        if m.access != Access::RW {
            let other = if m.access.read {
                Access::WRITE
            } else {
                Access::READ
            };
            assert!(c.translate(m.iova.first(), other).is_err());
        }
    }
    match c.page_table() {
        Some(t) => assert_eq!(t.mapped_bytes(), bytes),
        None => assert!(bytes == 0 || c.config().flavour().is_iommufd()),
    }
    if !c.is_ready() {
        assert_eq!(c.mapping_count(), 0);
    }
    // Just outside every mapping: faults unless another mapping is there.
    for m in c.mappings() {
        for a in [m.iova.first().checked_sub(1), m.iova.last().checked_add(1)]
            .into_iter()
            .flatten()
        {
            if c.mapping_at(a).is_none() {
                assert!(c.translate(a, Access::READ).is_err(), "{a:#x} translates");
            }
        }
    }
}
