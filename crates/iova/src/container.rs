//! A simulated VFIO container: type1 (v1 and v2) or an iommufd IOAS.
//!
//! [`Container`] reproduces what the Linux kernel answers, errno by errno and check by
//! check in the kernel's order (see `docs/semantics.md`, checked against
//! `drivers/vfio/vfio_iommu_type1.c` and `drivers/iommu/iommufd/io_pagetable.c`):
//!
//! - [`Container::attach`] narrows the valid IOVAs to the intersection of every
//!   attached group's aperture (an unknown aperture counts as the whole 64-bit space)
//!   minus every reserved region except `direct-relaxable`; the page-size bitmap is the
//!   AND of every domain's, with sizes below the CPU page replaced by the CPU page.
//!   It refuses groups whose interrupts are not remapped (EPERM) and groups with a
//!   direct RMRR (EPERM) unless the configuration allows the unsafe setup (an
//!   identity default domain is no refusal: VFIO installs its own domain), and
//!   refuses, changing nothing, a group whose limits would strand an existing mapping
//!   (type1: EINVAL, iommufd: EADDRINUSE).
//! - [`Container::detach`] never fails for an attached group; it recomputes everything,
//!   and dropping the last group drops every mapping (the container is then back to
//!   its "no IOMMU set" state).
//! - type1: until a group is attached, `info`, `map` and `unmap` answer
//!   [`InfoError::NotReady`]/[`MapError::NotReady`]/[`UnmapError::NotReady`] (EINVAL), as
//!   type1 does before `VFIO_SET_IOMMU`. An iommufd IOAS works from the start with no
//!   domain (alignment 1, the whole 64-bit space) and keeps its mappings when the last
//!   group leaves; the compatibility container answers ENODEV until its first group
//!   (no compat IOAS yet) and then behaves as an IOAS.
//! - iommufd extras: [`Container::map_auto`], [`Container::allow_iovas`],
//!   [`Container::copy`] (IOMMU_IOAS_COPY within the IOAS: the copy shares the
//!   source's pages, so their writability and backing come along), and
//!   [`Container::map_backed`] for host addresses that are a device BAR `mmap`
//!   (type1 maps them; iommufd must pin them once it has a domain and answers EFAULT,
//!   at the map or at the attach that would pin them).
//! - The answers follow one kernel version ([`ContainerConfig::kernel`]); see
//!   [`KernelVersion`] for what changed when.
//! - The [`DmaSpace`] operations follow the flavour's MAP/UNMAP rules; every failed
//!   operation leaves the container exactly as it was (`Container` is `Clone + Eq`, so
//!   tests compare snapshots), except the iommufd unmap that ends inside an area:
//!   like the kernel, it has removed the whole areas below that one when it answers
//!   ENOENT (see [`Flavour`]).
//!
//! Known, deliberate differences from the kernel are listed on [`Flavour`].
//!
//! ```
//! use iova::container::{Container, ContainerConfig};
//! use iova::dma::{Access, DmaSpace, Errno};
//! use iova::host::{Group, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
//! use iova::range::IovaRange;
//!
//! let mut group = Group::new(1);
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
//! let mut c = Container::new(ContainerConfig::default());
//! assert_eq!(c.map(0, 0, 0x1000, Access::RW).unwrap_err().errno(), Errno::EINVAL); // not ready
//! c.attach(&host, 1)?;
//! c.map(0x10_0000, 0x7f00_0000_0000, 0x20_0000, Access::RW)?;
//! assert_eq!(c.translate(0x10_0123, Access::READ), Ok(0x7f00_0000_0123));
//! assert_eq!(c.map(0xfee0_0000, 0, 0x1000, Access::RW).unwrap_err().errno(), Errno::EINVAL);
//! assert_eq!(c.unmap(0x10_1000, 0x1000).unwrap_err().errno(), Errno::EINVAL); // would split
//! assert_eq!(c.unmap_all()?, 0x20_0000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod legacy;
mod tracker;

use std::collections::BTreeMap;

use crate::dma::{Access, Backing, DmaInfo, DmaSpace, Errno, InfoError, MapError, UnmapError};
pub use crate::domain::Flavour;
use crate::domain::{Domain, DomainConfig, Member, Refusal};
use crate::host::{Host, IommuVendor};
pub use crate::kernel::KernelVersion;
use crate::pagetable::{Fault, PageTable, PageTableError};
use crate::range::{IovaRange, IovaSet};

/// How a container is set up: the [`DomainConfig`] its groups are judged under, and
/// the container's own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ContainerConfig {
    /// The interface, CPU page size and unsafe opt-ins (see [`crate::domain`]).
    pub domain: DomainConfig,
    /// Most mappings a type1 container holds (`vfio_iommu_type1.dma_entry_limit`,
    /// kernel default 65535).
    pub dma_entry_limit: u32,
    /// The kernel version whose answers to give (default: [`KernelVersion::NEWEST`],
    /// the newest modelled). Its differences are in [`KernelVersion`].
    pub kernel: KernelVersion,
    /// The locked-memory limit pinning is charged against (`None`: not modelled, no
    /// map fails for it). See [`Memlock`].
    pub memlock: Option<Memlock>,
}

/// The locked-memory accounting of the task that maps (docs/semantics.md §3.5). Pinned
/// pages are charged in CPU pages against `RLIMIT_MEMLOCK`: type1 to the mapping
/// process's `mm->locked_vm` (`vfio_pin_pages_remote`, `__account_locked_vm`), a native
/// iommufd IOAS to the user's `locked_vm` (all processes of one user share it), the
/// compatibility container to the process (`IOPT_PAGES_ACCOUNT_MM`). Over the limit
/// the map fails with ENOMEM and nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Memlock {
    /// `RLIMIT_MEMLOCK` in bytes (`None`: unlimited). The kernel compares in whole CPU
    /// pages, the limit rounded down.
    pub limit: Option<u64>,
    /// Whether the mapping task has `CAP_IPC_LOCK`: the limit is not checked. type1
    /// still charges `locked_vm`; iommufd charges nothing (`IOPT_PAGES_ACCOUNT_NONE`).
    pub cap_ipc_lock: bool,
    /// Bytes already charged to the same counter by others: the process's other
    /// containers (type1, the compatibility container), every process of the user
    /// (iommufd), `mlock`ed memory.
    pub already_locked: u64,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            domain: DomainConfig::default(),
            dma_entry_limit: 65535,
            kernel: KernelVersion::NEWEST,
            memlock: None,
        }
    }
}

impl ContainerConfig {
    /// The default configuration with another flavour.
    pub fn with_flavour(flavour: Flavour) -> Self {
        ContainerConfig::from(DomainConfig::with_flavour(flavour))
    }

    /// The interface the container behaves like.
    pub fn flavour(&self) -> Flavour {
        self.domain.flavour
    }

    /// The same configuration with another mapping limit.
    pub fn dma_entry_limit(mut self, limit: u32) -> Self {
        self.dma_entry_limit = limit;
        self
    }

    /// The same configuration with locked-memory accounting against `memlock`.
    pub fn memlock(mut self, memlock: Memlock) -> Self {
        self.memlock = Some(memlock);
        self
    }

    /// The same configuration answering as kernel `version` does.
    pub fn kernel(mut self, version: KernelVersion) -> Self {
        self.kernel = version;
        self
    }

    /// The same configuration with another CPU page size (see
    /// [`DomainConfig::cpu_page_size`]).
    pub fn cpu_page_size(mut self, bytes: u64) -> Self {
        self.domain.cpu_page_size = bytes;
        self
    }
}

impl From<DomainConfig> for ContainerConfig {
    fn from(domain: DomainConfig) -> Self {
        ContainerConfig {
            domain,
            ..ContainerConfig::default()
        }
    }
}

/// Why a group could not be attached. Nothing changes when an attach fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// A rule of the domain refused the group (see [`crate::domain`]).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The group is already in this container.
    #[error("IOMMU group {0} is already attached")]
    AlreadyAttached(u32),
    /// type1: an existing mapping lies outside the new aperture or in a newly
    /// reserved region.
    #[error("existing mapping {mapping} lies outside what the group can map")]
    Conflict {
        /// The stranded mapping.
        mapping: IovaRange,
    },
    /// iommufd: the group would reserve IOVAs that are mapped, allowed by
    /// ALLOW_IOVAS, or misaligned for its page size.
    #[error("{range} is in use and the group would reserve or misalign it")]
    InUse {
        /// The mapping or allowed range in the way.
        range: IovaRange,
    },
    /// type1: an existing mapping cannot be replayed into the new domain (its
    /// alignment is below the new smallest page).
    #[error("existing mapping {mapping} cannot be mapped in the new domain")]
    Replay {
        /// The mapping.
        mapping: IovaRange,
    },
    /// iommufd: the first domain pins every area (`iopt_fill_domain`), and the pages
    /// charged would pass the locked-memory limit ([`Memlock`]): ENOMEM.
    #[error("pinning the IOAS's {pages} pages for the first domain passes RLIMIT_MEMLOCK")]
    NoMemory {
        /// The CPU pages the fill would charge.
        pages: u64,
    },
    /// iommufd: filling the new domain pins every area (`iopt_fill_domain`), and an
    /// area backed by a device BAR mapping cannot be pinned (`pin_user_pages`: EFAULT).
    #[error("existing mapping {mapping} is backed by a device BAR, which cannot be pinned")]
    Unpinnable {
        /// The BAR-backed mapping.
        mapping: IovaRange,
    },
}

