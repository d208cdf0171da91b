//! The one interface to a DMA address space, simulated or real.
//!
//! [`DmaSpace`] is implemented by the simulated container in this crate and by the
//! VFIO type1 and iommufd backends in `iova-linux`, so a VMM or a user-space driver can
//! write its DMA code once and test it without hardware. Every error knows the `errno`
//! the Linux kernel gives for it, so simulated and real answers can be compared result
//! by result.
//!
//! Addresses in this interface are in the kernel's start+size form (that is what the
//! ioctls take, and what tests of the kernel's edge cases need: a size of 0 or a
//! wrapping range must reach the check that refuses it). Byte counts returned by unmaps
//! are `u128` because mappings can cover the whole 64-bit space.

use std::fmt;

use crate::range::{IovaRange, IovaSet};

/// A Linux error number, as returned by an ioctl.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such file or directory (iommufd: no such area).
    pub const ENOENT: Errno = Errno(2);
    /// Interrupted system call (sPAPR v1 leaks the hypervisor's H_PARAMETER as this).
    pub const EINTR: Errno = Errno(4);
    /// No such device or address (sPAPR: the IOVA is in no DMA window).
    pub const ENXIO: Errno = Errno(6);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Bad address.
    pub const EFAULT: Errno = Errno(14);
    /// Device or resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// File exists (overlapping mapping).
    pub const EEXIST: Errno = Errno(17);
    /// No such device.
    pub const ENODEV: Errno = Errno(19);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// Inappropriate ioctl for device.
    pub const ENOTTY: Errno = Errno(25);
    /// No space left on device (mapping limit, no free IOVA).
    pub const ENOSPC: Errno = Errno(28);
    /// Message too long (iommufd: array too small).
    pub const EMSGSIZE: Errno = Errno(90);
    /// Operation not supported.
    pub const EOPNOTSUPP: Errno = Errno(95);
    /// Address already in use (iommufd: reserved range already mapped).
    pub const EADDRINUSE: Errno = Errno(98);
    /// Value too large for defined data type (iommufd: wrapping range).
    pub const EOVERFLOW: Errno = Errno(75);

    /// The raw number.
    pub const fn code(self) -> i32 {
        self.0
    }

    /// The symbolic name (`EINVAL`), or `E<n>` for numbers this crate does not name.
    pub fn name(self) -> String {
        let known = match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            4 => "EINTR",
            6 => "ENXIO",
            12 => "ENOMEM",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            22 => "EINVAL",
            25 => "ENOTTY",
            28 => "ENOSPC",
            75 => "EOVERFLOW",
            90 => "EMSGSIZE",
            95 => "EOPNOTSUPP",
            98 => "EADDRINUSE",
            _ => return format!("E{}", self.0),
        };
        known.to_owned()
    }

    /// Parses a symbolic name such as `EINVAL` (or `E22`).
    pub fn from_name(name: &str) -> Option<Errno> {
        const ALL: [Errno; 16] = [
            Errno::EPERM,
            Errno::ENOENT,
            Errno::EINTR,
            Errno::ENXIO,
            Errno::ENOMEM,
            Errno::EFAULT,
            Errno::EBUSY,
            Errno::EEXIST,
            Errno::ENODEV,
            Errno::EINVAL,
            Errno::ENOTTY,
            Errno::ENOSPC,
            Errno::EOVERFLOW,
            Errno::EMSGSIZE,
            Errno::EOPNOTSUPP,
            Errno::EADDRINUSE,
        ];
        if let Some(e) = ALL.iter().find(|e| e.name() == name) {
            return Some(*e);
        }
        name.strip_prefix('E')?.parse().ok().map(Errno)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a device may do through a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access {
    /// The device may read (DMA from memory).
    pub read: bool,
    /// The device may write (DMA to memory).
    pub write: bool,
}

impl Access {
    /// No access (the kernel refuses such a map).
    pub const NONE: Access = Access {
        read: false,
        write: false,
    };
    /// Read only.
    pub const READ: Access = Access {
        read: true,
        write: false,
    };
    /// Write only.
    pub const WRITE: Access = Access {
        read: false,
        write: true,
    };
    /// Read and write.
    pub const RW: Access = Access {
        read: true,
        write: true,
    };

    /// Whether `self` allows everything `needed` asks for.
    pub const fn allows(self, needed: Access) -> bool {
        (self.read || !needed.read) && (self.write || !needed.write)
    }

    /// The short spelling used in traces: `r`, `w`, `rw` or `-`.
    pub const fn as_str(self) -> &'static str {
        match (self.read, self.write) {
            (true, true) => "rw",
            (true, false) => "r",
            (false, true) => "w",
            (false, false) => "-",
        }
    }
}

/// What backs a host address given to a map: ordinary process memory, or an `mmap` of
/// a device BAR (a `VM_PFNMAP` mapping of MMIO, as a VMM uses for peer-to-peer DMA).
///
/// The interfaces differ on the second (docs/semantics.md §14): VFIO type1 reads the
/// PFNs out of the page tables (`vaddr_get_pfns` falls back to `follow_fault_pfn`) and
/// maps them; iommufd pins with `pin_user_pages`, which refuses `VM_IO | VM_PFNMAP`
/// memory (EFAULT) whenever it has to pin, that is when a domain is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backing {
    /// Ordinary (pinnable) process memory: anonymous, file or hugetlbfs pages.
    #[default]
    Memory,
    /// An `mmap` of a device BAR (`VM_IO | VM_PFNMAP`): MMIO with no `struct page`.
    Bar,
}

