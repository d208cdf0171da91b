//! The host model: IOMMU units, IOMMU groups, devices and reserved regions.
//!
//! A [`Host`] is what discovery (sysfs, a saved profile file, or a hand-written
//! simulation) produces and what the container and the layout checker consume. It holds
//! facts only; the set algebra that turns them into usable IOVAs is
//! [`Host::valid_iova_ranges`].
//!
//! The rules follow the Linux kernel (see `docs/semantics.md`): the usable IOVAs
//! of a group are its IOMMU's aperture minus every reserved region of the group except
//! `direct-relaxable` ones. When the aperture is not known (sysfs does not show it for
//! every IOMMU), the whole 64-bit space is assumed and the result says so.

use serde::{Deserialize, Serialize};

use crate::domain::{DomainConfig, Member, Refusal};
use crate::range::{IovaRange, IovaSet};

/// The page-size bitmap of a typical x86 IOMMU: 4 KiB | 2 MiB | 1 GiB.
pub const PGSIZES_4K_2M_1G: u64 = 0x4020_1000;
/// 4 KiB pages only.
pub const PGSIZES_4K: u64 = 0x1000;
/// An ARM 64 KiB granule: 64 KiB | 512 MiB.
pub const PGSIZES_64K_512M: u64 = 0x2001_0000;

/// Who made an IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IommuVendor {
    /// Intel VT-d (`dmar*`).
    Intel,
    /// AMD-Vi (`ivhd*`).
    Amd,
    /// ARM SMMUv3.
    ArmSmmuV3,
    /// ARM SMMU v1/v2.
    ArmSmmu,
    /// virtio-iommu.
    Virtio,
    /// Anything else.
    Unknown,
}

impl IommuVendor {
    /// The short lower-case name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            IommuVendor::Intel => "intel",
            IommuVendor::Amd => "amd",
            IommuVendor::ArmSmmuV3 => "arm-smmu-v3",
            IommuVendor::ArmSmmu => "arm-smmu",
            IommuVendor::Virtio => "virtio",
            IommuVendor::Unknown => "unknown",
        }
    }
}

/// One IOMMU hardware unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IommuUnit {
    /// Kernel name (`dmar0`, `ivhd0`, `smmu3.0x0000000009050000`).
    pub name: String,
    /// Who made it.
    pub vendor: IommuVendor,
    /// Input address width in bits, if known (VT-d MGAW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_width: Option<u8>,
    /// The IOVAs its page tables can translate, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aperture: Option<IovaRange>,
    /// Supported page sizes as a bitmap (bit n set = 2^n bytes), if known.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub page_sizes: Option<u64>,
    /// Whether the unit can remap (isolate) device interrupts, if known. VFIO type1
    /// refuses groups without it unless unsafe interrupts are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_remapping: Option<bool>,
    /// Whether the unit supports pass-through (an identity domain), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_through: Option<bool>,
}

impl IommuUnit {
    /// A unit with just a name and a vendor; every capability unknown.
    pub fn new(name: impl Into<String>, vendor: IommuVendor) -> Self {
        IommuUnit {
            name: name.into(),
            vendor,
            address_width: None,
            aperture: None,
            page_sizes: None,
            interrupt_remapping: None,
            pass_through: None,
        }
    }

    /// Sets the address width and the aperture `[0, 2^bits - 1]` it implies.
    /// Widths above 64 are clamped to the full space; 0 gives no aperture.
    pub fn with_address_width(mut self, bits: u8) -> Self {
        self.address_width = Some(bits);
        self.aperture = aperture_for_width(bits);
        self
    }

    /// Sets the page-size bitmap.
    pub fn with_page_sizes(mut self, bitmap: u64) -> Self {
        self.page_sizes = Some(bitmap);
        self
    }

    /// Sets whether interrupts are remapped.
    pub fn with_interrupt_remapping(mut self, on: bool) -> Self {
        self.interrupt_remapping = Some(on);
        self
    }
}

/// The aperture `[0, 2^bits - 1]`, or `None` for a width of 0.
pub fn aperture_for_width(bits: u8) -> Option<IovaRange> {
    match bits {
        0 => None,
        b if b >= 64 => Some(IovaRange::FULL),
        b => IovaRange::new(0, (1u64 << b) - 1).ok(),
    }
}

/// The default domain type of a group, as in `/sys/kernel/iommu_groups/N/type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DomainType {
    /// `DMA`: translated, strict invalidation.
    #[serde(rename = "DMA")]
    Dma,
    /// `DMA-FQ`: translated, lazy (flush-queue) invalidation.
    #[serde(rename = "DMA-FQ")]
    DmaFq,
    /// `identity`: DMA bypasses translation.
    #[serde(rename = "identity")]
    Identity,
    /// `blocked`: all DMA is blocked.
    #[serde(rename = "blocked")]
    Blocked,
    /// `unmanaged`: owned by a user such as VFIO.
    #[serde(rename = "unmanaged")]
    Unmanaged,
    /// Type file absent or unreadable.
    #[serde(rename = "unknown")]
    Unknown,
}

