//! The system-call layer under the VFIO and iommufd backends: opening device nodes,
//! ioctls on kernel argument structs, `pread`/`pwrite`.
//!
//! Private to the crate. Every function that passes a request number or a pointer to
//! the kernel is an `unsafe fn`: what the kernel does with the argument depends on the
//! request and on the driver behind the file descriptor, so only the caller can vouch
//! for it. The public types above this layer issue only the requests listed here, with
//! argument structs from the maintained bindings (`vfio-bindings`, `iommufd-bindings`).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use iova::dma::Errno;

/// The ioctl request number type of the C library.
pub(crate) type Request = libc::Ioctl;

/// `_IO(type, nr)`: an ioctl number without a size or direction, as VFIO and iommufd
/// use for every command. The encoding differs between architectures (powerpc, mips
/// and sparc put `_IOC_NONE = 1` in a 3-bit direction field at bit 29); rustix's
/// `opcode::none` knows each architecture's layout.
pub(crate) const fn io(ty: u8, nr: u8) -> Request {
    // The opcode fits in 32 bits on every architecture; `Request` is at least that
    // wide (c_int on musl holds it bit for bit, which is what the C macros give too).
    rustix::ioctl::opcode::none(ty, nr) as Request
}

/// The VFIO and iommufd ioctl type (`VFIO_TYPE`, `IOMMUFD_TYPE`: `';'`).
const VFIO_TYPE: u8 = vfio_bindings::bindings::vfio::VFIO_TYPE;
const IOMMUFD_TYPE: u8 = iommufd_bindings::IOMMUFD_TYPE;
/// `VFIO_BASE` (100): the first VFIO command number.
const VFIO_BASE: u8 = {
    let b = vfio_bindings::bindings::vfio::VFIO_BASE;
    assert!(b <= 0xff);
    b as u8
};

/// An iommufd command number (`IOMMUFD_CMD_*`, all below 256).
const fn iommufd_cmd(cmd: u32) -> u8 {
    assert!(cmd <= 0xff);
    cmd as u8
}

/// The command numbers (the `nr` of `_IO(';', nr)`) of every request this crate
/// issues, with their kernel names. `VFIO_BASE + n` as in `<linux/vfio.h>`,
/// `IOMMUFD_CMD_*` from `<linux/iommufd.h>`.
pub(crate) mod nr {
    use super::{IOMMUFD_TYPE, VFIO_BASE, VFIO_TYPE, iommufd_cmd};
    use iommufd_bindings as fd;

