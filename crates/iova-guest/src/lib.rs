//! Guest memory layouts: check a VM before it starts, plan one that works, export the
//! host's limits to a virtio-iommu, draw the map.
//!
//! Without a virtual IOMMU, an assigned device sees the guest-physical address space
//! directly: the VMM maps every guest RAM (and ROM) region into the VFIO container at
//! IOVA = guest-physical address. So the guest's memory map must fit in the IOVAs the
//! host IOMMU can translate for the container, which is the intersection of the valid
//! ranges of every group in it ([`iova::host::Host::valid_iova_ranges`]). A RAM region
//! that crosses the aperture of a 39-bit VT-d unit, or the AMD HyperTransport window
//! just below 1 TiB, makes `VFIO_IOMMU_MAP_DMA` fail with `EINVAL` and the VM does not
//! start (or, with a lenient VMM, the device corrupts memory).
//!
//! - [`Layout`] / [`Section`]: a guest's memory map as named inclusive ranges;
//! - [`presets`]: the layouts real VMMs build for a memory size (QEMU q35 / pc / virt,
//!   cloud-hypervisor, firecracker, crosvm), derived from their sources;
//! - [`layout_file`]: custom layouts from TOML files;
//! - [`check()`]: the layout against the container's valid ranges → [`CheckReport`];
//! - [`plan()`]: a layout that fits, with the VMM options that produce it → [`Plan`];
//! - [`virtio_iommu`]: the input range, page-size mask and reserved regions a VMM
//!   would expose through a virtio-iommu;
//! - [`qemu_cmdline`] / [`qemu_model`]: a QEMU command line read with QEMU's own
//!   grammar, and the memory map QEMU builds for it (by release and machine type);
//! - [`libvirt`]: a libvirt domain XML as the QEMU command line libvirt builds;
//! - [`pseries`]: IBM Power pseries guests, whose DMA windows must be creatable in the
//!   host's sPAPR TCE container (checked with the `iova::spapr` model);
//! - [`svg`]: a picture of the 64-bit space with the problem in red.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
pub mod layout_file;
pub mod libvirt;
mod plan;
pub mod presets;
pub mod pseries;
pub mod qemu_cmdline;
pub mod qemu_machines;
pub mod qemu_model;
pub mod svg;
pub mod text;
pub mod virtio_iommu;

use std::fmt;

use serde::{Deserialize, Serialize};

use iova::host::{Host, IommuVendor};
use iova::range::IovaRange;

pub use check::{
    Blocker, CheckError, CheckReport, Conflict, ConflictReason, Container, GroupRegion,
    UnitAperture, check, check_container,
};
pub use plan::{Plan, PlanInput, plan};
pub use presets::{GuestConfig, Preset};

/// What a guest-physical section is, which decides whether the VMM maps it for DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionKind {
    /// Guest RAM: always DMA-mapped; a section that cannot be mapped is fatal.
    Ram,
    /// Read-only memory the VMM maps too (firmware, option ROMs): fatal as well.
    Rom,
    /// Device registers or windows. Only mapped when [`Section::p2p`] is set (BARs of
    /// assigned devices, mapped for peer-to-peer DMA); problems there are warnings.
    Mmio,
}

impl SectionKind {
    /// `ram`, `rom` or `mmio`.
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::Ram => "ram",
            SectionKind::Rom => "rom",
            SectionKind::Mmio => "mmio",
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named region of a guest's physical address space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// A short name (`ram-above-4g`, `pci-hole64`).
    pub name: String,
    /// What it is.
    pub kind: SectionKind,
    /// The guest-physical addresses (inclusive).
    pub range: IovaRange,
    /// For MMIO: whether the VMM DMA-maps it for peer-to-peer (PCI BAR windows).
    #[serde(default)]
    pub p2p: bool,
}

impl Section {
    /// A section.
    pub fn new(name: impl Into<String>, kind: SectionKind, range: IovaRange) -> Self {
        Section {
            name: name.into(),
            kind,
            range,
            p2p: false,
        }
    }

    /// A section from a start and a size; `None` when the size is 0 or it wraps.
    pub fn sized(name: &str, kind: SectionKind, start: u64, size: u64) -> Option<Self> {
        IovaRange::from_start_size(start, size)
            .ok()
            .map(|r| Section::new(name, kind, r))
    }

    /// Marks an MMIO section as mapped for peer-to-peer DMA.
    pub fn with_p2p(mut self) -> Self {
        self.p2p = true;
        self
    }

    /// Whether the VMM maps this section into the IOMMU.
    pub fn is_dma_mapped(&self) -> bool {
        matches!(self.kind, SectionKind::Ram | SectionKind::Rom) || self.p2p
    }

    /// Whether a section that cannot be mapped stops the VM (RAM and ROM).
    pub fn is_fatal_if_unmappable(&self) -> bool {
        matches!(self.kind, SectionKind::Ram | SectionKind::Rom)
    }
}