impl DomainType {
    /// The spelling used in sysfs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DomainType::Dma => "DMA",
            DomainType::DmaFq => "DMA-FQ",
            DomainType::Identity => "identity",
            DomainType::Blocked => "blocked",
            DomainType::Unmanaged => "unmanaged",
            DomainType::Unknown => "unknown",
        }
    }

    /// Parses the sysfs spelling (surrounding white space ignored). `None` when unknown.
    pub fn from_sysfs(text: &str) -> Option<DomainType> {
        Some(match text.trim() {
            "DMA" => DomainType::Dma,
            "DMA-FQ" => DomainType::DmaFq,
            "identity" => DomainType::Identity,
            "blocked" => DomainType::Blocked,
            "unmanaged" => DomainType::Unmanaged,
            _ => return None,
        })
    }

    /// Whether DMA bypasses translation in this domain.
    pub fn is_bypass(&self) -> bool {
        matches!(self, DomainType::Identity)
    }
}

/// The kind of a reserved region, as the last column of `reserved_regions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReservedKind {
    /// Must be identity-mapped for the device to work (an RMRR); blocks assignment.
    Direct,
    /// Identity-mapped by default but may be given up (ISA/USB RMRRs, GPU stolen
    /// memory); VFIO does not exclude it.
    DirectRelaxable,
    /// Never mapped (AMD HyperTransport, PCI host bridge windows).
    Reserved,
    /// An MSI doorbell window, hardware (x86) or software (ARM).
    Msi,
}

impl ReservedKind {
    /// The spelling used in sysfs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservedKind::Direct => "direct",
            ReservedKind::DirectRelaxable => "direct-relaxable",
            ReservedKind::Reserved => "reserved",
            ReservedKind::Msi => "msi",
        }
    }

    /// Parses the sysfs spelling. `None` when unknown.
    pub fn from_sysfs(text: &str) -> Option<ReservedKind> {
        Some(match text {
            "direct" => ReservedKind::Direct,
            "direct-relaxable" => ReservedKind::DirectRelaxable,
            "reserved" => ReservedKind::Reserved,
            "msi" => ReservedKind::Msi,
            _ => return None,
        })
    }

    /// Whether VFIO punches this kind out of the usable IOVAs (all but
    /// `direct-relaxable`).
    pub fn excludes_iova(self) -> bool {
        !matches!(self, ReservedKind::DirectRelaxable)
    }
}

/// A reserved region of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReservedRegion {
    /// The addresses.
    #[serde(flatten)]
    pub range: IovaRange,
    /// What kind of reservation.
    pub kind: ReservedKind,
}

/// A PCI (or platform) device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Address, e.g. `0000:03:00.0`.
    pub name: String,
    /// PCI vendor id, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<u16>,
    /// PCI device id, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<u16>,
    /// PCI class code (24 bits), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<u32>,
    /// The IOMMU group, if the device has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// The name of the IOMMU unit translating for it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu: Option<String>,
    /// The driver the device is bound to (sysfs `driver` link), if known; it decides
    /// whether its group can be given to VFIO ([`Host::viability`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Binding>,
}

/// A device's driver binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binding {
    /// No driver is bound.
    Unbound,
    /// Bound to this driver (`vfio-pci`, `nvme`, `snd_hda_intel`, ...).
    Driver(String),
}

impl Binding {
    /// Whether a device bound this way leaves its group usable by VFIO: unbound, a
    /// VFIO driver (`vfio-pci` and its variant drivers such as `mlx5_vfio_pci`), or
    /// one of the drivers the kernel lets share a group with VFIO. Since Linux 5.19
    /// these are the drivers that set `driver_managed_dma` (`pci-stub`, `pcieport`,
    /// the VFIO drivers); before, `vfio_dev_driver_allowed` allowed `pci-stub` and any
    /// bridge, which [`Host::viability`] adds for a device of a bridge class.
    pub fn leaves_group_viable(&self) -> bool {
        match self {
            Binding::Unbound => true,
            Binding::Driver(d) => is_vfio_driver(d) || d == "pci-stub" || d == "pcieport",
        }
    }
}

/// Whether a driver name is VFIO's: `vfio-pci`, `vfio-platform`, ..., or a vendor
/// variant driver built on vfio-pci-core (`mlx5_vfio_pci`, `hisi_acc_vfio_pci`,
/// `nvgrace_gpu_vfio_pci`, ...).
pub fn is_vfio_driver(name: &str) -> bool {
    name.starts_with("vfio") || name.contains("_vfio_pci") || name.contains("-vfio-pci")
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Binding::Unbound => f.write_str("no driver"),
            Binding::Driver(d) => write!(f, "driver {d}"),
        }
    }
}

