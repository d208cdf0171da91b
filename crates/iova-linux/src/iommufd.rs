//! The iommufd backend: an IO address space (IOAS) in `/dev/iommu`, with VFIO device
//! character devices bound and attached to it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use iova::dma::{Access, DmaSpace};
//! use iova_linux::{device::Device, iommufd::Iommufd};
//! use iova_linux::memory::{AnonMemory, HoldMemory};
//!
//! let fd = Iommufd::open().map_err(|e| e.to_string())?;
//! let mut ioas = fd.alloc_ioas().map_err(|e| e.to_string())?;
//! let dev = Device::open_cdev_name("vfio0").map_err(|e| e.to_string())?;
//! ioas.attach_device(&dev).map_err(|e| e.to_string())?;
//! let buf = Arc::new(AnonMemory::new(0x1000).map_err(|e| e.to_string())?);
//! ioas.add_memory(buf.clone()); // the IOAS keeps it mapped while the device may use it
//! let iova = ioas.map_auto(buf.addr(), 0x1000, Access::RW).map_err(|e| e.to_string())?;
//! # let _ = (iova, ioas.map(0, 0, 0, Access::RW));
//! # Ok::<(), String>(())
//! ```

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use iommufd_bindings as abi;
use iova::dma::{Access, DmaInfo, DmaSpace, Errno, InfoError, MapError, UnmapError};
use iova::range::{IovaRange, IovaSet};
use vfio_bindings::bindings::vfio as vfio_abi;

use crate::device::{Device, MappedRegion};
use crate::memory::{AnonMemory, HeldMemory, HoldMemory, MapRawError};
use crate::sys::{self, Pod, Request, nr};

const IOMMU_IOAS_ALLOC: Request = sys::req(nr::IOMMU_IOAS_ALLOC);
const IOMMU_IOAS_ALLOW_IOVAS: Request = sys::req(nr::IOMMU_IOAS_ALLOW_IOVAS);
const IOMMU_IOAS_COPY: Request = sys::req(nr::IOMMU_IOAS_COPY);
const IOMMU_IOAS_IOVA_RANGES: Request = sys::req(nr::IOMMU_IOAS_IOVA_RANGES);
const IOMMU_IOAS_MAP: Request = sys::req(nr::IOMMU_IOAS_MAP);
const IOMMU_IOAS_UNMAP: Request = sys::req(nr::IOMMU_IOAS_UNMAP);
const VFIO_DEVICE_BIND_IOMMUFD: Request = sys::req(nr::VFIO_DEVICE_BIND_IOMMUFD);
const VFIO_DEVICE_ATTACH_IOMMUFD_PT: Request = sys::req(nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT);

/// MAP flag: use the given IOVA.
pub const MAP_FIXED_IOVA: u32 = abi::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA;
/// MAP flag: the device may write.
pub const MAP_WRITEABLE: u32 = abi::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE;
/// MAP flag: the device may read.
pub const MAP_READABLE: u32 = abi::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE;

// SAFETY: integers only, the kernel's `struct iommu_ioas_alloc` (iommufd-bindings).
unsafe impl Pod for abi::iommu_ioas_alloc {}
// SAFETY: integers only, the kernel's `struct iommu_ioas_unmap`.
unsafe impl Pod for abi::iommu_ioas_unmap {}
// SAFETY: integers only, the kernel's `struct iommu_ioas_copy` (IOVAs and ids; no
// address the kernel dereferences).
unsafe impl Pod for abi::iommu_ioas_copy {}
// SAFETY: integers only, the kernel's `struct vfio_device_attach_iommufd_pt`; `pasid`
// is read only with VFIO_DEVICE_ATTACH_PASID in `flags`, and this crate sends
// `argsz` = 12 (up to `pt_id`, the kernel's minimum) anyway.
unsafe impl Pod for vfio_abi::vfio_device_attach_iommufd_pt {}
// Not `Pod`, each sent by its own function: `iommu_ioas_iova_ranges` and
// `iommu_ioas_allow_iovas` (`allowed_iovas` points to an array the kernel writes or
// reads), `iommu_ioas_map` (`user_va` is memory the kernel pins for the device),
// `vfio_device_bind_iommufd` (`token_uuid_ptr`, read with VFIO_DEVICE_BIND_FLAG_TOKEN).

