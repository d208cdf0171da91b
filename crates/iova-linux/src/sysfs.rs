//! Reading a host's IOMMU facts from sysfs, or from any directory tree shaped like it.
//!
//! [`read_host`] walks these paths below the root (normally `/sys`):
//!
//! | path | gives |
//! |---|---|
//! | `kernel/iommu_groups/N/type` | the group's default domain type ([`DomainType`]) |
//! | `kernel/iommu_groups/N/reserved_regions` | its reserved regions ([`parse_reserved_regions`]) |
//! | `kernel/iommu_groups/N/devices/*` | its member devices (entry names only) |
//! | `class/iommu/U/devices/*` | which unit `U` translates for which device |
//! | `class/iommu/U/intel-iommu/{cap,ecap}` | VT-d aperture, page sizes, IR, PT ([`vtd`]) |
//! | `class/iommu/U/amd-iommu/{cap,features}` | AMD-Vi aperture from EFR.HATS ([`amd`]) |
//! | `bus/pci/devices/D/{vendor,device,class}` | PCI ids (`0x…` hex) |
//! | `bus/pci/devices/D/iommu_group` | the group (the link's last path component) |
//! | `bus/pci/devices/D/iommu` | the unit, when `class/iommu` does not say |
//! | `bus/pci/devices/D/driver` | the bound driver (the link's last path component); no link in an existing device directory: unbound |
//! | `kernel/irq/N/chip_name` | whether the running kernel remaps interrupts ([`interrupt_remapping_evidence`]) |
//! | `module/vfio_iommu_type1/parameters/*` | `dma_entry_limit`, `allow_unsafe_interrupts` |
//! | `module/iommufd/parameters/allow_unsafe_interrupts` | iommufd's own opt-in |
//! | `devices/system/cpu/modalias` | the CPU vendor |
//! | `kernel/iommu_groups/N/iova-spapr-tce-info` | not a kernel file: the sPAPR windows `VFIO_IOMMU_SPAPR_TCE_GET_INFO` gave when the tree was captured ([`iova::spapr::SpaprInfo::parse_saved`]) |
//!
//! Rules:
//! - Devices are symlinks in real sysfs. Only their **names** are read; link targets are
//!   never followed and may dangle (the `iommu_group` and `iommu` links are read as
//!   text with `read_link`).
//! - Anything missing means "nothing there": no `kernel/iommu_groups` gives a host with
//!   no groups, a missing `type` file gives [`DomainType::Unknown`] (older kernels lack
//!   it; the kernel itself prints `unknown` for a group without a default domain), a
//!   missing capability file leaves that capability unknown. Facts that decide
//!   safety are the exception: a group without `reserved_regions` is an error naming
//!   the file ([`SysfsError::MissingFact`]), never "no regions" (which would make its
//!   MSI window look mappable).
//! - A root with none of `kernel/`, `class/`, `bus/`, `devices/` is not sysfs
//!   ([`SysfsError::NotSysfs`]). A group's `devices/` entries that are symbolic-link
//!   loops are not devices.
//! - Anything present but malformed is an error that names the file (and, for
//!   `reserved_regions`, the 1-based line and its text). The root itself must exist
//!   and be a directory.
//! - IOMMU vendors are recognised by an `intel-iommu` or `amd-iommu` subdirectory, else
//!   by name prefix ([`vendor_from_name`]). ARM SMMU and virtio-iommu units show no
//!   capabilities in sysfs: their aperture stays unknown, which
//!   [`Host::valid_iova_ranges`](iova::host::Host::valid_iova_ranges) flags.
//! - Groups are sorted by id, devices and IOMMU units by name. `Device::group`,
//!   `Device::iommu` and `Group::iommu` are filled (a group's unit is the first member
//!   device's unit).
//! - `settings.cpu_vendor` comes from the x86 vendor code or the `aarch64`/`arm` type in
//!   the CPU modalias; when that is absent or unrecognised it is inferred from the
//!   IOMMU units (VT-d → `intel`, AMD-Vi → `amd`, ARM SMMU → `arm`) if they all agree.
//!
//! ```no_run
//! let host = iova_linux::sysfs::read_host(std::path::Path::new("/sys"))?;
//! for g in &host.groups {
//!     println!("group {}: {:?}", g.id, host.valid_iova_ranges(g.id)?.ranges);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use iova::host::{Device, DomainType, Group, Host, HostSettings, IommuUnit, IommuVendor};