/// Whether a group can be claimed by VFIO now ([`Host::viability`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Viability {
    /// Every other device of the group is unbound or bound to a driver allowed
    /// beside VFIO.
    Viable,
    /// These devices (with their drivers) keep the group from VFIO: the kernel refuses
    /// to claim it (`iommu_group_claim_dma_owner`, EPERM; QEMU: "group N is not
    /// viable").
    NotViable {
        /// `(device, driver)` of each device in the way.
        devices: Vec<(String, String)>,
    },
    /// The bindings of these devices are not known (a profile saved without them).
    Unknown {
        /// The devices whose binding is unknown.
        devices: Vec<String>,
    },
}

impl Device {
    /// A device with only a name.
    pub fn new(name: impl Into<String>) -> Self {
        Device {
            name: name.into(),
            vendor_id: None,
            device_id: None,
            class: None,
            group: None,
            iommu: None,
            driver: None,
        }
    }
}

/// An IOMMU group: the unit of assignment to a VFIO container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group number.
    pub id: u32,
    /// The default domain type.
    #[serde(rename = "type")]
    pub domain_type: DomainType,
    /// Names of the member devices.
    pub devices: Vec<String>,
    /// The IOMMU unit behind the group, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu: Option<String>,
    /// Reserved regions as the kernel reports them.
    #[serde(default)]
    pub reserved_regions: Vec<ReservedRegion>,
    /// sPAPR TCE (IBM Power) only: the DMA windows of the group's partitionable
    /// endpoint, as `VFIO_IOMMU_SPAPR_TCE_GET_INFO` reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spapr: Option<crate::spapr::SpaprInfo>,
}

impl Group {
    /// A translated (`DMA`) group with no devices and no reserved regions.
    pub fn new(id: u32) -> Self {
        Group {
            id,
            domain_type: DomainType::Dma,
            devices: Vec::new(),
            iommu: None,
            reserved_regions: Vec::new(),
            spapr: None,
        }
    }
}

/// Whole-host facts that are not per IOMMU.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostSettings {
    /// `vfio_iommu_type1.allow_unsafe_interrupts`, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unsafe_interrupts: Option<bool>,
    /// `iommufd.allow_unsafe_interrupts` (iommufd and its VFIO compatibility
    /// container), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommufd_allow_unsafe_interrupts: Option<bool>,
    /// `vfio_iommu_type1.dma_entry_limit`, if known (kernel default 65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dma_entry_limit: Option<u32>,
    /// CPU vendor (`intel`, `amd`, `arm`), if known; guest layouts depend on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_vendor: Option<String>,
    /// The CPU's physical address width in bits (`/proc/cpuinfo` "address sizes"), if
    /// known; a VMM's vCPU cannot address more than this under KVM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_phys_bits: Option<u8>,
    /// The CPU page size in bytes (4K, 16K or 64K), if known; IOMMU pages below it are
    /// treated differently by type1 and iommufd (see `iova::domain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_page_size: Option<u64>,
    /// The kernel release (`uname -r`, or the distribution's point release where
    /// `uname -r` hides it, e.g. Debian's `6.1.192-1` for `6.1.0-57-amd64`), if known;
    /// the simulation answers as that release (`iova::kernel::KernelVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Whether the running kernel remaps interrupts, from what it enabled (the
    /// interrupt chips it registered: `IR-PCI-MSI...`, `IR-IO-APIC` with remapping,
    /// `PCI-MSI...`, `IO-APIC` without), if known. A unit's capability bit alone does not
    /// say it: `intremap=off` or a firmware opt-out leave it set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_remapping_active: Option<bool>,
    /// What [`HostSettings::interrupt_remapping_active`] was read from, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_remapping_evidence: Option<String>,
    /// The VFIO and iommufd device nodes a VMM opens, with their owners and modes, if
    /// known (`None`: not read, as for a sysfs tree without its `/dev`). An empty list
    /// is known: no node exists (the vfio modules are not loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_nodes: Option<Vec<DeviceNode>>,
}

/// A device node a VMM opens to use VFIO: the container, iommufd, a group, a device's
/// cdev. A VMM that does not run as root needs read and write access to each it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// The path, e.g. `/dev/vfio/7`.
    pub path: String,
    /// What the node is.
    pub kind: NodeKind,
    /// The owner's user id.
    pub uid: u32,
    /// The owner's group id.
    pub gid: u32,
    /// The permission bits (`0o660`).
    pub mode: u32,
    /// Whether the node carries a POSIX access ACL, which can grant more than the mode
    /// says (udev's `uaccess`): access is then not decided by the mode alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acl: bool,
}

/// What a [`DeviceNode`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// `/dev/vfio/vfio`: the type1 container (or iommufd's compatibility container).
    Container,
    /// `/dev/iommu`: iommufd.
    Iommufd,
    /// `/dev/vfio/N`: the group with this number.
    Group(u32),
    /// `/dev/vfio/devices/vfioN`: the cdev of this device (`0000:03:00.0`).
    Cdev(String),
}