impl AttachError {
    /// The errno the kernel gives (or, for model-only refusals, would give).
    pub fn errno(&self) -> Errno {
        match self {
            AttachError::Refused(r) => r.errno(),
            AttachError::AlreadyAttached(_) => Errno::EBUSY,
            AttachError::InUse { .. } => Errno::EADDRINUSE,
            AttachError::Conflict { .. } | AttachError::Replay { .. } => Errno::EINVAL,
            AttachError::Unpinnable { .. } => Errno::EFAULT,
            AttachError::NoMemory { .. } => Errno::ENOMEM,
        }
    }
}

/// Why a detach failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DetachError {
    /// The group is not in this container.
    #[error("IOMMU group {0} is not attached")]
    NotAttached(u32),
}

impl DetachError {
    /// The errno the kernel gives.
    pub fn errno(&self) -> Errno {
        Errno::EINVAL
    }
}

/// Why ALLOW_IOVAS was refused. Nothing changes when it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowIovasError {
    /// Only iommufd has ALLOW_IOVAS.
    #[error("ALLOW_IOVAS is an iommufd operation")]
    Unsupported,
    /// A range of one byte (the kernel wants `start < last`).
    #[error("allowed range {0} has start == last")]
    Degenerate(IovaRange),
    /// A range overlaps a reserved range.
    #[error("allowed range {0} overlaps a reserved range")]
    Reserved(IovaRange),
}

impl AllowIovasError {
    /// The errno the kernel gives.
    pub fn errno(&self) -> Errno {
        match self {
            AllowIovasError::Unsupported => Errno::ENOTTY,
            AllowIovasError::Degenerate(_) => Errno::EINVAL,
            AllowIovasError::Reserved(_) => Errno::EADDRINUSE,
        }
    }
}

/// Why IOMMU_IOAS_COPY was refused. Nothing changes when it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// Only an iommufd IOAS has IOAS_COPY (type1 and the compatibility container have
    /// no such ioctl on their file).
    #[error("IOAS_COPY is an iommufd operation")]
    Unsupported,
    /// The source range is not wholly covered by contiguous areas (`iopt_get_pages`).
    #[error("nothing mapped at source IOVA {iova:#x}; the source range must be wholly mapped")]
    NotCovered {
        /// The first source IOVA no area holds.
        iova: u64,
    },
    /// A writeable copy of pages first mapped without WRITEABLE (`iopt_insert_area`:
    /// the shared `iopt_pages` is not writable).
    #[error("source area {area} was mapped read-only; its pages cannot be mapped writeable")]
    ReadOnlyPages {
        /// The source area whose pages are not writable.
        area: IovaRange,
    },
    /// The destination refused the copy as it refuses a map (same checks, same errno).
    #[error(transparent)]
    Map(#[from] MapError),
}

impl CopyError {
    /// The errno the kernel gives.
    pub fn errno(&self) -> Errno {
        match self {
            CopyError::Unsupported => Errno::ENOTTY,
            CopyError::NotCovered { .. } => Errno::ENOENT,
            CopyError::ReadOnlyPages { .. } => Errno::EPERM,
            CopyError::Map(e) => e.errno(),
        }
    }
}

/// What an area shares with the `iopt_pages` behind it, kept only for areas where it
/// differs from a plain map of memory: whether the pages were first mapped writeable
/// (iommufd copies share the source's pages) and what backs the host address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pages {
    writable: bool,
    backing: Backing,
    /// An iommufd IOAS_COPY area: it shares the source's pinned pages and is not
    /// charged again.
    shared: bool,
}

impl Pages {
    /// A plain map's pages: writable when the map asked for WRITE, ordinary memory.
    fn plain(access: Access) -> Pages {
        Pages {
            writable: access.write,
            backing: Backing::Memory,
            shared: false,
        }
    }

    /// Whether pinning these pages charges locked memory: ordinary memory (a device
    /// BAR has no `struct page`: `is_invalid_reserved_pfn`) not shared with another
    /// area.
    fn charged(self) -> bool {
        self.backing == Backing::Memory && !self.shared
    }
}

/// One mapping of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// The IOVAs.
    pub iova: IovaRange,
    /// The host address of the first byte.
    pub host_addr: u64,
    /// What the device may do.
    pub access: Access,
}

/// What the tracker stores per mapping, keyed by the first IOVA. The host address is
/// kept whole (an iommufd IOAS with no domain, or a mock domain with 2 KiB pages,
/// accepts host addresses that are not 4-byte aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    last: u64,
    host: u64,
    access: Access,
}

impl Entry {
    fn new(last: u64, host: u64, access: Access) -> Option<Entry> {
        Some(Entry { last, host, access })
    }

    fn host(&self) -> u64 {
        self.host
    }

    fn access(&self) -> Access {
        self.access
    }
}

/// A simulated VFIO container or iommufd IOAS. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    config: ContainerConfig,
    domain: Option<Domain>,
    /// The compatibility container's IOAS exists (a group was attached once).
    compat_ioas: bool,
    allowed: IovaSet,
    maps: tracker::Tracker,
    /// Per-area facts beyond the tracker's entry, by first IOVA; only areas that are
    /// not [`Pages::plain`] are listed.
    pages: BTreeMap<u64, Pages>,
    table: Option<PageTable>,
    /// type1 before 6.18: the kernel's own tree of mappings (see `legacy`), which
    /// answers every map and unmap search; `maps` and `table` then hold the mappings
    /// that do not overlap an earlier one.
    legacy: legacy::Tree,
    /// Per attached group, whether its IOMMU driver refuses to map IOVAs with neither
    /// read nor write access (VT-d and AMD: EINVAL; virtio-iommu maps them; ARM's
    /// io-pgtable maps nothing and succeeds; an unidentified unit is taken to map
    /// them).
    refuses_no_access: Vec<(u32, bool)>,
    /// CPU pages this container has charged to locked memory ([`Memlock`]).
    locked: u64,
}

impl Container {
    /// An empty container with no group attached.
    pub fn new(config: ContainerConfig) -> Self {
        Container {
            config,
            domain: None,
            compat_ioas: false,
            allowed: IovaSet::default(),
            maps: tracker::Tracker::default(),
            pages: BTreeMap::new(),
            table: None,
            legacy: legacy::Tree::new(),
            refuses_no_access: Vec::new(),
            locked: 0,
        }
    }

    /// Bytes this container has charged to locked memory (pinned pages of ordinary
    /// memory, in whole CPU pages): what `locked_vm` grew by (type1 even under
    /// `CAP_IPC_LOCK`; iommufd not then, nor before a domain pins anything).
    pub fn locked_bytes(&self) -> u128 {
        u128::from(self.locked) * u128::from(self.config.domain.cpu_page_size)
    }

    /// The CPU pages `[host, host + size - 1]` touches: what pinning it charges.
    fn pin_pages(&self, host: u64, size: u64) -> u64 {
        if size == 0 {
            return 0;
        }
        let cpu = self.config.domain.cpu_page_size.max(1);
        let last = host.saturating_add(size - 1) / cpu;
        last - host / cpu + 1
    }

    /// Whether this container's areas are pinned now: type1 pins at map (it maps only
    /// with a domain); iommufd pins when a domain is attached.
    fn pinned_now(&self) -> bool {
        self.config.domain.flavour.is_type1() || self.domain.is_some()
    }

    /// Whether pinning is counted at all: not by iommufd under `CAP_IPC_LOCK`.
    fn counts_locked(&self) -> bool {
        self.config.domain.flavour.is_type1()
            || !self.config.memlock.is_some_and(|m| m.cap_ipc_lock)
    }

    /// The pages a new area of `pages` facts at `host` charges now.
    fn charge_for(&self, host: u64, size: u64, pages: Pages) -> u64 {
        if self.counts_locked() && self.pinned_now() && pages.charged() {
            self.pin_pages(host, size)
        } else {
            0
        }
    }

    /// Whether charging `more` pages (on top of this container's) passes the limit.
    fn over_memlock(&self, base: u64, more: u64) -> bool {
        let Some(m) = self.config.memlock else {
            return false;
        };
        let Some(limit) = m.limit else { return false };
        if m.cap_ipc_lock || more == 0 {
            return false;
        }
        let cpu = self.config.domain.cpu_page_size.max(1);
        m.already_locked
            .div_ceil(cpu)
            .saturating_add(base)
            .saturating_add(more)
            > limit / cpu
    }

    /// What removing the area at `first` (host `host`, `size` bytes) uncharges.
    fn uncharge(&mut self, first: u64, host: u64, size: u64, access: Access) {
        let pages = self.pages_of(first, access);
        let n = self.charge_for(host, size, pages);
        self.locked = self.locked.saturating_sub(n);
    }

    /// Whether map and unmap follow type1's tree before 6.18 (`legacy`).
    fn is_legacy(&self) -> bool {
        self.config.domain.flavour.is_type1() && !self.config.kernel.type1_top_page_fixed()
    }

    /// The configuration.
    pub fn config(&self) -> &ContainerConfig {
        &self.config
    }

    /// Whether the container answers map/unmap/info: type1 once a group is attached;
    /// an iommufd IOAS always (with no domain it maps anywhere, alignment 1); the
    /// compatibility container once a group was attached (its IOAS then stays).
    pub fn is_ready(&self) -> bool {
        match self.config.domain.flavour {
            Flavour::Iommufd => true,
            f if f.is_compat() => self.compat_ioas,
            _ => self.domain.is_some(),
        }
    }