impl Backing {
    /// The trace spelling: `mem` or `bar`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backing::Memory => "mem",
            Backing::Bar => "bar",
        }
    }
}

/// What a [`DmaSpace`] can map now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmaInfo {
    /// The IOVAs a map may use. Empty with `restricted == false` means "no restriction
    /// reported" (type1 with no IOVA_RANGE capability).
    pub iova_ranges: IovaSet,
    /// Supported page sizes (bit n set = 2^n bytes); the smallest is the alignment unit.
    pub page_sizes: u64,
    /// How many more mappings may be created, if the backend says.
    pub dma_avail: Option<u32>,
}

impl DmaInfo {
    /// The smallest page size, the unit every map and unmap must be aligned to.
    pub fn min_page_size(&self) -> Option<u64> {
        (self.page_sizes != 0).then(|| 1u64 << self.page_sizes.trailing_zeros())
    }
}

/// Why a query of the space failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// The space is not set up yet (type1 before `SET_IOMMU`, no group attached).
    #[error("the DMA space is not set up (no IOMMU group attached)")]
    NotReady,
    /// The kernel's reply was malformed (a broken capability chain).
    #[error("malformed reply from the kernel: {0}")]
    Malformed(String),
    /// The kernel refused the query.
    #[error("the kernel refused the query: {0}")]
    Kernel(Errno),
}

impl InfoError {
    /// The errno the kernel gives (or would give) for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            InfoError::NotReady => Errno::EINVAL,
            InfoError::Malformed(_) => Errno::EINVAL,
            InfoError::Kernel(e) => *e,
        }
    }
}

/// Why a map failed. Nothing is mapped when a map fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// Neither read nor write asked for, or an unknown flag.
    #[error("invalid access flags (need read and/or write)")]
    BadFlags,
    /// Size 0.
    #[error("size is 0")]
    ZeroSize,
    /// IOVA, size or host address not a multiple of the smallest page size.
    #[error("iova, size or host address not aligned to the page size {page_size:#x}")]
    Misaligned {
        /// The smallest page size of the space.
        page_size: u64,
    },
    /// The IOVA or the host range runs past 2^64-1 (type1 before 6.18 answers EINVAL).
    #[error("the range runs past 2^64-1")]
    Wraps,
    /// The IOVA or the host range runs past 2^64-1 (iommufd, type1 from 6.18: EOVERFLOW).
    #[error("the range runs past 2^64-1 (overflow)")]
    Overflow,
    /// The range overlaps an existing mapping.
    #[error("overlaps the existing mapping {existing}")]
    Exists {
        /// The mapping it hits.
        existing: IovaRange,
    },
    /// The container already holds as many mappings as it may (`dma_entry_limit`).
    #[error("mapping limit of {limit} reached")]
    TooManyMappings {
        /// The limit.
        limit: u32,
    },
    /// Not inside one valid IOVA range (beyond the aperture, or in a reserved region,
    /// or straddling either).
    #[error("not inside one valid IOVA range")]
    NotInValidRange,
    /// No free IOVA of that size (automatic allocation).
    #[error("no free IOVA range of that size")]
    NoSpace,
    /// No group attached yet.
    #[error("the DMA space is not set up (no IOMMU group attached)")]
    NotReady,
    /// Out of memory: the simulated IO page table would exceed its memory budget (the
    /// kernel answers ENOMEM when it cannot allocate page tables or pin the memory).
    #[error("out of memory for the IO page tables")]
    NoMemory,
    /// Pinning the pages would pass the locked-memory limit (RLIMIT_MEMLOCK; type1 logs
    /// `vfio_pin_pages_remote: RLIMIT_MEMLOCK (N) exceeded`).
    #[error(
        "pinning {pages} more pages passes RLIMIT_MEMLOCK ({limit} bytes, {locked} pages locked already)"
    )]
    MemlockExceeded {
        /// The CPU pages the map would charge.
        pages: u64,
        /// The limit in bytes.
        limit: u64,
        /// The pages charged to the same counter before the map.
        locked: u64,
    },
    /// The host range is not mapped in the process.
    #[error("host address not mapped in the process")]
    BadAddress,
    /// The host range cannot be pinned: it is an `mmap` of a device BAR
    /// (`VM_IO | VM_PFNMAP`), which `pin_user_pages` refuses (iommufd with a domain).
    #[error("the host range is a device BAR mapping (VM_PFNMAP), which cannot be pinned")]
    Unpinnable,
    /// The kernel refused the map with this errno (real backends).
    #[error("the kernel refused the map: {0}")]
    Kernel(Errno),
}

