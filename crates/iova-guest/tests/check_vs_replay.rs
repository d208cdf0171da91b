//! The two front doors agree: `check`'s verdict on a layout equals what replaying that
//! layout's DMA maps on the simulated container answers, for random hosts, devices and
//! layouts. Both derive from `iova::domain`; this test is what keeps them from drifting.
//!
//! For every random case:
//! - attaching the devices' groups to a type1v2 container fails exactly when `check`
//!   reports a blocker;
//! - when it succeeds, each DMA-mapped section maps (IOVA = guest-physical address,
//!   host address = IOVA) exactly when `check` reports no conflict for it;
//! - `check` says OK exactly when the attach and every fatal section's map succeed.

use iova::container::{Container, ContainerConfig};
use iova::dma::{Access, DmaSpace};
use iova::host::{
    Device, DomainType, Group, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion,
};
use iova::range::IovaRange;
use iova_guest::{Layout, Section, SectionKind, check};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;
/// Sections and reserved regions fall in slots of 2 GiB, so they meet often.
const SLOT: u64 = 2048 * MIB;
const SLOTS: u64 = 48;

#[derive(Debug, Clone)]
struct UnitSpec {
    width: Option<u8>,
    page_sizes: Option<u64>,
    irq: Option<bool>,
}

#[derive(Debug, Clone)]
struct GroupSpec {
    unit: usize,
    identity: bool,
    /// (slot, MiB into the slot, length in MiB, kind index)
    regions: Vec<(u64, u64, u64, u8)>,
}

fn unit_spec() -> impl Strategy<Value = UnitSpec> {
    (
        prop_oneof![Just(None), (30u8..=37).prop_map(Some), Just(Some(64))],
        prop_oneof![
            4 => Just(Some(0x4020_1000u64)),
            2 => Just(Some(0x1000)),
            1 => Just(Some(0x20_0000)),
            1 => Just(Some(0x2001_0000)),
            1 => Just(Some(0x800)),
            1 => Just(Some(0)),
            2 => Just(None),
        ],
        prop_oneof![6 => Just(Some(true)), 1 => Just(Some(false)), 1 => Just(None)],
    )
        .prop_map(|(width, page_sizes, irq)| UnitSpec {
            width,
            page_sizes,
            irq,
        })
}

fn group_spec(units: usize) -> impl Strategy<Value = GroupSpec> {
    (
        0..units,
        prop::bool::weighted(0.05),
        prop::collection::vec((0u64..SLOTS, 0u64..72, 1u64..16, 0u8..8), 0..4),
    )
        .prop_map(|(unit, identity, regions)| GroupSpec {
            unit,
            identity,
            regions,
        })
}

fn kind(i: u8) -> ReservedKind {
    match i {
        0 => ReservedKind::Direct,
        1 => ReservedKind::DirectRelaxable,
        2 | 3 => ReservedKind::Reserved,
        _ => ReservedKind::Msi,
    }
}

fn build_host(units: &[UnitSpec], groups: &[GroupSpec]) -> Host {
    let mut host = Host::default();
    for (i, u) in units.iter().enumerate() {
        let mut unit = IommuUnit::new(format!("dmar{i}"), IommuVendor::Intel);
        if let Some(w) = u.width {
            unit = unit.with_address_width(w);
        }
        unit.page_sizes = u.page_sizes;
        unit.interrupt_remapping = u.irq;
        host.iommus.push(unit);
    }
    for (i, g) in groups.iter().enumerate() {
        let id = u32::try_from(i).unwrap() + 1;
        let dev = format!("0000:0{i}:00.0");
        let mut group = Group::new(id);
        group.iommu = Some(format!("dmar{}", g.unit));
        group.devices.push(dev.clone());
        if g.identity {
            group.domain_type = DomainType::Identity;
        }
        for &(slot, off, len, k) in &g.regions {
            group.reserved_regions.push(ReservedRegion {
                range: IovaRange::from_start_size(slot * SLOT + off * MIB, len * MIB).unwrap(),
                kind: kind(k),
            });
        }
        host.groups.push(group);
        let mut d = Device::new(dev);
        d.group = Some(id);
        host.devices.push(d);
    }
    host
}

/// Up to 8 disjoint sections, at most one a slot, some misaligned by 2 KiB.
fn layout() -> impl Strategy<Value = Layout> {
    prop::collection::btree_map(
        0u64..SLOTS,
        (1u64..=64, 0u8..6, prop::bool::weighted(0.15)),
        1..8,
    )
    .prop_map(|slots| {
        let sections = slots
            .into_iter()
            .map(|(slot, (mib, k, skew))| {
                let start = slot * SLOT + if skew { 0x800 } else { 0 };
                let kind = match k {
                    0..=2 => SectionKind::Ram,
                    3 => SectionKind::Rom,
                    _ => SectionKind::Mmio,
                };
                let s = Section::sized(&format!("s{slot}"), kind, start, mib * MIB).unwrap();
                if k == 5 { s.with_p2p() } else { s }
            })
            .collect();
        Layout::new("random", sections).unwrap()
    })
}

fn case() -> impl Strategy<Value = (Host, Vec<String>, Layout)> {
    prop::collection::vec(unit_spec(), 1..=3)
        .prop_flat_map(|units| {
            let n = units.len();
            (
                Just(units),
                prop::collection::vec(group_spec(n), 1..=3),
                layout(),
            )
        })
        .prop_flat_map(|(units, groups, layout)| {
            let n = groups.len();
            (
                Just(build_host(&units, &groups)),
                prop::sample::subsequence((0..n).collect::<Vec<_>>(), 1..=n),
                Just(layout),
            )
        })
        .prop_map(|(host, picked, layout)| {
            let devices = picked.iter().map(|i| format!("0000:0{i}:00.0")).collect();
            (host, devices, layout)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn check_verdict_equals_replay((host, devices, layout) in case()) {
        let report = check(&layout, &host, &devices).unwrap();
        let mut c = Container::new(ContainerConfig::default());
        let mut attached = true;
        for &g in &report.container.groups {
            if let Err(e) = c.attach(&host, g) {
                attached = false;
                prop_assert!(
                    !report.blockers.is_empty(),
                    "attach of group {} refused ({e}) but check has no blocker: {report:?}", g
                );
                break;
            }
        }
        prop_assert_eq!(attached, report.blockers.is_empty(), "blockers {:?}", report.blockers);
        if !attached {
            prop_assert!(!report.ok);
            return Ok(());
        }
        let mut fatal_failed = false;
        for s in layout.sections().iter().filter(|s| s.is_dma_mapped()) {
            let size = s.range.size().unwrap();
            let mapped = c.map(s.range.first(), s.range.first(), size, Access::RW);
            let conflicts: Vec<_> =
                report.conflicts.iter().filter(|x| x.section == s.name).collect();
            prop_assert_eq!(
                mapped.is_ok(),
                conflicts.is_empty(),
                "section {} {}: map {:?}, conflicts {:?}", s.name, s.range, mapped, conflicts
            );
            fatal_failed |= mapped.is_err() && s.is_fatal_if_unmappable();
        }
        prop_assert_eq!(report.ok, !fatal_failed);
    }
}