    /// The domain the attached groups form (`None` before any attach).
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }

    /// The attached groups, in attach order.
    pub fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.domain.iter().flat_map(|d| d.groups())
    }

    /// The valid IOVAs: the domain's; the whole 64-bit space for an iommufd IOAS with
    /// no domain; empty for a container that is not ready.
    pub fn valid_iovas(&self) -> IovaSet {
        match &self.domain {
            Some(d) => d.valid().clone(),
            None if self.is_ready() => IovaSet::from(IovaRange::FULL),
            None => IovaSet::default(),
        }
    }

    /// Whether `r` lies inside one valid range.
    fn valid_contains(&self, r: &IovaRange) -> bool {
        match &self.domain {
            Some(d) => d.valid().contains_range(r),
            None => self.is_ready(),
        }
    }

    /// The alignment every map needs now (iommufd's `iova_alignment`; type1's smallest
    /// page): the domain's ([`Domain::alignment`]) or, with no domain,
    /// [`Flavour::alignment_without_domain`].
    pub fn alignment(&self) -> u64 {
        self.page_size()
    }

    /// The common aperture of the attached groups.
    pub fn aperture(&self) -> Option<IovaRange> {
        self.domain.as_ref().map(|d| d.aperture())
    }

    /// The iommufd allowed list (empty: no restriction).
    pub fn allowed_iovas(&self) -> &IovaSet {
        &self.allowed
    }

    /// The live mappings, by IOVA.
    pub fn mappings(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.maps.iter().map(|(first, e)| Mapping {
            iova: IovaRange::new(first, e.last).unwrap_or(IovaRange::FULL),
            host_addr: e.host(),
            access: e.access(),
        })
    }

    /// How many mappings are live.
    pub fn mapping_count(&self) -> usize {
        self.maps.len()
    }

    /// The page table kept in step with the mappings (`None` before any attach).
    pub fn page_table(&self) -> Option<&PageTable> {
        self.table.as_ref()
    }

    /// Translates a device access at `iova` through the page table.
    pub fn translate(&self, iova: u64, access: Access) -> Result<u64, Fault> {
        match &self.table {
            Some(t) => match t.translate(iova, access) {
                // An area with no access (compatibility container, on a driver that
                // maps it) is not in the table: the IOMMU refuses the DMA for want of
                // permission.
                Err(Fault::Unmapped { .. })
                    if self
                        .mapping_at(iova)
                        .is_some_and(|m| !m.access.read && !m.access.write) =>
                {
                    Err(Fault::Permission {
                        iova,
                        needed: access,
                    })
                }
                other => other,
            },
            None => Err(Fault::Unmapped { iova }),
        }
    }

    /// Whether `self` is `before` less some whole mappings and otherwise unchanged
    /// (same groups, valid and allowed IOVAs). This is the one failure the kernel does
    /// not make atomic: an iommufd unmap whose range ends inside an area removes the
    /// whole areas below it, then answers ENOENT (docs/kernel-facts.md). Tests of "a
    /// failed operation changes nothing" accept exactly this for that case.
    pub fn is_before_less_whole_mappings(&self, before: &Container) -> bool {
        self.mapping_count() < before.mapping_count()
            && self
                .mappings()
                .all(|m| before.mapping_at(m.iova.first()) == Some(m))
            && self.groups().eq(before.groups())
            && self.valid_iovas() == before.valid_iovas()
            && self.allowed_iovas() == before.allowed_iovas()
    }

    /// What backs the host address of the mapping containing `iova`, if any.
    pub fn backing_at(&self, iova: u64) -> Option<Backing> {
        let m = self.mapping_at(iova)?;
        Some(self.pages_of(m.iova.first(), m.access).backing)
    }

    /// The pages facts of the area starting at `first` with access `access`.
    fn pages_of(&self, first: u64, access: Access) -> Pages {
        self.pages
            .get(&first)
            .copied()
            .unwrap_or(Pages::plain(access))
    }

    /// Records the pages facts of the area starting at `first`.
    fn set_pages(&mut self, first: u64, access: Access, pages: Pages) {
        if pages == Pages::plain(access) {
            self.pages.remove(&first);
        } else {
            self.pages.insert(first, pages);
        }
    }

    /// The mapping containing `iova`, if any.
    pub fn mapping_at(&self, iova: u64) -> Option<Mapping> {
        let (first, e) = self.maps.floor(iova)?;
        (e.last >= iova).then(|| Mapping {
            iova: IovaRange::new(first, e.last).unwrap_or(IovaRange::FULL),
            host_addr: e.host(),
            access: e.access(),
        })
    }

    /// The lowest mapping overlapping `[first, last]`.
    fn first_overlap(&self, first: u64, last: u64) -> Option<(u64, Entry)> {
        // The mapping with the highest start at or below `last`: mappings are disjoint,
        // so when it ends below `first` nothing overlaps, and when it starts at or below
        // `first` it is the lowest overlapping one. One search answers both.
        let (f, e) = self.maps.floor(last)?;
        if e.last < first {
            return None;
        }
        if f <= first {
            return Some((f, e));
        }
        // The lowest overlapping mapping either holds `first` (it starts at or below
        // it) or is the first to start inside `[first, last]` (the one found above
        // does).
        if let Some((f, e)) = self.maps.floor(first) {
            if e.last >= first {
                return Some((f, e));
            }
        }
        self.maps
            .iter_from(first)
            .next()
            .filter(|&(f, _)| f <= last)
    }

    fn page_size(&self) -> u64 {
        let cfg = &self.config.domain;
        self.domain.as_ref().map_or(
            cfg.flavour.alignment_without_domain(cfg.cpu_page_size),
            Domain::alignment,
        )
    }

    /// A page table for `domain` holding every current mapping; `None` when the
    /// domain's alignment is below the page table's smallest page (an iommufd domain
    /// with IOMMU pages smaller than the CPU page: translation is not simulated there).
    fn build_table(&self, domain: &Domain) -> Result<Option<PageTable>, AttachError> {
        if domain.alignment() < 1u64 << domain.page_sizes().trailing_zeros() {
            return Ok(None);
        }
        let bits = 64 - domain.aperture().last().leading_zeros();
        let group = domain.groups().last().unwrap_or(0);
        // compat-type1v1 maps with large pages disabled (`iopt_disable_large_pages`):
        // every IOPTE is a smallest page, so an unmap can cut any area (a 2 MiB leaf
        // could not be cut).
        let sizes = if self.config.domain.flavour == Flavour::CompatType1V1 {
            domain.page_sizes() & domain.page_sizes().wrapping_neg()
        } else {
            domain.page_sizes()
        };
        let mut t = PageTable::new(sizes, bits.max(1)).map_err(|_| Refusal::NoCommonPageSize {
            group,
            bitmap: domain.page_sizes(),
        })?;
        for m in self.mappings() {
            let size = m.iova.size().unwrap_or(u64::MAX);
            t.map(m.iova.first(), m.host_addr, size, m.access)
                .map_err(|_| AttachError::Replay { mapping: m.iova })?;
        }
        Ok(Some(t))
    }

    /// Attaches a group of `host` (VFIO_GROUP_SET_CONTAINER + VFIO_SET_IOMMU for the
    /// first group; IOMMU_HWPT/device attach for iommufd). The rules are
    /// [`crate::domain`]'s, asked in the kernel's order for the flavour; nothing
    /// changes when it fails.
    pub fn attach(&mut self, host: &Host, group_id: u32) -> Result<(), AttachError> {
        let cfg = self.config.domain;
        cfg.validate()?;
        let member = Member::of(host, group_id)?;
        if self.groups().any(|g| g == group_id) {
            return Err(AttachError::AlreadyAttached(group_id));
        }
        member.isolation(&cfg)?;
        let mut members: Vec<Member> = self
            .domain
            .as_ref()
            .map(|d| d.members().to_vec())
            .unwrap_or_default();
        members.push(member.clone());

        let mut first_fill = 0u64;
        let domain = if cfg.flavour.is_type1() {
            // vfio_iommu_type1_attach_group: aperture conflict, reserved conflict,
            // resize/exclude (nothing left: EINVAL), then interrupt isolation.
            let aperture = member.aperture_or_full();
            let excluded = member.excluded();
            for m in self.mappings() {
                if !aperture.contains_range(&m.iova) || excluded.overlaps(&m.iova) {
                    return Err(AttachError::Conflict { mapping: m.iova });
                }
            }
            let domain = Domain::combine(members, cfg)?;
            member.interrupts(&cfg)?;
            domain
        } else {
            // iommufd: interrupt isolation at bind, then reserved regions, then the
            // domain's page size and aperture (iopt_table_add_domain).
            member.interrupts(&cfg)?;
            for r in &member.excluded() {
                self.check_reservable(r)?;
            }
            member.page_size(&cfg)?;
            let domain = Domain::combine(members, cfg)?;
            let align = domain.alignment();
            if align > self.page_size() {
                let cpu = cfg.cpu_page_size;
                for m in self.mappings() {
                    let size = m.iova.size().unwrap_or(u64::MAX);
                    if (m.iova.first() | size | (m.host_addr % cpu)) & (align - 1) != 0 {
                        return Err(AttachError::InUse { range: m.iova });
                    }
                }
            }
            for r in IovaSet::from(member.aperture_or_full()).complement().iter() {
                self.check_reservable(r)?;
            }
            // iopt_fill_domain, area by area in IOVA order: the pages are pinned first
            // (a device BAR mapping cannot be: EFAULT), then the IOMMU driver refuses
            // to map an area with no access (only the compatibility container creates
            // one, with no domain attached).
            for m in self.mappings() {
                if self.pages_of(m.iova.first(), m.access).backing == Backing::Bar {
                    return Err(AttachError::Unpinnable { mapping: m.iova });
                }
                if !m.access.read && !m.access.write {
                    return Err(AttachError::Replay { mapping: m.iova });
                }
            }
            // The first domain pins (and charges) every area; later ones reuse them.
            if self.domain.is_none() && self.counts_locked() {
                let pages = self
                    .mappings()
                    .filter(|m| self.pages_of(m.iova.first(), m.access).charged())
                    .map(|m| self.pin_pages(m.host_addr, m.iova.size().unwrap_or(u64::MAX)))
                    .fold(0u64, u64::saturating_add);
                if self.over_memlock(0, pages) {
                    return Err(AttachError::NoMemory { pages });
                }
                first_fill = pages;
            }
            domain
        };
        let table = self.build_table(&domain)?;
        if self.domain.is_none() && !cfg.flavour.is_type1() {
            self.locked = first_fill;
        }
        self.domain = Some(domain);
        self.table = table;
        if cfg.flavour.is_compat() {
            self.compat_ioas = true;
        }
        let vendor = host
            .group(group_id)
            .ok()
            .and_then(|g| host.iommu_of_group(g))
            .map(|u| u.vendor);
        // VT-d and AMD-Vi always show themselves in sysfs (`dmar*`/`ivhd*` with their
        // capability directories); any other or unidentified unit is taken to map it.
        let refuses = matches!(vendor, Some(IommuVendor::Intel | IommuVendor::Amd));
        self.refuses_no_access.push((group_id, refuses));
        Ok(())
    }

    /// iopt_reserve_iova: a reserved range may not cover a mapping or an allowed range.
    fn check_reservable(&self, r: &IovaRange) -> Result<(), AttachError> {
        if let Some((f, e)) = self.first_overlap(r.first(), r.last()) {
            return Err(AttachError::InUse {
                range: IovaRange::new(f, e.last).unwrap_or(*r),
            });
        }
        if let Some(a) = self.allowed.iter().find(|a| a.overlaps(r)) {
            return Err(AttachError::InUse { range: *a });
        }
        Ok(())
    }

    /// Detaches a group. Never fails for an attached group: the valid IOVAs and page
    /// sizes are recomputed from the remaining groups. Detaching the last group drops
    /// every mapping in type1; an iommufd IOAS (and the compatibility container's)
    /// keeps its mappings and goes back to no domain (alignment 1, the whole space).
    pub fn detach(&mut self, group_id: u32) -> Result<(), DetachError> {
        let mut members: Vec<Member> = self
            .domain
            .as_ref()
            .map(|d| d.members().to_vec())
            .unwrap_or_default();
        let pos = members
            .iter()
            .position(|m| m.group == group_id)
            .ok_or(DetachError::NotAttached(group_id))?;
        members.remove(pos);
        self.refuses_no_access.retain(|&(g, _)| g != group_id);
        if members.is_empty() {
            self.domain = None;
            if self.config.domain.flavour.is_type1() {
                self.maps.clear();
                self.pages.clear();
                self.legacy.clear();
            }
            // type1 unpins with the mappings; iommufd's areas stay, unpinned.
            self.locked = 0;
            self.table = None;
            return Ok(());
        }
        // Removing a group only widens the aperture and the page sizes, so neither the
        // domain nor the replay can fail; keep the old ones if they somehow do (the
        // group stays listed then, so the container never claims less than it holds).
        if let Ok(d) = Domain::combine(members, self.config.domain) {
            if let Ok(t) = self.build_table(&d) {
                self.domain = Some(d);
                self.table = t;
            }
        }
        Ok(())
    }

    fn wrap_error(&self) -> bool {
        self.config.flavour().is_iommufd() || self.config.kernel.type1_wrap_eoverflow()
    }

    /// Inserts a checked mapping into the page table and the tracker. The page table
    /// refuses a range that overlaps a mapping (the two hold the same IOVAs), which is
    /// answered as [`MapError::Exists`], so callers whose remaining checks pass need
    /// not search the tracker first.
    fn insert(
        &mut self,
        iova: u64,
        last: u64,
        host: u64,
        size: u64,
        access: Access,
        charge: u64,
    ) -> Result<(), MapError> {
        let page_size = self.page_size();
        let entry = Entry::new(last, host, access).ok_or(MapError::Misaligned { page_size })?;
        // An area with no access (the compatibility container on an IOMMU driver that
        // maps it) translates nothing: it is only in the tracker, so the compatibility
        // container searches the tracker first.
        if self.config.domain.flavour.is_compat() {
            self.exists(iova, last)?;
        }
        // Pinning comes after every other check of the map (vfio_pin_map_dma after
        // vfio_dma_do_map's overlap and entry-limit checks; iopt_fill_domains_pages
        // after the area is placed): over the locked-memory limit the map fails whole,
        // an overlap still answering EEXIST first.
        if self.over_memlock(self.locked, charge) {
            self.exists(iova, last)?;
            let m = self.config.memlock.unwrap_or(Memlock {
                limit: None,
                cap_ipc_lock: false,
                already_locked: 0,
            });
            let cpu = self.config.domain.cpu_page_size.max(1);
            return Err(MapError::MemlockExceeded {
                pages: charge,
                limit: m.limit.unwrap_or(u64::MAX),
                locked: m.already_locked.div_ceil(cpu).saturating_add(self.locked),
            });
        }
        let table = self.table.as_mut().filter(|_| access.read || access.write);
        if let Some(t) = table {
            if let Err(e) = t.map(iova, host, size, access) {
                return Err(match (e, self.first_overlap(iova, last)) {
                    (PageTableError::AlreadyMapped(_), Some((f, e))) => MapError::Exists {
                        existing: IovaRange::new(f, e.last).unwrap_or(IovaRange::FULL),
                    },
                    (PageTableError::OverBudget { .. }, _) => MapError::NoMemory,
                    _ => MapError::Misaligned { page_size },
                });
            }
        } else if let Some((f, e)) = self.first_overlap(iova, last) {
            return Err(MapError::Exists {
                existing: IovaRange::new(f, e.last).unwrap_or(IovaRange::FULL),
            });
        }
        self.locked = self.locked.saturating_add(charge);
        self.maps.insert(iova, entry);
        Ok(())
    }

    /// The [`MapError::Exists`] answer for `[first, last]`, if a mapping overlaps it.
    fn exists(&self, first: u64, last: u64) -> Result<(), MapError> {
        match self.first_overlap(first, last) {
            Some((f, e)) => Err(MapError::Exists {
                existing: IovaRange::new(f, e.last).unwrap_or(IovaRange::FULL),
            }),
            None => Ok(()),
        }
    }

    fn map_type1(
        &mut self,
        iova: u64,
        host: u64,
        size: u64,
        access: Access,
        backing: Backing,
    ) -> Result<(), MapError> {
        let charge = self.charge_for(
            host,
            size,
            Pages {
                writable: access.write,
                backing,
                shared: false,
            },
        );
        let domain = self.domain.as_ref().ok_or(MapError::NotReady)?;
        let kernel = self.config.kernel;
        let page_size = self.page_size();
        let wrap = if self.wrap_error() {
            MapError::Overflow
        } else {
            MapError::Wraps
        };
        let ends = |size: u64| (iova.checked_add(size - 1), host.checked_add(size - 1));
        if kernel.type1_map_checks_wrap_first() {
            // 6.18: size 0, then the wrap (check_add_overflow), then flags, alignment.
            if size == 0 {
                return Err(MapError::ZeroSize);
            }
            if let (None, _) | (_, None) = ends(size) {
                return Err(wrap);
            }
        }
        if !access.read && !access.write {
            return Err(MapError::BadFlags);
        }
        if size == 0 {
            return Err(MapError::ZeroSize);
        }
        if (size | iova | host) & (page_size - 1) != 0 {
            return Err(MapError::Misaligned { page_size });
        }
        let (Some(last), Some(_)) = ends(size) else {
            return Err(wrap);
        };
        if self.is_legacy() {
            return self.map_legacy(iova, last, host, size, access, charge);
        }
        // Before 6.18 `vfio_find_dma` compares `iova + size`, which is 0 for a range
        // ending at 2^64-1: such a map never finds an overlapping mapping, and the
        // IOMMU driver's own map then refuses the IOVAs already in use (virtio-iommu:
        // EINVAL), leaving the old mapping in place.
        // Likewise a mapping that ends at 2^64-1 is invisible to the search. (Which
        // other mappings such a search still finds depends on the shape of the
        // kernel's tree; the model finds every other one.)
        let blind = |e_last: u64| {
            !kernel.type1_top_page_fixed() && (last == u64::MAX || e_last == u64::MAX)
        };
        // The kernel's order is: overlap (EEXIST), entry limit, valid ranges. The
        // overlap answer comes from `insert` (the page table) when the two later checks
        // pass, and from a search first when one of them fails.
        let full = self.maps.len() >= self.config.dma_entry_limit as usize;
        let range = IovaRange::new(iova, last).unwrap_or(IovaRange::FULL);
        if full || !domain.valid().contains_range(&range) {
            if let Some((f, e)) = self.first_overlap(iova, last) {
                if !blind(e.last) {
                    return Err(MapError::Exists {
                        existing: IovaRange::new(f, e.last).unwrap_or(IovaRange::FULL),
                    });
                }
            }
            return Err(if full {
                MapError::TooManyMappings {
                    limit: self.config.dma_entry_limit,
                }
            } else {
                MapError::NotInValidRange
            });
        }
        // Only the highest mapping can end at 2^64-1: unless it does (or this range
        // does), no overlap can be blind, and the search is skipped.
        let may_be_blind = !kernel.type1_top_page_fixed()
            && (last == u64::MAX || self.maps.last().is_some_and(|(_, e)| e.last == u64::MAX));
        if may_be_blind {
            if let Some((_, e)) = self.first_overlap(iova, last) {
                if blind(e.last) {
                    return Err(MapError::Kernel(Errno::EINVAL));
                }
            }
        }
        self.insert(iova, last, host, size, access, charge)
    }

    /// The common first checks of an iommufd map (ioas.c, iopt_alloc_user_pages, the
    /// length checks of iopt_alloc_area_pages).
    ///
    /// The compatibility container's MAP_DMA goes straight to `iopt_map_user_pages`:
    /// none of `ioas.c`'s checks (the `ULONG_MAX` fields, the access flags) apply; it
    /// answers ENODEV before its IOAS exists.
    fn iommufd_precheck(
        &self,
        iova: u64,
        host: u64,
        size: u64,
        access: Access,
    ) -> Result<u64, MapError> {
        let compat = self.config.domain.flavour.is_compat();
        if compat {
            if !self.is_ready() {
                return Err(MapError::Kernel(Errno::ENODEV));
            }
        } else {
            if iova == u64::MAX || size == u64::MAX {
                return Err(MapError::Overflow);
            }
            if !access.read && !access.write {
                return Err(MapError::BadFlags);
            }
        }
        // iopt_alloc_pages: a zero length, or one whose page count could overflow
        // (above SIZE_MAX - PAGE_SIZE), is EINVAL before the user range is checked.
        // From 6.13 (iopt_alloc_user_pages) `user_va + length` wrapping is checked
        // first (EOVERFLOW; seen on 7.2).
        let user_wraps = host.checked_add(size).is_none();
        if user_wraps && self.config.kernel.iommufd_user_range_checked_first() {
            return Err(MapError::Overflow);
        }
        if size == 0 {
            return Err(MapError::ZeroSize);
        }
        if size > u64::MAX - self.config.domain.cpu_page_size {
            return Err(MapError::Wraps);
        }
        if user_wraps {
            return Err(MapError::Overflow);
        }
        let page_size = self.page_size();
        if size & (page_size - 1) != 0 {
            return Err(MapError::Misaligned { page_size });
        }
        Ok(page_size)
    }

    fn map_iommufd(
        &mut self,
        iova: u64,
        host: u64,
        size: u64,
        access: Access,
        backing: Backing,
    ) -> Result<(), MapError> {
        let page_size = self.iommufd_precheck(iova, host, size, access)?;
        // iopt_check_iova
        if iova & (page_size - 1) != 0 {
            return Err(MapError::Misaligned { page_size });
        }
        let last = iova.checked_add(size - 1).ok_or(MapError::Overflow)?;
        let range = IovaRange::new(iova, last).unwrap_or(IovaRange::FULL);
        if !self.valid_contains(&range) {
            return Err(MapError::NotInValidRange);
        }
        // iopt_insert_area: the host page offset must suit the alignment (checked
        // after the overlap, which `insert` reports otherwise).
        if (host % self.config.domain.cpu_page_size) & (page_size - 1) != 0 {
            self.exists(iova, last)?;
            return Err(MapError::Misaligned { page_size });
        }
        // iopt_fill_domains_pages: with a domain the pages are pinned now, and
        // pin_user_pages refuses a VM_IO | VM_PFNMAP (BAR) mapping with EFAULT; with no
        // domain nothing is pinned yet (the area only holds a lazy reference), so the
        // map succeeds and the first attach fails instead.
        if backing == Backing::Bar && self.domain.is_some() {
            self.exists(iova, last)?;
            return Err(MapError::Unpinnable);
        }
        // Compatibility container: no access asked for reaches the domain fill, which
        // VT-d's and AMD's drivers refuse (EINVAL), while virtio-iommu maps it (seen
        // on 7.2) and ARM's io-pgtable maps nothing and succeeds; with no domain there
        // is nothing to fill and the area stays.
        if !access.read
            && !access.write
            && self.domain.is_some()
            && self.refuses_no_access.iter().any(|&(_, r)| r)
        {
            self.exists(iova, last)?;
            return Err(MapError::BadFlags);
        }
        let charge = self.charge_for(
            host,
            size,
            Pages {
                writable: access.write,
                backing,
                shared: false,
            },
        );
        self.insert(iova, last, host, size, access, charge)
    }

    /// iommufd IOMMU_IOAS_MAP without `FIXED_IOVA`: the kernel picks the IOVA. First fit
    /// from the bottom over the allowed list (or everything) minus reserved and mapped
    /// IOVAs, never in the first or the last CPU page of the space, aligned to
    /// `roundup_pow_of_two(size)` capped by the host address's alignment and by the
    /// huge-page size (512 CPU pages). Type1 has no such operation
    /// (`MapError::Kernel(ENOTTY)`).
    pub fn map_auto(&mut self, host_addr: u64, size: u64, access: Access) -> Result<u64, MapError> {
        if self.config.domain.flavour != Flavour::Iommufd {
            return Err(MapError::Kernel(Errno::ENOTTY));
        }
        let page_size = self.iommufd_precheck(0, host_addr, size, access)?;
        let iova = self.alloc_iova(host_addr, size, page_size)?;
        let cpu = self.config.domain.cpu_page_size;
        if (host_addr % cpu) & (page_size - 1) != 0 {
            return Err(MapError::Misaligned { page_size });
        }
        let last = iova + (size - 1);
        let charge = self.charge_for(host_addr, size, Pages::plain(access));
        self.insert(iova, last, host_addr, size, access, charge)?;
        Ok(iova)
    }

    /// `iopt_alloc_iova`: the IOVA an automatic map (or copy) of `size` bytes from
    /// host address `host_addr` gets (see [`Container::map_auto`]); `page_size` is the
    /// IOAS alignment. `size` is not 0 (checked before).
    fn alloc_iova(&self, host_addr: u64, size: u64, page_size: u64) -> Result<u64, MapError> {
        let cpu = self.config.domain.cpu_page_size;
        // iopt_alloc_iova
        if size >= u64::MAX / 2 {
            return Err(MapError::Overflow);
        }
        let mut align = size.next_power_of_two();
        if host_addr != 0 {
            align = align.min(1u64 << host_addr.trailing_zeros());
        }
        let max_align = cpu.saturating_mul(512);
        if align >= max_align {
            align = max_align;
        }
        if align < page_size {
            return Err(MapError::Misaligned { page_size });
        }
        let offset = host_addr % cpu;
        let window = IovaRange::new(cpu, u64::MAX - cpu).map_err(|_| MapError::NoSpace)?;
        let spans = if self.allowed.is_empty() {
            IovaSet::from(window)
        } else {
            self.allowed.clamp(window)
        };
        let free = spans.intersection(&self.valid_iovas());
        let mut found = None;
        'outer: for span in &free {
            let mut start = span.first();
            let mut holes = Vec::new();
            for (f, e) in self.maps.iter().take_while(|&(f, _)| f <= span.last()) {
                if e.last < start {
                    continue;
                }
                if f > start {
                    holes.push((start, f - 1));
                }
                match e.last.checked_add(1) {
                    Some(n) => start = n,
                    None => {
                        start = u64::MAX;
                        break;
                    }
                }
            }
            if start <= span.last() && start != u64::MAX {
                holes.push((start, span.last()));
            }
            for (hs, hl) in holes {
                let Some(a) = hs.checked_add(align - 1) else {
                    continue;
                };
                let a = (a & !(align - 1)) | offset;
                if a >= hl || hl - a < size - 1 {
                    continue;
                }
                found = Some(a);
                break 'outer;
            }
        }
        found.ok_or(MapError::NoSpace)
    }

    /// A map whose host address is backed by `backing` (see [`Backing`]): with
    /// [`Backing::Memory`] exactly [`DmaSpace::map`]. A device BAR mapping is accepted
    /// by type1 (`vaddr_get_pfns` takes the PFNs from the page tables) and by an
    /// iommufd IOAS or compatibility container with no domain (nothing is pinned
    /// yet); with a domain iommufd must pin it, and `pin_user_pages` refuses:
    /// [`MapError::Unpinnable`] (EFAULT), after every other check of the map. A later
    /// attach to an IOAS holding such an area fails the same way
    /// ([`AttachError::Unpinnable`]).
    pub fn map_backed(
        &mut self,
        iova: u64,
        host_addr: u64,
        size: u64,
        access: Access,
        backing: Backing,
    ) -> Result<(), MapError> {
        if self.config.domain.flavour.is_type1() {
            self.map_type1(iova, host_addr, size, access, backing)?;
        } else {
            self.map_iommufd(iova, host_addr, size, access, backing)?;
        }
        self.set_pages(
            iova,
            access,
            Pages {
                writable: access.write,
                backing,
                shared: false,
            },
        );
        Ok(())
    }

    /// iommufd IOMMU_IOAS_COPY within this IOAS (`ioas.c: iommufd_ioas_copy`, source
    /// and destination the same IOAS): maps `length` bytes at `dst_iova` (`None`: the
    /// kernel picks it, as for [`Container::map_auto`], from the host address of the
    /// source's first byte) to the same pages as `[src_iova, src_iova + length - 1]`;
    /// returns the destination IOVA.
    ///
    /// In the kernel's order: any of `length`, `src_iova`, `dst_iova` equal to 2^64-1
    /// EOVERFLOW; neither READ nor WRITE EINVAL; then `iopt_get_pages`: length 0
    /// EINVAL, a wrapping source range EOVERFLOW, a source range not wholly covered by
    /// contiguous areas ENOENT (it may span several areas and parts of them); then the
    /// destination as a map (`iopt_alloc_area_pages`): length not aligned EINVAL, then
    /// the automatic IOVA or `iopt_check_iova` (alignment EINVAL, wrap EOVERFLOW,
    /// reserved EINVAL, an existing area EEXIST); per source piece
    /// (`iopt_insert_area`) WRITE asked of pages first mapped read-only EPERM, a host
    /// page offset not aligned EINVAL; with a domain a BAR-backed piece cannot be
    /// pinned EFAULT. Each source piece becomes one destination area. Type1 and the
    /// compatibility container: ENOTTY.
    pub fn copy(
        &mut self,
        src_iova: u64,
        length: u64,
        dst_iova: Option<u64>,
        access: Access,
    ) -> Result<u64, CopyError> {
        if self.config.domain.flavour != Flavour::Iommufd {
            return Err(CopyError::Unsupported);
        }
        if length == u64::MAX || src_iova == u64::MAX || dst_iova == Some(u64::MAX) {
            return Err(MapError::Overflow.into());
        }
        if !access.read && !access.write {
            return Err(MapError::BadFlags.into());
        }
        // iopt_get_pages: the source pieces, each a part of one area.
        if length == 0 {
            return Err(MapError::ZeroSize.into());
        }
        let src_last = src_iova.checked_add(length - 1).ok_or(MapError::Overflow)?;
        // (source area, first source IOVA of the piece, bytes, host address, pages)
        let mut pieces: Vec<(IovaRange, u64, u64, u64, Pages)> = Vec::new();
        let mut cur = src_iova;
        loop {
            let Some(m) = self.mapping_at(cur) else {
                return Err(CopyError::NotCovered { iova: cur });
            };
            let last = m.iova.last().min(src_last);
            // cur >= m.iova.first() and last - cur < length < 2^64 - 1.
            let host = m.host_addr.wrapping_add(cur - m.iova.first());
            let pages = self.pages_of(m.iova.first(), m.access);
            pieces.push((m.iova, cur, last - cur + 1, host, pages));
            if last == src_last {
                break;
            }
            cur = last + 1;
        }
        // iopt_alloc_area_pages on the destination.
        let page_size = self.page_size();
        if length & (page_size - 1) != 0 {
            return Err(MapError::Misaligned { page_size }.into());
        }
        let dst = match dst_iova {
            None => {
                // iopt_alloc_area_pages guesses the alignment from the first piece.
                let first_host = pieces.first().map_or(0, |p| p.3);
                self.alloc_iova(first_host, length, page_size)?
            }
            Some(iova) => {
                if iova & (page_size - 1) != 0 {
                    return Err(MapError::Misaligned { page_size }.into());
                }
                let last = iova.checked_add(length - 1).ok_or(MapError::Overflow)?;
                let range = IovaRange::new(iova, last).unwrap_or(IovaRange::FULL);
                if !self.valid_contains(&range) {
                    return Err(MapError::NotInValidRange.into());
                }
                self.exists(iova, last)?;
                iova
            }
        };
        let cpu = self.config.domain.cpu_page_size;
        for &(area, _, _, host, pages) in &pieces {
            if access.write && !pages.writable {
                return Err(CopyError::ReadOnlyPages { area });
            }
            if (host % cpu) & (page_size - 1) != 0 {
                return Err(MapError::Misaligned { page_size }.into());
            }
        }
        // iopt_fill_domains_pages: with a domain every piece is pinned.
        if self.domain.is_some() && pieces.iter().any(|p| p.4.backing == Backing::Bar) {
            return Err(MapError::Unpinnable.into());
        }
        let mut at = dst;
        let mut placed = Vec::with_capacity(pieces.len());
        for &(_, _, len, host, pages) in &pieces {
            // Checked above: the destination range [dst, dst + length - 1] fits.
            let last = at + (len - 1);
            // The copy shares the source's pinned pages: nothing more is charged.
            if let Err(e) = self.insert(at, last, host, len, access, 0) {
                self.remove(&placed);
                return Err(e.into());
            }
            placed.push(at);
            self.set_pages(
                at,
                access,
                Pages {
                    shared: true,
                    ..pages
                },
            );
            at = last.wrapping_add(1);
        }
        Ok(dst)
    }

    /// iommufd IOMMU_IOAS_ALLOW_IOVAS: replaces the allowed list (used by automatic
    /// allocation only) atomically. Refused when a range is a single byte (EINVAL) or
    /// overlaps a reserved range of an attached group (EADDRINUSE). An empty set lifts
    /// the restriction.
    pub fn allow_iovas(&mut self, allowed: &IovaSet) -> Result<(), AllowIovasError> {
        if self.config.domain.flavour != Flavour::Iommufd {
            return Err(AllowIovasError::Unsupported);
        }
        if let Some(r) = allowed.iter().find(|r| r.first() == r.last()) {
            return Err(AllowIovasError::Degenerate(*r));
        }
        if let Some(d) = &self.domain {
            let reserved = d.valid().complement();
            if let Some(r) = allowed.iter().find(|r| reserved.overlaps(r)) {
                return Err(AllowIovasError::Reserved(*r));
            }
        }
        self.allowed = allowed.clone();
        Ok(())
    }

    fn unmap_type1(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        if self.domain.is_none() {
            return Err(UnmapError::NotReady);
        }
        let page_size = self.page_size();
        if iova & (page_size - 1) != 0 {
            return Err(UnmapError::Misaligned { page_size });
        }
        if size == 0 {
            return Err(UnmapError::ZeroSize);
        }
        if size & (page_size - 1) != 0 {
            return Err(UnmapError::Misaligned { page_size });
        }
        let last = iova.checked_add(size - 1).ok_or(if self.wrap_error() {
            UnmapError::Overflow
        } else {
            UnmapError::Wraps
        })?;
        if self.is_legacy() {
            return self.unmap_legacy(iova, size);
        }
        if last == u64::MAX && !self.config.kernel.type1_top_page_fixed() {
            // Before 6.18 `iova + size` is 0 here: v2's split check at the end and the
            // walk find nothing (success, 0 bytes, the mappings stay); v2's check at
            // the start still refuses splitting a mapping that does not end at
            // 2^64-1 (one that does is invisible to `vfio_find_dma`).
            if self.config.domain.flavour == Flavour::Type1V2 {
                if let Some(m) = self.mapping_at(iova) {
                    if m.iova.first() != iova && m.iova.last() != u64::MAX {
                        return Err(UnmapError::Splits { mapping: m.iova });
                    }
                }
            }
            return Ok(0);
        }
        if let Some(bytes) = self.remove_exact(iova, last) {
            return Ok(bytes);
        }
        let mut doomed = Vec::new();
        if self.config.domain.flavour == Flavour::Type1V2 {
            if let Some(m) = self.mapping_at(iova) {
                if m.iova.first() != iova {
                    return Err(UnmapError::Splits { mapping: m.iova });
                }
            }
            if let Some(m) = self.mapping_at(last) {
                if m.iova.last() != last {
                    return Err(UnmapError::Splits { mapping: m.iova });
                }
            }
            doomed.extend(
                self.maps
                    .iter_from(iova)
                    .map(|(f, _)| f)
                    .take_while(|&f| f <= last),
            );
        } else if let Some((f, _)) = self.first_overlap(iova, last) {
            // v1: stop at a mapping that starts below the range; otherwise remove every
            // mapping whose first IOVA lies in the range, whole.
            if f >= iova {
                doomed.extend(
                    self.maps
                        .iter_from(iova)
                        .map(|(f, _)| f)
                        .take_while(|&f| f <= last),
                );
            }
        }
        Ok(self.remove(&doomed))
    }

    /// type1 MAP_DMA before 6.18, after the flag, size, alignment and wrap checks:
    /// `vfio_find_dma` on the kernel's tree (EEXIST), the entry limit (ENOSPC), the
    /// valid ranges (EINVAL), then the node is linked. A map the search misses (one
    /// ending at 2^64-1, or over one that does) reaches the IOMMU driver over IOVAs
    /// already mapped, which the drivers that reach 2^64-1 accept (virtio-iommu, seen
    /// on 6.12; AMD's v1 table overwrites): the kernel then holds two overlapping
    /// mappings. The page table keeps the first; the overlapping one is only in the
    /// tree (its translations are not simulated).
    fn map_legacy(
        &mut self,
        iova: u64,
        last: u64,
        host: u64,
        size: u64,
        access: Access,
        charge: u64,
    ) -> Result<(), MapError> {
        if let Some((f, sz)) = self
            .legacy
            .find_dma(iova, size)
            .and_then(|i| self.legacy.range(i))
        {
            let e_last = f.saturating_add(sz.saturating_sub(1));
            return Err(MapError::Exists {
                existing: IovaRange::new(f, e_last).unwrap_or(IovaRange::FULL),
            });
        }
        if self.legacy.len() >= self.config.dma_entry_limit as usize {
            return Err(MapError::TooManyMappings {
                limit: self.config.dma_entry_limit,
            });
        }
        let range = IovaRange::new(iova, last).unwrap_or(IovaRange::FULL);
        if !self.valid_contains(&range) {
            return Err(MapError::NotInValidRange);
        }
        // A mapping over an earlier one is only in the kernel's tree; its pages are
        // not counted here (docs/semantics.md §8).
        if self.first_overlap(iova, last).is_none() {
            self.insert(iova, last, host, size, access, charge)?;
        }
        self.legacy.insert(iova, size);
        Ok(())
    }

    /// type1 UNMAP_DMA before 6.18 once the request's own checks passed (and
    /// `VFIO_DMA_UNMAP_FLAG_ALL` as iova 0, size 2^64-1), on the kernel's tree with its
    /// 64-bit sums: v2 refuses a split found by `vfio_find_dma` at the first and the
    /// last byte; then the walk from `vfio_find_dma_first_node` along `rb_next` while
    /// a mapping starts below `iova + size` (v1 stops at one starting below `iova`),
    /// removing each whole. The bytes removed (0 when `iova + size` wraps to 0).
    fn unmap_legacy(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        let end = iova.wrapping_add(size);
        let v2 = self.config.domain.flavour == Flavour::Type1V2;
        let all = iova == 0 && size == u64::MAX;
        if v2 && !all {
            let split = |t: &legacy::Tree, at: u64, len: u64, ok: &dyn Fn(u64, u64) -> bool| {
                t.find_dma(at, len)
                    .and_then(|i| t.range(i))
                    .filter(|&(f, s)| !ok(f, s))
            };
            let bad_first = split(&self.legacy, iova, 1, &|f, _| f == iova);
            let bad_last = split(&self.legacy, end.wrapping_sub(1), 0, &|f, s| {
                f.wrapping_add(s) == end
            });
            if let Some((f, s)) = bad_first.or(bad_last) {
                let e_last = f.saturating_add(s.saturating_sub(1));
                return Err(UnmapError::Splits {
                    mapping: IovaRange::new(f, e_last).unwrap_or(IovaRange::FULL),
                });
            }
        }
        let mut bytes = 0u128;
        let mut n = self.legacy.first_node(iova, size);
        while let Some((i, (f, s))) = n.and_then(|i| self.legacy.range(i).map(|r| (i, r))) {
            if f >= end || (!v2 && iova > f) {
                break;
            }
            n = self.legacy.next(i);
            bytes += u128::from(s);
            self.legacy.erase(i);
            let last = f.saturating_add(s.saturating_sub(1));
            let _ = self.remove_exact(f, last);
        }
        Ok(bytes)
    }

    fn unmap_iommufd(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        if iova == 0 && size == u64::MAX {
            return self.unmap_all();
        }
        if iova == u64::MAX || size == u64::MAX {
            return Err(UnmapError::Overflow);
        }
        // iommufd_ioas_unmap: nothing unmapped is ENOENT (the compatibility container,
        // without this check, answers success with 0 bytes).
        match self.unmap_iopt(iova, size)? {
            0 => Err(UnmapError::NotFound),
            bytes => Ok(bytes),
        }
    }

    /// The compatibility container's UNMAP_DMA (`iommufd_vfio_unmap_dma`): ENODEV
    /// before its IOAS exists; with `compat-type1v1` the areas are first cut at the
    /// range's last byte and just below its first (`iopt_cut_iova`; a cut point not
    /// aligned to the IOAS alignment inside an area is EINVAL); then `iopt_unmap_iova`
    /// as for an IOAS (ENOENT for a split), except that nothing mapped there is
    /// success with 0 bytes (seen on 7.2; the same code in 6.12).
    fn unmap_compat(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        if !self.is_ready() {
            return Err(UnmapError::Kernel(Errno::ENODEV));
        }
        if self.config.domain.flavour == Flavour::CompatType1V1 {
            // The kernel computes the end in unsigned long arithmetic, so a wrapping
            // range cuts at the wrapped address. Both cuts are checked before either is
            // made (the kernel makes the first even when the second fails, but a cut
            // alone changes no answer); they are made only when the unmap goes ahead.
            let end = iova.wrapping_add(size).wrapping_sub(1);
            let cuts: Vec<u64> = std::iter::once(end).chain(iova.checked_sub(1)).collect();
            for &x in &cuts {
                self.cut_point(x)?;
            }
            if size != 0 && iova.checked_add(size - 1).is_some() {
                for &x in &cuts {
                    if let Ok(Some(m)) = self.cut_point(x) {
                        self.split(m, x);
                    }
                }
            }
        }
        self.unmap_iopt(iova, size)
    }

    /// `iopt_area_split` at `x` (x becomes the last byte of the lower part): the
    /// mapping to split, `None` when no area holds `x` or `x` is its first or last
    /// byte (the kernel then does nothing), EINVAL when `x + 1` or the host address
    /// there is not aligned to the IOAS alignment.
    fn cut_point(&self, x: u64) -> Result<Option<Mapping>, UnmapError> {
        let Some(m) = self.mapping_at(x) else {
            return Ok(None);
        };
        if x == m.iova.first() || x == m.iova.last() {
            return Ok(None);
        }
        let align = self.page_size();
        let cpu = self.config.domain.cpu_page_size;
        // x < last, so x + 1 does not wrap.
        let next = x.wrapping_add(1);
        let host_next = m.host_addr.wrapping_add(next - m.iova.first());
        if (next | (host_next % cpu)) & (align - 1) != 0 {
            return Err(UnmapError::Misaligned { page_size: align });
        }
        Ok(Some(m))
    }

    /// Splits mapping `m` after byte `x` (checked by [`Container::cut_point`]). The
    /// page table is unchanged: the same IOVAs translate to the same addresses.
    fn split(&mut self, m: Mapping, x: u64) {
        let first = m.iova.first();
        let next = x.wrapping_add(1);
        if let (Some(lo), Some(hi)) = (
            Entry::new(x, m.host_addr, m.access),
            Entry::new(
                m.iova.last(),
                m.host_addr.wrapping_add(next - first),
                m.access,
            ),
        ) {
            self.maps.remove(first);
            self.maps.insert(first, lo);
            self.maps.insert(next, hi);
            if let Some(p) = self.pages.get(&first).copied() {
                self.pages.insert(next, p);
            }
        }
    }

    /// `iopt_unmap_iova`: length 0 EINVAL, a wrapping range EOVERFLOW, then the walk of
    /// `iopt_unmap_iova_range` (ENOENT for a split area; 0 bytes when nothing is there).
    fn unmap_iopt(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        if size == 0 {
            return Err(UnmapError::ZeroSize);
        }
        let last = iova.checked_add(size - 1).ok_or(UnmapError::Overflow)?;
        if let Some(bytes) = self.remove_exact(iova, last) {
            return Ok(bytes);
        }
        // iopt_unmap_iova_range: areas go one by one in IOVA order; the first one not
        // wholly inside the range stops the walk with ENOENT, and the areas removed
        // before it stay removed.
        let mut doomed = Vec::new();
        let mut bisected = None;
        let mut f = iova;
        while let Some((first, e)) = self.first_overlap(f, last) {
            if first < iova || e.last > last {
                bisected = Some(IovaRange::new(first, e.last).unwrap_or(IovaRange::FULL));
                break;
            }
            doomed.push(first);
            match e.last.checked_add(1) {
                Some(n) if n <= last => f = n,
                _ => break,
            }
        }
        let bytes = self.remove(&doomed);
        if let Some(mapping) = bisected {
            return Err(UnmapError::SplitsArea { mapping });
        }
        // Nothing unmapped is success here (0 bytes); ioas.c turns it into ENOENT.
        Ok(bytes)
    }

    /// The common unmap: `[first, last]` is exactly one mapping. Every flavour then
    /// removes that mapping and nothing else (mappings are disjoint, so nothing else
    /// starts or ends inside it), in one search of the tracker. `None`, changing
    /// nothing, for any other range.
    fn remove_exact(&mut self, first: u64, last: u64) -> Option<u128> {
        let e = self.maps.remove_if(first, |e| e.last == last)?;
        if self.locked > 0 {
            self.uncharge(
                first,
                e.host(),
                last.wrapping_sub(first).wrapping_add(1),
                e.access(),
            );
        }
        if !self.pages.is_empty() {
            self.pages.remove(&first);
        }
        // `last >= first` for every mapping; the size is `None` only for the whole
        // 64-bit space, which no page table holds as one range.
        let len = last.wrapping_sub(first);
        if let (Some(t), Some(size)) = (self.table.as_mut(), len.checked_add(1)) {
            // Mappings were placed whole, so this never splits a page.
            let _ = t.unmap(first, size);
        }
        Some(u128::from(len) + 1)
    }

    /// Removes the mappings starting at the given IOVAs; returns their bytes.
    fn remove(&mut self, firsts: &[u64]) -> u128 {
        let mut bytes = 0u128;
        for f in firsts {
            if let Some(e) = self.maps.remove(*f) {
                let r = IovaRange::new(*f, e.last).unwrap_or(IovaRange::FULL);
                if self.locked > 0 {
                    self.uncharge(*f, e.host(), r.size().unwrap_or(u64::MAX), e.access());
                }
                self.pages.remove(f);
                bytes += r.len();
                if let (Some(t), Some(size)) = (self.table.as_mut(), r.size()) {
                    // Mappings were placed whole, so this never splits a page.
                    let _ = t.unmap(*f, size);
                }
            }
        }
        bytes
    }
}

