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
