//! A VFIO device file descriptor: region info, config space, BAR access.
//!
//! A device comes from a group (`VFIO_GROUP_GET_DEVICE_FD`, type1) or from its
//! character device `/dev/vfio/devices/vfioN` (iommufd). Only what user-space DMA
//! tests need is here: region info, `pread`/`pwrite` on regions (config space), and
//! a bounds-checked volatile view of an mmapped BAR.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use iova::dma::Errno;
use vfio_bindings::bindings::vfio as abi;

use crate::sys::{self, Pod, Request, nr};

const VFIO_DEVICE_GET_INFO: Request = sys::req(nr::VFIO_DEVICE_GET_INFO);
const VFIO_DEVICE_GET_REGION_INFO: Request = sys::req(nr::VFIO_DEVICE_GET_REGION_INFO);

/// Region index of BAR0.
pub const PCI_BAR0_REGION_INDEX: u32 = abi::VFIO_PCI_BAR0_REGION_INDEX;
/// Region index of PCI config space.
pub const PCI_CONFIG_REGION_INDEX: u32 = abi::VFIO_PCI_CONFIG_REGION_INDEX;
/// Region flag: `mmap` is supported.
pub const REGION_INFO_FLAG_MMAP: u32 = abi::VFIO_REGION_INFO_FLAG_MMAP;

// SAFETY: integers only, the kernel's `struct vfio_device_info` (vfio-bindings).
unsafe impl Pod for abi::vfio_device_info {}
// SAFETY: integers only, the kernel's `struct vfio_region_info`.
unsafe impl Pod for abi::vfio_region_info {}

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Flags (bit 1: PCI).
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ types.
    pub num_irqs: u32,
}

/// `VFIO_DEVICE_GET_REGION_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region index.
    pub index: u32,
    /// Flags (read 1, write 2, mmap 4).
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region in the device fd.
    pub offset: u64,
}

/// An open VFIO device.
#[derive(Debug)]
pub struct Device {
    name: String,
    fd: OwnedFd,
}

impl Device {
    /// Wraps a device fd.
    ///
    /// # Safety
    /// `fd` must be a VFIO device fd (or one whose driver treats the VFIO device
    /// ioctls as VFIO does): this type issues those requests on it with pointers to
    /// its own structs, and another driver could read or write through them.
    pub unsafe fn from_fd(name: &str, fd: OwnedFd) -> Device {
        Device {
            name: name.to_owned(),
            fd,
        }
    }

