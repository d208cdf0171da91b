//! The VFIO type1 backend: a `/dev/vfio/vfio` container with IOMMU groups attached.
//!
//! ```no_run
//! use std::sync::Arc;
//! use iova::dma::{Access, DmaSpace};
//! use iova_linux::memory::{AnonMemory, HoldMemory};
//! use iova_linux::type1::{Container, IommuType};
//!
//! let mut c = Container::open().map_err(|e| e.to_string())?;
//! c.attach_group(1, IommuType::Type1v2).map_err(|e| e.to_string())?;
//! let buf = Arc::new(AnonMemory::new(0x20_0000).map_err(|e| e.to_string())?);
//! c.add_memory(buf.clone()); // the container keeps it mapped while the device may use it
//! c.map(0x10_0000, buf.addr(), 0x20_0000, Access::RW).map_err(|e| e.to_string())?;
//! # Ok::<(), String>(())
//! ```
//!
//! Errors the kernel reports come back as the kernel's errno (`MapError::Kernel`,
//! `UnmapError::Kernel`, `InfoError::Kernel`): the real kernel is the authority here,
//! and the simulated container is compared against it errno by errno.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iova::dma::{Access, DmaInfo, DmaSpace, Errno, InfoError, MapError, UnmapError};
use iova::range::IovaSet;
use vfio_bindings::bindings::vfio as abi;

use crate::capchain::{self, CapChainError, Type1Info};
use crate::device::Device;
use crate::memory::{AnonMemory, HeldMemory, HoldMemory, MapRawError};
use crate::sys::{self, Pod, Request, nr};

const VFIO_GET_API_VERSION: Request = sys::req(nr::VFIO_GET_API_VERSION);
const VFIO_CHECK_EXTENSION: Request = sys::req(nr::VFIO_CHECK_EXTENSION);
const VFIO_SET_IOMMU: Request = sys::req(nr::VFIO_SET_IOMMU);
const VFIO_GROUP_GET_STATUS: Request = sys::req(nr::VFIO_GROUP_GET_STATUS);
const VFIO_GROUP_SET_CONTAINER: Request = sys::req(nr::VFIO_GROUP_SET_CONTAINER);
const VFIO_GROUP_GET_DEVICE_FD: Request = sys::req(nr::VFIO_GROUP_GET_DEVICE_FD);
const VFIO_IOMMU_GET_INFO: Request = sys::req(nr::VFIO_IOMMU_GET_INFO);
const VFIO_IOMMU_MAP_DMA: Request = sys::req(nr::VFIO_IOMMU_MAP_DMA);
const VFIO_IOMMU_UNMAP_DMA: Request = sys::req(nr::VFIO_IOMMU_UNMAP_DMA);

/// The VFIO API version this code speaks (`VFIO_API_VERSION`).
pub const VFIO_API_VERSION: i32 = abi::VFIO_API_VERSION as i32;
/// Group status flag: all devices of the group are bound to VFIO drivers or none.
pub const GROUP_FLAGS_VIABLE: u32 = abi::VFIO_GROUP_FLAGS_VIABLE;
/// Group status flag: the group is in a container.
pub const GROUP_FLAGS_CONTAINER_SET: u32 = abi::VFIO_GROUP_FLAGS_CONTAINER_SET;

/// MAP flag: the device may read.
pub const DMA_MAP_FLAG_READ: u32 = abi::VFIO_DMA_MAP_FLAG_READ;
/// MAP flag: the device may write.
pub const DMA_MAP_FLAG_WRITE: u32 = abi::VFIO_DMA_MAP_FLAG_WRITE;
/// UNMAP flag: unmap everything (needs [`Extension::UnmapAll`]).
pub const DMA_UNMAP_FLAG_ALL: u32 = abi::VFIO_DMA_UNMAP_FLAG_ALL;

/// Container extensions (`VFIO_CHECK_EXTENSION` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// Type1 IOMMU (v1 unmap semantics).
    Type1,
    /// Type1 v2 (no partial unmaps).
    Type1v2,
    /// Type1 nesting.
    Type1Nesting,
    /// No IOMMU (unsafe).
    NoIommu,
    /// `VFIO_DMA_UNMAP_FLAG_ALL`.
    UnmapAll,
    /// `VFIO_DMA_MAP_FLAG_VADDR`.
    UpdateVaddr,
}

