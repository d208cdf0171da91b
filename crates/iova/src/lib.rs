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
//! - [`spapr`]: the sPAPR TCE IOMMU of IBM Power (pseries): DMA windows, memory
//!   pre-registration, a simulated container and its trace operations;
//!
//! Guest memory layouts (VMM presets, check, plan, export, SVG) live in the
//! `iova-guest` crate, the OS layer (reading sysfs, the real VFIO and iommufd ioctls)
//! in `iova-linux`; the `iovactl` tool puts them in front of a user.
//!
//! # From a host to a translated DMA, end to end
//!
//! ```
//! use iova::{
//!     Access, Allocator, Container, ContainerConfig, DmaSpace, Domain, DomainConfig,
//!     Group, Host, IommuUnit, IommuVendor, IovaRange, Policy, ReservedKind, ReservedRegion,
//! };
//!
//! // The host: one VT-d unit with a 39-bit aperture and a group with the MSI window.
//! // (A real program reads it with `iova_linux::sysfs::read_host("/")`.)
//! let mut group = Group::new(7);
//! group.iommu = Some("dmar0".into());
//! group.reserved_regions.push(ReservedRegion {
//!     range: IovaRange::new(0xfee0_0000, 0xfeef_ffff)?,
//!     kind: ReservedKind::Msi,
//! });
//! let host = Host {
//!     iommus: vec![IommuUnit::new("dmar0", IommuVendor::Intel)
//!         .with_address_width(39)
//!         .with_page_sizes(0x4020_1000)
//!         .with_interrupt_remapping(true)],
//!     groups: vec![group],
//!     ..Host::default()
//! };
//!
//! // The domain the group forms: what it can map, and with which alignment.
//! let domain = Domain::new(&host, &[7], DomainConfig::default())?;
//! assert!(!domain.valid().contains(0xfee0_0000));
//! assert_eq!(domain.valid().span().map(|r| r.last()), Some((1 << 39) - 1));
//!
//! // An allocator that only hands out IOVAs the domain accepts.
//! let mut alloc = Allocator::for_domain(&domain, Policy::TopDown)?;
//! let buf = alloc.alloc(0x20_0000, 0x20_0000)?;
//! assert_eq!(buf.last(), (1 << 39) - 1);
//!
//! // The simulated container maps it, and the device's DMA translates.
//! let mut c = Container::new(ContainerConfig::default());
//! c.attach(&host, 7)?;
//! let host_addr = 0x7f00_0000_0000;
//! c.map(buf.first(), host_addr, 0x20_0000, Access::RW)?;
//! assert_eq!(c.translate(buf.first() + 0x123, Access::WRITE), Ok(host_addr + 0x123));
//! assert!(c.translate(0x1000, Access::READ).is_err()); // unmapped: a fault
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alloc;
pub mod container;
pub mod dma;
pub mod domain;
pub mod host;
pub mod kernel;
pub mod pagetable;
pub mod range;
pub mod spapr;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace;
pub mod units;

pub use alloc::{AllocError, Allocator, Policy, SharedAllocator};
pub use container::{AttachError, Container, ContainerConfig, Mapping};
pub use dma::{Access, DmaInfo, DmaSpace, Errno, InfoError, MapError, UnmapError};
pub use domain::{Domain, DomainConfig, Flavour, Member, Refusal};
pub use host::{
    Device, DeviceNode, Group, GroupIssue, Host, IommuUnit, IommuVendor, NodeKind, ReservedKind,
    ReservedRegion,
};
pub use kernel::KernelVersion;
pub use pagetable::{Fault, PageTable};
pub use range::{IovaRange, IovaSet};
pub use units::{human_bytes, parse_number};
