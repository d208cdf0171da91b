//! Random hosts and operations shared by the atomicity, security and concurrency
//! tests.
#![allow(dead_code)]

use iova::container::{Container, ContainerConfig, Flavour, KernelVersion};
use iova::dma::{Access, DmaSpace, Errno};
use iova::host::{DomainType, Group, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
use iova::range::{IovaRange, IovaSet};
use proptest::prelude::*;

pub const PG: u64 = 0x1000;

/// One random group with its own unit: aperture (or unknown), page sizes (some below
/// 4 KiB), interrupt remapping, domain type and up to four reserved regions of any
/// kind.
pub fn group_and_unit(id: u32) -> impl Strategy<Value = (Group, IommuUnit)> {
    let width = prop_oneof![
        3 => (20u8..=26).prop_map(Some),
        1 => Just(Some(39u8)),
        1 => Just(None),
    ];
    let pgs = prop_oneof![
        4 => Just(Some(0x20_1000u64)),
        2 => Just(Some(0x4020_1000u64)),
        1 => Just(Some(0x1_0000u64)),
        // The iommufd selftests' mock domain: 2 KiB pages only, below the CPU page.
        1 => Just(Some(0x800u64)),
        1 => Just(None),
    ];
    let ir = prop_oneof![5 => Just(Some(true)), 1 => Just(Some(false)), 1 => Just(None)];
    let dt = prop_oneof![
        6 => Just(DomainType::Dma),
        1 => Just(DomainType::Identity),
        1 => Just(DomainType::Unknown),
    ];
    let kind = prop_oneof![
        Just(ReservedKind::Msi),
        Just(ReservedKind::Reserved),
        Just(ReservedKind::Direct),
        Just(ReservedKind::DirectRelaxable),
    ];
    let region = ((0u64..0x600), (1u64..0x40), kind).prop_map(|(p, n, kind)| ReservedRegion {
        range: IovaRange::new(p * PG, (p + n) * PG - 1).unwrap(),
        kind,
    });
    (width, pgs, ir, dt, proptest::collection::vec(region, 0..4)).prop_map(
        move |(width, pgs, ir, dt, regions)| {
            let name = format!("u{id}");
            let mut u = IommuUnit::new(name.clone(), IommuVendor::Unknown);
            if let Some(w) = width {
                u = u.with_address_width(w);
            }
            u.page_sizes = pgs;
            u.interrupt_remapping = ir;
            let mut g = Group::new(id);
            g.iommu = Some(name);
            g.domain_type = dt;
            g.reserved_regions = regions;
            (g, u)
        },
    )
}

/// A host of one to four groups (ids 1..).
pub fn host() -> impl Strategy<Value = Host> {
    (1usize..=4)
        .prop_flat_map(|n| {
            (1..=n)
                .map(|i| group_and_unit(u32::try_from(i).unwrap()))
                .collect::<Vec<_>>()
        })
        .prop_map(|parts| {
            let mut h = Host::default();
            for (g, u) in parts {
                h.groups.push(g);
                h.iommus.push(u);
            }
            h
        })
}

pub fn flavour() -> impl Strategy<Value = Flavour> {
    proptest::sample::select(Flavour::ALL.to_vec())
}

pub fn kernel() -> impl Strategy<Value = KernelVersion> {
    prop_oneof![
        Just(KernelVersion::V6_1),
        Just(KernelVersion::V6_12),
        Just(KernelVersion::V6_18),
        Just(KernelVersion::NEWEST)
    ]
}

pub fn config() -> impl Strategy<Value = ContainerConfig> {
    (flavour(), any::<[bool; 3]>(), 1u32..12, kernel()).prop_map(|(fl, u, limit, k)| {
        let mut c = ContainerConfig::with_flavour(fl).kernel(k);
        // u[0] is unused: identity groups are no longer refused.
        let _ = u[0];
        c.domain.allow_unsafe_direct = u[1];
        c.domain.allow_unsafe_interrupts = u[2];
        c.dma_entry_limit = limit;
        c
    })
}

/// Every operation of the container, with addresses mostly in the first 8 MiB.
#[derive(Debug, Clone)]
pub enum Op {
    Attach(u32),
    Detach(u32),
    Map {
        iova: u64,
        size: u64,
        host: u64,
        access: Access,
    },
    Unmap {
        iova: u64,
        size: u64,
    },
    UnmapAll,
    MapAuto {
        host: u64,
        size: u64,
        access: Access,
    },
    Allow(Vec<(u64, u64)>),
}

pub fn op() -> impl Strategy<Value = Op> {
    let addr = prop_oneof![
        12 => (0u64..0x800).prop_map(|p| p * PG),
        1 => Just(u64::MAX - (PG - 1)),
        1 => Just(u64::MAX),
        1 => (0u64..0x800).prop_map(|p| p * PG + 0x800),
    ];
    let size = prop_oneof![
        10 => (0u64..16).prop_map(|p| p * PG),
        2 => Just(0x20_0000u64),
        1 => Just(0x1_0000u64),
        1 => Just(u64::MAX),
        1 => Just(0x1800u64),
    ];
    let access = prop_oneof![
        6 => Just(Access::RW),
        1 => Just(Access::READ),
        1 => Just(Access::WRITE),
        1 => Just(Access::NONE),
    ];
    let host = prop_oneof![
        6 => (0u64..0x4000).prop_map(|p| p * PG),
        1 => Just(0x7f00_0020_0000u64),
        1 => Just(0x800u64),
        1 => Just(u64::MAX - (PG - 1)),
    ];
    prop_oneof![
        2 => (0u32..=5).prop_map(Op::Attach),
        1 => (0u32..=5).prop_map(Op::Detach),
        8 => (addr.clone(), size.clone(), host.clone(), access.clone())
            .prop_map(|(iova, size, host, access)| Op::Map { iova, size, host, access }),
        4 => (addr, size.clone()).prop_map(|(iova, size)| Op::Unmap { iova, size }),
        1 => Just(Op::UnmapAll),
        3 => (host, size, access).prop_map(|(host, size, access)| Op::MapAuto { host, size, access }),
        1 => proptest::collection::vec(((0u64..0x800), (0u64..0x40), any::<bool>()), 0..3)
            .prop_map(|v| Op::Allow(v.into_iter().map(|(p, n, one)| {
                let a = p * PG;
                (a, if one { a } else { a + n * PG + PG - 1 })
            }).collect())),
    ]
}

/// Runs one operation; the errno when it fails.
pub fn apply(c: &mut Container, h: &Host, op: &Op) -> Result<(), Errno> {
    match op {
        Op::Attach(g) => c.attach(h, *g).map_err(|e| e.errno()),
        Op::Detach(g) => c.detach(*g).map_err(|e| e.errno()),
        Op::Map {
            iova,
            size,
            host,
            access,
        } => c.map(*iova, *host, *size, *access).map_err(|e| e.errno()),
        Op::Unmap { iova, size } => c.unmap(*iova, *size).map(|_| ()).map_err(|e| e.errno()),
        Op::UnmapAll => c.unmap_all().map(|_| ()).map_err(|e| e.errno()),
        Op::MapAuto { host, size, access } => c
            .map_auto(*host, *size, *access)
            .map(|_| ())
            .map_err(|e| e.errno()),
        Op::Allow(ranges) => {
            let set: IovaSet = ranges
                .iter()
                .filter_map(|&(a, b)| IovaRange::new(a, b).ok())
                .collect();
            c.allow_iovas(&set).map_err(|e| e.errno())
        }
    }
}

/// The operation's kind, for coverage counts.
pub fn kind(op: &Op) -> usize {
    match op {
        Op::Attach(_) => 0,
        Op::Detach(_) => 1,
        Op::Map { .. } => 2,
        Op::Unmap { .. } => 3,
        Op::UnmapAll => 4,
        Op::MapAuto { .. } => 5,
        Op::Allow(_) => 6,
    }
}

pub const KINDS: [&str; 7] = [
    "attach",
    "detach",
    "map",
    "unmap",
    "unmap_all",
    "map_auto",
    "allow_iovas",
];