impl Extension {
    /// The kernel's number for it.
    pub const fn code(self) -> u32 {
        match self {
            Extension::Type1 => abi::VFIO_TYPE1_IOMMU,
            Extension::Type1v2 => abi::VFIO_TYPE1v2_IOMMU,
            // Removed from the kernel in 6.11; the number stays reserved.
            Extension::Type1Nesting => abi::__VFIO_RESERVED_TYPE1_NESTING_IOMMU,
            Extension::NoIommu => abi::VFIO_NOIOMMU_IOMMU,
            Extension::UnmapAll => abi::VFIO_UNMAP_ALL,
            Extension::UpdateVaddr => abi::VFIO_UPDATE_VADDR,
        }
    }
}

/// Which IOMMU model to ask for in `VFIO_SET_IOMMU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuType {
    /// Type1 v2: unmaps never split a mapping.
    Type1v2,
    /// Type1 v1.
    Type1,
}

impl IommuType {
    fn extension(self) -> Extension {
        match self {
            IommuType::Type1v2 => Extension::Type1v2,
            IommuType::Type1 => Extension::Type1,
        }
    }
}

/// Why a container operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Type1Error {
    /// Opening a device node failed.
    #[error("cannot open {path}: {errno}")]
    Open {
        /// The node.
        path: PathBuf,
        /// The errno.
        errno: Errno,
    },
    /// The kernel speaks another VFIO API version.
    #[error("VFIO API version {0}, expected {VFIO_API_VERSION}")]
    ApiVersion(i32),
    /// The container lacks the IOMMU model asked for.
    #[error("the VFIO container does not support {0:?}")]
    NoExtension(Extension),
    /// The group is not viable (some device in it is bound to a non-VFIO driver).
    #[error("IOMMU group {0} is not viable (bind every device in it to vfio-pci)")]
    NotViable(u32),
    /// An ioctl failed.
    #[error("{op} failed: {errno}")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// No attached group holds the device.
    #[error("no attached group holds device {0}")]
    NoDevice(String),
}

impl Type1Error {
    /// The errno behind the failure, where there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Type1Error::Open { errno, .. } | Type1Error::Ioctl { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn ioctl_err(op: &'static str) -> impl Fn(Errno) -> Type1Error {
    move |errno| Type1Error::Ioctl { op, errno }
}

// SAFETY: integers only, the kernel's `struct vfio_group_status` (vfio-bindings).
unsafe impl Pod for abi::vfio_group_status {}
// SAFETY: integers plus a zero-length trailing array, the kernel's
// `struct vfio_iommu_type1_dma_unmap`. Its `data` only matters with
// VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, which the kernel refuses (EINVAL) unless argsz
// also covers a `struct vfio_bitmap`; this crate always sends argsz = 24.
unsafe impl Pod for abi::vfio_iommu_type1_dma_unmap {}
// `vfio_iommu_type1_dma_map` is not `Pod`: its `vaddr` is memory the kernel pins and
// hands to the device. It is only sent by `Container::map_raw` (unsafe).

/// An IOMMU group opened from `/dev/vfio/N`.
#[derive(Debug)]
pub struct Group {
    id: u32,
    fd: OwnedFd,
}

impl Group {
    /// Opens `/dev/vfio/<id>`.
    pub fn open(id: u32) -> Result<Group, Type1Error> {
        // SAFETY: /dev/vfio/<number> is the VFIO group node of that group.
        unsafe { Self::open_path(id, &PathBuf::from(format!("/dev/vfio/{id}"))) }
    }

    /// Opens a group node at another path.
    ///
    /// # Safety
    /// `path` must be a VFIO group node (or a node whose driver treats the VFIO group
    /// ioctls as VFIO does): the group issues those requests on it with pointers to
    /// its own structs, and another driver could read or write through them.
    pub unsafe fn open_path(id: u32, path: &Path) -> Result<Group, Type1Error> {
        let fd = sys::open_rw(path).map_err(|e| Type1Error::Open {
            path: path.to_owned(),
            errno: sys::errno_of(&e),
        })?;
        Ok(Group { id, fd })
    }

    /// The group number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The group's file descriptor (for the other VFIO container backends).
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// `VFIO_GROUP_GET_STATUS` flags.
    pub fn status(&self) -> Result<u32, Type1Error> {
        let mut st = abi::vfio_group_status {
            argsz: sys::size_u32::<abi::vfio_group_status>(),
            flags: 0,
        };
        // SAFETY: a VFIO group fd; GET_STATUS reads and writes a vfio_group_status of
        // `argsz` bytes.
        unsafe { sys::ioctl_pod(&self.fd, VFIO_GROUP_GET_STATUS, &mut st) }
            .map_err(ioctl_err("VFIO_GROUP_GET_STATUS"))?;
        Ok(st.flags)
    }

