//! Host profiles (the JSON `--host` loads) from arbitrary bytes: deserializing never
//! panics, and whatever deserializes can be examined, attached in every flavour and
//! mapped without a panic, keeping the container's invariants.

use crate::common::{FLAVOURS, check_invariants, config};
use iova::container::Container;
use iova::dma::{Access, DmaSpace};

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    let Ok(host) = serde_json::from_slice::<iova::Host>(data) else {
        return;
    };
    for g in host.groups.iter().take(8) {
        let _ = host.valid_iova_ranges(g.id);
        let _ = host.group_issues(g.id);
        let _ = host.iommu_of_group(g);
    }
    for fl in FLAVOURS {
        for unsafe_ok in [false, true] {
            let mut c = Container::new(config(fl, unsafe_ok));
            for g in host.groups.iter().take(4) {
                let before = c.clone();
                if c.attach(&host, g.id).is_err() {
                    assert!(c == before);
                }
                check_invariants(&c);
            }
            let ranges: Vec<_> = c.valid_iovas().iter().take(4).copied().collect();
            for r in ranges {
                for size in [0x1000, 0x20_0000] {
                    let _ = c.map(r.first(), r.first(), size, Access::RW);
                    let _ = c.map(r.last().wrapping_sub(size - 1), 0x1000, size, Access::READ);
                }
                check_invariants(&c);
            }
            if let Ok(auto) = c.map_auto(0x20_0000, 0x20_0000, Access::RW) {
                assert!(c.valid_iovas().contains(auto));
            }
            check_invariants(&c);
            let _ = c.unmap_all();
            check_invariants(&c);
        }
    }
}
