//! Where a host description comes from: a saved profile file or a sysfs tree.

use std::path::{Path, PathBuf};

use clap::Args;
use iova::host::{Group, GroupIssue, Host, ValidRanges};

use crate::error::CliError;

/// Options that choose the host to look at. With neither, the running host's `/sys`.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Read the host from a directory shaped like /sys (for example one of
    /// examples/hosts/*) instead of the running host's /sys.
    #[arg(long, value_name = "DIR", conflicts_with = "host")]
    pub sysfs_root: Option<PathBuf>,
    /// Read the host from a profile file (JSON, as saved by `iovactl inspect
    /// --save-profile FILE`). `iovactl fleet` takes it once per host.
    #[arg(long, value_name = "PROFILE")]
    pub host: Vec<PathBuf>,
    /// The host CPU's physical address width in bits, overriding what the profile or
    /// `/proc/cpuinfo` ("address sizes") says.
    #[arg(long = "host-phys-bits", value_name = "BITS")]
    pub host_phys_bits: Option<u8>,
}

/// A loaded host and a phrase saying where it came from.
pub struct LoadedHost {
    /// The host.
    pub host: Host,
    /// Where it came from, for messages ("sysfs at /sys").
    pub source: String,
    /// What the facts were read from, for "computed from ...": "sysfs" or "the host
    /// profile".
    pub basis: &'static str,
    /// The sysfs root read, if the host came from one.
    pub root: Option<PathBuf>,
}

impl HostArgs {
    /// Whether these options name the running host (no profile, no other sysfs root).
    pub fn is_live(&self) -> bool {
        self.host.is_empty()
            && self
                .sysfs_root
                .as_deref()
                .is_none_or(|p| p == Path::new("/sys"))
    }

    /// Loads the host these options name.
    pub fn load(&self) -> Result<LoadedHost, CliError> {
        let mut l = self.load_inner(None)?;
        self.apply_overrides(&mut l)?;
        Ok(l)
    }

    /// Loads what a check of these devices (PCI addresses) needs: from sysfs only
    /// their groups and those groups' devices, every IOMMU unit and the settings
    /// (`read_host_for_devices`); a profile whole.
    pub fn load_for(&self, devices: &[String]) -> Result<LoadedHost, CliError> {
        let mut l = self.load_inner(Some(devices))?;
        self.apply_overrides(&mut l)?;
        Ok(l)
    }

    /// The one profile these options name, if any; more than one is a usage error
    /// (`iovactl fleet` answers for many hosts).
    pub fn profile(&self) -> Result<Option<&Path>, CliError> {
        match self.host.as_slice() {
            [] => Ok(None),
            [p] => Ok(Some(p)),
            _ => Err(CliError::input(
                "--host is given more than once: this command looks at one host; `iovactl \
                 fleet --host A.json --host B.json ...` checks a VM against many",
            )),
        }
    }

    /// Loads the host profile at `path`, with this command's `--host-phys-bits`.
    pub fn load_profile_at(&self, path: &Path) -> Result<LoadedHost, CliError> {
        let mut l = load_profile(path)?;
        self.apply_overrides(&mut l)?;
        Ok(l)
    }

    fn apply_overrides(&self, l: &mut LoadedHost) -> Result<(), CliError> {
        if let Some(b) = self.host_phys_bits {
            if !(32..=64).contains(&b) {
                return Err(CliError::input(format!(
                    "--host-phys-bits {b}: a physical address width is 32 to 64 bits"
                )));
            }
            l.host.settings.cpu_phys_bits = Some(b);
        }
        Ok(())
    }

    fn load_inner(&self, devices: Option<&[String]>) -> Result<LoadedHost, CliError> {
        if let Some(p) = self.profile()? {
            return load_profile(p);
        }
        let root = self
            .sysfs_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/sys"));
        let mut host = match devices {
            Some(d) => iova_linux::sysfs::read_host_for_devices(&root, d),
            None => iova_linux::sysfs::read_host(&root),
        }
        .map_err(|e| sysfs_error(&e))?;
        host.check_consistent().map_err(|e| {
            CliError::input(format!(
                "the host read from sysfs at {} is inconsistent: {e}",
                root.display()
            ))
        })?;
        if host.settings.cpu_phys_bits.is_none() {
            // The running host's /proc next to its /sys; a sysfs-root fixture's sibling
            // `proc/cpuinfo` when it has one.
            let cpuinfo = root.join("../proc/cpuinfo");
            host.settings.cpu_phys_bits = std::fs::read_to_string(cpuinfo)
                .ok()
                .and_then(|t| cpuinfo_phys_bits(&t));
        }
        if root.file_name().is_some_and(|n| n == "sys") {
            // The device nodes VFIO created, in the `dev` beside a `sys` (the running
            // host's /dev, or a copied tree's); a sysfs fixture of another name has none.
            let dev = root
                .parent()
                .map_or_else(|| PathBuf::from("dev"), |p| p.join("dev"));
            host.settings.device_nodes = iova_linux::devnodes::read_device_nodes(&dev, &root)
                .map_err(|e| sysfs_error(&e))?;
        }
        if self.sysfs_root.is_none() {
            // The live host: facts /sys does not hold.
            let s = &mut host.settings;
            s.cpu_page_size = s
                .cpu_page_size
                .or_else(iova_linux::hostfacts::cpu_page_size);
            s.kernel = s
                .kernel
                .take()
                .or_else(iova_linux::hostfacts::kernel_version);
        }
        Ok(LoadedHost {
            host,
            source: format!("sysfs at {}", root.display()),
            basis: "sysfs",
            root: Some(root),
        })
    }
}