pub mod amd;
mod error;
mod reserved;
pub mod vtd;

pub use error::{LineError, LineProblem, SysfsError};
pub use reserved::parse_reserved_regions;

/// Where sysfs is mounted.
pub const DEFAULT_ROOT: &str = "/sys";

/// Reads the host from the real sysfs at [`DEFAULT_ROOT`].
pub fn read_host_default() -> Result<Host, SysfsError> {
    read_host(DEFAULT_ROOT)
}

/// Reads a host from `root`: `/sys` or any directory shaped like it (see the module
/// documentation for what is read and how missing pieces are treated).
pub fn read_host(root: impl AsRef<Path>) -> Result<Host, SysfsError> {
    read_host_in(root.as_ref(), None)
}

/// Like [`read_host`], but only the IOMMU groups of `devices` (PCI addresses, with or
/// without the `0000:` domain) and their member devices are read, besides every IOMMU
/// unit and the host-wide settings: what a check of a VM with these devices needs, in
/// a few dozen file reads instead of dozens per group of the host. The host it returns
/// lists only those groups and devices. When a device has no `iommu_group` link (it is
/// not a PCI device of this tree, or has no group) the whole host is read, so that
/// every answer and error is the one [`read_host`] gives.
pub fn read_host_for_devices(
    root: impl AsRef<Path>,
    devices: &[String],
) -> Result<Host, SysfsError> {
    let root = root.as_ref();
    let mut wanted = std::collections::BTreeSet::new();
    for d in devices {
        let name = if d.matches(':').count() == 1 {
            format!("0000:{d}")
        } else {
            d.clone()
        };
        let link = root.join("bus/pci/devices").join(&name).join("iommu_group");
        let id = match read_link_name(&link) {
            Ok(Some(t)) => Path::new(&t)
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_group_number),
            _ => None,
        };
        match id {
            Some(id) => {
                wanted.insert(id);
            }
            None => return read_host_in(root, None),
        }
    }
    read_host_in(root, Some(&wanted))
}