impl DmaSpace for Container {
    /// type1 and the compatibility container: GET_INFO (the valid ranges, the page
    /// sizes with sizes below the CPU page shown as the CPU page, the mappings left;
    /// the compatibility container always reports `U32_MAX` left). iommufd: the
    /// IOVA_RANGES answer, with the page sizes the domains share plus the IOAS
    /// alignment as the smallest size (every size when there is no domain), and no
    /// mapping limit.
    fn info(&self) -> Result<DmaInfo, InfoError> {
        let flavour = self.config.domain.flavour;
        if !self.is_ready() {
            return Err(if flavour.is_compat() {
                InfoError::Kernel(Errno::ENODEV)
            } else {
                InfoError::NotReady
            });
        }
        let cpu = self.config.domain.cpu_page_size;
        let align = self.page_size();
        let (page_sizes, dma_avail) = match (flavour, &self.domain) {
            (f, Some(d)) if f.is_type1() => {
                let used = if self.is_legacy() {
                    self.legacy.len()
                } else {
                    self.maps.len()
                };
                let used = u32::try_from(used).unwrap_or(u32::MAX);
                (
                    d.page_sizes(),
                    Some(self.config.dma_entry_limit.saturating_sub(used)),
                )
            }
            (f, d) if f.is_compat() => (
                d.as_ref().map_or(!(cpu - 1), |d| d.page_sizes()),
                Some(u32::MAX),
            ),
            (_, Some(d)) => ((d.page_sizes() & !(align - 1)) | align, None),
            (_, None) => (!(align - 1), None),
        };
        Ok(DmaInfo {
            iova_ranges: self.valid_iovas(),
            page_sizes,
            dma_avail,
        })
    }

