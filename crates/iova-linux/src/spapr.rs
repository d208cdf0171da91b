//! The real sPAPR TCE backend (IBM Power, pseries): a `/dev/vfio/vfio` container set to
//! `VFIO_SPAPR_TCE_IOMMU` (v1) or `VFIO_SPAPR_TCE_v2_IOMMU` (v2), behind the same
//! [`SpaprSpace`] and [`DmaSpace`] interfaces as the simulation in [`iova::spapr`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use iova::dma::Access;
//! use iova::spapr::{SpaprSpace, SpaprVersion};
//! use iova_linux::memory::{AnonMemory, HoldMemory};
//! use iova_linux::spapr::SpaprContainer;
//!
//! let mut c = SpaprContainer::open().map_err(|e| e.to_string())?;
//! c.attach_group(0, SpaprVersion::V2).map_err(|e| e.to_string())?;
//! let buf = Arc::new(AnonMemory::new(0x10_0000).map_err(|e| e.to_string())?);
//! c.add_memory(buf.clone());
//! c.register_memory(buf.addr(), 0x10_0000).map_err(|e| e.to_string())?;
//! let start = c.create_window(12, 1 << 32, 1).map_err(|e| e.to_string())?;
//! c.tce_map(start, buf.addr(), 0x1_0000, Access::RW).map_err(|e| e.to_string())?;
//! # Ok::<(), String>(())
//! ```
//!
//! Two requests are never sent, because the kernel mishandles them
//! ([`KernelDefect`]): a map that starts inside a DMA window and runs past its end
//! (v2: kernel oops; v1: errno 4). The backend knows the windows (GET_INFO's default
//! window plus every window it created) and answers such a map with
//! [`SpaprError::Defect`], exactly as the simulation does.
//!
//! Safe maps only reach memory the container holds ([`HoldMemory`]); callers that
//! manage memory themselves use the `unsafe fn` [`SpaprContainer::map_raw`].

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use iova::dma::{Access, DmaInfo, DmaSpace, Errno, InfoError, MapError, UnmapError};
use iova::range::{IovaRange, IovaSet};
use iova::spapr::{DdwInfo, KernelDefect, SpaprError, SpaprInfo, SpaprSpace, SpaprVersion};
use vfio_bindings::bindings::vfio as abi;

use crate::device::Device;
use crate::memory::{AnonMemory, HeldMemory, HoldMemory};
use crate::sys::{self, Pod, Request, nr};
use crate::type1::{GROUP_FLAGS_VIABLE, Group, Type1Error, VFIO_API_VERSION};

const VFIO_GET_API_VERSION: Request = sys::req(nr::VFIO_GET_API_VERSION);
const VFIO_CHECK_EXTENSION: Request = sys::req(nr::VFIO_CHECK_EXTENSION);
const VFIO_SET_IOMMU: Request = sys::req(nr::VFIO_SET_IOMMU);
const VFIO_GROUP_SET_CONTAINER: Request = sys::req(nr::VFIO_GROUP_SET_CONTAINER);
const VFIO_IOMMU_MAP_DMA: Request = sys::req(nr::VFIO_IOMMU_MAP_DMA);
const VFIO_IOMMU_UNMAP_DMA: Request = sys::req(nr::VFIO_IOMMU_UNMAP_DMA);
const GET_INFO: Request = sys::req(nr::VFIO_IOMMU_SPAPR_TCE_GET_INFO);
const ENABLE: Request = sys::req(nr::VFIO_IOMMU_ENABLE);
const DISABLE: Request = sys::req(nr::VFIO_IOMMU_DISABLE);
const REGISTER: Request = sys::req(nr::VFIO_IOMMU_SPAPR_REGISTER_MEMORY);
const UNREGISTER: Request = sys::req(nr::VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY);
const CREATE: Request = sys::req(nr::VFIO_IOMMU_SPAPR_TCE_CREATE);
const REMOVE: Request = sys::req(nr::VFIO_IOMMU_SPAPR_TCE_REMOVE);

// SAFETY: integers only (with the nested DDW struct of integers), the kernel's
// `struct vfio_iommu_spapr_tce_info` (vfio-bindings).
unsafe impl Pod for abi::vfio_iommu_spapr_tce_info {}
// SAFETY: integers only, the kernel's `struct vfio_iommu_spapr_tce_create`.
unsafe impl Pod for abi::vfio_iommu_spapr_tce_create {}
// SAFETY: integers only, the kernel's `struct vfio_iommu_spapr_tce_remove`.
unsafe impl Pod for abi::vfio_iommu_spapr_tce_remove {}
// `vfio_iommu_spapr_register_memory` carries a user address the kernel pins; it is
// sent with `ioctl_with_ptrs`. Registration pins pages but gives no device access.