/// `argsz` of VFIO_DEVICE_ATTACH_IOMMUFD_PT: up to and including `pt_id`.
const ATTACH_PT_MINSZ: u32 = {
    let n = std::mem::offset_of!(vfio_abi::vfio_device_attach_iommufd_pt, pt_id) + 4;
    n as u32
};
/// `argsz` of VFIO_DEVICE_BIND_IOMMUFD: up to and including `out_devid`, the size the
/// kernels before the token field (6.17) know, and all a bind without a token needs.
const BIND_MINSZ: u32 = {
    let n = std::mem::offset_of!(vfio_abi::vfio_device_bind_iommufd, out_devid) + 4;
    n as u32
};

/// An open `/dev/iommu`.
#[derive(Debug, Clone)]
pub struct Iommufd {
    fd: Arc<OwnedFd>,
}

impl Iommufd {
    /// Opens `/dev/iommu`.
    pub fn open() -> Result<Iommufd, Errno> {
        // SAFETY: /dev/iommu is the iommufd node.
        unsafe { Self::open_path(Path::new("/dev/iommu")) }
    }

    /// Opens an iommufd node at another path.
    ///
    /// # Safety
    /// `path` must be an iommufd node (or a node whose driver treats the iommufd
    /// ioctls as iommufd does): this type issues those requests on it with pointers to
    /// its own structs, and another driver could read or write through them.
    pub unsafe fn open_path(path: &Path) -> Result<Iommufd, Errno> {
        let fd = sys::open_rw(path).map_err(|e| sys::errno_of(&e))?;
        Ok(Iommufd { fd: Arc::new(fd) })
    }

    /// `IOMMU_IOAS_ALLOC`: a new, empty IO address space.
    pub fn alloc_ioas(&self) -> Result<Ioas, Errno> {
        let mut a = abi::iommu_ioas_alloc {
            size: sys::size_u32::<abi::iommu_ioas_alloc>(),
            ..Default::default()
        };
        // SAFETY: an iommufd; IOAS_ALLOC reads and writes an iommu_ioas_alloc of
        // `size` bytes.
        unsafe { sys::ioctl_pod(&self.fd, IOMMU_IOAS_ALLOC, &mut a) }?;
        Ok(Ioas {
            fd: self.clone(),
            id: a.out_ioas_id,
            devices: Vec::new(),
            raw_mapped: AtomicBool::new(false),
            memory: HeldMemory::default(),
        })
    }

    /// Binds a VFIO device cdev to this iommufd (`VFIO_DEVICE_BIND_IOMMUFD`); returns
    /// the device id.
    pub fn bind_device(&self, dev: &Device) -> Result<u32, Errno> {
        let mut b = vfio_abi::vfio_device_bind_iommufd {
            argsz: BIND_MINSZ,
            flags: 0,
            iommufd: self.fd.as_raw_fd(),
            out_devid: 0,
            token_uuid_ptr: 0,
        };
        // SAFETY: a VFIO device fd; BIND_IOMMUFD reads and writes the first `argsz`
        // bytes of a vfio_device_bind_iommufd; with `flags` 0 (and `argsz` short of
        // it) the kernel never reads `token_uuid_ptr`, the one address in it.
        unsafe { sys::ioctl_with_ptrs(dev.fd(), VFIO_DEVICE_BIND_IOMMUFD, &mut b) }?;
        Ok(b.out_devid)
    }
}

