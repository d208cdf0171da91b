//! Checks of iommufd's VFIO compatibility container (`CONFIG_IOMMUFD_VFIO_CONTAINER`:
//! `/dev/vfio/vfio` is served by `drivers/iommu/iommufd/vfio_compat.c`), run on the
//! current kernel vmtest builds: the real container set to type1 v2 and to type1 v1
//! against the simulated `compat-type1v2` / `compat-type1v1` flavours, on the fixed
//! corpus and the seeded random traces (at least 500 operations per flavour).
//!
//! The compat IOAS gets its IOMMU domain when a device of the group is opened
//! (`VFIO_GROUP_GET_DEVICE_FD` binds it to iommufd and attaches it), so the device is
//! opened before any trace; the simulation's `attach` stands for both steps.

use std::path::Path;

use iova::container::{Container, Flavour};
use iova::dma::DmaSpace;
use iova::trace::{TraceOp, parse_trace};
use iova_linux::arena::TraceArena;
use iova_linux::memory::HoldMemory;
use iova_linux::type1::{Container as Real, IommuType};

use crate::diff::{CORPUS, guest_config, replay, replay_random};
use crate::facts;
use crate::report::Report;

/// Runs the compat differential for both type1 versions.
pub fn run(r: &mut Report, bdf: &str, seed: u64) {
    let group = match facts::group_of(bdf) {
        Ok(g) => g,
        Err(e) => return r.fail("compat-setup", &e),
    };
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => h,
        Err(e) => return r.fail("compat-read-host", &e.to_string()),
    };
    for (name, iommu, flavour) in [
        ("compat-type1v2", IommuType::Type1v2, Flavour::CompatType1V2),
        ("compat-type1v1", IommuType::Type1, Flavour::CompatType1V1),
    ] {
        let mut real = match Real::open() {
            Ok(c) => c,
            Err(e) => return r.fail(&format!("{name}-open"), &e.to_string()),
        };
        if let Err(e) = real.attach_group(group, iommu) {
            r.fail(&format!("{name}-attach"), &e.to_string());
            continue;
        }
        // Opening the device attaches the compat IOAS to an IOMMU domain.
        let _device = match real.device(bdf) {
            Ok(d) => d,
            Err(e) => {
                r.fail(&format!("{name}-open-device"), &e.to_string());
                continue;
            }
        };
        let mut sim = Container::new(guest_config(flavour));
        if let Err(e) = sim.attach(&host, group) {
            r.fail(&format!("{name}-sim-attach"), &e.to_string());
            continue;
        }
        let info = match real.info() {
            Ok(i) => i,
            Err(e) => {
                r.fail(&format!("{name}-info"), &e.to_string());
                continue;
            }
        };
        r.note(&format!("{name} GET_INFO: {info:?}"));
        match sim.info() {
            Ok(si) => r.eq(
                &format!("{name}-sim-info-equals-kernel-info"),
                si,
                info.clone(),
            ),
            Err(e) => r.fail(
                &format!("{name}-sim-info-equals-kernel-info"),
                &e.to_string(),
            ),
        }
        let arena = match TraceArena::new(TraceArena::DEFAULT_LEN) {
            Ok(a) => a,
            Err(e) => return r.fail("compat-arena", &e.name()),
        };
        real.add_memory(arena.memory());
        match parse_trace(CORPUS) {
            Ok(lines) => {
                let ops: Vec<TraceOp> = lines.iter().map(|l| l.op.clone()).collect();
                let (n, bad) = replay(r, name, &mut real, &mut sim, &ops, &arena);
                r.eq(&format!("{name}-diff-corpus-{n}-ops-agree"), bad, 0);
            }
            Err(e) => r.fail("compat-corpus-parse", &e.to_string()),
        }
        let _ = real.unmap_all();
        let _ = sim.unmap_all();
        replay_random(r, &mut real, &mut sim, &arena, &info, seed);
        let _ = real.unmap_all();
    }
}
