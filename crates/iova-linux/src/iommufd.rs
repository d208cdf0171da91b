//! The iommufd backend: an IO address space (IOAS) in `/dev/iommu`, with VFIO device
//! character devices bound and attached to it.
//!
//! ```no_run
//! use std::path::Path;
//! use iova::dma::{Access, DmaSpace};
//! use iova_linux::{device::Device, iommufd::Iommufd, sys::AnonMemory};
//!
//! let fd = Iommufd::open().map_err(|e| e.to_string())?;
//! let mut ioas = fd.alloc_ioas().map_err(|e| e.to_string())?;
//! let dev = Device::open_cdev(Path::new("/dev/vfio/devices/vfio0")).map_err(|e| e.to_string())?;
//! ioas.attach_device(&dev).map_err(|e| e.to_string())?;
//! let buf = AnonMemory::new(0x1000).map_err(|e| e.to_string())?;
//! let iova = ioas.map_auto(buf.addr(), 0x1000, Access::RW).map_err(|e| e.to_string())?;
//! # let _ = (iova, ioas.map(0, 0, 0, Access::RW));
//! # Ok::<(), String>(())
//! ```

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use iova::dma::{Access, DmaInfo, DmaSpace, Errno, InfoError, MapError, UnmapError};
use iova::range::{IovaRange, IovaSet};

use crate::device::Device;
use crate::sys::{self, Pod, Request};

const IOMMUFD_TYPE: u8 = b';';
const IOMMU_IOAS_ALLOC: Request = sys::io(IOMMUFD_TYPE, 0x81);
const IOMMU_IOAS_ALLOW_IOVAS: Request = sys::io(IOMMUFD_TYPE, 0x82);
const IOMMU_IOAS_IOVA_RANGES: Request = sys::io(IOMMUFD_TYPE, 0x84);
const IOMMU_IOAS_MAP: Request = sys::io(IOMMUFD_TYPE, 0x85);
const IOMMU_IOAS_UNMAP: Request = sys::io(IOMMUFD_TYPE, 0x86);
const VFIO_DEVICE_BIND_IOMMUFD: Request = sys::io(b';', 118);
const VFIO_DEVICE_ATTACH_IOMMUFD_PT: Request = sys::io(b';', 119);

/// MAP flag: use the given IOVA.
pub const MAP_FIXED_IOVA: u32 = 1;
/// MAP flag: the device may write.
pub const MAP_WRITEABLE: u32 = 2;
/// MAP flag: the device may read.
pub const MAP_READABLE: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoasAlloc {
    size: u32,
    flags: u32,
    out_ioas_id: u32,
}
// SAFETY: repr(C) integers matching `struct iommu_ioas_alloc`.
unsafe impl Pod for IoasAlloc {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawRange {
    start: u64,
    last: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IovaRanges {
    size: u32,
    ioas_id: u32,
    num_iovas: u32,
    reserved: u32,
    allowed_iovas: u64,
    out_iova_alignment: u64,
}
// SAFETY: repr(C) integers matching `struct iommu_ioas_iova_ranges`; `allowed_iovas`
// is a user pointer the caller sets to a live array of `num_iovas` entries.
unsafe impl Pod for IovaRanges {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AllowIovas {
    size: u32,
    ioas_id: u32,
    num_iovas: u32,
    reserved: u32,
    allowed_iovas: u64,
}
// SAFETY: repr(C) integers matching `struct iommu_ioas_allow_iovas`; the pointer is set
// to a live array of `num_iovas` entries by the caller.
unsafe impl Pod for AllowIovas {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoasMap {
    size: u32,
    flags: u32,
    ioas_id: u32,
    reserved: u32,
    user_va: u64,
    length: u64,
    iova: u64,
}
// SAFETY: repr(C) integers matching `struct iommu_ioas_map`.
unsafe impl Pod for IoasMap {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoasUnmap {
    size: u32,
    ioas_id: u32,
    iova: u64,
    length: u64,
}
// SAFETY: repr(C) integers matching `struct iommu_ioas_unmap`.
unsafe impl Pod for IoasUnmap {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct BindIommufd {
    argsz: u32,
    flags: u32,
    iommufd: i32,
    out_devid: u32,
}
// SAFETY: repr(C) integers matching `struct vfio_device_bind_iommufd`.
unsafe impl Pod for BindIommufd {}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AttachPt {
    argsz: u32,
    flags: u32,
    pt_id: u32,
}
// SAFETY: repr(C) integers: the first 12 bytes of `struct vfio_device_attach_iommufd_pt`
// (its minimum argsz).
unsafe impl Pod for AttachPt {}

/// An open `/dev/iommu`.
#[derive(Debug, Clone)]
pub struct Iommufd {
    fd: Arc<OwnedFd>,
}

impl Iommufd {
    /// Opens `/dev/iommu`.
    pub fn open() -> Result<Iommufd, Errno> {
        Self::open_path(Path::new("/dev/iommu"))
    }