fn read_host_in(
    root: &Path,
    only: Option<&std::collections::BTreeSet<u32>>,
) -> Result<Host, SysfsError> {
    let meta = fs::metadata(root).map_err(|source| SysfsError::Root {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SysfsError::NotADirectory {
            path: root.to_owned(),
        });
    }

    // A wrong root (the folder of several example hosts, `/`, an empty folder) would
    // otherwise read as a real host without any IOMMU.
    let mut shaped = false;
    for top in ["kernel", "class", "bus", "devices"] {
        shaped |= is_dir(&root.join(top))?;
    }
    if !shaped {
        return Err(SysfsError::NotSysfs {
            path: root.to_owned(),
        });
    }

    let units = read_units(root)?;
    let groups = read_groups(root, only)?;
    // Scoped: the PCI devices of the groups read.
    let members: Option<std::collections::BTreeSet<&str>> = only.map(|_| {
        groups
            .iter()
            .flat_map(|g| g.group.devices.iter().map(String::as_str))
            .collect()
    });
    let pci = read_pci_devices(root, members.as_ref())?;
    let mut settings = read_settings(root)?;

    // Which unit translates for which device: the first unit (by name) that lists it.
    let mut unit_of: BTreeMap<&str, &str> = BTreeMap::new();
    for u in &units {
        for d in &u.devices {
            unit_of.entry(d.as_str()).or_insert(u.unit.name.as_str());
        }
    }

    // Which group lists which device; a device in two groups is an error.
    let mut group_of: BTreeMap<&str, u32> = BTreeMap::new();
    for g in &groups {
        for d in &g.group.devices {
            if let Some(other) = group_of.insert(d.as_str(), g.group.id) {
                return Err(SysfsError::DeviceInTwoGroups {
                    path: g.dir.join("devices").join(d),
                    device: d.clone(),
                    other,
                });
            }
        }
    }

    let mut devices: BTreeMap<String, Device> = BTreeMap::new();
    for p in pci {
        let mut dev = p.device;
        let listed = group_of.get(dev.name.as_str()).copied();
        dev.group = match (p.group_link, listed) {
            (Some((linked, path)), Some(listed)) if linked != listed => {
                return Err(SysfsError::GroupMismatch {
                    path,
                    device: dev.name,
                    linked,
                    listed,
                });
            }
            (_, Some(listed)) => Some(listed),
            (Some((linked, _)), None) => Some(linked),
            (None, None) => None,
        };
        dev.iommu = unit_of
            .get(dev.name.as_str())
            .map(|u| (*u).to_owned())
            .or(p.iommu_link);
        devices.insert(dev.name.clone(), dev);
    }
    // Group members that are not PCI devices (platform devices on ARM, for example).
    for (name, id) in &group_of {
        devices.entry((*name).to_owned()).or_insert_with(|| {
            let mut d = Device::new(*name);
            d.group = Some(*id);
            d.iommu = unit_of.get(name).map(|u| (*u).to_owned());
            d
        });
    }

    let groups: Vec<Group> = groups
        .into_iter()
        .map(|g| {
            let mut group = g.group;
            group.iommu = group
                .devices
                .iter()
                .find_map(|d| devices.get(d).and_then(|d| d.iommu.clone()));
            group
        })
        .collect();

    let iommus: Vec<IommuUnit> = units.into_iter().map(|u| u.unit).collect();
    if settings.cpu_vendor.is_none() {
        settings.cpu_vendor = cpu_vendor_from_iommus(&iommus).map(str::to_owned);
    }

    Ok(Host {
        iommus,
        groups,
        devices: devices.into_values().collect(),
        settings,
    })
}

/// The vendor an IOMMU unit's kernel name implies: `dmar*` Intel, `ivhd*` AMD,
/// `smmu3.*` ARM SMMUv3, `smmu.*` ARM SMMU v1/v2, `virtio*` virtio-iommu, anything else
/// unknown.
pub fn vendor_from_name(name: &str) -> IommuVendor {
    if name.starts_with("dmar") {
        IommuVendor::Intel
    } else if name.starts_with("ivhd") {
        IommuVendor::Amd
    } else if name.starts_with("smmu3.") {
        IommuVendor::ArmSmmuV3
    } else if name.starts_with("smmu.") {
        IommuVendor::ArmSmmu
    } else if name.starts_with("virtio") {
        IommuVendor::Virtio
    } else {
        IommuVendor::Unknown
    }
}

/// The CPU vendor a set of IOMMU units implies, when they all agree (virtio and unknown
/// units say nothing).
fn cpu_vendor_from_iommus(units: &[IommuUnit]) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    for u in units {
        let v = match u.vendor {
            IommuVendor::Intel => "intel",
            IommuVendor::Amd => "amd",
            IommuVendor::ArmSmmuV3 | IommuVendor::ArmSmmu => "arm",
            IommuVendor::Virtio | IommuVendor::Unknown => continue,
        };
        match found {
            None => found = Some(v),
            Some(f) if f != v => return None,
            Some(_) => {}
        }
    }
    found
}