impl DeviceNode {
    /// Whether a process with user id `uid`, group ids `gids` and (when
    /// `dac_override`) `CAP_DAC_OVERRIDE` may open the node for reading and writing, by
    /// its mode. `None` when the node has an ACL that could say otherwise.
    pub fn read_write_by(&self, uid: u32, gids: &[u32], dac_override: bool) -> Option<bool> {
        if dac_override {
            return Some(true);
        }
        let bits = if uid == self.uid {
            self.mode >> 6
        } else if gids.contains(&self.gid) {
            self.mode >> 3
        } else {
            self.mode
        } & 0o6;
        if bits == 0o6 {
            Some(true)
        } else if self.acl {
            None
        } else {
            Some(false)
        }
    }
}

impl HostSettings {
    /// The `allow_unsafe_interrupts` module parameter that governs `flavour`: type1's
    /// for the type1 flavours, iommufd's for iommufd and its compatibility container;
    /// `false` when unknown (the kernel's default).
    pub fn allows_unsafe_interrupts(&self, flavour: crate::domain::Flavour) -> bool {
        if flavour.is_type1() {
            self.allow_unsafe_interrupts
        } else {
            self.iommufd_allow_unsafe_interrupts
        }
        .unwrap_or(false)
    }
}

/// A host: its IOMMU units, groups and devices.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Host {
    /// IOMMU hardware units.
    #[serde(default)]
    pub iommus: Vec<IommuUnit>,
    /// IOMMU groups, sorted by id.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Devices, sorted by name.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Host-wide settings.
    #[serde(default)]
    pub settings: HostSettings,
}

/// A question about a host that names something it does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No group with that id.
    #[error("no IOMMU group {0} on this host")]
    NoSuchGroup(u32),
    /// No device with that name.
    #[error("no device '{0}' on this host")]
    NoSuchDevice(String),
    /// The device exists but is not in an IOMMU group.
    #[error("device '{0}' is not in an IOMMU group (no IOMMU translates for it)")]
    NoGroup(String),
}

/// The usable IOVAs of a group and how much is known about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidRanges {
    /// The usable IOVAs.
    pub ranges: IovaSet,
    /// The aperture they were cut from; `None` when the IOMMU's aperture is unknown and
    /// the whole 64-bit space was assumed.
    pub aperture: Option<IovaRange>,
}

impl ValidRanges {
    /// Whether the aperture had to be assumed.
    pub fn aperture_known(&self) -> bool {
        self.aperture.is_some()
    }
}

/// Something about a group that a user assigning it to a VM must know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GroupIssue {
    /// The group's default domain is `identity` (`iommu=pt`, `iommu.passthrough=1`):
    /// the host's own DMA bypasses the IOMMU. Not a problem for assignment: VFIO claims
    /// the group and attaches its own translating domain. A note.
    IdentityDomain,
    /// Other devices of the group are bound to drivers that keep it from VFIO: the
    /// kernel refuses to claim the group (EPERM; QEMU: "group N is not viable").
    /// Blocks assignment until they are unbound or bound to vfio-pci.
    NotViable {
        /// `(device, driver)` of each device in the way.
        devices: Vec<(String, String)>,
    },
    /// The driver bindings of some devices of the group are not known, so whether VFIO
    /// can claim the group is not known.
    ViabilityUnknown {
        /// The devices whose binding is unknown.
        devices: Vec<String>,
    },
    /// The unit can remap interrupts but whether the running kernel does is not known
    /// (no evidence of the interrupt chips it enabled): VFIO refuses the group if it
    /// does not, unless allow_unsafe_interrupts is set.
    InterruptRemappingUnknown,
    /// Interrupts are not remapped, and `vfio_iommu_type1.allow_unsafe_interrupts=1`
    /// lets VFIO take the group anyway: it works, but the device can forge interrupts
    /// (MSI writes to any vector). A warning.
    UnsafeInterruptsAllowed,
    /// The group has a `direct` reserved region (an RMRR): the device needs an identity
    /// mapping there and cannot be assigned to a VM. Blocks assignment.
    DirectRegion {
        /// The region.
        range: IovaRange,
    },
    /// The IOMMU does not remap interrupts: VFIO refuses the group (EPERM) unless
    /// `allow_unsafe_interrupts` is set. Blocks safe assignment.
    NoInterruptRemapping,
    /// The aperture of the IOMMU is not known; the whole 64-bit space was assumed.
    ApertureUnknown,
    /// No IOMMU unit is known for the group.
    NoIommuUnit,
    /// The domain blocks all DMA.
    Blocked,
    /// The kernel refuses to put the group in a container with the others (no valid
    /// IOVA left, no common page size, ...); see [`crate::domain::Refusal`].
    Refused {
        /// The errno name the kernel answers.
        errno: String,
    },
}

