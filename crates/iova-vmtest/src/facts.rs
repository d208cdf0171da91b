//! Facts about the guest read straight from its sysfs, independently of
//! `iova_linux::sysfs`, to derive the answers the kernel must give.

use std::fs;

use iova::kernel::KernelVersion;
use iova::range::{IovaRange, IovaSet};

/// The running kernel's release (`uname -r`, completed with the point release where a
/// distribution's ABI name hides it: `iova_linux::hostfacts::kernel_version`), and the
/// release whose answers the
/// simulation gives for it: the booted one, or the newest modelled when the booted
/// one is newer than every modelled release (or unreadable, which the caller reports).
pub fn kernel() -> (Option<String>, KernelVersion) {
    let release = iova_linux::hostfacts::kernel_version();
    let modelled = match release.as_deref().map(KernelVersion::parse) {
        Some(Ok(v)) if !v.is_newer_than_modelled() => v,
        _ => KernelVersion::NEWEST,
    };
    (release, modelled)
}

/// "kernel RELEASE (modelled as VERSION)", for the lines that report a disagreement or
/// a differential's totals.
pub fn kernel_label() -> String {
    let (release, modelled) = kernel();
    format!(
        "kernel {} (modelled as {modelled})",
        release.as_deref().unwrap_or("unknown")
    )
}

/// The IOMMU group of a PCI device.
pub fn group_of(bdf: &str) -> Result<u32, String> {
    let link = fs::read_link(format!("/sys/bus/pci/devices/{bdf}/iommu_group"))
        .map_err(|e| format!("iommu_group of {bdf}: {e}"))?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("bad iommu_group link {}", link.display()))
}

/// The VT-d maximum guest address width: bits 21:16 of `cap`, plus one.
pub fn vtd_address_width() -> Result<u32, String> {
    let text = fs::read_to_string("/sys/class/iommu/dmar0/intel-iommu/cap")
        .map_err(|e| format!("dmar0 cap: {e}"))?;
    let cap =
        u64::from_str_radix(text.trim(), 16).map_err(|e| format!("dmar0 cap {text:?}: {e}"))?;
    let mgaw = (cap >> 16) & 0x3f;
    u32::try_from(mgaw + 1).map_err(|e| e.to_string())
}

/// The group's reserved regions that exclude IOVAs (every kind but
/// `direct-relaxable`), from `reserved_regions` (`first last kind`, inclusive).
pub fn excluded_regions(group: u32) -> Result<Vec<IovaRange>, String> {
    let path = format!("/sys/kernel/iommu_groups/{group}/reserved_regions");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [first, last, kind] = f.as_slice() else {
            return Err(format!("{path}:{}: expected 3 fields", n + 1));
        };
        let parse = |s: &str| {
            u64::from_str_radix(s.trim_start_matches("0x"), 16)
                .map_err(|e| format!("{path}:{}: {s}: {e}", n + 1))
        };
        if *kind == "direct-relaxable" {
            continue;
        }
        out.push(IovaRange::new(parse(first)?, parse(last)?).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The IOVAs a type1 container holding only this group must report: the aperture
/// `[0, 2^aw - 1]` minus the excluded reserved regions.
pub fn expected_valid(group: u32) -> Result<(IovaSet, u64), String> {
    let aw = vtd_address_width()?;
    let top = 1u64
        .checked_shl(aw)
        .and_then(|t| t.checked_sub(1))
        .ok_or_else(|| format!("address width {aw}"))?;
    let mut set = IovaSet::from(IovaRange::new(0, top).map_err(|e| e.to_string())?);
    for r in excluded_regions(group)? {
        set.remove(r);
    }
    Ok((set, top))
}

/// The vfio cdev name (`vfio0`) of a device bound to vfio-pci, if the kernel has cdevs.
pub fn vfio_cdev(bdf: &str) -> Result<String, String> {
    let dir = format!("/sys/bus/pci/devices/{bdf}/vfio-dev");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .next()
        .ok_or_else(|| format!("{dir} is empty"))
}

/// A small file's text, trimmed; empty when it cannot be read.
pub fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The PCI devices with these IDs (`0x1234`, `0x11e8` as sysfs prints them), sorted by
/// address.
pub fn pci_devices_with(vendor: &str, device: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    read_trimmed(&format!("/sys/bus/pci/devices/{n}/vendor")) == vendor
                        && read_trimmed(&format!("/sys/bus/pci/devices/{n}/device")) == device
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The unprivileged user the memlock checks run a VMM or `iovactl replay --vfio` as.
pub const VM_USER: &str = "vmtest";

/// Makes the unprivileged user `user` (no CAP_IPC_LOCK) and lets it open the VFIO
/// and iommufd nodes, as libvirt does for its QEMU user.
pub fn unprivileged_user(user: &str) -> Result<(), String> {
    let e = |what: &str, err: std::io::Error| format!("{what}: {err}");
    std::fs::create_dir_all("/etc").map_err(|x| e("/etc", x))?;
    if !std::fs::read_to_string("/etc/passwd").is_ok_and(|t| t.contains(user)) {
        std::fs::write(
            "/etc/passwd",
            format!("root:x:0:0::/:/bin/sh\n{user}:x:1000:1000::/tmp:/bin/sh\n"),
        )
        .map_err(|x| e("/etc/passwd", x))?;
        std::fs::write("/etc/group", format!("root:x:0:\n{user}:x:1000:\n"))
            .map_err(|x| e("/etc/group", x))?;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mut nodes: Vec<std::path::PathBuf> = vec!["/dev/iommu".into()];
    for dir in ["/dev/vfio", "/dev/vfio/devices"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            nodes.extend(rd.filter_map(Result::ok).map(|d| d.path()));
        }
    }
    for n in nodes.iter().filter(|n| n.exists() && !n.is_dir()) {
        std::fs::set_permissions(n, std::fs::Permissions::from_mode(0o666))
            .map_err(|x| e(&n.display().to_string(), x))?;
    }
    Ok(())
}