/// Why opening or attaching failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpaprBackendError {
    /// A VFIO container or group operation failed.
    #[error("{0}")]
    Vfio(#[from] Type1Error),
    /// The container does not offer this sPAPR interface (not a Power host, or
    /// `vfio_iommu_spapr_tce` not loaded).
    #[error("the VFIO container does not support {}", .0.as_str())]
    NoExtension(SpaprVersion),
    /// A group is attached already (this backend drives one partitionable endpoint).
    #[error("a group is attached already")]
    Busy,
}

/// A window the backend knows of (to refuse maps that cross its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    start: u64,
    end: u128,
    page_shift: u32,
}

/// A real sPAPR TCE container with one group attached.
#[derive(Debug)]
pub struct SpaprContainer {
    fd: OwnedFd,
    group: Option<Group>,
    version: Option<SpaprVersion>,
    windows: Vec<Known>,
    /// The kernel's `enabled`: v2 after any successful registration, v1 between
    /// ENABLE and DISABLE.
    enabled: bool,
    memory: HeldMemory,
}

fn ioctl_err(op: &'static str) -> impl Fn(Errno) -> Type1Error {
    move |errno| Type1Error::Ioctl { op, errno }
}

impl SpaprContainer {
    /// Opens `/dev/vfio/vfio` and checks the API version.
    pub fn open() -> Result<SpaprContainer, SpaprBackendError> {
        let path = Path::new("/dev/vfio/vfio");
        let fd = sys::open_rw(path).map_err(|e| Type1Error::Open {
            path: path.to_owned(),
            errno: sys::errno_of(&e),
        })?;
        // SAFETY: a VFIO container fd; GET_API_VERSION takes no argument.
        let v = unsafe { sys::ioctl_val(&fd, VFIO_GET_API_VERSION, 0) }
            .map_err(ioctl_err("VFIO_GET_API_VERSION"))?;
        if v != VFIO_API_VERSION {
            return Err(Type1Error::ApiVersion(v).into());
        }
        Ok(SpaprContainer {
            fd,
            group: None,
            version: None,
            windows: Vec::new(),
            enabled: false,
            memory: HeldMemory::default(),
        })
    }

    /// `VFIO_CHECK_EXTENSION` for a sPAPR version.
    pub fn supports(&self, version: SpaprVersion) -> Result<bool, SpaprBackendError> {
        // SAFETY: a VFIO container fd; CHECK_EXTENSION takes an integer.
        unsafe {
            sys::ioctl_val(
                &self.fd,
                VFIO_CHECK_EXTENSION,
                libc::c_ulong::from(version.iommu_type()),
            )
        }
        .map(|r| r > 0)
        .map_err(|e| ioctl_err("VFIO_CHECK_EXTENSION")(e).into())
    }

    /// Opens group `id`, checks it is viable, puts it in the container and sets the
    /// sPAPR interface `version`.
    pub fn attach_group(
        &mut self,
        id: u32,
        version: SpaprVersion,
    ) -> Result<(), SpaprBackendError> {
        if self.group.is_some() {
            return Err(SpaprBackendError::Busy);
        }
        let group = Group::open(id)?;
        if group.status()? & GROUP_FLAGS_VIABLE == 0 {
            return Err(Type1Error::NotViable(id).into());
        }
        if !self.supports(version)? {
            return Err(SpaprBackendError::NoExtension(version));
        }
        let mut raw = self.fd.as_raw_fd();
        // SAFETY: a VFIO group fd; SET_CONTAINER reads one i32 (the container fd).
        unsafe { sys::ioctl_pod(group.fd(), VFIO_GROUP_SET_CONTAINER, &mut raw) }
            .map_err(ioctl_err("VFIO_GROUP_SET_CONTAINER"))?;
        // On failure the group is dropped, which takes it out of the container.
        // SAFETY: a VFIO container fd; SET_IOMMU takes an integer.
        unsafe {
            sys::ioctl_val(
                &self.fd,
                VFIO_SET_IOMMU,
                libc::c_ulong::from(version.iommu_type()),
            )
        }
        .map_err(ioctl_err("VFIO_SET_IOMMU"))?;
        self.group = Some(group);
        self.version = Some(version);
        let info = self
            .tce_info()
            .map_err(ioctl_err("VFIO_IOMMU_SPAPR_TCE_GET_INFO"))?;
        let start = u64::from(info.dma32_window_start);
        self.windows = vec![Known {
            start,
            end: u128::from(start) + u128::from(info.dma32_window_size),
            page_shift: 12,
        }];
        Ok(())
    }