/// An IO address space.
///
/// DMA maps come in two kinds, as for [`crate::type1::Container`]:
/// - safe: [`Ioas::map_fixed`], [`Ioas::map_auto`], [`Ioas::map_held`] and
///   [`DmaSpace::map`] send only host ranges inside memory the IOAS holds
///   ([`HoldMemory::add_memory`]), plus ranges the kernel refuses before touching
///   memory (length 0, a host range past 2^64-1); anything else is refused without a
///   system call ([`MapRawError::NotHeld`]; `MapError::BadAddress` through the trait).
///   On drop the IOAS unmaps everything before it lets go of that memory (the
///   iommufd, and with it the IOAS, may outlive this value through clones).
/// - unsafe: [`Ioas::map_raw`], for callers that manage their memory themselves.
///
/// [`Ioas::copy`] (IOMMU_IOAS_COPY within this IOAS) is safe while every area maps held
/// memory, that is until [`Ioas::map_raw`] is first called on it; after that it is
/// refused without a system call ([`CopyError::RawMappings`]) and
/// [`Ioas::copy_raw`] is the way.
#[derive(Debug)]
pub struct Ioas {
    // Field order is drop order: `Drop` unmaps everything first, then the held
    // memory goes.
    fd: Iommufd,
    id: u32,
    devices: Vec<u32>,
    /// [`Ioas::map_raw`] was called: some area may map memory the IOAS does not hold.
    raw_mapped: AtomicBool,
    memory: HeldMemory,
}

/// Why [`Ioas::copy`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// This IOAS has areas made by [`Ioas::map_raw`], whose memory it does not hold: a
    /// copy would map that memory beyond the raw map's contract. Refused without a
    /// system call.
    #[error("the IOAS has raw mappings; IOAS_COPY refused without a system call")]
    RawMappings,
    /// The kernel refused the copy with this errno.
    #[error("the kernel refused the copy: {0}")]
    Kernel(Errno),
}

impl CopyError {
    /// The errno name (`EPERM`), or `refused-raw-mappings` for a refusal made here.
    pub fn name(&self) -> String {
        match self {
            CopyError::RawMappings => "refused-raw-mappings".to_owned(),
            CopyError::Kernel(e) => e.name(),
        }
    }
}