    /// Opens a device of the group by name (`0000:00:03.0`).
    pub fn device(&self, name: &str) -> Result<Device, Type1Error> {
        // SAFETY: a VFIO group fd; GET_DEVICE_FD only reads the device name string.
        let fd = unsafe { sys::ioctl_str(&self.fd, VFIO_GROUP_GET_DEVICE_FD, name) }
            .map_err(ioctl_err("VFIO_GROUP_GET_DEVICE_FD"))?;
        // SAFETY: on success the ioctl returns a new file descriptor that nothing else
        // owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: the group returned a VFIO device fd.
        Ok(unsafe { Device::from_fd(name, fd) })
    }
}

/// A VFIO type1 container (`/dev/vfio/vfio`).
///
/// DMA maps come in two kinds:
/// - safe: [`DmaSpace::map`] and [`Container::map_held`] send only host ranges inside
///   memory the container holds ([`HoldMemory::add_memory`]), plus ranges the kernel
///   refuses before touching memory (size 0, a host range past 2^64-1). Anything else
///   is refused without a system call ([`MapRawError::NotHeld`]; `MapError::BadAddress`
///   through the trait, the answer the kernel gives for memory the process lacks).
///   On drop the container unmaps everything before it lets go of that memory.
/// - unsafe: [`Container::map_raw`], for callers that manage their memory themselves.
#[derive(Debug)]
pub struct Container {
    // Field order is drop order: the container fd and the groups (which keep the
    // container's mappings alive) close before the held memory is unmapped.
    fd: OwnedFd,
    groups: Vec<Group>,
    iommu: Option<IommuType>,
    memory: HeldMemory,
}

impl Container {
    /// Opens `/dev/vfio/vfio` and checks the API version.
    pub fn open() -> Result<Container, Type1Error> {
        // SAFETY: /dev/vfio/vfio is the VFIO container node.
        unsafe { Self::open_path(Path::new("/dev/vfio/vfio")) }
    }

    /// Opens a container node at another path and checks the API version.
    ///
    /// # Safety
    /// `path` must be a VFIO container node (or a node whose driver treats the VFIO
    /// container ioctls as VFIO does): the container issues those requests on it with
    /// pointers to its own structs, and another driver could read or write through
    /// them.
    pub unsafe fn open_path(path: &Path) -> Result<Container, Type1Error> {
        let fd = sys::open_rw(path).map_err(|e| Type1Error::Open {
            path: path.to_owned(),
            errno: sys::errno_of(&e),
        })?;
        let c = Container {
            fd,
            groups: Vec::new(),
            iommu: None,
            memory: HeldMemory::default(),
        };
        let v = c.api_version()?;
        if v != VFIO_API_VERSION {
            return Err(Type1Error::ApiVersion(v));
        }
        Ok(c)
    }

    /// `VFIO_GET_API_VERSION`.
    pub fn api_version(&self) -> Result<i32, Type1Error> {
        // SAFETY: a VFIO container fd; GET_API_VERSION takes no argument.
        unsafe { sys::ioctl_val(&self.fd, VFIO_GET_API_VERSION, 0) }
            .map_err(ioctl_err("VFIO_GET_API_VERSION"))
    }

    /// `VFIO_CHECK_EXTENSION`: whether the container supports `ext`.
    pub fn check_extension(&self, ext: Extension) -> Result<bool, Type1Error> {
        let code = libc::c_ulong::from(ext.code());
        // SAFETY: a VFIO container fd; CHECK_EXTENSION takes an integer.
        unsafe { sys::ioctl_val(&self.fd, VFIO_CHECK_EXTENSION, code) }
            .map(|r| r > 0)
            .map_err(ioctl_err("VFIO_CHECK_EXTENSION"))
    }

    /// The IOMMU model set, once a group is attached.
    pub fn iommu_type(&self) -> Option<IommuType> {
        self.iommu
    }

    /// The attached groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Opens group `id`, checks it is viable, puts it in the container and, for the
    /// first group, sets the IOMMU model (`iommu`, which must be supported).
    pub fn attach_group(&mut self, id: u32, iommu: IommuType) -> Result<(), Type1Error> {
        let group = Group::open(id)?;
        self.attach(group, iommu)
    }

