//! The Linux OS layer of `iova`: reading a host's IOMMU facts from sysfs (or a
//! directory tree shaped like it) into [`iova::host`] types, and the real DMA
//! backends: VFIO type1 ([`type1`], with the GET_INFO parser in [`capchain`]) and
//! iommufd ([`iommufd`]), plus VFIO device access ([`device`]).
#![deny(missing_docs)]

pub mod capchain;
pub mod device;
pub mod iommufd;
pub mod sys;
pub mod sysfs;
pub mod type1;
