//! The Linux OS layer of `iova`: reading a host's IOMMU facts from sysfs (or a
//! directory tree shaped like it) into [`iova::host`] types, and the real DMA
//! backends: VFIO type1 ([`type1`], with the GET_INFO parser in [`capchain`]) and
//! iommufd ([`iommufd`]), the sPAPR TCE IOMMU of IBM Power ([`spapr`]), plus VFIO device access ([`device`]) and the host memory
//! a device may reach ([`memory`]).
//!
//! Safety: the system-call layer is private. No safe public function takes an ioctl
//! request number or a raw pointer; the functions that hand arbitrary process memory
//! to a device (`map_raw`) or open an arbitrary node as a VFIO/iommufd file
//! (`open_path`, `Device::from_fd`) are `unsafe fn`s with their contract spelled out.
//! The safe DMA maps only reach memory the backend holds ([`memory`]). Kernel
//! structures and constants come from the `vfio-bindings` and `iommufd-bindings`
//! crates; request numbers from rustix's per-architecture `_IO` encoding.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod arena;
pub mod capchain;
pub mod device;
pub mod devnodes;
pub mod hostfacts;
pub mod iommufd;
pub mod memory;
pub mod spapr;
mod sys;
pub mod sysfs;
pub mod type1;

pub use arena::TraceArena;
pub use device::Device;
pub use iommufd::{Ioas, Iommufd};
pub use memory::{AnonMemory, HoldMemory, MapRawError};
pub use sysfs::{SysfsError, read_host, read_host_default};
pub use type1::{Container as Type1Container, Group as Type1Group, IommuType, Type1Error};