/// A guest memory layout: sections sorted by address, never overlapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// Where it came from: a preset name or a file.
    pub name: String,
    sections: Vec<Section>,
    /// Facts about how the layout was derived (for example "RAM above 4 GiB relocated to
    /// 1 TiB because the guest CPU is AMD").
    pub notes: Vec<String>,
}

/// A layout that cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Two sections share addresses.
    #[error("section '{a}' {ra} overlaps section '{b}' {rb}")]
    Overlap {
        /// The first section.
        a: String,
        /// Its range.
        ra: IovaRange,
        /// The second section.
        b: String,
        /// Its range.
        rb: IovaRange,
    },
    /// Something about the inputs of a preset is impossible.
    #[error("{0}")]
    Invalid(String),
}

impl Layout {
    /// A layout from sections in any order; overlapping sections are an error naming both.
    pub fn new(name: impl Into<String>, mut sections: Vec<Section>) -> Result<Self, LayoutError> {
        sections.sort_by_key(|s| (s.range.first(), s.range.last()));
        for w in sections.windows(2) {
            if let [a, b] = w {
                if a.range.overlaps(&b.range) {
                    return Err(LayoutError::Overlap {
                        a: a.name.clone(),
                        ra: a.range,
                        b: b.name.clone(),
                        rb: b.range,
                    });
                }
            }
        }
        Ok(Layout {
            name: name.into(),
            sections,
            notes: Vec::new(),
        })
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The sections in address order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The section with this name.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Total bytes of RAM.
    pub fn ram_bytes(&self) -> u128 {
        self.sections
            .iter()
            .filter(|s| s.kind == SectionKind::Ram)
            .map(|s| s.range.len())
            .sum()
    }

    /// The highest address of any RAM section.
    pub fn ram_top(&self) -> Option<u64> {
        self.sections
            .iter()
            .filter(|s| s.kind == SectionKind::Ram)
            .map(|s| s.range.last())
            .max()
    }
}

/// The CPU vendor the guest sees; QEMU's x86 layout depends on it (the AMD
/// HyperTransport relocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    /// GenuineIntel.
    Intel,
    /// AuthenticAMD.
    Amd,
    /// An ARM CPU (aarch64 guests).
    Arm,
}

impl CpuVendor {
    /// `intel`, `amd` or `arm`.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuVendor::Intel => "intel",
            CpuVendor::Amd => "amd",
            CpuVendor::Arm => "arm",
        }
    }

    /// Parses `intel`, `amd`, `arm` (any case; `GenuineIntel`/`AuthenticAMD` too).
    pub fn parse(text: &str) -> Option<CpuVendor> {
        match text.trim().to_ascii_lowercase().as_str() {
            "intel" | "genuineintel" => Some(CpuVendor::Intel),
            "amd" | "authenticamd" => Some(CpuVendor::Amd),
            "arm" | "aarch64" | "arm64" => Some(CpuVendor::Arm),
            _ => None,
        }
    }

    /// The host's CPU vendor: `host.settings.cpu_vendor` when known, otherwise the
    /// vendor of its first IOMMU unit (VT-d → Intel, AMD-Vi → AMD, SMMU → ARM).
    pub fn of_host(host: &Host) -> Option<CpuVendor> {
        if let Some(v) = host
            .settings
            .cpu_vendor
            .as_deref()
            .and_then(CpuVendor::parse)
        {
            return Some(v);
        }
        host.iommus.iter().find_map(|u| match u.vendor {
            IommuVendor::Intel => Some(CpuVendor::Intel),
            IommuVendor::Amd => Some(CpuVendor::Amd),
            IommuVendor::ArmSmmu | IommuVendor::ArmSmmuV3 => Some(CpuVendor::Arm),
            IommuVendor::Virtio | IommuVendor::Unknown => None,
        })
    }
}

impl fmt::Display for CpuVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) use iova::units::human_bytes;

/// Rounds `v` up to a multiple of the power of two `align`; `None` on overflow.
pub(crate) fn align_up(v: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    v.checked_add(mask).map(|x| x & !mask)
}

/// Rounds `v` down to a multiple of the power of two `align`.
pub(crate) fn align_down(v: u64, align: u64) -> u64 {
    match align.checked_sub(1) {
        Some(mask) => v & !mask,
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_sections_are_refused_naming_both() {
        let a = Section::sized("a", SectionKind::Ram, 0, 0x2000).unwrap();
        let b = Section::sized("b", SectionKind::Mmio, 0x1000, 0x1000).unwrap();
        let err = Layout::new("t", vec![b, a]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'a'") && msg.contains("'b'"), "{msg}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(3 << 29), "1536 MiB");
        assert_eq!(human_bytes(1u128 << 64), "16 EiB");
        assert_eq!(human_bytes((1 << 40) + (1 << 39)), "1536 GiB");
        assert_eq!(human_bytes(1000), "1000 B");
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up(0x1001, 0x1000), Some(0x2000));
        assert_eq!(align_up(u64::MAX, 0x1000), None);
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
    }
}