    /// The sPAPR interface set, once a group is attached.
    pub fn version(&self) -> Option<SpaprVersion> {
        self.version
    }

    /// Opens a device of the attached group.
    pub fn device(&self, name: &str) -> Result<Device, SpaprBackendError> {
        match &self.group {
            Some(g) => Ok(g.device(name)?),
            None => Err(Type1Error::NoDevice(name.to_owned()).into()),
        }
    }

    /// Whether a map must not be sent: it passes every check the kernel makes before
    /// writing TCEs and starts inside a known window but runs past its end. Then the
    /// answer is the defect, or EPERM (what the kernel answers first) while the
    /// container is not enabled yet, so that such a map is never sent even if the
    /// kernel were enabled after all.
    fn refusal(&self, iova: u64, vaddr: u64, size: u64, access: Access) -> Option<SpaprError> {
        let w = self.windows.iter().find(|w| {
            let first = w.start >> w.page_shift;
            let entry = iova >> w.page_shift;
            entry >= first && (u128::from(entry) << w.page_shift) < w.end
        })?;
        let ps = 1u64.checked_shl(w.page_shift)?;
        if size == 0
            || size % ps != 0
            || vaddr % ps != 0
            || iova % ps != 0
            || access == Access::NONE
        {
            return None;
        }
        if u128::from(iova) + u128::from(size) <= w.end {
            return None;
        }
        if !self.enabled {
            return Some(SpaprError::Kernel(Errno::EPERM));
        }
        Some(SpaprError::Defect(match self.version {
            Some(SpaprVersion::V1) => KernelDefect::MapPastWindowEndHParameter,
            _ => KernelDefect::MapPastWindowEndOops,
        }))
    }

    /// `VFIO_IOMMU_MAP_DMA` for memory the caller manages; returns the kernel's
    /// non-negative return value (1: IOVA not aligned to the TCE page).
    ///
    /// # Safety
    /// If the kernel accepts the map, the device may read and (with write access)
    /// write the memory behind `[vaddr, vaddr+size)` until the TCEs are cleared
    /// (unmap, window removal) or the container and every group and device fd of it
    /// are closed. For that whole time the caller must keep that memory mapped and
    /// must not let Rust objects live there: treat it as memory shared with another
    /// process (volatile or atomic accesses only), like guest RAM in a VMM.
    pub unsafe fn map_raw(
        &mut self,
        iova: u64,
        vaddr: u64,
        size: u64,
        access: Access,
    ) -> Result<u32, SpaprError> {
        if let Some(e) = self.refusal(iova, vaddr, size, access) {
            return Err(e);
        }
        let mut flags = 0;
        if access.read {
            flags |= abi::VFIO_DMA_MAP_FLAG_READ;
        }
        if access.write {
            flags |= abi::VFIO_DMA_MAP_FLAG_WRITE;
        }
        let mut m = abi::vfio_iommu_type1_dma_map {
            argsz: sys::size_u32::<abi::vfio_iommu_type1_dma_map>(),
            flags,
            vaddr,
            iova,
            size,
        };
        // SAFETY: a VFIO container fd set to sPAPR; MAP_DMA reads a
        // vfio_iommu_type1_dma_map of `argsz` bytes; the memory `vaddr` names is the
        // caller's contract.
        let r = unsafe { sys::ioctl_with_ptrs(&self.fd, VFIO_IOMMU_MAP_DMA, &mut m) }?;
        Ok(u32::try_from(r).unwrap_or(u32::MAX))
    }
}

impl HoldMemory for SpaprContainer {
    fn add_memory(&mut self, mem: Arc<AnonMemory>) {
        self.memory.add(mem);
    }
}