impl GroupIssue {
    /// The issue's kind as JSON names it (`direct-region`, `not-viable`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            GroupIssue::IdentityDomain => "identity-domain",
            GroupIssue::NotViable { .. } => "not-viable",
            GroupIssue::ViabilityUnknown { .. } => "viability-unknown",
            GroupIssue::InterruptRemappingUnknown => "interrupt-remapping-unknown",
            GroupIssue::UnsafeInterruptsAllowed => "unsafe-interrupts-allowed",
            GroupIssue::DirectRegion { .. } => "direct-region",
            GroupIssue::NoInterruptRemapping => "no-interrupt-remapping",
            GroupIssue::ApertureUnknown => "aperture-unknown",
            GroupIssue::NoIommuUnit => "no-iommu-unit",
            GroupIssue::Blocked => "blocked",
            GroupIssue::Refused { .. } => "refused",
        }
    }

    /// Whether the issue makes safe assignment to a VM impossible.
    pub fn is_blocker(&self) -> bool {
        matches!(
            self,
            GroupIssue::DirectRegion { .. }
                | GroupIssue::NotViable { .. }
                | GroupIssue::NoInterruptRemapping
                | GroupIssue::Refused { .. }
        )
    }
}

impl std::fmt::Display for GroupIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupIssue::IdentityDomain => f.write_str(
                "default domain identity (iommu=pt): the host's DMA bypasses the IOMMU; VFIO \
                 claims the group and installs its own translating domain",
            ),
            GroupIssue::NotViable { devices } => write!(
                f,
                "not viable: {} keep{} the group from VFIO (QEMU: \"group is not viable\"); \
                 unbind {} or bind {} to vfio-pci",
                devices
                    .iter()
                    .map(|(d, drv)| format!("{d} (driver {drv})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if devices.len() == 1 { "s" } else { "" },
                if devices.len() == 1 { "it" } else { "them" },
                if devices.len() == 1 { "it" } else { "them" },
            ),
            GroupIssue::ViabilityUnknown { devices } => write!(
                f,
                "viability unknown: the driver bindings of {} are not known",
                devices.join(", ")
            ),
            GroupIssue::UnsafeInterruptsAllowed => f.write_str(
                "no interrupt remapping, allowed by vfio_iommu_type1.allow_unsafe_interrupts=1: \
                 VFIO takes the group, but the device can forge interrupts",
            ),
            GroupIssue::InterruptRemappingUnknown => f.write_str(
                "interrupt remapping unknown: the unit can remap interrupts, but nothing shows \
                 the running kernel does (intremap=off leaves the capability set); VFIO \
                 refuses the group (EPERM) if it does not",
            ),
            GroupIssue::DirectRegion { range } => write!(
                f,
                "direct RMRR {range}: device cannot be assigned (it needs an identity mapping there)"
            ),
            GroupIssue::NoInterruptRemapping => f.write_str(
                "no interrupt remapping: VFIO refuses the group (EPERM) unless allow_unsafe_interrupts is set",
            ),
            GroupIssue::ApertureUnknown => {
                f.write_str("aperture unknown: the whole 64-bit space is assumed")
            }
            GroupIssue::NoIommuUnit => f.write_str("no IOMMU unit known for this group"),
            GroupIssue::Blocked => f.write_str("blocked domain: all DMA is refused"),
            GroupIssue::Refused { errno } => {
                write!(f, "the kernel refuses the container ({errno})")
            }
        }
    }
}

impl Host {
    /// The group with this id.
    pub fn group(&self, id: u32) -> Result<&Group, HostError> {
        self.groups
            .iter()
            .find(|g| g.id == id)
            .ok_or(HostError::NoSuchGroup(id))
    }