/// What one `IOMMU_IOAS_IOVA_RANGES` call with an array of a given capacity answered
/// ([`Ioas::iova_ranges_once`]). `ioas.c: iommufd_ioas_iova_ranges` writes the count
/// and the alignment back, and the first `capacity` ranges into the array, whether or
/// not they all fit; when they do not, the ioctl fails with EMSGSIZE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IovaRangesCall {
    /// `num_iovas` as written back: how many ranges the IOAS has.
    pub num_iovas: u32,
    /// The ranges written into the array (at most its capacity), in the kernel's order.
    pub filled: Vec<IovaRange>,
    /// `out_iova_alignment`.
    pub alignment: u64,
    /// The ioctl failed with EMSGSIZE (the array was too small).
    pub too_small: bool,
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
        let mut a = vfio_abi::vfio_device_attach_iommufd_pt {
            argsz: ATTACH_PT_MINSZ,
            flags: 0,
            pt_id: self.id,
            pasid: 0,
        };
        // SAFETY: a VFIO device fd; ATTACH_IOMMUFD_PT reads and writes the first
        // `argsz` bytes of a vfio_device_attach_iommufd_pt.
        unsafe { sys::ioctl_pod(dev.fd(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut a) }?;
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
            let mut arr = vec![abi::iommu_iova_range::default(); n];
            match self.iova_ranges_call(&mut arr) {
                Err((Errno::EMSGSIZE, want)) => {
                    if want <= room || want > 1 << 16 {
                        return Err(Errno::EMSGSIZE);
                    }
                    room = want;
                }
                Err((e, _)) => return Err(e),
                Ok((num, alignment)) => {
                    let got = usize::try_from(num).map_err(|_| Errno::EINVAL)?;
                    let mut ranges = Vec::new();
                    for raw in arr.iter().take(got.min(n)) {
                        ranges
                            .push(IovaRange::new(raw.start, raw.last).map_err(|_| Errno::EINVAL)?);
                    }
                    return Ok(IovaRangesReply {
                        ranges,
                        alignment,
                        calls,
                    });
                }
            }
        }
        Err(Errno::EMSGSIZE)
    }

    /// One `IOMMU_IOAS_IOVA_RANGES` into `arr`: `(num_iovas, out_iova_alignment)`, or
    /// the errno with the `num_iovas` the kernel asked for.
    fn iova_ranges_call(
        &self,
        arr: &mut [abi::iommu_iova_range],
    ) -> Result<(u32, u64), (Errno, u32)> {
        let num = u32::try_from(arr.len()).map_err(|_| (Errno::EINVAL, 0))?;
        let mut r = abi::iommu_ioas_iova_ranges {
            size: sys::size_u32::<abi::iommu_ioas_iova_ranges>(),
            ioas_id: self.id,
            num_iovas: num,
            __reserved: 0,
            allowed_iovas: u64::try_from(arr.as_mut_ptr().addr())
                .map_err(|_| (Errno::EINVAL, 0))?,
            out_iova_alignment: 0,
        };
        // SAFETY: an iommufd; IOAS_IOVA_RANGES reads and writes an
        // iommu_ioas_iova_ranges of `size` bytes and writes at most `num_iovas`
        // entries through `allowed_iovas`, which points to `arr`, exclusively borrowed
        // and exactly that long, for the whole call; any bytes are valid u64 pairs.
        match unsafe { sys::ioctl_with_ptrs(&self.fd.fd, IOMMU_IOAS_IOVA_RANGES, &mut r) } {
            Ok(_) => Ok((r.num_iovas, r.out_iova_alignment)),
            Err(e) => Err((e, r.num_iovas)),
        }
    }

    /// `IOMMU_IOAS_IOVA_RANGES` with the size negotiation.
    pub fn iova_ranges(&self) -> Result<IovaRangesReply, Errno> {
        self.iova_ranges_with(1)
    }

    /// One `IOMMU_IOAS_IOVA_RANGES` with room for `capacity` ranges, without retrying:
    /// EMSGSIZE is an answer here ([`IovaRangesCall::too_small`], with the count and
    /// alignment the kernel wrote back); any other errno is an error.
    pub fn iova_ranges_once(&self, capacity: u32) -> Result<IovaRangesCall, Errno> {
        let n = usize::try_from(capacity).map_err(|_| Errno::ENOMEM)?;
        let mut arr = vec![abi::iommu_iova_range::default(); n];
        let mut r = abi::iommu_ioas_iova_ranges {
            size: sys::size_u32::<abi::iommu_ioas_iova_ranges>(),
            ioas_id: self.id,
            num_iovas: capacity,
            __reserved: 0,
            allowed_iovas: u64::try_from(arr.as_mut_ptr().addr()).map_err(|_| Errno::EINVAL)?,
            out_iova_alignment: 0,
        };
        // SAFETY: an iommufd; IOAS_IOVA_RANGES reads and writes an
        // iommu_ioas_iova_ranges of `size` bytes and writes at most `num_iovas`
        // entries through `allowed_iovas`, which points to `arr`, exclusively borrowed
        // and exactly that long, for the whole call; any bytes are valid u64 pairs.
        let too_small =
            match unsafe { sys::ioctl_with_ptrs(&self.fd.fd, IOMMU_IOAS_IOVA_RANGES, &mut r) } {
                Ok(_) => false,
                Err(Errno::EMSGSIZE) => true,
                Err(e) => return Err(e),
            };
        let written = usize::try_from(r.num_iovas).map_err(|_| Errno::EINVAL)?;
        let mut filled = Vec::new();
        for raw in arr.iter().take(written.min(n)) {
            filled.push(IovaRange::new(raw.start, raw.last).map_err(|_| Errno::EINVAL)?);
        }
        Ok(IovaRangesCall {
            num_iovas: r.num_iovas,
            filled,
            alignment: r.out_iova_alignment,
            too_small,
        })
    }

    /// `IOMMU_IOAS_COPY` with raw fields, this IOAS the destination: maps `length`
    /// bytes at `dst_iova` (with [`MAP_FIXED_IOVA`]; otherwise the kernel picks it) to
    /// the pages behind `[src_iova, src_iova + length - 1]` of IOAS `src_ioas_id` of
    /// the same iommufd; returns the destination IOVA.
    ///
    /// # Safety
    /// If the kernel accepts the copy, the devices attached to this IOAS may reach the
    /// memory behind the source range through the new mapping until it is unmapped or
    /// the iommufd is closed: for that whole time the memory must meet the contract of
    /// [`Ioas::map_raw`] (kept mapped, used by Rust only as memory shared with a
    /// device), whatever becomes of the source mapping.
    pub unsafe fn copy_raw(
        &self,
        flags: u32,
        src_ioas_id: u32,
        src_iova: u64,
        length: u64,
        dst_iova: u64,
    ) -> Result<u64, Errno> {
        let mut c = abi::iommu_ioas_copy {
            size: sys::size_u32::<abi::iommu_ioas_copy>(),
            flags,
            dst_ioas_id: self.id,
            src_ioas_id,
            length,
            dst_iova,
            src_iova,
        };
        // SAFETY: an iommufd; IOAS_COPY reads and writes an iommu_ioas_copy of `size`
        // bytes (no pointers in it); what the new mapping reaches is the caller's
        // contract.
        unsafe { sys::ioctl_pod(&self.fd.fd, IOMMU_IOAS_COPY, &mut c) }?;
        Ok(c.dst_iova)
    }

    /// `IOMMU_IOAS_COPY` within this IOAS: maps `length` bytes at `dst_iova` (`None`:
    /// the kernel picks it) to the same pages as `[src_iova, src_iova + length - 1]`;
    /// returns the destination IOVA. Refused without a system call once
    /// [`Ioas::map_raw`] was used on this IOAS ([`CopyError::RawMappings`]).
    pub fn copy(
        &self,
        src_iova: u64,
        length: u64,
        dst_iova: Option<u64>,
        access: Access,
    ) -> Result<u64, CopyError> {
        if self.raw_mapped.load(Ordering::SeqCst) {
            return Err(CopyError::RawMappings);
        }
        let fixed = if dst_iova.is_some() {
            MAP_FIXED_IOVA
        } else {
            0
        };
        // SAFETY: no raw map was ever made on this IOAS, so every area (maps by
        // `map_held`, earlier copies) maps memory this IOAS holds, and so does the
        // copy; the IOAS unmaps everything before it lets go of that memory (`Drop`).
        unsafe {
            self.copy_raw(
                fixed | map_flags(access),
                self.id,
                src_iova,
                length,
                dst_iova.unwrap_or(0),
            )
        }
        .map_err(CopyError::Kernel)
    }

    /// What the kernel answers to a fixed-IOVA map of `length` bytes of a mapped device
    /// region (a BAR `mmap`) from `offset`: the map is made and, if the kernel accepts
    /// it, removed again before this returns, so the area never outlives the borrow
    /// of `region`. iommufd pins with `pin_user_pages`, which refuses the region's
    /// `VM_IO | VM_PFNMAP` mapping (EFAULT) whenever it must pin, that is with a
    /// domain attached. A range outside the region is EINVAL without a system call.
    /// It takes `&mut self` so that no [`Ioas::copy`] can share the short-lived area.
    pub fn probe_map_region(
        &mut self,
        region: &MappedRegion,
        offset: u64,
        length: u64,
        iova: u64,
        access: Access,
    ) -> Result<(), Errno> {
        let (addr, len) = region.span();
        let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
        let end = offset.checked_add(length).ok_or(Errno::EINVAL)?;
        if length == 0 || end > len {
            return Err(Errno::EINVAL);
        }
        let user_va = addr.checked_add(offset).ok_or(Errno::EINVAL)?;
        // SAFETY: the range is inside `region`, device MMIO that no Rust object lives
        // in (it is accessed only with volatile reads and writes); a device reaching it
        // through the IOMMU touches no Rust memory. The mapping is removed below, while
        // `region` is still borrowed, so it never refers to the address once the region
        // is unmapped; `&mut self` keeps `copy` from sharing it meanwhile.
        let got =
            unsafe { self.map_ioctl(MAP_FIXED_IOVA | map_flags(access), user_va, length, iova) };
        match got {
            Err(e) => Err(e),
            Ok(at) => {
                if self.unmap_raw(at, length).is_err() && self.unmap_raw(0, u64::MAX).is_err() {
                    // The area would outlive the region and let a later attach pin
                    // whatever then lives at that address: stop here.
                    std::process::abort();
                }
                Ok(())
            }
        }
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS`: replaces the allowed list.
    pub fn allow_iovas(&self, ranges: &[IovaRange]) -> Result<(), Errno> {
        let arr: Vec<abi::iommu_iova_range> = ranges
            .iter()
            .map(|r| abi::iommu_iova_range {
                start: r.first(),
                last: r.last(),
            })
            .collect();
        self.allow_iovas_raw(&arr)
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS` with raw `(start, last)` pairs (for tests of the
    /// kernel's checks: `start > last` is refused).
    pub fn allow_iovas_pairs(&self, pairs: &[(u64, u64)]) -> Result<(), Errno> {
        let arr: Vec<abi::iommu_iova_range> = pairs
            .iter()
            .map(|(s, l)| abi::iommu_iova_range {
                start: *s,
                last: *l,
            })
            .collect();
        self.allow_iovas_raw(&arr)
    }

    fn allow_iovas_raw(&self, arr: &[abi::iommu_iova_range]) -> Result<(), Errno> {
        let mut a = abi::iommu_ioas_allow_iovas {
            size: sys::size_u32::<abi::iommu_ioas_allow_iovas>(),
            ioas_id: self.id,
            num_iovas: u32::try_from(arr.len()).map_err(|_| Errno::EINVAL)?,
            __reserved: 0,
            allowed_iovas: u64::try_from(arr.as_ptr().addr()).map_err(|_| Errno::EINVAL)?,
        };
        // SAFETY: an iommufd; IOAS_ALLOW_IOVAS reads an iommu_ioas_allow_iovas of
        // `size` bytes and reads (never writes) `num_iovas` entries through
        // `allowed_iovas`, which points to `arr`, borrowed and exactly that long, for
        // the whole call.
        unsafe { sys::ioctl_with_ptrs(&self.fd.fd, IOMMU_IOAS_ALLOW_IOVAS, &mut a) }.map(|_| ())
    }

    /// `IOMMU_IOAS_MAP` with raw flags; returns the IOVA used.
    ///
    /// # Safety
    /// If the kernel accepts the map, the devices attached to this IOAS (now or later)
    /// may read and (with [`MAP_WRITEABLE`]) write the memory behind
    /// `[user_va, user_va+length)` until the mapping is unmapped or the iommufd is
    /// closed (every clone of it, and every device bound to it). For that whole time
    /// the caller must keep that memory mapped and must not let Rust code use it in a
    /// way a concurrent device access would break: no Rust object (heap, stack or
    /// static data reached through references) may live there; treat it as memory
    /// shared with another process (volatile or atomic accesses only), like guest RAM
    /// in a VMM.
    pub unsafe fn map_raw(
        &self,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64, Errno> {
        self.raw_mapped.store(true, Ordering::SeqCst);
        // SAFETY: the caller's contract is map_ioctl's.
        unsafe { self.map_ioctl(flags, user_va, length, iova) }
    }

    /// `IOMMU_IOAS_MAP` itself.
    ///
    /// # Safety
    /// As [`Ioas::map_raw`].
    unsafe fn map_ioctl(
        &self,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64, Errno> {
        let mut m = abi::iommu_ioas_map {
            size: sys::size_u32::<abi::iommu_ioas_map>(),
            flags,
            ioas_id: self.id,
            __reserved: 0,
            user_va,
            length,
            iova,
        };
        // SAFETY: an iommufd; IOAS_MAP reads and writes an iommu_ioas_map of `size`
        // bytes; the memory `user_va` names is the caller's contract.
        unsafe { sys::ioctl_with_ptrs(&self.fd.fd, IOMMU_IOAS_MAP, &mut m) }?;
        Ok(m.iova)
    }

    /// `IOMMU_IOAS_MAP` with raw flags, for host ranges inside memory the IOAS holds
    /// ([`HoldMemory::add_memory`]) or that the kernel refuses before touching memory
    /// (length 0, `user_va + length - 1` past 2^64-1); returns the IOVA used. Any other
    /// range is refused with [`MapRawError::NotHeld`] without a system call.
    pub fn map_held(
        &self,
        flags: u32,
        user_va: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64, MapRawError> {
        if !self.memory.may_map(user_va, length) {
            return Err(MapRawError::NotHeld {
                host: user_va,
                size: length,
            });
        }
        // SAFETY: the range is inside an `AnonMemory` this IOAS holds until its
        // mappings are gone (see `Drop`), which Rust only accesses atomically; or the
        // kernel refuses it before pinning anything.
        unsafe { self.map_ioctl(flags, user_va, length, iova) }.map_err(MapRawError::Kernel)
    }

    /// Maps held memory at a fixed IOVA (see [`Ioas::map_held`]).
    pub fn map_fixed(
        &self,
        iova: u64,
        user_va: u64,
        length: u64,
        access: Access,
    ) -> Result<(), MapRawError> {
        self.map_held(MAP_FIXED_IOVA | map_flags(access), user_va, length, iova)
            .map(|_| ())
    }

    /// Maps held memory at an IOVA the kernel picks (see [`Ioas::map_held`]); returns
    /// it.
    pub fn map_auto(&self, user_va: u64, length: u64, access: Access) -> Result<u64, MapRawError> {
        self.map_held(map_flags(access), user_va, length, 0)
    }

    /// `IOMMU_IOAS_UNMAP`; the bytes unmapped. `(0, u64::MAX)` unmaps everything.
    pub fn unmap_raw(&self, iova: u64, length: u64) -> Result<u64, Errno> {
        let mut u = abi::iommu_ioas_unmap {
            size: sys::size_u32::<abi::iommu_ioas_unmap>(),
            ioas_id: self.id,
            iova,
            length,
        };
        // SAFETY: an iommufd; IOAS_UNMAP reads and writes an iommu_ioas_unmap of
        // `size` bytes.
        unsafe { sys::ioctl_pod(&self.fd.fd, IOMMU_IOAS_UNMAP, &mut u) }?;
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
            .map_err(MapRawError::to_map_error)
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

impl HoldMemory for Ioas {
    fn add_memory(&mut self, mem: Arc<AnonMemory>) {
        self.memory.add(mem);
    }
}

impl Drop for Ioas {
    fn drop(&mut self) {
        if self.memory.is_empty() {
            return;
        }
        // The IOAS lives as long as the iommufd (clones of `Iommufd`, bound devices):
        // remove its mappings before the held memory goes. If that fails, keep the
        // memory mapped for the rest of the process instead.
        if self.unmap_raw(0, u64::MAX).is_err() {
            self.memory.leak();
        }
    }
}