    /// `VFIO_GET_API_VERSION`.
    pub(crate) const VFIO_GET_API_VERSION: (u8, u8) = (VFIO_TYPE, VFIO_BASE);
    /// `VFIO_CHECK_EXTENSION`.
    pub(crate) const VFIO_CHECK_EXTENSION: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 1);
    /// `VFIO_SET_IOMMU`.
    pub(crate) const VFIO_SET_IOMMU: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 2);
    /// `VFIO_GROUP_GET_STATUS`.
    pub(crate) const VFIO_GROUP_GET_STATUS: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 3);
    /// `VFIO_GROUP_SET_CONTAINER`.
    pub(crate) const VFIO_GROUP_SET_CONTAINER: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 4);
    /// `VFIO_GROUP_GET_DEVICE_FD`.
    pub(crate) const VFIO_GROUP_GET_DEVICE_FD: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 6);
    /// `VFIO_DEVICE_GET_INFO`.
    pub(crate) const VFIO_DEVICE_GET_INFO: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 7);
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    pub(crate) const VFIO_DEVICE_GET_REGION_INFO: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 8);
    /// `VFIO_IOMMU_GET_INFO`.
    pub(crate) const VFIO_IOMMU_GET_INFO: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 12);
    /// `VFIO_IOMMU_MAP_DMA`.
    pub(crate) const VFIO_IOMMU_MAP_DMA: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 13);
    /// `VFIO_IOMMU_UNMAP_DMA`.
    pub(crate) const VFIO_IOMMU_UNMAP_DMA: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 14);
    /// `VFIO_IOMMU_SPAPR_TCE_GET_INFO` (the same number as `VFIO_IOMMU_GET_INFO`).
    pub(crate) const VFIO_IOMMU_SPAPR_TCE_GET_INFO: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 12);
    /// `VFIO_IOMMU_ENABLE` (sPAPR v1).
    pub(crate) const VFIO_IOMMU_ENABLE: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 15);
    /// `VFIO_IOMMU_DISABLE` (sPAPR v1).
    pub(crate) const VFIO_IOMMU_DISABLE: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 16);
    /// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY`.
    pub(crate) const VFIO_IOMMU_SPAPR_REGISTER_MEMORY: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 17);
    /// `VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY`.
    pub(crate) const VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 18);
    /// `VFIO_IOMMU_SPAPR_TCE_CREATE`.
    pub(crate) const VFIO_IOMMU_SPAPR_TCE_CREATE: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 19);
    /// `VFIO_IOMMU_SPAPR_TCE_REMOVE`.
    pub(crate) const VFIO_IOMMU_SPAPR_TCE_REMOVE: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 20);
    /// `VFIO_DEVICE_BIND_IOMMUFD`.
    pub(crate) const VFIO_DEVICE_BIND_IOMMUFD: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 18);
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
    pub(crate) const VFIO_DEVICE_ATTACH_IOMMUFD_PT: (u8, u8) = (VFIO_TYPE, VFIO_BASE + 19);
    /// `IOMMU_IOAS_ALLOC`.
    pub(crate) const IOMMU_IOAS_ALLOC: (u8, u8) =
        (IOMMUFD_TYPE, iommufd_cmd(fd::IOMMUFD_CMD_IOAS_ALLOC));
    /// `IOMMU_IOAS_ALLOW_IOVAS`.
    pub(crate) const IOMMU_IOAS_ALLOW_IOVAS: (u8, u8) =
        (IOMMUFD_TYPE, iommufd_cmd(fd::IOMMUFD_CMD_IOAS_ALLOW_IOVAS));
    /// `IOMMU_IOAS_COPY`.
    pub(crate) const IOMMU_IOAS_COPY: (u8, u8) =
        (IOMMUFD_TYPE, iommufd_cmd(fd::IOMMUFD_CMD_IOAS_COPY));
    /// `IOMMU_IOAS_IOVA_RANGES`.
    pub(crate) const IOMMU_IOAS_IOVA_RANGES: (u8, u8) =
        (IOMMUFD_TYPE, iommufd_cmd(fd::IOMMUFD_CMD_IOAS_IOVA_RANGES));
    /// `IOMMU_IOAS_MAP`.
    pub(crate) const IOMMU_IOAS_MAP: (u8, u8) =
        (IOMMUFD_TYPE, iommufd_cmd(fd::IOMMUFD_CMD_IOAS_MAP));
    /// `IOMMU_IOAS_UNMAP`.
    pub(crate) const IOMMU_IOAS_UNMAP: (u8, u8) =
        (IOMMUFD_TYPE, iommufd_cmd(fd::IOMMUFD_CMD_IOAS_UNMAP));

    /// Every request, with its name (for the tests that pin the numbers).
    #[cfg(test)]
    pub(crate) const ALL: [(&str, (u8, u8)); 19] = [
        ("VFIO_GET_API_VERSION", VFIO_GET_API_VERSION),
        ("VFIO_CHECK_EXTENSION", VFIO_CHECK_EXTENSION),
        ("VFIO_SET_IOMMU", VFIO_SET_IOMMU),
        ("VFIO_GROUP_GET_STATUS", VFIO_GROUP_GET_STATUS),
        ("VFIO_GROUP_SET_CONTAINER", VFIO_GROUP_SET_CONTAINER),
        ("VFIO_GROUP_GET_DEVICE_FD", VFIO_GROUP_GET_DEVICE_FD),
        ("VFIO_DEVICE_GET_INFO", VFIO_DEVICE_GET_INFO),
        ("VFIO_DEVICE_GET_REGION_INFO", VFIO_DEVICE_GET_REGION_INFO),
        ("VFIO_IOMMU_GET_INFO", VFIO_IOMMU_GET_INFO),
        ("VFIO_IOMMU_MAP_DMA", VFIO_IOMMU_MAP_DMA),
        ("VFIO_IOMMU_UNMAP_DMA", VFIO_IOMMU_UNMAP_DMA),
        ("VFIO_DEVICE_BIND_IOMMUFD", VFIO_DEVICE_BIND_IOMMUFD),
        (
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        ),
        ("IOMMU_IOAS_ALLOC", IOMMU_IOAS_ALLOC),
        ("IOMMU_IOAS_ALLOW_IOVAS", IOMMU_IOAS_ALLOW_IOVAS),
        ("IOMMU_IOAS_COPY", IOMMU_IOAS_COPY),
        ("IOMMU_IOAS_IOVA_RANGES", IOMMU_IOAS_IOVA_RANGES),
        ("IOMMU_IOAS_MAP", IOMMU_IOAS_MAP),
        ("IOMMU_IOAS_UNMAP", IOMMU_IOAS_UNMAP),
    ];
}