/// A sysfs reading error as a CLI error: a file that exists but that the operating
/// system would not let us read (permissions, an I/O error) is exit 3; anything else
/// (missing root, malformed content, wrong file type) is bad input, exit 2.
fn sysfs_error(e: &iova_linux::sysfs::SysfsError) -> CliError {
    use iova_linux::sysfs::SysfsError;
    match e {
        SysfsError::Io { source, .. } | SysfsError::Root { source, .. }
            if source.kind() != std::io::ErrorKind::NotFound =>
        {
            CliError::Os(e.to_string())
        }
        _ => CliError::input(e.to_string()),
    }
}

fn load_profile(path: &Path) -> Result<LoadedHost, CliError> {
    let bytes = crate::input::read_file(path, "host profile")?;
    let text = String::from_utf8(bytes).map_err(|e| {
        CliError::input(format!(
            "host profile {} is not UTF-8 text: {e}",
            path.display()
        ))
    })?;
    let host: Host = serde_json::from_str(&text).map_err(|e| {
        CliError::input(format!("host profile {} is not valid: {e}", path.display()))
    })?;
    host.check_consistent().map_err(|e| {
        CliError::input(format!("host profile {} is not valid: {e}", path.display()))
    })?;
    Ok(LoadedHost {
        host,
        source: format!("profile {}", path.display()),
        basis: "the host profile",
        root: None,
    })
}

/// The groups of the named devices, in the order given, without repeats. An unknown
/// device, or one without a group, is an input error naming it.
pub fn groups_of_devices<'h>(
    host: &'h Host,
    devices: &[String],
) -> Result<Vec<&'h Group>, CliError> {
    let mut out: Vec<&Group> = Vec::new();
    for d in devices {
        let g = host
            .group_of_device(d)
            .map_err(|e| CliError::input(format!("--device {d}: {e}")))?;
        if !out.iter().any(|x| x.id == g.id) {
            out.push(g);
        }
    }
    Ok(out)
}

/// A group's valid IOVA ranges and the issues a user must know about.
pub fn group_facts(host: &Host, group: &Group) -> Result<(ValidRanges, Vec<GroupIssue>), CliError> {
    let valid = host
        .valid_iova_ranges(group.id)
        .map_err(|e| CliError::input(e.to_string()))?;
    let issues = host
        .group_issues(group.id)
        .map_err(|e| CliError::input(e.to_string()))?;
    Ok((valid, issues))
}

/// The virtual machine a sysfs tree describes, if it is one: the DMI vendor or product
/// (`class/dmi/id/{sys_vendor,product_name}`) of a known hypervisor, or, on the running
/// host (`/sys`) only, the `hypervisor` CPU flag of `/proc/cpuinfo`. Under another
/// `--sysfs-root` only the tree is looked at.
pub fn virtual_machine(root: &Path) -> Option<String> {
    const KNOWN: [(&str, &str); 12] = [
        ("QEMU", "QEMU"),
        ("KVM", "KVM"),
        ("Bochs", "QEMU"),
        ("VMware", "VMware"),
        ("VirtualBox", "VirtualBox"),
        ("innotek", "VirtualBox"),
        ("Xen", "Xen"),
        ("Virtual Machine", "Hyper-V"),
        ("Amazon EC2", "Amazon EC2"),
        ("Google Compute Engine", "Google Compute Engine"),
        ("Cloud Hypervisor", "Cloud Hypervisor"),
        ("Firecracker", "Firecracker"),
    ];
    for file in ["class/dmi/id/sys_vendor", "class/dmi/id/product_name"] {
        let Ok(text) = read_small(&root.join(file)) else {
            continue;
        };
        if let Some((_, vmm)) = KNOWN.iter().find(|(k, _)| text.contains(k)) {
            return Some((*vmm).to_owned());
        }
    }
    if root == Path::new("/sys") {
        if let Ok(cpuinfo) = read_small(Path::new("/proc/cpuinfo")) {
            let flagged = cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|w| w == "hypervisor"));
            if flagged {
                return Some("the CPU reports a hypervisor".to_owned());
            }
        }
    }
    None
}

