//! What a VMM would expose through a virtio-iommu so that a guest driver never uses an
//! IOVA the host cannot map.
//!
//! The virtio-iommu device (virtio spec 1.2, section 5.13) tells the guest the
//! `input_range` it may use and the `page_size_mask` in its config space, and lists
//! reserved regions per endpoint in PROBE replies (`VIRTIO_IOMMU_PROBE_T_RESV_MEM`
//! properties with subtype `VIRTIO_IOMMU_RESV_MEM_T_RESERVED` = 0 or
//! `VIRTIO_IOMMU_RESV_MEM_T_MSI` = 1, and inclusive `start`/`end`).

use serde::Serialize;

use super::check::Container;
use iova::range::{IovaRange, IovaSet};

/// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`.
pub const RESV_MEM_T_RESERVED: u8 = 0;
/// `VIRTIO_IOMMU_RESV_MEM_T_MSI`.
pub const RESV_MEM_T_MSI: u8 = 1;

/// The subtype of a reserved-memory property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResvSubtype {
    /// The guest must not map these IOVAs.
    Reserved,
    /// An MSI doorbell: accesses are translated by the host's interrupt remapping.
    Msi,
}

impl ResvSubtype {
    /// The value in the PROBE property.
    pub fn value(self) -> u8 {
        match self {
            ResvSubtype::Reserved => RESV_MEM_T_RESERVED,
            ResvSubtype::Msi => RESV_MEM_T_MSI,
        }
    }
}

/// One `VIRTIO_IOMMU_PROBE_T_RESV_MEM` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResvMem {
    /// Reserved or MSI.
    pub subtype: ResvSubtype,
    /// First reserved address.
    pub start: u64,
    /// Last reserved address (inclusive).
    pub end: u64,
}

/// The virtio-iommu view of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtioIommuConfig {
    /// `input_range.start` / `input_range.end`: the span of the valid IOVAs.
    pub input_range: IovaRange,
    /// `page_size_mask`: page sizes every host IOMMU of the container supports.
    pub page_size_mask: u64,
    /// `domain_range` (the VMM's choice; the whole 32-bit space here).
    pub domain_range: (u32, u32),
    /// The reserved regions of every endpoint: the complement of the valid IOVAs, split
    /// so that host MSI windows get the MSI subtype.
    pub reserved: Vec<ResvMem>,
}

/// Builds the virtio-iommu configuration for a container. `None` when the container
/// has no valid IOVA at all.
pub fn export(c: &Container) -> Option<VirtioIommuConfig> {
    let input_range = c.valid.span()?;
    let holes = c.valid.complement();
    let msi = c.msi_regions().intersection(&holes);
    let plain = holes.difference(&msi);
    let mut reserved: Vec<ResvMem> = plain
        .iter()
        .map(|r| (r, ResvSubtype::Reserved))
        .chain(msi.iter().map(|r| (r, ResvSubtype::Msi)))
        .map(|(r, subtype)| ResvMem {
            subtype,
            start: r.first(),
            end: r.last(),
        })
        .collect();
    reserved.sort_by_key(|r| r.start);
    Some(VirtioIommuConfig {
        input_range,
        page_size_mask: c.page_size_mask,
        domain_range: (0, u32::MAX),
        reserved,
    })
}

/// The addresses a config reserves, as a set (for checks).
pub fn reserved_set(cfg: &VirtioIommuConfig) -> IovaSet {
    cfg.reserved
        .iter()
        .filter_map(|r| IovaRange::new(r.start, r.end).ok())
        .collect()
}
