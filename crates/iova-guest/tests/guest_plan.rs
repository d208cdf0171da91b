//! Property: every layout `plan` proposes passes the check, verified against a simple
//! reference model (per group: inside the aperture, clear of every excluded reserved
//! region, aligned to the smallest common page) that does not use the set algebra.

#[path = "guest_support.rs"]
mod support;

use iova::host::{Host, PGSIZES_4K, PGSIZES_4K_2M_1G, PGSIZES_64K_512M, ReservedKind};
use iova::range::IovaRange;
use iova_guest::{
    Container, CpuVendor, GuestConfig, Layout, PlanInput, Preset, Section, SectionKind, plan,
};
use proptest::prelude::*;

/// The reference: a section is mappable when, for the (only) group, it is inside the
/// aperture, overlaps no excluded reserved region and both ends are page aligned.
fn mappable(host: &Host, s: &Section) -> bool {
    let unit = &host.iommus[0];
    let ap = unit.aperture.unwrap();
    let page = 1u64 << unit.page_sizes.unwrap().trailing_zeros();
    let inside = s.range.first() >= ap.first() && s.range.last() <= ap.last();
    let clear = host.groups[0].reserved_regions.iter().all(|r| {
        r.kind == ReservedKind::DirectRelaxable
            || r.range.last() < s.range.first()
            || r.range.first() > s.range.last()
    });
    let aligned =
        s.range.first() % page == 0 && s.range.last().checked_add(1).is_none_or(|e| e % page == 0);
    inside && clear && aligned
}

fn assert_fits(host: &Host, l: &Layout) {
    for s in l.sections() {
        if matches!(s.kind, SectionKind::Ram | SectionKind::Rom) {
            assert!(mappable(host, s), "{} {} does not fit", s.name, s.range);
        }
    }
}

fn kind() -> impl Strategy<Value = ReservedKind> {
    prop_oneof![
        Just(ReservedKind::Msi),
        Just(ReservedKind::Reserved),
        Just(ReservedKind::DirectRelaxable),
    ]
}

fn host() -> impl Strategy<Value = Host> {
    let region =
        (0u32..52, 12u32..40, any::<u64>(), kind()).prop_map(|(pos_bits, size_bits, r, k)| {
            let size = 1u64 << size_bits;
            let start = (r % (1u64 << pos_bits).max(1)) & !(size - 1);
            let last = start.saturating_add(size - 1);
            support::region(start, last, k)
        });
    (
        32u8..=52,
        prop_oneof![
            Just(PGSIZES_4K),
            Just(PGSIZES_4K_2M_1G),
            Just(PGSIZES_64K_512M)
        ],
        proptest::collection::vec(region, 0..4),
        any::<bool>(),
    )
        .prop_map(|(w, pg, mut regions, add_msi)| {
            if add_msi {
                regions.push(support::region(
                    support::MSI.0,
                    support::MSI.1,
                    ReservedKind::Msi,
                ));
            }
            support::custom(w, pg, regions)
        })
}

fn preset() -> impl Strategy<Value = Preset> {
    proptest::sample::select(Preset::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_preset_plan_passes_check(
        host in host(),
        p in preset(),
        mem_mib in 2u64..(4u64 << 20),
        amd in any::<bool>(),
    ) {
        let mem = (mem_mib & !1) << 20;
        let vendor = if p.is_arm() { CpuVendor::Arm } else if amd { CpuVendor::Amd } else { CpuVendor::Intel };
        let cfg = GuestConfig::new(mem.max(2 << 20), vendor);
        let c = Container::of_devices(&host, &["0000:01:00.0"]).unwrap();
        let pl = plan(&PlanInput::Preset(p, cfg), &c);
        if let Some(l) = &pl.layout {
            prop_assert!(pl.feasible);
            assert_fits(&host, l);
            prop_assert!(pl.memory_planned <= u128::from(cfg.memory));
            let r = pl.report.as_ref().unwrap();
            prop_assert!(r.ok);
            // The plan's layout is what the preset builds for the planned config.
            let rebuilt = p.layout(pl.config.as_ref().unwrap()).unwrap();
            prop_assert_eq!(&rebuilt, l);
        } else {
            prop_assert!(!pl.feasible);
        }
        // When the requested layout already fits, the plan keeps all of it.
        if let Ok(l) = p.layout(&cfg) {
            let fits = l.sections().iter().filter(|s| s.is_fatal_if_unmappable()).all(|s| mappable(&host, s));
            if fits {
                prop_assert_eq!(pl.memory_planned, u128::from(cfg.memory));
            }
        }
    }

    #[test]
    fn every_custom_plan_passes_check(
        host in host(),
        chunks in proptest::collection::vec((0u64..(1 << 22), 1u64..(1 << 14)), 1..4),
    ) {
        // RAM chunks in MiB units, made disjoint by construction.
        let mut sections = Vec::new();
        let mut next = 0u64;
        for (i, (gap, size)) in chunks.iter().enumerate() {
            let start = next + gap * (1 << 20);
            let range = IovaRange::from_start_size(start, size << 20).unwrap();
            next = range.last() + 1;
            sections.push(Section::new(format!("ram{i}"), SectionKind::Ram, range));
        }
        let l = Layout::new("custom", sections).unwrap();
        let c = Container::of_devices(&host, &["0000:01:00.0"]).unwrap();
        let pl = plan(&PlanInput::Custom(l.clone()), &c);
        if let Some(out) = &pl.layout {
            assert_fits(&host, out);
            prop_assert!(out.ram_bytes() <= l.ram_bytes());
            prop_assert_eq!(pl.memory_planned, out.ram_bytes());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The virtio-iommu reserved regions and the valid IOVAs partition the 64-bit
    /// space; MSI subtypes only cover host MSI windows (checked address by address at
    /// the region edges, against the host's regions directly).
    #[test]
    fn virtio_iommu_export_partitions_the_space(host in host()) {
        use iova_guest::virtio_iommu::{self, ResvSubtype};
        let c = Container::of_devices(&host, &["0000:01:00.0"]).unwrap();
        let Some(cfg) = virtio_iommu::export(&c) else {
            prop_assert!(c.valid.is_empty());
            return Ok(());
        };
        let mut points = vec![0u64, u64::MAX];
        for r in &cfg.reserved {
            points.extend([r.start, r.end, r.start.saturating_sub(1), r.end.saturating_add(1)]);
        }
        for r in c.valid.iter() {
            points.extend([r.first(), r.last()]);
        }
        for p in points {
            let resv: Vec<_> = cfg.reserved.iter().filter(|r| r.start <= p && p <= r.end).collect();
            prop_assert!(resv.len() <= 1, "regions overlap at {p:#x}");
            prop_assert_eq!(resv.len() == 1, !c.valid.contains(p), "at {:#x}", p);
            if let Some(r) = resv.first() {
                let host_msi = host.groups[0].reserved_regions.iter().any(|g| {
                    g.kind == ReservedKind::Msi && g.range.first() <= p && p <= g.range.last()
                });
                prop_assert_eq!(r.subtype == ResvSubtype::Msi, host_msi, "at {:#x}", p);
            }
        }
        let span = c.valid.span().unwrap();
        prop_assert_eq!(cfg.input_range, span);
    }
}