    /// Like [`Container::attach_group`] with an already opened group.
    pub fn attach(&mut self, group: Group, iommu: IommuType) -> Result<(), Type1Error> {
        if group.status()? & GROUP_FLAGS_VIABLE == 0 {
            return Err(Type1Error::NotViable(group.id));
        }
        if self.iommu.is_none() && !self.check_extension(iommu.extension())? {
            return Err(Type1Error::NoExtension(iommu.extension()));
        }
        let mut raw = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        // SAFETY: a VFIO group fd; SET_CONTAINER reads one i32 (the container fd).
        unsafe { sys::ioctl_pod(&group.fd, VFIO_GROUP_SET_CONTAINER, &mut raw) }
            .map_err(ioctl_err("VFIO_GROUP_SET_CONTAINER"))?;
        if self.iommu.is_none() {
            let code = libc::c_ulong::from(iommu.extension().code());
            // On failure the group is dropped, which takes it out of the container.
            // SAFETY: a VFIO container fd; SET_IOMMU takes an integer.
            unsafe { sys::ioctl_val(&self.fd, VFIO_SET_IOMMU, code) }
                .map_err(ioctl_err("VFIO_SET_IOMMU"))?;
            self.iommu = Some(iommu);
        }
        self.groups.push(group);
        Ok(())
    }