impl SpaprSpace for SpaprContainer {
    fn tce_info(&self) -> Result<SpaprInfo, Errno> {
        let mut i = abi::vfio_iommu_spapr_tce_info {
            argsz: sys::size_u32::<abi::vfio_iommu_spapr_tce_info>(),
            flags: 0,
            dma32_window_start: 0,
            dma32_window_size: 0,
            ddw: abi::vfio_iommu_spapr_tce_ddw_info {
                pgsizes: 0,
                max_dynamic_windows_supported: 0,
                levels: 0,
            },
        };
        // SAFETY: a VFIO container fd; SPAPR_TCE_GET_INFO reads and writes at most
        // `argsz` = size_of(vfio_iommu_spapr_tce_info) bytes.
        unsafe { sys::ioctl_pod(&self.fd, GET_INFO, &mut i) }?;
        Ok(SpaprInfo {
            dma32_window_start: i.dma32_window_start,
            dma32_window_size: i.dma32_window_size,
            ddw: (i.flags & abi::VFIO_IOMMU_SPAPR_INFO_DDW != 0).then_some(DdwInfo {
                pgsizes: i.ddw.pgsizes,
                max_dynamic_windows_supported: i.ddw.max_dynamic_windows_supported,
                levels: i.ddw.levels,
            }),
        })
    }

    fn tce_map(
        &mut self,
        iova: u64,
        vaddr: u64,
        size: u64,
        access: Access,
    ) -> Result<u32, SpaprError> {
        if !self.memory.may_map(vaddr, size) {
            // Not memory this container holds: never sent (the kernel would pin and
            // map whatever lives there).
            return Err(SpaprError::Kernel(Errno::EFAULT));
        }
        // SAFETY: the range is inside memory the container holds (AnonMemory, kept
        // mapped while the container lives and only accessed atomically), or empty /
        // wrapping, which the kernel refuses before pinning anything.
        unsafe { self.map_raw(iova, vaddr, size, access) }
    }

    fn tce_unmap(&mut self, iova: u64, size: u64) -> Result<u32, SpaprError> {
        let mut u = abi::vfio_iommu_type1_dma_unmap {
            argsz: 24,
            flags: 0,
            iova,
            size,
            ..Default::default()
        };
        // SAFETY: a VFIO container fd set to sPAPR; UNMAP_DMA reads the first 24
        // bytes of a vfio_iommu_type1_dma_unmap (no flags, no bitmap).
        let r = unsafe { sys::ioctl_pod(&self.fd, VFIO_IOMMU_UNMAP_DMA, &mut u) }?;
        Ok(u32::try_from(r).unwrap_or(u32::MAX))
    }

    fn register_memory(&mut self, vaddr: u64, size: u64) -> Result<(), Errno> {
        let mut r = abi::vfio_iommu_spapr_register_memory {
            argsz: sys::size_u32::<abi::vfio_iommu_spapr_register_memory>(),
            flags: 0,
            vaddr,
            size,
        };
        // SAFETY: a VFIO container fd; REGISTER_MEMORY reads the struct and pins the
        // user pages it names (through the process's page tables, not through this
        // pointer); pinning gives no device access, and maps are checked separately.
        unsafe { sys::ioctl_with_ptrs(&self.fd, REGISTER, &mut r) }?;
        self.enabled = true;
        Ok(())
    }

    fn unregister_memory(&mut self, vaddr: u64, size: u64) -> Result<(), Errno> {
        let mut r = abi::vfio_iommu_spapr_register_memory {
            argsz: sys::size_u32::<abi::vfio_iommu_spapr_register_memory>(),
            flags: 0,
            vaddr,
            size,
        };
        // SAFETY: a VFIO container fd; UNREGISTER_MEMORY only reads the struct.
        unsafe { sys::ioctl_with_ptrs(&self.fd, UNREGISTER, &mut r) }.map(|_| ())
    }

    fn enable(&mut self) -> Result<(), Errno> {
        // SAFETY: a VFIO container fd; VFIO_IOMMU_ENABLE takes no argument.
        unsafe { sys::ioctl_val(&self.fd, ENABLE, 0) }?;
        self.enabled = true;
        Ok(())
    }

    fn disable(&mut self) -> Result<(), Errno> {
        // SAFETY: a VFIO container fd; VFIO_IOMMU_DISABLE takes no argument.
        unsafe { sys::ioctl_val(&self.fd, DISABLE, 0) }?;
        // Only v1 has DISABLE (v2 answers ENOTTY and stays enabled).
        if self.version == Some(SpaprVersion::V1) {
            self.enabled = false;
        }
        Ok(())
    }

