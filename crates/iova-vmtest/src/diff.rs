//! Differential checks: the kernel's answers against the project's model of the guest,
//! built by `iova_linux::sysfs::read_host` from the guest's own `/sys`.
//!
//! Today this compares the valid IOVA ranges and page sizes the model predicts for
//! the group (`Host::valid_iova_ranges`) with what the real type1 container reports
//! in GET_INFO. Trace replay against the simulated `iova::container::Container`
//! plugs in here once that module exists (see `simulated_type1` and `run_type1`).

use std::path::Path;

use iova::dma::DmaSpace;

use crate::edu::SimSpace;
use crate::report::Report;

/// The simulated type1 container for `group`, built from the guest's sysfs. `None`
/// until `iova::container` exists; the edu tests then run without the simulated
/// translation cross-check.
pub fn simulated_type1(r: &mut Report, group: u32) -> Option<Box<dyn SimSpace>> {
    let _ = group;
    r.note("simulated container (iova::container) not available in this build");
    None
}

/// Compares the sysfs-built host model with the real container.
pub fn run_type1(r: &mut Report, c: &mut iova_linux::type1::Container, group: u32, seed: u64) {
    let _ = seed;
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => {
            r.pass("sysfs-read-host");
            h
        }
        Err(e) => return r.fail("sysfs-read-host", &e.to_string()),
    };
    let info = match c.info() {
        Ok(i) => i,
        Err(e) => return r.fail("sysfs-model-vs-kernel", &e.to_string()),
    };
    match host.valid_iova_ranges(group) {
        Ok(v) => {
            r.eq("sysfs-model-aperture-known", v.aperture_known(), true);
            r.eq(
                "sysfs-model-valid-ranges-equal-get-info",
                v.ranges,
                info.iova_ranges,
            );
        }
        Err(e) => r.fail("sysfs-model-valid-ranges-equal-get-info", &e.to_string()),
    }
    let unit = host.group(group).ok().and_then(|g| host.iommu_of_group(g));
    match unit.map(|u| u.page_sizes) {
        Some(ps) => r.eq(
            "sysfs-model-page-sizes-equal-get-info",
            ps,
            Some(info.page_sizes),
        ),
        None => r.fail(
            "sysfs-model-page-sizes-equal-get-info",
            "no IOMMU unit for the group",
        ),
    }
}