/// The CPU vendor from `devices/system/cpu/modalias`
/// (`cpu:type:x86,venVVVVfam…` or `cpu:type:aarch64:…`). x86 vendor codes are the
/// kernel's `X86_VENDOR_*`: 0 Intel, 2 AMD. Unrecognised content gives `None`: the
/// modalias is only a hint.
fn cpu_vendor_from_modalias(text: &str) -> Option<&'static str> {
    let ty = text.trim().strip_prefix("cpu:type:")?;
    if let Some(rest) = ty.strip_prefix("x86,ven") {
        return match rest.get(..4)? {
            "0000" => Some("intel"),
            "0002" => Some("amd"),
            _ => None,
        };
    }
    if ty.starts_with("aarch64") || ty.starts_with("arm") {
        return Some("arm");
    }
    None
}

// ---------------------------------------------------------------------------------
// IOMMU units

struct UnitInfo {
    unit: IommuUnit,
    devices: Vec<String>,
}

fn read_units(root: &Path) -> Result<Vec<UnitInfo>, SysfsError> {
    let class = root.join("class/iommu");
    let mut units = Vec::new();
    for name in list_names(&class)? {
        let dir = class.join(&name);
        let intel = dir.join("intel-iommu");
        let amd_dir = dir.join("amd-iommu");
        let unit = if is_dir(&intel)? {
            read_intel_unit(&name, &intel)?
        } else if is_dir(&amd_dir)? {
            read_amd_unit(&name, &amd_dir)?
        } else {
            IommuUnit::new(name.clone(), vendor_from_name(&name))
        };
        let devices = list_names(&dir.join("devices"))?;
        units.push(UnitInfo { unit, devices });
    }
    Ok(units)
}

fn read_intel_unit(name: &str, dir: &Path) -> Result<IommuUnit, SysfsError> {
    const EXPECTED: &str = "a hex register value (the kernel prints %llx)";
    let mut unit = IommuUnit::new(name, IommuVendor::Intel);
    let cap_path = dir.join("cap");
    if let Some(cap) = read_value(&cap_path, EXPECTED, amd::parse_hex)? {
        // A unit whose registers name no page-table depth, or an address width too
        // small for any real one (VT-d's smallest is 39 bits; 30 is SAGAW's least),
        // cannot be used as is: cap 0 would be a 1-bit IOMMU with a 2-byte aperture.
        if vtd::sagaw_width(cap).is_none() || vtd::mgaw(cap) < 30 {
            return Err(SysfsError::BadValue {
                path: cap_path,
                expected: "a VT-d capability register naming a page-table depth (SAGAW) \
                           and an address width (MGAW) of at least 30 bits",
                text: format!("{cap:x}"),
            });
        }
        unit = unit
            .with_address_width(vtd::address_width(cap))
            .with_page_sizes(vtd::page_sizes(cap));
    }
    if let Some(ecap) = read_value(&dir.join("ecap"), EXPECTED, amd::parse_hex)? {
        unit.interrupt_remapping = Some(vtd::interrupt_remapping(ecap));
        unit.pass_through = Some(vtd::pass_through(ecap));
    }
    Ok(unit)
}

fn read_amd_unit(name: &str, dir: &Path) -> Result<IommuUnit, SysfsError> {
    let mut unit = IommuUnit::new(name, IommuVendor::Amd);
    // See the `amd` module: AMD-Vi always remaps interrupts once enabled, and always
    // supports untranslated (pass-through) devices.
    unit.interrupt_remapping = Some(true);
    unit.pass_through = Some(true);

    let cap = read_value(
        &dir.join("cap"),
        "a 32-bit hex capability header (the kernel prints %x)",
        |t| amd::parse_hex(t).and_then(|v| u32::try_from(v).ok()),
    )?;
    let features_path = dir.join("features");
    let features = match read_text(&features_path)? {
        None => amd::Features::default(),
        Some(text) => amd::parse_features(&text).map_err(|expected| SysfsError::BadValue {
            path: features_path.clone(),
            expected,
            text: text.trim().to_owned(),
        })?,
    };
    let efr_valid = cap.is_none_or(|c| c & amd::CAP_EFR_SUP != 0);
    let efr = features.efr.filter(|e| efr_valid && *e != 0);
    if let Some(levels) = efr.and_then(amd::host_levels) {
        unit = unit.with_address_width(amd::levels_width(levels));
    }
    Ok(unit)
}

