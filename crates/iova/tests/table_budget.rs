//! The page table's 512 MiB budget holds on every path, the single-granule fast path
//! included: one-page maps at a 2 MiB stride each need a fresh last-level table (4 KiB),
//! so about 131,000 of them fill the budget; the next one is refused with ENOMEM
//! instead of growing the tables to about 1 GiB (issue #11).

use iova::container::{Container, ContainerConfig, Flavour};
use iova::dma::{Access, DmaSpace, Errno};
use iova::host::{Group, Host, IommuUnit, IommuVendor};
use iova::pagetable::{PageTable, TABLE_BUDGET_BYTES};

const STRIDE: u64 = 2 << 20;
const MAPS: u64 = 260_000;

#[test]
fn single_page_maps_stop_at_the_budget() {
    let mut pt = PageTable::x86(48).unwrap();
    let mut refused_at = None;
    for i in 0..MAPS {
        let iova = i * STRIDE;
        if pt.map(iova, iova, 0x1000, Access::RW).is_err() {
            refused_at = Some(i);
            break;
        }
    }
    let at = refused_at.expect("the budget must refuse a map before 260,000 of them");
    let bytes = u64::try_from(pt.table_count()).unwrap() * 4096;
    assert!(bytes <= TABLE_BUDGET_BYTES, "{bytes} bytes of tables");
    assert!(at > 100_000, "refused too early, at map {at}");
    // Nothing changed by the refusal; smaller work still fits where tables exist.
    assert_eq!(pt.mapped_bytes(), u128::from(at) * 0x1000);
    assert!(pt.map(0x1000, 0x1000, 0x1000, Access::RW).is_ok());
}

#[test]
fn the_container_answers_enomem_at_the_budget() {
    let mut g = Group::new(1);
    g.iommu = Some("dmar0".into());
    let host = Host {
        iommus: vec![
            IommuUnit::new("dmar0", IommuVendor::Intel)
                .with_address_width(48)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
        ],
        groups: vec![g],
        ..Host::default()
    };
    let mut config = ContainerConfig::with_flavour(Flavour::Type1V2);
    config.dma_entry_limit = u32::MAX;
    let mut c = Container::new(config);
    c.attach(&host, 1).unwrap();
    let mut errno = None;
    for i in 1..MAPS {
        let iova = i * STRIDE;
        if let Err(e) = c.map(iova, iova, 0x1000, Access::RW) {
            errno = Some(e.errno());
            break;
        }
    }
    assert_eq!(errno, Some(Errno::ENOMEM));
}

/// The `host_profile` fuzz target's out-of-memory input (kept in
/// fuzz/corpus/host_profile/oom-1g-granule.json): a unit whose smallest page is 1 GiB
/// made the container build a page table whose root alone is 2^27 entries (1 GiB), in
/// every type1 attach. A granule whose chain of tables would take more than a quarter of
/// the budget is now refused: attaching the group fails cleanly, and the groups with a
/// real granule still work.
#[test]
fn a_1g_granule_is_refused_not_allocated() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/corpus/host_profile/oom-1g-granule.json"
    );
    let host: Host = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for flavour in [Flavour::Type1V1, Flavour::Type1V2, Flavour::Iommufd] {
        let mut c = Container::new(ContainerConfig::with_flavour(flavour));
        assert!(c.attach(&host, 2).is_err(), "{flavour:?}");
        let mut c = Container::new(ContainerConfig::with_flavour(flavour));
        c.attach(&host, 1).unwrap();
        assert!(c.attach(&host, 2).is_err(), "{flavour:?}");
        c.map(0x20_0000, 0x20_0000, 0x20_0000, Access::RW).unwrap();
    }
}