    /// Opens a device held by one of the attached groups.
    pub fn device(&self, name: &str) -> Result<Device, Type1Error> {
        let mut last = Type1Error::NoDevice(name.to_owned());
        for g in &self.groups {
            match g.device(name) {
                Ok(d) => return Ok(d),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `VFIO_IOMMU_GET_INFO` with size negotiation: asks with the bare header, grows
    /// the buffer to the `argsz` the kernel reports and retries (a few times, in case
    /// the chain grows in between), then parses the capability chain.
    pub fn get_info(&self) -> Result<Type1Info, InfoError> {
        let mut len = capchain::INFO_HEADER_LEN;
        for _ in 0..4 {
            let buf = self.get_info_raw(len).map_err(InfoError::Kernel)?;
            match capchain::parse_type1_info(&buf) {
                Err(CapChainError::NeedsMore { argsz, .. }) => {
                    let want = usize::try_from(argsz).unwrap_or(usize::MAX);
                    if want > 1 << 20 {
                        return Err(InfoError::Malformed(format!(
                            "GET_INFO asks for {argsz} bytes"
                        )));
                    }
                    len = want;
                }
                Err(e) => return Err(InfoError::Malformed(e.to_string())),
                Ok(info) => return Ok(info),
            }
        }
        Err(InfoError::Malformed(
            "GET_INFO kept asking for a larger buffer".to_owned(),
        ))
    }

    /// One `VFIO_IOMMU_GET_INFO` call with an `argsz` of `len` bytes; returns the bytes
    /// the kernel wrote (for tests of the negotiation itself).
    pub fn get_info_raw(&self, len: usize) -> Result<Vec<u8>, Errno> {
        let words = len.div_ceil(8).max(2);
        let mut buf = vec![0u64; words];
        let argsz = u32::try_from(len).map_err(|_| Errno::EINVAL)?;
        let mut first = [0u8; 8];
        first[..4].copy_from_slice(&argsz.to_ne_bytes());
        buf[0] = u64::from_ne_bytes(first);
        // SAFETY: a VFIO container fd; GET_INFO reads and writes at most `argsz` = `len`
        // bytes, and the buffer holds `words * 8 >= len`.
        unsafe { sys::ioctl_words(&self.fd, VFIO_IOMMU_GET_INFO, &mut buf) }?;
        let mut bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        bytes.truncate(len);
        Ok(bytes)
    }

    /// `VFIO_IOMMU_MAP_DMA` with raw flags; the kernel's errno on failure.
    ///
    /// # Safety
    /// If the kernel accepts the map, the device may read and (with
    /// [`DMA_MAP_FLAG_WRITE`]) write the memory behind `[vaddr, vaddr+size)` until the
    /// mapping is unmapped or the container and every group and device fd of it are
    /// closed. For that whole time the caller must keep that memory mapped and must
    /// not let Rust code use it in a way a concurrent device access would break: no
    /// Rust object (heap, stack or static data reached through references) may live
    /// there; treat it as memory shared with another process (volatile or atomic
    /// accesses only), like guest RAM in a VMM. With `VFIO_DMA_MAP_FLAG_VADDR`, the
    /// same holds for the new `vaddr` of the mapping it updates.
    pub unsafe fn map_raw(
        &self,
        vaddr: u64,
        iova: u64,
        size: u64,
        flags: u32,
    ) -> Result<(), Errno> {
        let mut m = abi::vfio_iommu_type1_dma_map {
            argsz: sys::size_u32::<abi::vfio_iommu_type1_dma_map>(),
            flags,
            vaddr,
            iova,
            size,
        };
        // SAFETY: a VFIO container fd; MAP_DMA reads a vfio_iommu_type1_dma_map of
        // `argsz` bytes; the memory `vaddr` names is the caller's contract.
        unsafe { sys::ioctl_with_ptrs(&self.fd, VFIO_IOMMU_MAP_DMA, &mut m) }.map(|_| ())
    }

    /// `VFIO_IOMMU_MAP_DMA` with raw flags, for host ranges inside memory the
    /// container holds ([`HoldMemory::add_memory`]) or that the kernel refuses before
    /// touching memory (size 0, `vaddr + size - 1` past 2^64-1). Any other range is
    /// refused with [`MapRawError::NotHeld`] without a system call.
    pub fn map_held(
        &self,
        vaddr: u64,
        iova: u64,
        size: u64,
        flags: u32,
    ) -> Result<(), MapRawError> {
        if !self.memory.may_map(vaddr, size) {
            return Err(MapRawError::NotHeld { host: vaddr, size });
        }
        // SAFETY: the range is inside an `AnonMemory` the container holds until its
        // mappings are gone (see `Drop`), which Rust only accesses atomically; or the
        // kernel refuses it before pinning anything.
        unsafe { self.map_raw(vaddr, iova, size, flags) }.map_err(MapRawError::Kernel)
    }

    /// `VFIO_IOMMU_UNMAP_DMA` with raw flags; the bytes unmapped, or the errno.
    pub fn unmap_raw(&self, iova: u64, size: u64, flags: u32) -> Result<u64, Errno> {
        let mut u = abi::vfio_iommu_type1_dma_unmap {
            argsz: sys::size_u32::<abi::vfio_iommu_type1_dma_unmap>(),
            flags,
            iova,
            size,
            ..Default::default()
        };
        // SAFETY: a VFIO container fd; UNMAP_DMA reads and writes a
        // vfio_iommu_type1_dma_unmap of `argsz` bytes (the dirty-bitmap flag, which
        // would make it read further, is refused for this argsz).
        unsafe { sys::ioctl_pod(&self.fd, VFIO_IOMMU_UNMAP_DMA, &mut u) }?;
        Ok(u.size)
    }
}

/// The MAP flags for an access.
pub fn map_flags(access: Access) -> u32 {
    (if access.read { DMA_MAP_FLAG_READ } else { 0 })
        | (if access.write { DMA_MAP_FLAG_WRITE } else { 0 })
}

impl DmaSpace for Container {
    fn info(&self) -> Result<DmaInfo, InfoError> {
        if self.iommu.is_none() {
            return Err(InfoError::NotReady);
        }
        let info = self.get_info()?;
        Ok(DmaInfo {
            iova_ranges: info
                .iova_ranges
                .map(|r| r.into_iter().collect())
                .unwrap_or_else(IovaSet::new),
            page_sizes: info.iova_pgsizes.unwrap_or(0),
            dma_avail: info.dma_avail,
        })
    }

    fn map(
        &mut self,
        iova: u64,
        host_addr: u64,
        size: u64,
        access: Access,
    ) -> Result<(), MapError> {
        self.map_held(host_addr, iova, size, map_flags(access))
            .map_err(MapRawError::to_map_error)
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        self.unmap_raw(iova, size, 0)
            .map(u128::from)
            .map_err(UnmapError::Kernel)
    }

    fn unmap_all(&mut self) -> Result<u128, UnmapError> {
        if self
            .check_extension(Extension::UnmapAll)
            .map_err(|e| UnmapError::Kernel(e.errno().unwrap_or(Errno::EINVAL)))?
        {
            return self
                .unmap_raw(0, 0, DMA_UNMAP_FLAG_ALL)
                .map(u128::from)
                .map_err(UnmapError::Kernel);
        }
        // Without the extension: two halves of 2^63 bytes cover the whole space.
        let half = 1u64 << 63;
        let a = self.unmap_raw(0, half, 0).map_err(UnmapError::Kernel)?;
        let b = self.unmap_raw(half, half, 0).map_err(UnmapError::Kernel)?;
        Ok(u128::from(a) + u128::from(b))
    }
}

impl HoldMemory for Container {
    fn add_memory(&mut self, mem: Arc<AnonMemory>) {
        self.memory.add(mem);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.memory.is_empty() || self.iommu.is_none() {
            return;
        }
        // Device fds opened through the groups keep the container's mappings alive
        // after this value is gone: remove them all before the held memory goes. If
        // that fails, keep the memory mapped for the rest of the process instead.
        if DmaSpace::unmap_all(self).is_err() {
            self.memory.leak();
        }
    }
}