    /// Opens an iommufd node at another path.
    pub fn open_path(path: &Path) -> Result<Iommufd, Errno> {
        let fd = sys::open_rw(path).map_err(|e| sys::errno_of(&e))?;
        Ok(Iommufd { fd: Arc::new(fd) })
    }

    /// `IOMMU_IOAS_ALLOC`: a new, empty IO address space.
    pub fn alloc_ioas(&self) -> Result<Ioas, Errno> {
        let mut a = IoasAlloc {
            size: sys::size_u32::<IoasAlloc>(),
            ..Default::default()
        };
        sys::ioctl_ptr(&self.fd, IOMMU_IOAS_ALLOC, &mut a)?;
        Ok(Ioas {
            fd: self.clone(),
            id: a.out_ioas_id,
            devices: Vec::new(),
        })
    }

    /// Binds a VFIO device cdev to this iommufd (`VFIO_DEVICE_BIND_IOMMUFD`); returns
    /// the device id.
    pub fn bind_device(&self, dev: &Device) -> Result<u32, Errno> {
        let mut b = BindIommufd {
            argsz: sys::size_u32::<BindIommufd>(),
            flags: 0,
            iommufd: self.fd.as_raw_fd(),
            out_devid: 0,
        };
        sys::ioctl_ptr(dev.fd(), VFIO_DEVICE_BIND_IOMMUFD, &mut b)?;
        Ok(b.out_devid)
    }
}

/// An IO address space.
#[derive(Debug)]
pub struct Ioas {
    fd: Iommufd,
    id: u32,
    devices: Vec<u32>,
}

/// What `IOMMU_IOAS_IOVA_RANGES` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IovaRangesReply {
    /// The usable ranges, in the kernel's order.
    pub ranges: Vec<IovaRange>,
    /// The minimum IOVA alignment.
    pub alignment: u64,
    /// How many calls it took (2 when the first array was too small: EMSGSIZE).
    pub calls: u32,
}

impl Ioas {
    /// The IOAS id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Device ids attached so far.
    pub fn devices(&self) -> &[u32] {
        &self.devices
    }

    /// Binds `dev` to the iommufd and attaches it to this IOAS
    /// (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`); returns the device id.
    pub fn attach_device(&mut self, dev: &Device) -> Result<u32, Errno> {
        let devid = self.fd.bind_device(dev)?;
        self.attach_bound(dev, devid)?;
        Ok(devid)
    }