    fn create_window(&mut self, page_shift: u32, size: u64, levels: u32) -> Result<u64, Errno> {
        let mut c = abi::vfio_iommu_spapr_tce_create {
            argsz: sys::size_u32::<abi::vfio_iommu_spapr_tce_create>(),
            flags: 0,
            page_shift,
            __resv1: 0,
            window_size: size,
            levels,
            __resv2: 0,
            start_addr: 0,
        };
        // SAFETY: a VFIO container fd; TCE_CREATE reads and writes the struct
        // (argsz = its size).
        unsafe { sys::ioctl_pod(&self.fd, CREATE, &mut c) }?;
        // The default window (created on demand) is tracked from GET_INFO already.
        if !self
            .windows
            .iter()
            .any(|w| w.start == c.start_addr && w.page_shift == page_shift)
        {
            self.windows.push(Known {
                start: c.start_addr,
                end: u128::from(c.start_addr) + u128::from(size),
                page_shift,
            });
        } else if let Some(w) = self
            .windows
            .iter_mut()
            .find(|w| w.start == c.start_addr && w.page_shift == page_shift)
        {
            w.end = u128::from(c.start_addr) + u128::from(size);
        }
        Ok(c.start_addr)
    }

    fn remove_window(&mut self, addr: u64) -> Result<(), Errno> {
        let mut r = abi::vfio_iommu_spapr_tce_remove {
            argsz: sys::size_u32::<abi::vfio_iommu_spapr_tce_remove>(),
            flags: 0,
            start_addr: addr,
        };
        // SAFETY: a VFIO container fd; TCE_REMOVE reads the struct.
        unsafe { sys::ioctl_pod(&self.fd, REMOVE, &mut r) }?;
        self.windows.retain(|w| {
            let inside = u128::from(addr) >= u128::from(w.start) && u128::from(addr) < w.end;
            !inside
        });
        Ok(())
    }
}

/// The generic DMA interface, as for the simulation ([`iova::spapr::SpaprContainer`]):
/// the windows this container knows are the valid IOVAs.
impl DmaSpace for SpaprContainer {
    fn info(&self) -> Result<DmaInfo, InfoError> {
        let mut set = IovaSet::new();
        let mut page_sizes = 0u64;
        for w in &self.windows {
            let last = w.end.checked_sub(1).and_then(|l| u64::try_from(l).ok());
            if let Some(r) = last.and_then(|l| IovaRange::new(w.start, l).ok()) {
                set.insert(r);
            }
            page_sizes |= 1u64.checked_shl(w.page_shift).unwrap_or(0);
        }
        Ok(DmaInfo {
            iova_ranges: set,
            page_sizes,
            dma_avail: None,
        })
    }

    fn map(
        &mut self,
        iova: u64,
        host_addr: u64,
        size: u64,
        access: Access,
    ) -> Result<(), MapError> {
        iova::spapr::map_answer(self.tce_map(iova, host_addr, size, access))
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        iova::spapr::unmap_answer(size, self.tce_unmap(iova, size))
    }

    fn unmap_all(&mut self) -> Result<u128, UnmapError> {
        Err(UnmapError::BadFlags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sPAPR request numbers on x86_64 and powerpc64 (`_IOC_NONE << 29`).
    #[test]
    #[allow(
        clippy::useless_conversion,
        reason = "the request type is u64 on glibc x86_64 but narrower elsewhere"
    )]
    fn request_numbers() {
        let x86 = [
            (nr::VFIO_IOMMU_SPAPR_TCE_GET_INFO, 0x3b70u64),
            (nr::VFIO_IOMMU_ENABLE, 0x3b73),
            (nr::VFIO_IOMMU_DISABLE, 0x3b74),
            (nr::VFIO_IOMMU_SPAPR_REGISTER_MEMORY, 0x3b75),
            (nr::VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, 0x3b76),
            (nr::VFIO_IOMMU_SPAPR_TCE_CREATE, 0x3b77),
            (nr::VFIO_IOMMU_SPAPR_TCE_REMOVE, 0x3b78),
        ];
        for (tn, want) in x86 {
            let got = u64::try_from(sys::req(tn)).unwrap_or(0) & 0xffff_ffff;
            let ppc = cfg!(any(target_arch = "powerpc", target_arch = "powerpc64"));
            let want = if ppc { want | 0x2000_0000 } else { want };
            assert_eq!(got, want, "{tn:?}");
        }
    }

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(sys::size_u32::<abi::vfio_iommu_spapr_tce_info>(), 32);
        assert_eq!(sys::size_u32::<abi::vfio_iommu_spapr_tce_create>(), 40);
        assert_eq!(sys::size_u32::<abi::vfio_iommu_spapr_tce_remove>(), 16);
        assert_eq!(sys::size_u32::<abi::vfio_iommu_spapr_register_memory>(), 24);
    }
}
