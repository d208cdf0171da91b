//! The Linux OS layer of `iova`: reading a host's IOMMU facts from sysfs (or a
//! directory tree shaped like it) into [`iova::host`] types.
#![deny(missing_docs)]

pub mod sysfs;