    /// The device with this name. A short PCI address (`03:00.0`) matches domain 0000.
    pub fn device(&self, name: &str) -> Result<&Device, HostError> {
        let full;
        let wanted = if name.matches(':').count() == 1 {
            full = format!("0000:{name}");
            full.as_str()
        } else {
            name
        };
        self.devices
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(wanted))
            .ok_or_else(|| HostError::NoSuchDevice(name.to_owned()))
    }

    /// The group a device belongs to.
    pub fn group_of_device(&self, name: &str) -> Result<&Group, HostError> {
        let dev = self.device(name)?;
        match dev.group {
            Some(id) => self.group(id),
            None => self
                .groups
                .iter()
                .find(|g| g.devices.iter().any(|d| d == &dev.name))
                .ok_or_else(|| HostError::NoGroup(dev.name.clone())),
        }
    }

    /// The IOMMU unit with this name.
    pub fn iommu(&self, name: &str) -> Option<&IommuUnit> {
        self.iommus.iter().find(|u| u.name == name)
    }

    /// The IOMMU unit behind a group, if known.
    pub fn iommu_of_group(&self, group: &Group) -> Option<&IommuUnit> {
        let name = group.iommu.as_deref().or_else(|| {
            group
                .devices
                .iter()
                .find_map(|d| self.device(d).ok().and_then(|d| d.iommu.as_deref()))
        })?;
        self.iommu(name)
    }

    /// What a user must know about a group before assigning it: the isolation
    /// refusals of [`Domain`](crate::domain::Domain) under the safe defaults (direct
    /// RMRRs, missing interrupt remapping, a warning when `allow_unsafe_interrupts`
    /// lets VFIO take it anyway) first, then an identity default domain (a note), a
    /// blocked domain, interrupt remapping that is not known, an unknown IOMMU unit or
    /// aperture. Viability depends on which devices are assigned: [`Host::viability`].
    pub fn group_issues(&self, group_id: u32) -> Result<Vec<GroupIssue>, HostError> {
        let member = self.member(group_id)?;
        let mut out: Vec<GroupIssue> = member
            .refusals(&DomainConfig::default())
            .into_iter()
            .filter_map(|r| match r {
                Refusal::DirectRegion { range, .. } => Some(GroupIssue::DirectRegion { range }),
                Refusal::UnsafeInterrupts { .. } => {
                    Some(if self.settings.allow_unsafe_interrupts == Some(true) {
                        GroupIssue::UnsafeInterruptsAllowed
                    } else {
                        GroupIssue::NoInterruptRemapping
                    })
                }
                _ => None,
            })
            .collect();
        if member.domain_type.is_bypass() {
            out.push(GroupIssue::IdentityDomain);
        }
        if member.domain_type == DomainType::Blocked {
            out.push(GroupIssue::Blocked);
        }
        if member.interrupt_remapping.is_none()
            && self
                .iommu_of_group(self.group(group_id)?)
                .and_then(|u| u.interrupt_remapping)
                == Some(true)
            && self.settings.allow_unsafe_interrupts != Some(true)
        {
            out.push(GroupIssue::InterruptRemappingUnknown);
        }
        if member.unit.is_none() {
            out.push(GroupIssue::NoIommuUnit);
        } else if member.aperture.is_none() {
            out.push(GroupIssue::ApertureUnknown);
        }
        Ok(out)
    }

    /// Whether VFIO can claim group `group_id` for the devices `assigned` (which the
    /// user or libvirt binds to vfio-pci, so their own drivers do not count): every
    /// other device must be unbound or bound to a driver allowed beside VFIO
    /// ([`Binding::leaves_group_viable`]; before Linux 5.19 any bridge too). Unknown
    /// bindings of other devices give [`Viability::Unknown`].
    pub fn viability(&self, group_id: u32, assigned: &[&str]) -> Result<Viability, HostError> {
        let g = self.group(group_id)?;
        let before_5_19 = self
            .settings
            .kernel
            .as_deref()
            .and_then(|k| crate::kernel::KernelVersion::parse(k).ok())
            .map(|k| k < crate::kernel::KernelVersion::new(5, 19));
        let mut blocking = Vec::new();
        let mut unknown = Vec::new();
        for name in &g.devices {
            if assigned.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                continue;
            }
            let dev = self.device(name).ok();
            let bridge = dev
                .and_then(|d| d.class)
                .is_some_and(|c| c >> 8 == 0x0604 || c >> 8 == 0x0609);
            match dev.and_then(|d| d.driver.as_ref()) {
                None => unknown.push(name.clone()),
                Some(b) if b.leaves_group_viable() => {}
                // Before 5.19 a bridge's driver did not matter; unknown kernel: the
                // two rules disagree only here, so the answer is unknown.
                Some(_) if bridge && before_5_19 == Some(true) => {}
                Some(_) if bridge && before_5_19.is_none() => unknown.push(name.clone()),
                Some(Binding::Driver(d)) => blocking.push((name.clone(), d.clone())),
                Some(Binding::Unbound) => {}
            }
        }
        Ok(if !blocking.is_empty() {
            Viability::NotViable { devices: blocking }
        } else if !unknown.is_empty() {
            Viability::Unknown { devices: unknown }
        } else {
            Viability::Viable
        })
    }

    /// The usable IOVAs of a group: its IOMMU's aperture (or the whole 64-bit space when
    /// unknown, flagged in the result) minus every reserved region of the group except
    /// `direct-relaxable` ([`Member::valid`]).
    pub fn valid_iova_ranges(&self, group_id: u32) -> Result<ValidRanges, HostError> {
        let member = self.member(group_id)?;
        Ok(ValidRanges {
            ranges: member.valid(),
            aperture: member.aperture,
        })
    }

    /// The facts a group brings to a [`Domain`](crate::domain::Domain).
    pub fn member(&self, group_id: u32) -> Result<Member, HostError> {
        Member::of(self, group_id).map_err(|_| HostError::NoSuchGroup(group_id))
    }
}