    /// MAP_DMA / IOMMU_IOAS_MAP with a fixed IOVA, with the flavour's checks in the
    /// kernel's order.
    fn map(
        &mut self,
        iova: u64,
        host_addr: u64,
        size: u64,
        access: Access,
    ) -> Result<(), MapError> {
        if self.config.domain.flavour.is_type1() {
            self.map_type1(iova, host_addr, size, access, Backing::Memory)
        } else {
            self.map_iommufd(iova, host_addr, size, access, Backing::Memory)
        }
    }

    /// UNMAP_DMA / IOMMU_IOAS_UNMAP. For iommufd, `unmap(0, u64::MAX)` is the kernel's
    /// "unmap everything" form and behaves as [`DmaSpace::unmap_all`].
    fn unmap(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        match self.config.domain.flavour {
            f if f.is_type1() => self.unmap_type1(iova, size),
            f if f.is_compat() => self.unmap_compat(iova, size),
            _ => self.unmap_iommufd(iova, size),
        }
    }

    /// type1 `VFIO_DMA_UNMAP_FLAG_ALL` with iova 0 and size 0; iommufd
    /// `IOMMU_IOAS_UNMAP(0, U64_MAX)`. Succeeds even when nothing is mapped.
    fn unmap_all(&mut self) -> Result<u128, UnmapError> {
        if !self.is_ready() {
            return Err(if self.config.domain.flavour.is_compat() {
                UnmapError::Kernel(Errno::ENODEV)
            } else {
                UnmapError::NotReady
            });
        }
        if self.is_legacy() {
            // VFIO_DMA_UNMAP_FLAG_ALL: the walk over [0, 2^64-1) of `unmap_legacy`.
            return self.unmap_legacy(0, u64::MAX);
        }
        let bytes = self.mappings().map(|m| m.iova.len()).sum::<u128>();
        self.maps.clear();
        self.pages.clear();
        self.locked = 0;
        if let Some(t) = self.table.as_mut() {
            t.clear();
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Group, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};

    /// An iommufd IOAS with one VT-d group (39-bit, MSI window reserved).
    fn ioas() -> Container {
        let mut group = Group::new(1);
        group.iommu = Some("dmar0".into());
        group.reserved_regions.push(ReservedRegion {
            range: IovaRange::new(0xfee0_0000, 0xfeef_ffff).unwrap_or(IovaRange::FULL),
            kind: ReservedKind::Msi,
        });
        let host = Host {
            iommus: vec![
                IommuUnit::new("dmar0", IommuVendor::Intel)
                    .with_address_width(39)
                    .with_page_sizes(0x4020_1000)
                    .with_interrupt_remapping(true),
            ],
            groups: vec![group],
            ..Host::default()
        };
        let mut c = Container::new(ContainerConfig::with_flavour(Flavour::Iommufd));
        assert_eq!(c.attach(&host, 1), Ok(()));
        c
    }

    /// drivers/iommu/iommufd/io_pagetable.c iopt_unmap_iova_range (6.12): whole areas
    /// are unmapped in IOVA order until one that is not wholly inside the range; that
    /// one answers ENOENT and the earlier removals stand. Seen by vmtest on 6.12.
    #[test]
    fn iommufd_unmap_ending_inside_an_area_keeps_earlier_removals() {
        let mut c = ioas();
        for iova in [0x10_0000, 0x20_0000, 0x40_0000] {
            assert_eq!(c.map(iova, 0x7f00_0000_0000, 0x10_0000, Access::RW), Ok(()));
        }
        // [1M, 2M) is inside, [2M, 3M) is cut at 2.5M.
        let full = c.clone();
        assert_eq!(
            c.unmap(0x10_0000, 0x18_0000).map_err(|e| e.errno()),
            Err(Errno::ENOENT)
        );
        // The atomicity tests and fuzz targets accept exactly this shape of change.
        assert!(c.is_before_less_whole_mappings(&full));
        assert!(!full.is_before_less_whole_mappings(&c));
        assert!(!c.is_before_less_whole_mappings(&c));
        let left: Vec<u64> = c.mappings().map(|m| m.iova.first()).collect();
        assert_eq!(left, vec![0x20_0000, 0x40_0000]);
        assert!(c.translate(0x10_0000, Access::READ).is_err());
        // A range starting inside the first area it meets removes nothing.
        let before = c.clone();
        assert_eq!(
            c.unmap(0x20_1000, 0x30_0000).map_err(|e| e.errno()),
            Err(Errno::ENOENT)
        );
        assert_eq!(c, before);
    }

    /// iopt_alloc_pages (6.12): `length > SIZE_MAX - PAGE_SIZE` is EINVAL, checked
    /// before `uptr + length` overflowing (EOVERFLOW). From 6.13 the wrap comes first
    /// (seen on 7.2 by vmtest).
    #[test]
    fn iommufd_map_huge_length_is_einval_before_the_user_range_wraps() {
        let mut newest = ioas();
        newest.config.kernel = KernelVersion::NEWEST;
        assert_eq!(
            newest
                .map(0x40_0000, 0x7f00_0000_0000, u64::MAX - 0xfff, Access::RW)
                .map_err(|e| e.errno()),
            Err(Errno::EOVERFLOW)
        );
        let mut c = ioas();
        c.config.kernel = KernelVersion::V6_12;
        let huge = u64::MAX - 0xfff;
        for map in [
            c.map(0x40_0000, 0x7f00_0000_0000, huge, Access::RW),
            c.map_auto(0x7f00_0000_0000, huge, Access::RW).map(|_| ()),
        ] {
            assert_eq!(map.map_err(|e| e.errno()), Err(Errno::EINVAL));
        }
        // One page less is past that check and wraps the user range.
        let big = u64::MAX - 0x1fff;
        assert_eq!(
            c.map(0x40_0000, 0x7f00_0000_0000, big, Access::RW)
                .map_err(|e| e.errno()),
            Err(Errno::EOVERFLOW)
        );
        assert_eq!(c.mapping_count(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// `first_overlap` is the lowest mapping overlapping the range, checked against
        /// a scan of every mapping (maps of 1 to 4 pages over 64 pages; queries of any
        /// range there, including ones starting exactly at a mapping's first page).
        #[test]
        fn first_overlap_is_the_lowest_overlapping_mapping(
            maps in proptest::collection::vec((0u64..64, 1u64..5), 0..24),
            queries in proptest::collection::vec((0u64..70, 0u64..70), 1..24),
        ) {
            let mut c = ioas();
            for (page, pages) in maps {
                let _ = c.map(0x100_0000 + page * 0x1000, 0x7f00_0000_0000, pages * 0x1000, Access::RW);
            }
            let all: Vec<Mapping> = c.mappings().collect();
            for (a, b) in queries {
                let (a, b) = (a.min(b), a.max(b));
                let (first, last) = (0x100_0000 + a * 0x1000, 0x100_0000 + b * 0x1000 + 0xfff);
                let want = all
                    .iter()
                    .find(|m| m.iova.first() <= last && m.iova.last() >= first)
                    .map(|m| m.iova.first());
                proptest::prop_assert_eq!(c.first_overlap(first, last).map(|(f, _)| f), want);
            }
        }
    }
}
