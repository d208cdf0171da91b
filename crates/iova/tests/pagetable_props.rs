//! Page-table properties against a per-page reference map: translate hits exactly the
//! mapped bytes with the right permission and faults elsewhere; large pages are used
//! where both addresses are aligned; unmapping everything frees every table.

use std::collections::BTreeMap;

use iova::dma::Access;
use iova::pagetable::{Fault, PageTable};
use proptest::prelude::*;

const PG: u64 = 0x1000;
const TWO_M: u64 = 0x20_0000;

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::RW), Just(Access::READ), Just(Access::WRITE)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// One-page maps (the path a container's 4 KiB maps take) against a per-page
    /// model: into fresh and existing tables, onto mapped pages, under a 2 MiB leaf,
    /// misaligned, without access, beyond the reach, at the top of the host space. Each
    /// answer is the model's, and a refused map leaves the table equal to before.
    #[test]
    fn single_page_maps_match_the_model(
        ops in proptest::collection::vec(
            (0u64..1536, 0u64..16, 0u8..12, prop_oneof![Just(Access::RW), Just(Access::READ), Just(Access::WRITE), Just(Access::NONE)]),
            1..160,
        ),
    ) {
        use iova::pagetable::PageTableError as E;
        let mut pt = PageTable::x86(48).unwrap();
        // A 2 MiB leaf over pages 1024..1536.
        pt.map(1024 * PG, 0x4000_0000, TWO_M, Access::RW).unwrap();
        let mut model: BTreeMap<u64, (u64, Access)> = BTreeMap::new();
        for (page, hp, odd, acc) in ops {
            let (mut iova, mut host) = (page * PG, 0x1_0000_0000 + hp * PG);
            match odd {
                0 => iova += 0x800,             // misaligned IOVA
                1 => host += 8,                 // misaligned host
                2 => iova = 1 << 48,            // beyond the 48-bit reach
                3 => iova = !0xfff,  // beyond the reach, at 2^64 - 4K
                4 => host = !0xfff,  // the last host page: no wrap
                _ => {}
            }
            let want = if !acc.read && !acc.write {
                Err(E::NoAccess)
            } else if (iova | host) & 0xfff != 0 {
                Err(E::Misaligned { iova, host, size: PG, granule: PG })
            } else if iova > (1 << 48) - 1 {
                Err(E::OutOfReach(iova + 0xfff))
            } else if (1024..1536).contains(&page) || model.contains_key(&page) {
                Err(E::AlreadyMapped(iova))
            } else {
                Ok(())
            };
            let before = pt.clone();
            let got = pt.map(iova, host, PG, acc);
            prop_assert_eq!(got, want);
            if got.is_ok() {
                model.insert(page, (host, acc));
            } else {
                prop_assert!(pt == before, "a refused map changed the table");
            }
        }
        for (&page, &(host, acc)) in &model {
            let need = if acc.read { Access::READ } else { Access::WRITE };
            prop_assert_eq!(pt.translate(page * PG + 0x10, need), Ok(host + 0x10));
        }
        prop_assert_eq!(pt.leaf_count(PG), model.len() as u64);
        prop_assert_eq!(pt.mapped_bytes(), u128::from(TWO_M) + model.len() as u128 * u128::from(PG));
        // One-page unmaps: inside the 2 MiB leaf (refused, nothing changes), of every
        // mapped page (then unmapped, twice: 0 bytes the second time).
        let before = pt.clone();
        prop_assert_eq!(pt.unmap(1025 * PG, PG), Err(E::SplitsPage(1024 * PG)));
        prop_assert!(pt == before, "a refused unmap changed the table");
        for &page in model.keys() {
            prop_assert_eq!(pt.unmap(page * PG, PG), Ok(PG));
            prop_assert_eq!(pt.translate(page * PG, Access::READ), Err(Fault::Unmapped { iova: page * PG }));
            prop_assert_eq!(pt.unmap(page * PG, PG), Ok(0));
        }
        prop_assert_eq!(pt.leaf_count(PG), 0);
        prop_assert_eq!(pt.unmap(1024 * PG, TWO_M), Ok(TWO_M));
        prop_assert_eq!(pt.table_count(), 1);
    }

    #[test]
    fn translate_matches_a_per_page_model(
        maps in proptest::collection::vec((0u64..2048, 1u64..1100, 0u64..4096, access()), 1..8),
        probes in proptest::collection::vec(0u64..(4096 * PG), 64),
    ) {
        let mut pt = PageTable::x86(48).unwrap();
        // model: page -> (host page, access)
        let mut model: BTreeMap<u64, (u64, Access)> = BTreeMap::new();
        let mut placed = vec![];
        for (ip, np, hp, acc) in maps {
            let (iova, size, host) = (ip * PG, np * PG, hp * PG * 512 + (ip % 512) * PG);
            let free = (ip..ip + np).all(|p| !model.contains_key(&p));
            let r = pt.map(iova, host, size, acc);
            prop_assert_eq!(r.is_ok(), free);
            if free {
                for i in 0..np {
                    model.insert(ip + i, (host + i * PG, acc));
                }
                placed.push((iova, size));
            }
        }
        for a in probes.into_iter().chain(model.keys().map(|p| p * PG + 0x123)) {
            for need in [Access::READ, Access::WRITE] {
                let want = match model.get(&(a / PG)) {
                    None => Err(Fault::Unmapped { iova: a }),
                    Some(&(h, acc)) if acc.allows(need) => Ok(h + a % PG),
                    Some(_) => Err(Fault::Permission { iova: a, needed: need }),
                };
                prop_assert_eq!(pt.translate(a, need), want);
            }
        }
        // Bytes by page size add up to the model.
        let total: u64 = pt.leaf_counts().iter().map(|&(s, n)| s * n).sum();
        prop_assert_eq!(u128::from(total), (model.len() as u128) * u128::from(PG));
        for (iova, size) in placed {
            prop_assert_eq!(pt.unmap(iova, size), Ok(size));
        }
        prop_assert_eq!(pt.table_count(), 1);
        prop_assert!(pt.is_empty());
    }

    #[test]
    fn largest_pages_where_alignment_allows(iova_2m in 0u64..4096, host_2m in 0u64..4096, head in 0u64..512, n2m in 0u64..3, tail in 0u64..512) {
        // A mapping of head 4K pages, n2m 2M pages and tail 4K pages, with IOVA and host
        // equally offset inside a 2M page: exactly n2m 2M leaves (or fewer when the
        // offset breaks the alignment of one address only).
        let off = (512 - head) % 512 * PG;
        let iova = iova_2m * TWO_M + off;
        let host = host_2m * TWO_M + off;
        let size = (head + tail) * PG + n2m * TWO_M;
        prop_assume!(size > 0);
        let mut pt = PageTable::x86(48).unwrap();
        pt.map(iova, host, size, Access::RW).unwrap();
        prop_assert_eq!(pt.leaf_count(TWO_M), n2m);
        prop_assert_eq!(pt.leaf_count(PG), head + tail);
        // Same mapping with the host address off by one 4K page: no 2M pages at all.
        let mut pt2 = PageTable::x86(48).unwrap();
        pt2.map(iova, host + PG, size, Access::RW).unwrap();
        prop_assert_eq!(pt2.leaf_count(TWO_M), 0);
        prop_assert_eq!(pt.unmap(iova, size), Ok(size));
        prop_assert_eq!(pt.table_count(), 1);
    }
}

#[test]
fn one_gig_pages_and_the_64k_granule() {
    let mut pt = PageTable::x86(39).unwrap();
    pt.map(0x4000_0000, 0x8000_0000, 0x8000_0000, Access::RW)
        .unwrap();
    assert_eq!(pt.leaf_count(1 << 30), 2);
    assert_eq!(pt.table_count(), 2); // root + one level-3 table holding two 1G leaves
    pt.unmap(0x4000_0000, 0x8000_0000).unwrap();
    assert_eq!(pt.table_count(), 1);
    let mut g = PageTable::granule_64k(48).unwrap();
    g.map(0x2000_0000, 0x4000_0000, 0x2001_0000, Access::READ)
        .unwrap();
    assert_eq!(g.leaf_count(0x2000_0000), 1);
    assert_eq!(g.leaf_count(0x1_0000), 1);
    assert_eq!(g.translate(0x2000_1234, Access::READ), Ok(0x4000_1234));
    assert_eq!(g.translate(0x4000_0000, Access::READ), Ok(0x6000_0000));
    assert!(g.map(0x1000, 0x1000, 0x1000, Access::RW).is_err());
}
