//! Security defaults: a container refuses what would let a device escape the IOMMU
//! unless the user opts in with a flag whose name says unsafe, never maps a reserved
//! region, and faults every DMA to an IOVA that is not mapped.
//!
//! Facts (docs/semantics.md): type1 refuses a group without interrupt isolation with EPERM
//! unless `allow_unsafe_interrupts`; an identity default domain (`iommu=pt`) is no
//! refusal, since VFIO claims the group and attaches its own domain; the VT-d driver refuses a device with an RMRR in an
//! unmanaged domain with EPERM; every reserved region but `direct-relaxable` is
//! punched out of the valid IOVAs.

mod robust_common;

use iova::container::{Container, ContainerConfig, Flavour};
use iova::dma::{Access, DmaSpace, Errno};
use iova::host::{DomainType, Group, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
use iova::pagetable::Fault;
use iova::range::IovaRange;
use proptest::prelude::*;
use robust_common::{Op, apply, config, host, op};

const FLAVOURS: [Flavour; 3] = [Flavour::Type1V1, Flavour::Type1V2, Flavour::Iommufd];

fn r(a: u64, b: u64) -> IovaRange {
    IovaRange::new(a, b).unwrap()
}

/// Group 1 identity, 2 without interrupt remapping, 3 with a direct RMRR, 4 with all
/// three problems, 5 ordinary; each with the x86 MSI window.
fn risky_host() -> Host {
    let mut h = Host::default();
    for id in 1..=5u32 {
        let name = format!("dmar{id}");
        h.iommus.push(
            IommuUnit::new(name.clone(), IommuVendor::Intel)
                .with_address_width(39)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(!matches!(id, 2 | 4)),
        );
        let mut g = Group::new(id);
        g.iommu = Some(name);
        g.reserved_regions.push(ReservedRegion {
            range: r(0xfee0_0000, 0xfeef_ffff),
            kind: ReservedKind::Msi,
        });
        if matches!(id, 1 | 4) {
            g.domain_type = DomainType::Identity;
        }
        if matches!(id, 3 | 4) {
            g.reserved_regions.push(ReservedRegion {
                range: r(0xe000_0000, 0xe00f_ffff),
                kind: ReservedKind::Direct,
            });
        }
        h.groups.push(g);
    }
    h
}

fn cfg(fl: Flavour, irq: bool, direct: bool) -> ContainerConfig {
    let mut c = ContainerConfig::with_flavour(fl);
    c.domain.allow_unsafe_interrupts = irq;
    c.domain.allow_unsafe_direct = direct;
    c
}

#[test]
fn the_defaults_are_safe() {
    let d = ContainerConfig::default();
    assert!(!d.domain.allow_unsafe_interrupts && !d.domain.allow_unsafe_direct);
    for fl in FLAVOURS {
        let c = ContainerConfig::with_flavour(fl);
        assert!(!c.domain.allow_unsafe_interrupts && !c.domain.allow_unsafe_direct);
    }
}

#[test]
fn each_risk_is_refused_until_its_own_unsafe_flag_is_set() {
    let h = risky_host();
    for fl in FLAVOURS {
        // Every combination of the two flags: a group attaches exactly when each of
        // its risks has its flag. An identity default domain (groups 1 and 4) is no
        // risk: VFIO claims the group and attaches its own domain.
        for bits in 0..4u8 {
            let (irq, direct) = (bits & 1 != 0, bits & 2 != 0);
            for (id, needs) in [
                (1, (false, false)),
                (2, (true, false)),
                (3, (false, true)),
                (4, (true, true)),
                (5, (false, false)),
            ] {
                let ok = (!needs.0 || irq) && (!needs.1 || direct);
                let mut c = Container::new(cfg(fl, irq, direct));
                let got = c.attach(&h, id).map_err(|e| e.errno());
                if ok {
                    assert_eq!(got, Ok(()), "{fl:?} group {id} flags {bits:02b}");
                } else {
                    assert_eq!(got, Err(Errno::EPERM), "{fl:?} group {id} flags {bits:02b}");
                    assert_eq!(c.groups().count(), 0);
                }
            }
        }
    }
}

#[test]
fn an_allowed_direct_region_is_still_never_mapped() {
    let h = risky_host();
    for fl in FLAVOURS {
        let mut c = Container::new(cfg(fl, false, true));
        c.attach(&h, 3).unwrap();
        assert!(!c.valid_iovas().overlaps(&r(0xe000_0000, 0xe00f_ffff)));
        let e = c
            .map(0xe000_0000, 0xe000_0000, 0x1000, Access::RW)
            .unwrap_err();
        assert_eq!(e.errno(), Errno::EINVAL, "{fl:?}");
        assert!(c.translate(0xe000_0000, Access::READ).is_err());
    }
}

fn excluded_regions(h: &Host, c: &Container) -> Vec<IovaRange> {
    c.groups()
        .flat_map(|id| h.group(id).unwrap().reserved_regions.clone())
        .filter(|r| r.kind.excludes_iova())
        .map(|r| r.range)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Over random hosts, configurations (with and without the unsafe flags) and
    /// operation sequences in every flavour: no mapping ever touches a reserved region
    /// of an attached group (every kind but direct-relaxable), and no address of one
    /// translates.
    #[test]
    fn nothing_is_ever_mapped_in_a_reserved_region(
        h in host(),
        cfg in config(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut c = Container::new(cfg);
        for o in &ops {
            if let Op::MapAuto { host, size, access } = o {
                // Automatic allocation never hands out IOVA 0 or the last page either.
                if let Ok(iova) = c.map_auto(*host, *size, *access) {
                    prop_assert!(iova >= 0x1000 && iova.checked_add(*size).is_some_and(|e| e <= u64::MAX - 0xfff));
                }
            } else {
                let _ = apply(&mut c, &h, o);
            }
            let regions = excluded_regions(&h, &c);
            for m in c.mappings() {
                for reg in &regions {
                    prop_assert!(!m.iova.overlaps(reg), "{:?} maps {} inside reserved {}", o, m.iova, reg);
                }
            }
            for reg in &regions {
                for a in [reg.first(), reg.last(), reg.first() + (reg.last() - reg.first()) / 2] {
                    prop_assert!(c.translate(a, Access::READ).is_err());
                }
            }
        }
    }

    /// DMA to any IOVA that no mapping covers faults as unmapped, whatever the access;
    /// DMA inside a mapping translates to its host address or faults for permission.
    #[test]
    fn dma_to_an_unmapped_iova_faults(
        h in host(),
        cfg in config(),
        ops in proptest::collection::vec(op(), 1..40),
        probes in proptest::collection::vec(prop_oneof![
            4 => 0u64..0x80_0000,
            1 => any::<u64>(),
        ], 16),
    ) {
        let mut c = Container::new(cfg);
        for o in &ops {
            let _ = apply(&mut c, &h, o);
        }
        // Probe random addresses and both sides of every mapping's edges.
        let mut addrs = probes.clone();
        for m in c.mappings() {
            addrs.extend([m.iova.first(), m.iova.last()]);
            addrs.extend(m.iova.first().checked_sub(1));
            addrs.extend(m.iova.last().checked_add(1));
        }
        for a in addrs {
            for acc in [Access::READ, Access::WRITE, Access::RW] {
                let got = c.translate(a, acc);
                // With no domain (an IOAS whose last group left, or an iommufd domain
                // with pages below the CPU page, where translation is not simulated)
                // no device reaches any mapping.
                let reach = c.page_table().and(c.mapping_at(a));
                match reach {
                    None => prop_assert_eq!(got, Err(Fault::Unmapped { iova: a })),
                    Some(m) if m.access.allows(acc) => {
                        prop_assert_eq!(got, Ok(m.host_addr.wrapping_add(a - m.iova.first())));
                    }
                    Some(_) => prop_assert_eq!(got, Err(Fault::Permission { iova: a, needed: acc })),
                }
            }
        }
    }
}