/// A host description that contradicts itself or names what cannot exist: an address
/// width of 0 or above 64, an aperture that disagrees with the width, a page-size
/// bitmap of 0 or whose smallest page is above 64 KiB, two groups with one id, a group
/// or device naming an IOMMU unit or group the host does not have. `field` names the
/// place (`iommus[0].address_width`, `groups[2].iommu`). Pages below 4 KiB are not
/// refused: the kernel maps with them (see [`crate::domain`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InconsistentHost {
    /// Where: the JSON path of the field in a host profile.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Host {
    /// Checks that the host is possible and agrees with itself (see
    /// [`InconsistentHost`]). Unknown means unsafe: a host that fails this must not be
    /// used, since the answers built on it (valid IOVAs, blockers) would be wrong.
    pub fn check_consistent(&self) -> Result<(), InconsistentHost> {
        let bad = |field: String, message: String| Err(InconsistentHost { field, message });
        let mut units = std::collections::HashSet::new();
        for (i, u) in self.iommus.iter().enumerate() {
            let at = |f: &str| format!("iommus[{i}].{f}");
            if !units.insert(u.name.as_str()) {
                return bad(at("name"), format!("unit '{}' is listed twice", u.name));
            }
            if let Some(w) = u.address_width {
                if !(12..=64).contains(&w) {
                    return bad(
                        at("address_width"),
                        format!("{w} bits is impossible (an IOMMU translates 12 to 64 bits)"),
                    );
                }
                if u.aperture != aperture_for_width(w) {
                    return bad(
                        at("address_width"),
                        format!(
                            "{w} bits contradicts the aperture {} (a {w}-bit unit translates [0x0, {:#x}])",
                            u.aperture.map_or("(none)".to_owned(), |a| a.to_string()),
                            aperture_for_width(w).map_or(0, |a| a.last())
                        ),
                    );
                }
            }
            if let Some(p) = u.page_sizes {
                if p == 0 {
                    return bad(at("page_sizes"), "0 names no page size".to_owned());
                }
                // Pages below 4 KiB (or below the CPU page) are possible: type1 shows
                // them as the CPU page (vfio_update_pgsize_bitmap) and iommufd aligns
                // to them (iopt_table_add_domain; the selftests' mock domain has 2 KiB
                // pages). See `crate::domain`, rules 4 and 5.
                if p.trailing_zeros() > 16 {
                    return bad(
                        at("page_sizes"),
                        format!("{p:#x}: no IOMMU has a smallest page above 64 KiB"),
                    );
                }
            }
        }
        let mut groups = std::collections::HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            if !groups.insert(g.id) {
                return bad(
                    format!("groups[{i}].id"),
                    format!("group {} is listed twice", g.id),
                );
            }
            if let Some(name) = &g.iommu {
                if !units.contains(name.as_str()) {
                    return bad(
                        format!("groups[{i}].iommu"),
                        format!(
                            "group {} names IOMMU unit '{name}', which is not in iommus",
                            g.id
                        ),
                    );
                }
            }
        }
        let mut devices = std::collections::HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            if !devices.insert(d.name.as_str()) {
                return bad(
                    format!("devices[{i}].name"),
                    format!("device '{}' is listed twice", d.name),
                );
            }
            if let Some(id) = d.group {
                if !groups.contains(&id) {
                    return bad(
                        format!("devices[{i}].group"),
                        format!(
                            "device '{}' names group {id}, which is not in groups",
                            d.name
                        ),
                    );
                }
            }
            if let Some(name) = &d.iommu {
                if !units.contains(name.as_str()) {
                    return bad(
                        format!("devices[{i}].iommu"),
                        format!(
                            "device '{}' names IOMMU unit '{name}', which is not in iommus",
                            d.name
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::range::HexU64;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(HexU64).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<HexU64>::deserialize(d)?.map(|h| h.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_kind_is_the_json_tag() {
        let all = [
            GroupIssue::IdentityDomain,
            GroupIssue::NotViable {
                devices: vec![("0000:01:00.1".into(), "snd_hda_intel".into())],
            },
            GroupIssue::ViabilityUnknown {
                devices: vec!["0000:01:00.1".into()],
            },
            GroupIssue::InterruptRemappingUnknown,
            GroupIssue::UnsafeInterruptsAllowed,
            GroupIssue::DirectRegion {
                range: IovaRange::new(0, 0xfff).unwrap(),
            },
            GroupIssue::NoInterruptRemapping,
            GroupIssue::ApertureUnknown,
            GroupIssue::NoIommuUnit,
            GroupIssue::Blocked,
            GroupIssue::Refused {
                errno: "EINVAL".into(),
            },
        ];
        for i in all {
            let v = serde_json::to_value(&i).unwrap();
            assert_eq!(v["kind"], i.kind(), "{i:?}");
        }
    }

    fn r(a: u64, b: u64) -> IovaRange {
        IovaRange::new(a, b).unwrap()
    }

    fn sample() -> Host {
        let mut g = Group::new(12);
        g.devices.push("0000:03:00.0".into());
        g.iommu = Some("dmar1".into());
        g.reserved_regions = vec![
            ReservedRegion {
                range: r(0, 0xff_ffff),
                kind: ReservedKind::DirectRelaxable,
            },
            ReservedRegion {
                range: r(0xfee0_0000, 0xfeef_ffff),
                kind: ReservedKind::Msi,
            },
        ];
        let mut d = Device::new("0000:03:00.0");
        d.group = Some(12);
        Host {
            iommus: vec![
                IommuUnit::new("dmar1", IommuVendor::Intel)
                    .with_address_width(39)
                    .with_page_sizes(PGSIZES_4K_2M_1G),
            ],
            groups: vec![g],
            devices: vec![d],
            settings: HostSettings::default(),
        }
    }

    #[test]
    fn valid_ranges_ignore_direct_relaxable() {
        let h = sample();
        let v = h.valid_iova_ranges(12).unwrap();
        assert!(v.aperture_known());
        assert_eq!(
            v.ranges.ranges(),
            &[r(0, 0xfedf_ffff), r(0xfef0_0000, 0x7f_ffff_ffff)]
        );
    }

    #[test]
    fn unknown_aperture_is_the_full_space_and_flagged() {
        let mut h = sample();
        h.iommus[0].aperture = None;
        let v = h.valid_iova_ranges(12).unwrap();
        assert!(!v.aperture_known());
        assert_eq!(v.ranges.span(), Some(IovaRange::FULL));
    }

    #[test]
    fn lookups_name_what_is_missing() {
        let h = sample();
        assert_eq!(h.group_of_device("03:00.0").unwrap().id, 12);
        assert_eq!(h.valid_iova_ranges(7), Err(HostError::NoSuchGroup(7)));
        let e = h.device("0000:99:00.0").unwrap_err();
        assert!(e.to_string().contains("0000:99:00.0"));
    }

    #[test]
    fn profile_round_trips_through_json() {
        let h = sample();
        let j = serde_json::to_string_pretty(&h).unwrap();
        assert!(j.contains("\"page_sizes\": \"0x40201000\""), "{j}");
        assert!(j.contains("\"kind\": \"direct-relaxable\""), "{j}");
        let back: Host = serde_json::from_str(&j).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn issues_flag_blockers() {
        let mut h = sample();
        assert_eq!(h.group_issues(12).unwrap(), vec![]);
        h.iommus[0].interrupt_remapping = Some(true);
        // A unit that can remap interrupts, and nothing showing the kernel does.
        assert_eq!(
            h.group_issues(12).unwrap(),
            vec![GroupIssue::InterruptRemappingUnknown]
        );
        h.settings.interrupt_remapping_active = Some(true);
        assert_eq!(h.group_issues(12).unwrap(), vec![]);
        // intremap=off: the capability bit is still set, the kernel did not enable it.
        h.settings.interrupt_remapping_active = Some(false);
        assert_eq!(
            h.group_issues(12).unwrap(),
            vec![GroupIssue::NoInterruptRemapping]
        );
        // vfio_iommu_type1.allow_unsafe_interrupts=1: VFIO takes it, with a warning.
        h.settings.allow_unsafe_interrupts = Some(true);
        let issues = h.group_issues(12).unwrap();
        assert_eq!(issues, vec![GroupIssue::UnsafeInterruptsAllowed]);
        assert!(!issues[0].is_blocker());
        h.settings.allow_unsafe_interrupts = None;
        h.settings.interrupt_remapping_active = Some(true);
        h.groups[0].domain_type = DomainType::Identity;
        h.groups[0].reserved_regions.push(ReservedRegion {
            range: r(0xbd80_0000, 0xbd9f_ffff),
            kind: ReservedKind::Direct,
        });
        h.iommus[0].interrupt_remapping = Some(false);
        h.iommus[0].aperture = None;
        let issues = h.group_issues(12).unwrap();
        assert_eq!(issues.len(), 4, "{issues:?}");
        // The direct region and the missing remapping; identity is a note (iommu=pt).
        assert_eq!(issues.iter().filter(|i| i.is_blocker()).count(), 2);
        assert!(issues.contains(&GroupIssue::ApertureUnknown));
        assert!(issues.contains(&GroupIssue::IdentityDomain));
        assert!(!GroupIssue::IdentityDomain.is_blocker());
    }

    /// The selftests' mock domain (drivers/iommu/iommufd/selftest.c: `pgsize_bitmap =
    /// MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2`) has 2 KiB pages: a possible host. A bitmap
    /// of 0 names no page, and no IOMMU's smallest page is above 64 KiB.
    #[test]
    fn page_sizes_below_4k_are_accepted_and_0_is_refused() {
        let with = |bitmap: u64| {
            let mut h = sample();
            h.iommus[0].page_sizes = Some(bitmap);
            h.check_consistent()
        };
        for ok in [0x800, 0x4020_1800, !0x7ff, 0x4020_1001, PGSIZES_4K_2M_1G] {
            assert_eq!(with(ok), Ok(()), "{ok:#x}");
        }
        for (bad, why) in [(0, "no page size"), (0x4000_0000, "above 64 KiB")] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.field, "iommus[0].page_sizes", "{bad:#x}");
            assert!(e.message.contains(why), "{bad:#x}: {e}");
        }
        // A profile with 2 KiB pages round-trips and stays consistent.
        let mut h = sample();
        h.iommus[0].page_sizes = Some(0x800);
        let j = serde_json::to_string(&h).unwrap();
        assert!(j.contains("\"page_sizes\":\"0x800\""), "{j}");
        let back: Host = serde_json::from_str(&j).unwrap();
        assert_eq!(back.check_consistent(), Ok(()));
    }

    #[test]
    fn widths() {
        assert_eq!(aperture_for_width(39), Some(r(0, 0x7f_ffff_ffff)));
        assert_eq!(aperture_for_width(64), Some(IovaRange::FULL));
        assert_eq!(aperture_for_width(0), None);
    }
}