    /// Attaches a device already bound to this iommufd ([`Iommufd::bind_device`]
    /// returned `devid`) to this IOAS (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`). The kernel
    /// reserves the device's reserved regions and the complement of its aperture in
    /// the IOAS; it refuses with EADDRINUSE when one of them is mapped or allowed
    /// (ALLOW_IOVAS), and then reserves nothing.
    pub fn attach_bound(&mut self, dev: &Device, devid: u32) -> Result<(), Errno> {
        let mut a = AttachPt {
            argsz: sys::size_u32::<AttachPt>(),
            flags: 0,
            pt_id: self.id,
        };
        sys::ioctl_ptr(dev.fd(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut a)?;
        if !self.devices.contains(&devid) {
            self.devices.push(devid);
        }
        Ok(())
    }

    /// The iommufd this IOAS belongs to.
    pub fn iommufd(&self) -> &Iommufd {
        &self.fd
    }

    /// `IOMMU_IOAS_IOVA_RANGES`, starting with room for `initial` entries and retrying
    /// with the count the kernel asks for when it answers EMSGSIZE.
    pub fn iova_ranges_with(&self, initial: u32) -> Result<IovaRangesReply, Errno> {
        let mut room = initial;
        for calls in 1..=4 {
            let n = usize::try_from(room).map_err(|_| Errno::ENOMEM)?;
            let mut arr = vec![RawRange::default(); n];
            let mut r = IovaRanges {
                size: sys::size_u32::<IovaRanges>(),
                ioas_id: self.id,
                num_iovas: room,
                reserved: 0,
                allowed_iovas: u64::try_from(arr.as_mut_ptr().addr()).map_err(|_| Errno::EINVAL)?,
                out_iova_alignment: 0,
            };
            match sys::ioctl_ptr(&self.fd.fd, IOMMU_IOAS_IOVA_RANGES, &mut r) {
                Err(Errno::EMSGSIZE) => {
                    if r.num_iovas <= room || r.num_iovas > 1 << 16 {
                        return Err(Errno::EMSGSIZE);
                    }
                    room = r.num_iovas;
                }
                Err(e) => return Err(e),
                Ok(_) => {
                    let got = usize::try_from(r.num_iovas).map_err(|_| Errno::EINVAL)?;
                    let mut ranges = Vec::new();
                    for raw in arr.iter().take(got.min(n)) {
                        ranges
                            .push(IovaRange::new(raw.start, raw.last).map_err(|_| Errno::EINVAL)?);
                    }
                    return Ok(IovaRangesReply {
                        ranges,
                        alignment: r.out_iova_alignment,
                        calls,
                    });
                }
            }
        }
        Err(Errno::EMSGSIZE)
    }

    /// `IOMMU_IOAS_IOVA_RANGES` with the size negotiation.
    pub fn iova_ranges(&self) -> Result<IovaRangesReply, Errno> {
        self.iova_ranges_with(1)
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS`: replaces the allowed list.
    pub fn allow_iovas(&self, ranges: &[IovaRange]) -> Result<(), Errno> {
        let mut arr: Vec<RawRange> = ranges
            .iter()
            .map(|r| RawRange {
                start: r.first(),
                last: r.last(),
            })
            .collect();
        self.allow_iovas_raw(&mut arr)
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS` with raw `(start, last)` pairs (for tests of the
    /// kernel's checks: `start > last` is refused).
    pub fn allow_iovas_pairs(&self, pairs: &[(u64, u64)]) -> Result<(), Errno> {
        let mut arr: Vec<RawRange> = pairs
            .iter()
            .map(|(s, l)| RawRange {
                start: *s,
                last: *l,
            })
            .collect();
        self.allow_iovas_raw(&mut arr)
    }

    fn allow_iovas_raw(&self, arr: &mut [RawRange]) -> Result<(), Errno> {
        let mut a = AllowIovas {
            size: sys::size_u32::<AllowIovas>(),
            ioas_id: self.id,
            num_iovas: u32::try_from(arr.len()).map_err(|_| Errno::EINVAL)?,
            reserved: 0,
            allowed_iovas: u64::try_from(arr.as_mut_ptr().addr()).map_err(|_| Errno::EINVAL)?,
        };
        sys::ioctl_ptr(&self.fd.fd, IOMMU_IOAS_ALLOW_IOVAS, &mut a).map(|_| ())
    }

    /// `IOMMU_IOAS_MAP` with raw flags; returns the IOVA used.
    pub fn map_raw(&self, flags: u32, user_va: u64, length: u64, iova: u64) -> Result<u64, Errno> {
        let mut m = IoasMap {
            size: sys::size_u32::<IoasMap>(),
            flags,
            ioas_id: self.id,
            reserved: 0,
            user_va,
            length,
            iova,
        };
        sys::ioctl_ptr(&self.fd.fd, IOMMU_IOAS_MAP, &mut m)?;
        Ok(m.iova)
    }

    /// Maps at a fixed IOVA.
    pub fn map_fixed(
        &self,
        iova: u64,
        user_va: u64,
        length: u64,
        access: Access,
    ) -> Result<(), Errno> {
        self.map_raw(MAP_FIXED_IOVA | map_flags(access), user_va, length, iova)
            .map(|_| ())
    }

    /// Maps at an IOVA the kernel picks; returns it.
    pub fn map_auto(&self, user_va: u64, length: u64, access: Access) -> Result<u64, Errno> {
        self.map_raw(map_flags(access), user_va, length, 0)
    }

    /// `IOMMU_IOAS_UNMAP`; the bytes unmapped. `(0, u64::MAX)` unmaps everything.
    pub fn unmap_raw(&self, iova: u64, length: u64) -> Result<u64, Errno> {
        let mut u = IoasUnmap {
            size: sys::size_u32::<IoasUnmap>(),
            ioas_id: self.id,
            iova,
            length,
        };
        sys::ioctl_ptr(&self.fd.fd, IOMMU_IOAS_UNMAP, &mut u)?;
        Ok(u.length)
    }
}

/// The iommufd MAP flags for an access.
pub fn map_flags(access: Access) -> u32 {
    (if access.read { MAP_READABLE } else { 0 }) | (if access.write { MAP_WRITEABLE } else { 0 })
}

impl DmaSpace for Ioas {
    fn info(&self) -> Result<DmaInfo, InfoError> {
        let r = self.iova_ranges().map_err(InfoError::Kernel)?;
        Ok(DmaInfo {
            iova_ranges: r.ranges.into_iter().collect::<IovaSet>(),
            page_sizes: if r.alignment.is_power_of_two() {
                r.alignment
            } else {
                0
            },
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
        self.map_fixed(iova, host_addr, size, access)
            .map_err(|e| match e {
                Errno::EFAULT => MapError::BadAddress,
                e => MapError::Kernel(e),
            })
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        self.unmap_raw(iova, size)
            .map(u128::from)
            .map_err(UnmapError::Kernel)
    }

    fn unmap_all(&mut self) -> Result<u128, UnmapError> {
        self.unmap_raw(0, u64::MAX)
            .map(u128::from)
            .map_err(UnmapError::Kernel)
    }
}
