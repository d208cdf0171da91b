//! `iova`: IOMMU address spaces as sets of inclusive ranges.
//!
//! Virtual machine monitors and user-space drivers map memory for devices through VFIO.
//! The host IOMMU cannot map every IOVA: its aperture is limited and reserved regions
//! (MSI windows, RMRRs, the AMD HyperTransport hole) must never be mapped. This crate
//! models those limits exactly, with no I/O:
//!
//! - [`range`]: inclusive IOVA ranges covering all of `[0, 2^64-1]`, and sets of them;
//! - [`dma`]: the [`dma::DmaSpace`] trait shared by the simulation and the real
//!   backends, with errors that carry the kernel's errno;
//! - [`alloc`]: a fast, exact IOVA allocator over an [`IovaSet`] for user-space
//!   drivers, with per-thread magazines;
//! - [`host`]: IOMMU units, groups, devices and reserved regions, and the valid IOVA
//!   ranges they leave;
//! - [`domain`]: the one rule for which groups may share a container and what IOVAs,
//!   page sizes and alignment they then have;
//! - [`container`]: a simulated VFIO type1 container or iommufd IOAS answering like the
//!   kernel, errno by errno;
//! - [`pagetable`]: the software IO page table the container keeps in step, with
//!   translation and faults;
//! - [`trace`]: map/unmap traces replayed on any [`dma::DmaSpace`] to compare the
//!   simulation with the real kernel;
//!
//! Guest memory layouts (VMM presets, check, plan, export, SVG) live in the
//! `iova-guest` crate, the OS layer (reading sysfs, the real VFIO and iommufd ioctls)
//! in `iova-linux`; the `iovactl` tool puts them in front of a user.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alloc;
pub mod container;
pub mod dma;
pub mod domain;
pub mod host;
pub mod pagetable;
pub mod range;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace;

pub use host::{Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
pub use range::{IovaRange, IovaSet};