// ---------------------------------------------------------------------------------
// Groups

struct GroupInfo {
    group: Group,
    dir: PathBuf,
}

fn read_groups(
    root: &Path,
    only: Option<&std::collections::BTreeSet<u32>>,
) -> Result<Vec<GroupInfo>, SysfsError> {
    let base = root.join("kernel/iommu_groups");
    let mut groups = Vec::new();
    for name in list_names(&base)? {
        let dir = base.join(&name);
        let id = parse_group_number(&name).ok_or_else(|| SysfsError::BadGroupName {
            path: dir.clone(),
            name: name.clone(),
        })?;
        if only.is_some_and(|o| !o.contains(&id)) {
            continue;
        }
        let mut group = Group::new(id);

        let type_path = dir.join("type");
        group.domain_type = match read_text(&type_path)? {
            None => DomainType::Unknown,
            Some(t) if t.trim() == "unknown" => DomainType::Unknown,
            Some(t) => DomainType::from_sysfs(&t).ok_or_else(|| SysfsError::UnknownDomainType {
                path: type_path.clone(),
                text: t.trim().to_owned(),
            })?,
        };

        // Unknown means unsafe: without the file, the MSI window and the other
        // reserved regions are unknown, and "none" would count them as mappable.
        let rr_path = dir.join("reserved_regions");
        let Some(text) = read_text(&rr_path)? else {
            return Err(SysfsError::MissingFact {
                what: format!("the reserved regions (the MSI window) of IOMMU group {id} are"),
                path: rr_path,
            });
        };
        group.reserved_regions =
            parse_reserved_regions(&text).map_err(|error| SysfsError::Line {
                path: rr_path.clone(),
                error,
            })?;

        group.spapr = read_value(
            &dir.join(iova::spapr::SpaprInfo::SAVED_FILE),
            "dma32_window_start=N dma32_window_size=N [pgsizes=N max_dynamic_windows_supported=N levels=N]",
            iova::spapr::SpaprInfo::parse_saved,
        )?;

        group.devices = list_device_names(&dir.join("devices"))?;
        groups.push(GroupInfo { group, dir });
    }
    groups.sort_by_key(|g| g.group.id);
    Ok(groups)
}

/// A decimal `u32` written as the kernel writes it: digits only (no sign, no white
/// space) and no leading zero, so that two directories (`1` and `001`) can never name
/// the same group.
fn parse_group_number(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    name.parse().ok()
}

// ---------------------------------------------------------------------------------
// PCI devices

struct PciInfo {
    device: Device,
    group_link: Option<(u32, PathBuf)>,
    iommu_link: Option<String>,
}

