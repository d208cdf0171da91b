//! The whole sysfs reader: a small valid tree is written to a scratch directory, then
//! fuzzed content replaces its files (or turns them into directories, links, or
//! removes them), extra groups and member devices appear, and `read_host` runs.
//! Never a panic; an error names a path inside the tree; a host that reads back
//! survives a JSON profile round trip and every group can be examined and attached.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::{FLAVOURS, check_invariants, config};
use arbitrary::Arbitrary;
use iova::container::Container;
use iova::dma::{Access, DmaSpace};

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Slot {
    GroupType,
    Reserved,
    VtdCap,
    VtdEcap,
    AmdCap,
    AmdFeatures,
    Vendor,
    Device,
    Class,
    GroupLink,
    IommuLink,
    DmaEntryLimit,
    AllowUnsafe,
    Modalias,
    OtherGroupReserved,
    OtherGroupType,
}

impl Slot {
    fn path(self) -> &'static str {
        match self {
            Slot::GroupType => "kernel/iommu_groups/1/type",
            Slot::Reserved => "kernel/iommu_groups/1/reserved_regions",
            Slot::VtdCap => "class/iommu/dmar0/intel-iommu/cap",
            Slot::VtdEcap => "class/iommu/dmar0/intel-iommu/ecap",
            Slot::AmdCap => "class/iommu/ivhd0/amd-iommu/cap",
            Slot::AmdFeatures => "class/iommu/ivhd0/amd-iommu/features",
            Slot::Vendor => "bus/pci/devices/0000:03:00.0/vendor",
            Slot::Device => "bus/pci/devices/0000:03:00.0/device",
            Slot::Class => "bus/pci/devices/0000:03:00.0/class",
            Slot::GroupLink => "bus/pci/devices/0000:03:00.0/iommu_group",
            Slot::IommuLink => "bus/pci/devices/0000:04:00.0/iommu",
            Slot::DmaEntryLimit => "module/vfio_iommu_type1/parameters/dma_entry_limit",
            Slot::AllowUnsafe => "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
            Slot::Modalias => "devices/system/cpu/modalias",
            Slot::OtherGroupReserved => "kernel/iommu_groups/2/reserved_regions",
            Slot::OtherGroupType => "kernel/iommu_groups/2/type",
        }
    }
}

#[derive(Debug, Arbitrary)]
enum What {
    Text(Vec<u8>),
    Dir,
    Missing,
    /// A symbolic link: to `../../../../kernel/iommu_groups/<name>` (the shape of a
    /// real `iommu_group` link) or to a relative path without `..` (so the tree never
    /// points outside itself, at a file that could block such as /proc/kmsg).
    Link(bool, String),
}

#[derive(Debug, Arbitrary)]
enum Extra {
    /// A directory under kernel/iommu_groups with this name.
    GroupDir(String),
    /// A member device entry of group `g % 3` with this name.
    Member(u8, String),
    /// A device entry of an IOMMU unit.
    UnitDevice(bool, String),
}

/// One fuzz input (decoded from bytes by [`crate::decode`]).
#[derive(Debug, Arbitrary)]
pub struct Input {
    edits: Vec<(Slot, What)>,
    extras: Vec<Extra>,
}

const BASE: &[(&str, &str)] = &[
    (
        "kernel/iommu_groups/1/reserved_regions",
        "0x00000000fee00000 0x00000000feefffff msi\n",
    ),
    ("kernel/iommu_groups/1/type", "DMA\n"),
    ("kernel/iommu_groups/1/devices/0000:03:00.0", ""),
    (
        "kernel/iommu_groups/2/reserved_regions",
        "0x0000000000000000 0x0000000000ffffff direct-relaxable\n0x00000000fee00000 0x00000000feefffff msi\n",
    ),
    ("kernel/iommu_groups/2/type", "identity\n"),
    ("kernel/iommu_groups/2/devices/0000:04:00.0", ""),
    ("class/iommu/dmar0/intel-iommu/cap", "d2008c22260286\n"),
    ("class/iommu/dmar0/intel-iommu/ecap", "f050da\n"),
    ("class/iommu/dmar0/devices/0000:03:00.0", ""),
    ("class/iommu/ivhd0/amd-iommu/cap", "190b3\n"),
    ("class/iommu/ivhd0/amd-iommu/features", "f77ef22294:0\n"),
    ("bus/pci/devices/0000:03:00.0/vendor", "0x8086\n"),
    ("bus/pci/devices/0000:03:00.0/device", "0x1533\n"),
    ("bus/pci/devices/0000:03:00.0/class", "0x020000\n"),
    ("bus/pci/devices/0000:04:00.0/vendor", "0x1022\n"),
    (
        "module/vfio_iommu_type1/parameters/dma_entry_limit",
        "65535\n",
    ),
    (
        "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
        "N\n",
    ),
    (
        "devices/system/cpu/modalias",
        "cpu:type:x86,ven0000fam0006mod0055:feature:,0000\n",
    ),
];