/// At most 1 MiB of a regular file, as text (lossy).
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(1 << 20).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The physical address width from `/proc/cpuinfo` ("address sizes\t: 46 bits
/// physical, 57 bits virtual"); `None` when no line says it.
pub fn cpuinfo_phys_bits(text: &str) -> Option<u8> {
    text.lines()
        .filter(|l| l.starts_with("address sizes"))
        .find_map(|l| {
            let (_, v) = l.split_once(':')?;
            let n = v.split_whitespace().next()?;
            v.contains("bits physical")
                .then(|| n.parse::<u8>().ok())
                .flatten()
        })
}

/// The host's devices an ID selector (`VENDOR:DEVICE` or `VENDOR:*`, 4-digit hex)
/// names; `None` when `sel` is not an ID selector (a PCI address).
pub fn devices_with_ids<'h>(host: &'h Host, sel: &str) -> Option<Vec<&'h iova::host::Device>> {
    let hex4 = |t: &str| t.len() == 4 && t.bytes().all(|b| b.is_ascii_hexdigit());
    let (v, d) = sel
        .split_once(':')
        .filter(|(v, d)| hex4(v) && (hex4(d) || *d == "*"))?;
    let vendor = u16::from_str_radix(v, 16).unwrap_or(0);
    let device = (d != "*").then(|| u16::from_str_radix(d, 16).unwrap_or(0));
    Some(
        host.devices
            .iter()
            .filter(|x| {
                x.vendor_id == Some(vendor) && device.is_none_or(|d| x.device_id == Some(d))
            })
            .collect(),
    )
}

/// Expands device selectors: a PCI address stays as it is; `VENDOR:DEVICE` (two 4-digit
/// hex IDs, such as `10de:2330`) selects every device of the host with those IDs;
/// `VENDOR:*` selects a vendor's devices when they all share one device ID. No match,
/// or a vendor with several device IDs, is an input error listing the candidates.
pub fn resolve_devices(host: &Host, selectors: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for sel in selectors {
        let Some(matches) = devices_with_ids(host, sel) else {
            if !out.contains(sel) {
                out.push(sel.clone());
            }
            continue;
        };
        let wildcard = sel.ends_with(":*");
        let describe = |x: &iova::host::Device| {
            format!(
                "{} [{:04x}:{:04x}]",
                x.name,
                x.vendor_id.unwrap_or(0),
                x.device_id.unwrap_or(0)
            )
        };
        if matches.is_empty() {
            let all: Vec<String> = host.devices.iter().map(describe).collect();
            return Err(CliError::input(format!(
                "--device {sel}: no device of the host has these IDs; its devices: {}",
                if all.is_empty() {
                    "none".to_owned()
                } else {
                    all.join(", ")
                }
            )));
        }
        let mut ids: Vec<Option<u16>> = matches.iter().map(|x| x.device_id).collect();
        ids.sort_unstable();
        ids.dedup();
        if wildcard && ids.len() > 1 {
            return Err(CliError::input(format!(
                "--device {sel}: ambiguous, the vendor has several device IDs here: {}; name one",
                matches
                    .iter()
                    .map(|x| describe(x))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for x in matches {
            if !out.contains(&x.name) {
                out.push(x.name.clone());
            }
        }
    }
    Ok(out)
}

/// sPAPR TCE (IBM Power): the group's DMA windows from
/// `VFIO_IOMMU_SPAPR_TCE_GET_INFO` of a fresh v2 (else v1) container; `None` when the
/// group is not bound to vfio-pci or the host has no sPAPR IOMMU.
pub fn ask_spapr(group: u32) -> Option<iova::spapr::SpaprInfo> {
    use iova::spapr::{SpaprSpace, SpaprVersion};
    use iova_linux::spapr::SpaprContainer;
    if !std::path::Path::new(&format!("/dev/vfio/{group}")).exists() {
        return None;
    }
    [SpaprVersion::V2, SpaprVersion::V1]
        .into_iter()
        .find_map(|v| {
            let mut c = SpaprContainer::open().ok()?;
            if !c.supports(v).ok()? {
                return None;
            }
            c.attach_group(group, v).ok()?;
            c.tce_info().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::cpuinfo_phys_bits;

    #[test]
    fn cpuinfo_address_sizes() {
        let t = "processor\t: 0\naddress sizes\t: 46 bits physical, 57 bits virtual\n";
        assert_eq!(cpuinfo_phys_bits(t), Some(46));
        assert_eq!(cpuinfo_phys_bits("address sizes : lots"), None);
        assert_eq!(cpuinfo_phys_bits(""), None);
    }
}