/// The request number of a `(type, nr)` pair from [`nr`] on this architecture.
pub(crate) const fn req(tn: (u8, u8)) -> Request {
    io(tn.0, tn.1)
}

// Compile-time pin of the encoding for the target being built (the unit tests pin
// both tables on the test host): `_IOC_NONE << _IOC_DIRSHIFT` is 1 << 29 on powerpc,
// mips and sparc and 0 elsewhere, so `cargo check --target powerpc64le-...` proves
// the powerpc numbers too.
const _: () = {
    const NONE: u64 = if cfg!(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )) {
        1 << 29
    } else {
        0
    };
    #[allow(clippy::unnecessary_cast)] // c_ulong on glibc, c_int on musl
    const fn low32(r: Request) -> u64 {
        (r as u64) & 0xffff_ffff
    }
    assert!(low32(req(nr::VFIO_GET_API_VERSION)) == NONE | 0x3b64);
    assert!(low32(req(nr::VFIO_IOMMU_MAP_DMA)) == NONE | 0x3b71);
    assert!(low32(req(nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT)) == NONE | 0x3b77);
    assert!(low32(req(nr::IOMMU_IOAS_MAP)) == NONE | 0x3b85);
};

/// The errno of the last failed system call.
pub(crate) fn last_errno() -> Errno {
    Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Turns an `io::Error` into an [`Errno`] (EIO when it carries none).
pub(crate) fn errno_of(e: &io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Opens a device node read-write with close-on-exec.
pub(crate) fn open_rw(path: &Path) -> io::Result<OwnedFd> {
    let f: File = OpenOptions::new().read(true).write(true).open(path)?;
    Ok(f.into())
}

fn check(r: libc::c_int) -> Result<i32, Errno> {
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

/// Issues an ioctl whose argument is a plain integer; returns the non-negative result.
///
/// # Safety
/// For the driver behind `fd`, `req` must be a request that reads no memory through
/// `arg` and writes none (it takes an integer, or nothing), and whose effect breaks no
/// invariant Rust code relies on.
pub(crate) unsafe fn ioctl_val(
    fd: &OwnedFd,
    req: Request,
    arg: libc::c_ulong,
) -> Result<i32, Errno> {
    // SAFETY: the fd is open for the whole call; the caller vouches that the request
    // uses `arg` as an integer only.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) })
}

/// Marker for kernel argument structs that are plain integers: every bit pattern is a
/// valid value and no field is an address the kernel reads or writes through.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers (and arrays of them, including
/// zero-length trailing arrays) that carry no user pointer or address, and only where
/// the kernel's structure for the requests they are passed to has this layout.
pub(crate) unsafe trait Pod {}

/// Issues an ioctl that reads and/or writes `*arg`, a plain-integer struct.
///
/// # Safety
/// For the driver behind `fd`, `req` must be a request whose argument is a pointer to
/// a structure with `T`'s layout, and the kernel must access no more than
/// `size_of::<T>()` bytes through it (for VFIO and iommufd: the `argsz`/`size` field
/// the caller filled in is at most that).
pub(crate) unsafe fn ioctl_pod<T: Pod>(
    fd: &OwnedFd,
    req: Request,
    arg: &mut T,
) -> Result<i32, Errno> {
    // SAFETY: `arg` is a valid, exclusive reference for the call; `T: Pod` means any
    // bytes the kernel writes form a valid `T` and no field points anywhere; the caller
    // vouches for the request and the size.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, std::ptr::from_mut(arg)) })
}

/// Issues an ioctl with an arbitrary argument pointer.
///
/// # Safety
/// For the driver behind `fd`, `req` must be a request whose argument is a pointer to
/// a structure with `T`'s layout; every address inside `*arg` that the kernel reads or
/// writes through must be valid for that access for the whole call, and anything the
/// kernel writes must leave valid values behind.
pub(crate) unsafe fn ioctl_with_ptrs<T>(
    fd: &OwnedFd,
    req: Request,
    arg: &mut T,
) -> Result<i32, Errno> {
    // SAFETY: `arg` is valid and exclusive for the call; the caller vouches for the
    // request and for every pointer inside it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, std::ptr::from_mut(arg)) })
}

/// Issues an ioctl on a buffer of 64-bit words (variable-size replies such as
/// GET_INFO, whose first `u32` is `argsz`).
///
/// # Safety
/// For the driver behind `fd`, `req` must be a request that reads and writes at most
/// the `argsz` the caller stored in the buffer's first `u32`, which must be at most
/// `buf.len() * 8`.
pub(crate) unsafe fn ioctl_words(
    fd: &OwnedFd,
    req: Request,
    buf: &mut [u64],
) -> Result<i32, Errno> {
    // SAFETY: the buffer is valid for reads and writes of `buf.len() * 8` bytes and is
    // 8-byte aligned; any bytes form valid u64s; the caller vouches for the request and
    // the size.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, buf.as_mut_ptr()) })
}

/// Issues an ioctl whose argument is a NUL-terminated string the kernel only reads.
///
/// # Safety
/// For the driver behind `fd`, `req` must be a request that reads a NUL-terminated
/// string through its argument and writes nothing through it.
pub(crate) unsafe fn ioctl_str(fd: &OwnedFd, req: Request, s: &str) -> Result<i32, Errno> {
    let c = CString::new(s).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; the caller
    // vouches that the kernel only reads it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, c.as_ptr()) })
}

/// Reads `buf.len()` bytes at `offset` of a file descriptor (device regions).
pub(crate) fn pread_exact(fd: &OwnedFd, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
    let off = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
    let r = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
    match usize::try_from(r) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) => Err(Errno(libc::EIO)),
        Err(_) => Err(last_errno()),
    }
}

/// Writes `buf` at `offset` of a file descriptor (device regions).
pub(crate) fn pwrite_all(fd: &OwnedFd, buf: &[u8], offset: u64) -> Result<(), Errno> {
    let off = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes during the call.
    let r = unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), off) };
    match usize::try_from(r) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) => Err(Errno(libc::EIO)),
        Err(_) => Err(last_errno()),
    }
}

/// The size of an ioctl argument struct as the `argsz` field wants it (every such
/// struct is far below 4 GiB).
pub(crate) const fn size_u32<T>() -> u32 {
    let n = std::mem::size_of::<T>();
    assert!(n <= u32::MAX as usize);
    n as u32
}

// SAFETY: a plain integer (the container fd argument of VFIO_GROUP_SET_CONTAINER).
unsafe impl Pod for i32 {}

#[cfg(test)]
mod tests;