fn read_pci_devices(
    root: &Path,
    only: Option<&std::collections::BTreeSet<&str>>,
) -> Result<Vec<PciInfo>, SysfsError> {
    let base = root.join("bus/pci/devices");
    let mut out = Vec::new();
    let names = match only {
        // The members that exist as PCI devices (a group's other members are platform
        // devices, added below from the group's list).
        Some(o) => o
            .iter()
            .filter(|n| base.join(n).symlink_metadata().is_ok())
            .map(|n| (*n).to_owned())
            .collect(),
        None => list_names(&base)?,
    };
    for name in names {
        let dir = base.join(&name);
        let mut device = Device::new(name.clone());
        let id16 = |t: &str| parse_0x(t).and_then(|v| u16::try_from(v).ok());
        device.vendor_id = read_value(&dir.join("vendor"), "a 0x-prefixed 16-bit hex id", id16)?;
        device.device_id = read_value(&dir.join("device"), "a 0x-prefixed 16-bit hex id", id16)?;
        device.class = read_value(
            &dir.join("class"),
            "a 0x-prefixed 24-bit hex class code",
            |t| {
                parse_0x(t)
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| *v <= 0xff_ffff)
            },
        )?;

        device.driver = if dir.is_dir() {
            Some(match read_link_name(&dir.join("driver"))? {
                None => iova::host::Binding::Unbound,
                Some(t) => match Path::new(&t).file_name().and_then(|n| n.to_str()) {
                    Some(n) if !n.is_empty() => iova::host::Binding::Driver(n.to_owned()),
                    _ => {
                        return Err(SysfsError::BadValue {
                            path: dir.join("driver"),
                            expected: "a link to a driver directory",
                            text: t,
                        });
                    }
                },
            })
        } else {
            // A device link that dangles: nothing about it can be read.
            None
        };

        let link_path = dir.join("iommu_group");
        let group_link = match read_link_name(&link_path)? {
            None => None,
            Some(target) => {
                let last = Path::new(&target)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(parse_group_number);
                match last {
                    Some(id) => Some((id, link_path)),
                    None => {
                        return Err(SysfsError::BadGroupLink {
                            path: link_path,
                            target,
                        });
                    }
                }
            }
        };
        // On AMD hosts the IOMMU's own PCI function holds a real `iommu` directory (the
        // unit's parent), not a link: only a link names the translating unit.
        let iommu_path = dir.join("iommu");
        let is_link = iommu_path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        let iommu_link = if is_link {
            read_link_name(&iommu_path)?
        } else {
            None
        };
        let iommu_link = iommu_link.and_then(|t| {
            Path::new(&t)
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
        });
        out.push(PciInfo {
            device,
            group_link,
            iommu_link,
        });
    }
    Ok(out)
}

/// `0x` followed by hex digits.
fn parse_0x(text: &str) -> Option<u64> {
    let digits = text.trim().strip_prefix("0x")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

// ---------------------------------------------------------------------------------
// Settings

fn read_settings(root: &Path) -> Result<HostSettings, SysfsError> {
    let params = root.join("module/vfio_iommu_type1/parameters");
    let dma_entry_limit = read_value(
        &params.join("dma_entry_limit"),
        "a decimal number from 0 to 4294967295",
        |t| {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse::<u32>().ok()
        },
    )?;
    let yes_no = |t: &str| match t.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    };
    let allow_unsafe_interrupts = read_value(
        &params.join("allow_unsafe_interrupts"),
        "Y, N, 1 or 0",
        yes_no,
    )?;
    let iommufd_allow_unsafe_interrupts = read_value(
        &root.join("module/iommufd/parameters/allow_unsafe_interrupts"),
        "Y, N, 1 or 0",
        yes_no,
    )?;
    let (interrupt_remapping_active, interrupt_remapping_evidence) =
        match interrupt_remapping_evidence(root)? {
            Some((on, why)) => (Some(on), Some(why)),
            None => (None, None),
        };
    let cpu_vendor = read_text(&root.join("devices/system/cpu/modalias"))?
        .and_then(|t| cpu_vendor_from_modalias(&t))
        .map(str::to_owned);
    Ok(HostSettings {
        allow_unsafe_interrupts,
        iommufd_allow_unsafe_interrupts,
        dma_entry_limit,
        cpu_vendor,
        cpu_phys_bits: None,
        // Not in /sys: the live reader (iovactl) adds them from the running machine.
        cpu_page_size: None,
        kernel: None,
        interrupt_remapping_active,
        interrupt_remapping_evidence,
        // Not in /sys: `devnodes::read_device_nodes` reads the `dev` beside it.
        device_nodes: None,
    })
}