impl MapError {
    /// The errno the kernel gives for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            MapError::BadFlags
            | MapError::ZeroSize
            | MapError::Misaligned { .. }
            | MapError::Wraps
            | MapError::NotInValidRange
            | MapError::NotReady => Errno::EINVAL,
            MapError::Overflow => Errno::EOVERFLOW,
            MapError::Exists { .. } => Errno::EEXIST,
            MapError::TooManyMappings { .. } | MapError::NoSpace => Errno::ENOSPC,
            MapError::BadAddress | MapError::Unpinnable => Errno::EFAULT,
            MapError::NoMemory | MapError::MemlockExceeded { .. } => Errno::ENOMEM,
            MapError::Kernel(e) => *e,
        }
    }
}

/// Why an unmap failed. Nothing is unmapped when an unmap fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnmapError {
    /// Size 0.
    #[error("size is 0")]
    ZeroSize,
    /// IOVA or size not a multiple of the smallest page size.
    #[error("iova or size not aligned to the page size {page_size:#x}")]
    Misaligned {
        /// The smallest page size of the space.
        page_size: u64,
    },
    /// The range runs past 2^64-1 (type1 before 6.18).
    #[error("the range runs past 2^64-1")]
    Wraps,
    /// The range runs past 2^64-1 (iommufd, type1 from 6.18).
    #[error("the range runs past 2^64-1 (overflow)")]
    Overflow,
    /// The range would split an existing mapping (type1: EINVAL).
    #[error("would split the mapping {mapping}")]
    Splits {
        /// The mapping it would split.
        mapping: IovaRange,
    },
    /// The range would split an existing mapping (iommufd: ENOENT).
    #[error("would split the area {mapping}")]
    SplitsArea {
        /// The mapping it would split.
        mapping: IovaRange,
    },
    /// Nothing is mapped there (iommufd: ENOENT; type1 succeeds with 0 bytes instead).
    #[error("nothing mapped in the range")]
    NotFound,
    /// Invalid flag combination (unmap-all with a non-zero range).
    #[error("invalid flags")]
    BadFlags,
    /// No group attached yet.
    #[error("the DMA space is not set up (no IOMMU group attached)")]
    NotReady,
    /// The kernel refused the unmap with this errno (real backends).
    #[error("the kernel refused the unmap: {0}")]
    Kernel(Errno),
}

impl UnmapError {
    /// The errno the kernel gives for this failure.
    pub fn errno(&self) -> Errno {
        match self {
            UnmapError::ZeroSize
            | UnmapError::Misaligned { .. }
            | UnmapError::Wraps
            | UnmapError::Splits { .. }
            | UnmapError::BadFlags
            | UnmapError::NotReady => Errno::EINVAL,
            UnmapError::Overflow => Errno::EOVERFLOW,
            UnmapError::SplitsArea { .. } | UnmapError::NotFound => Errno::ENOENT,
            UnmapError::Kernel(e) => *e,
        }
    }
}

/// A DMA address space: a VFIO type1 container, an iommufd IOAS, or the simulation.
///
/// ```
/// use iova::dma::{Access, DmaSpace, MapError};
///
/// fn map_buffer(space: &mut dyn DmaSpace, iova: u64, vaddr: u64, len: u64) -> Result<(), MapError> {
///     space.map(iova, vaddr, len, Access::RW)
/// }
/// ```
pub trait DmaSpace {
    /// Valid IOVA ranges, page sizes and mappings left.
    fn info(&self) -> Result<DmaInfo, InfoError>;

    /// The valid IOVA ranges.
    fn iova_ranges(&self) -> Result<IovaSet, InfoError> {
        self.info().map(|i| i.iova_ranges)
    }

    /// The page-size bitmap.
    fn page_sizes(&self) -> Result<u64, InfoError> {
        self.info().map(|i| i.page_sizes)
    }

    /// How many more mappings may be created, if known.
    fn dma_avail(&self) -> Result<Option<u32>, InfoError> {
        self.info().map(|i| i.dma_avail)
    }

    /// Maps `size` bytes at `iova` to `host_addr` (a process virtual address for the
    /// real backends) with the given access.
    fn map(&mut self, iova: u64, host_addr: u64, size: u64, access: Access)
    -> Result<(), MapError>;

    /// Unmaps whole mappings inside `[iova, iova+size-1]`; returns the bytes unmapped.
    fn unmap(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError>;

    /// Unmaps everything; returns the bytes unmapped.
    fn unmap_all(&mut self) -> Result<u128, UnmapError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip() {
        for e in [
            Errno::EINVAL,
            Errno::EEXIST,
            Errno::ENOSPC,
            Errno::EOVERFLOW,
            Errno(200),
        ] {
            assert_eq!(Errno::from_name(&e.name()), Some(e));
        }
        assert_eq!(Errno::from_name("EBOGUS"), None);
        assert_eq!(MapError::Overflow.errno(), Errno::EOVERFLOW);
        assert_eq!(UnmapError::NotFound.errno(), Errno::ENOENT);
    }

    #[test]
    fn access_allows() {
        assert!(Access::RW.allows(Access::READ));
        assert!(!Access::READ.allows(Access::WRITE));
        assert!(Access::WRITE.allows(Access::NONE));
    }
}