    /// Opens the device character device `/dev/vfio/devices/<name>` (`vfio0`, ...);
    /// a name with a `/` or `..` is refused with EINVAL.
    pub fn open_cdev_name(name: &str) -> Result<Device, Errno> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        let path = PathBuf::from("/dev/vfio/devices").join(name);
        // SAFETY: nodes in /dev/vfio/devices are VFIO device character devices.
        unsafe { Self::open_cdev(&path) }
    }

    /// Opens a device character device at any path.
    ///
    /// # Safety
    /// `path` must be a VFIO device character device (see [`Device::from_fd`]).
    pub unsafe fn open_cdev(path: &Path) -> Result<Device, Errno> {
        let fd = sys::open_rw(path).map_err(|e| sys::errno_of(&e))?;
        // SAFETY: the caller vouches that the node is a VFIO device.
        Ok(unsafe { Device::from_fd(&path.display().to_string(), fd) })
    }

    /// The name it was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn info(&self) -> Result<DeviceInfo, Errno> {
        let mut i = abi::vfio_device_info {
            argsz: sys::size_u32::<abi::vfio_device_info>(),
            ..Default::default()
        };
        // SAFETY: a VFIO device fd; GET_INFO reads and writes at most `argsz` bytes of
        // a vfio_device_info (capabilities that do not fit only raise `argsz`).
        unsafe { sys::ioctl_pod(&self.fd, VFIO_DEVICE_GET_INFO, &mut i) }?;
        Ok(DeviceInfo {
            flags: i.flags,
            num_regions: i.num_regions,
            num_irqs: i.num_irqs,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`.
    pub fn region_info(&self, index: u32) -> Result<RegionInfo, Errno> {
        let mut r = abi::vfio_region_info {
            argsz: sys::size_u32::<abi::vfio_region_info>(),
            index,
            ..Default::default()
        };
        // SAFETY: a VFIO device fd; GET_REGION_INFO reads and writes at most `argsz`
        // bytes of a vfio_region_info (capabilities that do not fit only raise `argsz`).
        unsafe { sys::ioctl_pod(&self.fd, VFIO_DEVICE_GET_REGION_INFO, &mut r) }?;
        Ok(RegionInfo {
            index,
            flags: r.flags,
            size: r.size,
            offset: r.offset,
        })
    }

    /// Reads `buf.len()` bytes at `offset` inside a region.
    pub fn read_region(
        &self,
        region: &RegionInfo,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        let at = region_offset(region, offset, buf.len())?;
        sys::pread_exact(&self.fd, buf, at)
    }

    /// Writes `buf` at `offset` inside a region.
    pub fn write_region(&self, region: &RegionInfo, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        let at = region_offset(region, offset, buf.len())?;
        sys::pwrite_all(&self.fd, buf, at)
    }

    /// Sets memory-space and bus-master enable in the PCI command register, so the
    /// device can decode its BARs and issue DMA. Returns the register before and after.
    pub fn enable_bus_master(&self) -> Result<(u16, u16), Errno> {
        let cfg = self.region_info(PCI_CONFIG_REGION_INDEX)?;
        let mut b = [0u8; 2];
        self.read_region(&cfg, 4, &mut b)?;
        let before = u16::from_le_bytes(b);
        let after = before | 0x6;
        self.write_region(&cfg, 4, &after.to_le_bytes())?;
        self.read_region(&cfg, 4, &mut b)?;
        Ok((before, u16::from_le_bytes(b)))
    }

    /// Maps a region (a BAR) into the process.
    pub fn map_region(&self, region: &RegionInfo) -> Result<MappedRegion, Errno> {
        if region.flags & REGION_INFO_FLAG_MMAP == 0 {
            return Err(Errno::EINVAL);
        }
        let len = usize::try_from(region.size).map_err(|_| Errno::EINVAL)?;
        let off = libc::off_t::try_from(region.offset).map_err(|_| Errno::EINVAL)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: a new shared mapping of the device fd at an address the kernel picks;
        // it aliases no Rust object. The kernel validates offset and length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys::last_errno());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>()).ok_or(Errno::ENOMEM)?;
        Ok(MappedRegion { ptr, len })
    }
}

fn region_offset(region: &RegionInfo, offset: u64, len: usize) -> Result<u64, Errno> {
    let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
    let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
    if end > region.size {
        return Err(Errno::EINVAL);
    }
    region.offset.checked_add(offset).ok_or(Errno::EINVAL)
}

/// A device region mapped into the process; accesses are volatile and bounds checked.
#[derive(Debug)]
pub struct MappedRegion {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl MappedRegion {
    /// The process address of the mapping's first byte and its length.
    pub(crate) fn span(&self) -> (u64, usize) {
        (self.ptr.as_ptr().addr() as u64, self.len)
    }

    fn at<T>(&self, offset: u64) -> Result<*mut T, Errno> {
        let off = usize::try_from(offset).map_err(|_| Errno::EINVAL)?;
        let size = std::mem::size_of::<T>();
        let end = off.checked_add(size).ok_or(Errno::EINVAL)?;
        if end > self.len || off % size != 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: `off + size <= len`, so the pointer stays inside the mapping.
        Ok(unsafe { self.ptr.as_ptr().add(off) }.cast::<T>())
    }

    /// Reads a 32-bit register.
    pub fn read32(&self, offset: u64) -> Result<u32, Errno> {
        let p = self.at::<u32>(offset)?;
        // SAFETY: in bounds and naturally aligned (checked by `at`); MMIO needs volatile.
        Ok(unsafe { p.read_volatile() })
    }

    /// Writes a 32-bit register.
    pub fn write32(&self, offset: u64, v: u32) -> Result<(), Errno> {
        let p = self.at::<u32>(offset)?;
        // SAFETY: in bounds and naturally aligned (checked by `at`); MMIO needs volatile.
        unsafe { p.write_volatile(v) };
        Ok(())
    }

    /// Reads a 64-bit register.
    pub fn read64(&self, offset: u64) -> Result<u64, Errno> {
        let p = self.at::<u64>(offset)?;
        // SAFETY: in bounds and naturally aligned (checked by `at`); MMIO needs volatile.
        Ok(unsafe { p.read_volatile() })
    }

    /// Writes a 64-bit register.
    pub fn write64(&self, offset: u64, v: u64) -> Result<(), Errno> {
        let p = self.at::<u64>(offset)?;
        // SAFETY: in bounds and naturally aligned (checked by `at`); MMIO needs volatile.
        unsafe { p.write_volatile(v) };
        Ok(())
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map_region` and is owned by this value.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