/// Whether the running kernel remaps interrupts, from the interrupt chips it
/// registered (`kernel/irq/N/chip_name`, the chip column of `/proc/interrupts`): a chip
/// whose name starts with `IR-` (`IR-PCI-MSI`, `IR-PCI-MSIX-0000:01:00.0`,
/// `IR-IO-APIC`) is one the remapping domain is parent of, so remapping is on; MSI or
/// IO-APIC chips without that prefix (`PCI-MSI-0000:00:03.0`, `IO-APIC`) and none with
/// it mean it is off (`intremap=off`, an IOMMU without it, virtio-iommu). Other chips
/// (ARM's ITS and GIC, Power's XIVE) say nothing here: `None`, as for a tree without
/// `kernel/irq`. The second value says which file decided.
pub fn interrupt_remapping_evidence(root: &Path) -> Result<Option<(bool, String)>, SysfsError> {
    let base = root.join("kernel/irq");
    let mut without: Option<(u32, String)> = None;
    let mut irqs: Vec<u32> = list_names(&base)?
        .iter()
        .filter_map(|n| n.parse::<u32>().ok())
        .collect();
    irqs.sort_unstable();
    // In number order, stopping at the first remapped chip: with remapping on, the
    // IO-APIC's lines come first, so a host with a thousand interrupts costs one read.
    for irq in irqs {
        let Some(t) = read_text(&base.join(irq.to_string()).join("chip_name"))? else {
            continue;
        };
        let name = t.trim().to_owned();
        if name.starts_with("IR-") {
            return Ok(Some((
                true,
                format!(
                    "{}: {name} (a remapped interrupt chip)",
                    base.join(irq.to_string()).join("chip_name").display()
                ),
            )));
        }
        if without.is_none() && (name.starts_with("PCI-MSI") || name == "IO-APIC") {
            without = Some((irq, name));
        }
    }
    Ok(without.map(|(irq, name)| {
        (
            false,
            format!(
                "{}: {name}, and no interrupt chip is remapped (IR-...)",
                base.join(irq.to_string()).join("chip_name").display()
            ),
        )
    }))
}

// ---------------------------------------------------------------------------------
// File-system helpers: every error names its path.

fn io_error(path: &Path, source: io::Error) -> SysfsError {
    if source.kind() == io::ErrorKind::NotADirectory {
        SysfsError::NotADirectory {
            path: path.to_owned(),
        }
    } else {
        SysfsError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The entry names of a directory, sorted; a missing directory has none.
fn list_names(dir: &Path) -> Result<Vec<String>, SysfsError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let name = name.into_string().map_err(|raw| SysfsError::NotUtf8 {
            path: dir.join(raw),
        })?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// The device entries of a group's `devices` directory: [`list_names`] without the
/// entries that are symbolic-link loops (a link that leads back to itself names no
/// device). Dangling links stay: in hand-made trees they name devices whose folder
/// is not copied.
fn list_device_names(dir: &Path) -> Result<Vec<String>, SysfsError> {
    let mut names = list_names(dir)?;
    names.retain(
        |n| !matches!(fs::metadata(dir.join(n)), Err(e) if e.raw_os_error() == Some(libc::ELOOP)),
    );
    Ok(names)
}

/// Whether `path` is a directory (following links); missing is `false`.
fn is_dir(path: &Path) -> Result<bool, SysfsError> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(io_error(path, e)),
    }
}

/// The most bytes read from one file. A sysfs attribute holds at most a page; this
/// leaves room for hand-made trees while keeping a runaway file out of memory.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What a non-regular file is, for messages ("a directory", "a FIFO", …). Shared with
/// the CLI's reading of user-named files.
pub fn describe_file_type(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device node"
    } else {
        "not a regular file"
    }
}