/// The scratch tree of one run: a directory of its own (the replay test may run
/// several at once in one process), removed when the run ends, panics included.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // tmpfs when there is one: the tree is rewritten on every run.
        let base = Path::new("/dev/shm");
        let dir = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = dir.join(format!("iova-fuzz-sysfs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        Scratch(root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A single path component made of the name's safe characters (never empty, `.`,
/// `..` or containing `/` or NUL).
fn component(name: &str) -> String {
    let s: String = name
        .chars()
        .filter(|c| *c != '/' && *c != '\0')
        .take(40)
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        format!("x{s}")
    } else {
        s
    }
}

fn put(root: &Path, rel: &str, what: &What) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Ok(m) = path.symlink_metadata() {
        if m.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    match what {
        What::Text(b) => {
            let _ = std::fs::write(&path, b);
        }
        What::Dir => {
            let _ = std::fs::create_dir_all(&path);
        }
        What::Missing => {}
        What::Link(group, t) => {
            let target = if *group {
                format!("../../../../kernel/iommu_groups/{}", component(t))
            } else {
                let parts: Vec<String> = t
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != "..")
                    .take(8)
                    .map(component)
                    .collect();
                if parts.is_empty() {
                    "x".to_owned()
                } else {
                    parts.join("/")
                }
            };
            let _ = std::os::unix::fs::symlink(target, &path);
        }
    }
}

/// Runs one input given as bytes, decoded as libFuzzer's `fuzz_target!` does (an
/// input that does not decode is skipped); panics on a finding.
pub fn run_bytes(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}

/// Runs one decoded input; panics on a finding.
pub fn run(input: Input) {
    let scratch = Scratch::new();
    let root = scratch.0.clone();
    for (rel, text) in BASE {
        put(&root, rel, &What::Text(text.as_bytes().to_vec()));
    }
    let _ = std::os::unix::fs::symlink(
        "../../../../kernel/iommu_groups/1",
        root.join("bus/pci/devices/0000:03:00.0/iommu_group"),
    );
    for (slot, what) in input.edits.iter().take(16) {
        put(&root, slot.path(), what);
    }
    for e in input.extras.iter().take(8) {
        match e {
            Extra::GroupDir(n) => put(
                &root,
                &format!("kernel/iommu_groups/{}", component(n)),
                &What::Dir,
            ),
            Extra::Member(g, n) => put(
                &root,
                &format!("kernel/iommu_groups/{}/devices/{}", g % 3, component(n)),
                &What::Text(Vec::new()),
            ),
            Extra::UnitDevice(amd, n) => put(
                &root,
                &format!(
                    "class/iommu/{}/devices/{}",
                    if *amd { "ivhd0" } else { "dmar0" },
                    component(n)
                ),
                &What::Text(Vec::new()),
            ),
        }
    }

    match iova_linux::sysfs::read_host(&root) {
        Err(e) => {
            assert!(e.path().starts_with(&root), "{e}");
            assert!(e.to_string().contains(&root.display().to_string()), "{e}");
        }
        Ok(host) => {
            let json = serde_json::to_string(&host).expect("serializes");
            let back: iova::Host = serde_json::from_str(&json).expect("profile round trip");
            assert_eq!(back, host);
            for g in &host.groups {
                let v = host.valid_iova_ranges(g.id).expect("group exists");
                let _ = host.group_issues(g.id).expect("group exists");
                for r in &g.reserved_regions {
                    if r.kind.excludes_iova() {
                        assert!(!v.ranges.overlaps(&r.range));
                    }
                }
                for fl in FLAVOURS {
                    for unsafe_ok in [false, true] {
                        let mut c = Container::new(config(fl, unsafe_ok));
                        if c.attach(&host, g.id).is_ok() {
                            if let Some(r) = c.valid_iovas().iter().next().copied() {
                                let _ = c.map(r.first(), 0x7f00_0000_0000, 0x20_0000, Access::RW);
                            }
                            check_invariants(&c);
                        }
                    }
                }
            }
        }
    }
}