/// A file's content as UTF-8; a missing file is `None`. Anything but a regular file
/// (following links) is an error: a directory, a FIFO or device (which could block or
/// never end), a dangling link. At most [`MAX_FILE_BYTES`] are read.
fn read_text(path: &Path) -> Result<Option<String>, SysfsError> {
    use std::io::Read as _;
    let not_a_file = |what| SysfsError::NotAFile {
        path: path.to_owned(),
        what,
    };
    match fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(m) => return Err(not_a_file(describe_file_type(m.file_type()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match path.symlink_metadata() {
                Ok(_) => Err(not_a_file("a dangling symbolic link")),
                Err(_) => Ok(None),
            };
        }
        Err(e) => return Err(io_error(path, e)),
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| io_error(path, e))?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_FILE_BYTES) {
        return Err(SysfsError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| SysfsError::NotUtf8 {
            path: path.to_owned(),
        })
}

/// A single-value file parsed by `parse`; missing is `None`, unparsable an error.
fn read_value<T>(
    path: &Path,
    expected: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, SysfsError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    parse(text.trim())
        .map(Some)
        .ok_or_else(|| SysfsError::BadValue {
            path: path.to_owned(),
            expected,
            text: text.trim().to_owned(),
        })
}

/// The text of a symbolic link (its target need not exist); a missing link is `None`.
fn read_link_name(path: &Path) -> Result<Option<String>, SysfsError> {
    match fs::read_link(path) {
        Ok(t) => t
            .into_os_string()
            .into_string()
            .map(Some)
            .map_err(|_| SysfsError::NotUtf8 {
                path: path.to_owned(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(SysfsError::BadValue {
            path: path.to_owned(),
            expected: "a symbolic link",
            text: String::from("(not a link)"),
        }),
        Err(e) => Err(io_error(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_by_name() {
        assert_eq!(vendor_from_name("dmar0"), IommuVendor::Intel);
        assert_eq!(vendor_from_name("ivhd1"), IommuVendor::Amd);
        assert_eq!(
            vendor_from_name("smmu3.0x0000000009050000"),
            IommuVendor::ArmSmmuV3
        );
        assert_eq!(
            vendor_from_name("smmu.0x0000000012600000"),
            IommuVendor::ArmSmmu
        );
        assert_eq!(vendor_from_name("virtio0"), IommuVendor::Virtio);
        assert_eq!(vendor_from_name("ipmmu"), IommuVendor::Unknown);
    }

    #[test]
    fn modalias_vendor() {
        let intel = "cpu:type:x86,ven0000fam0006mod0055:feature:,0000,0001\n";
        assert_eq!(cpu_vendor_from_modalias(intel), Some("intel"));
        let amd = "cpu:type:x86,ven0002fam0019mod0001:feature:,0000";
        assert_eq!(cpu_vendor_from_modalias(amd), Some("amd"));
        assert_eq!(
            cpu_vendor_from_modalias("cpu:type:aarch64:feature:,0000"),
            Some("arm")
        );
        assert_eq!(cpu_vendor_from_modalias("cpu:type:x86,ven0009fam"), None);
        assert_eq!(cpu_vendor_from_modalias("garbage"), None);
        assert_eq!(cpu_vendor_from_modalias("cpu:type:x86,ven"), None);
    }

    #[test]
    fn cpu_vendor_needs_agreement() {
        let i = IommuUnit::new("dmar0", IommuVendor::Intel);
        let a = IommuUnit::new("ivhd0", IommuVendor::Amd);
        let v = IommuUnit::new("virtio0", IommuVendor::Virtio);
        assert_eq!(
            cpu_vendor_from_iommus(&[i.clone(), v.clone()]),
            Some("intel")
        );
        assert_eq!(cpu_vendor_from_iommus(&[i, a]), None);
        assert_eq!(cpu_vendor_from_iommus(&[v]), None);
    }

    #[test]
    fn group_numbers() {
        assert_eq!(parse_group_number("12"), Some(12));
        assert_eq!(parse_group_number("4294967295"), Some(u32::MAX));
        assert_eq!(parse_group_number("4294967296"), None);
        assert_eq!(parse_group_number("+1"), None);
        assert_eq!(parse_group_number(""), None);
        assert_eq!(parse_group_number("x1"), None);
        // Found by the sysfs_tree fuzz target: "001" next to "1" gave two groups with
        // id 1, and the second one's reserved regions were ignored.
        assert_eq!(parse_group_number("0"), Some(0));
        assert_eq!(parse_group_number("001"), None);
        assert_eq!(parse_group_number("01"), None);
    }
}
