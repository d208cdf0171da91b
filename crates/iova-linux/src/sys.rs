//! Small safe wrappers over the system calls the VFIO and iommufd backends use:
//! opening device nodes, ioctls on `#[repr(C)]` argument structs, anonymous memory.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use iova::dma::Errno;

/// The ioctl request number type of the C library.
pub type Request = libc::Ioctl;

/// `_IO(type, nr)`: an ioctl number without a size or direction (what VFIO and
/// iommufd use for every command).
pub const fn io(ty: u8, nr: u8) -> Request {
    // Widening only: the value is at most 0xffff.
    (((ty as u32) << 8) | nr as u32) as Request
}

/// The errno of the last failed system call.
pub fn last_errno() -> Errno {
    Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Turns an `io::Error` into an [`Errno`] (EIO when it carries none).
pub fn errno_of(e: &io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Opens a device node read-write with close-on-exec.
pub fn open_rw(path: &Path) -> io::Result<OwnedFd> {
    let f: File = OpenOptions::new().read(true).write(true).open(path)?;
    Ok(f.into())
}

/// Issues an ioctl whose argument is a plain integer; returns the non-negative result.
pub fn ioctl_val(fd: &OwnedFd, req: Request, arg: libc::c_ulong) -> Result<i32, Errno> {
    // SAFETY: the fd is open for the whole call; the request takes an integer argument
    // (or none) so the kernel reads no memory through `arg`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

/// Marker for `#[repr(C)]` plain-old-data ioctl arguments: every bit pattern is valid
/// and the type holds no pointers the kernel could invalidate.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers (and arrays of them) whose
/// layout matches the kernel's structure for the ioctls they are passed to.
pub unsafe trait Pod: Copy {}

/// Issues an ioctl that reads and/or writes `*arg`.
pub fn ioctl_ptr<T: Pod>(fd: &OwnedFd, req: Request, arg: &mut T) -> Result<i32, Errno> {
    // SAFETY: `arg` is a valid, exclusive reference to a `Pod` struct whose layout the
    // implementer guarantees matches what the kernel reads and writes for `req`, and
    // the kernel never writes past the `argsz`/`size` we put in it (= size_of::<T>()).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, std::ptr::from_mut(arg)) };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

/// Issues an ioctl on a byte buffer (variable-size replies such as GET_INFO). The
/// caller must have written a size field no larger than `buf.len()` at its start.
pub fn ioctl_buf(fd: &OwnedFd, req: Request, buf: &mut [u64]) -> Result<i32, Errno> {
    // SAFETY: the buffer is valid for writes of `buf.len() * 8` bytes and is 8-byte
    // aligned; the kernel writes at most the `argsz` the caller stored in its first
    // u32, which the caller keeps within the buffer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, buf.as_mut_ptr()) };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

/// Issues an ioctl whose argument is a NUL-terminated string (VFIO_GROUP_GET_DEVICE_FD).
pub fn ioctl_str(fd: &OwnedFd, req: Request, s: &str) -> Result<i32, Errno> {
    let c = CString::new(s).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; the kernel
    // only reads it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, c.as_ptr()) };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

/// Reads `buf.len()` bytes at `offset` of a file descriptor (device regions).
pub fn pread_exact(fd: &OwnedFd, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
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
pub fn pwrite_all(fd: &OwnedFd, buf: &[u8], offset: u64) -> Result<(), Errno> {
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
pub fn size_u32<T>() -> u32 {
    u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX)
}

/// Anonymous private memory, page aligned, unmapped on drop.
///
/// Device DMA writes into it behind the compiler's back, so reads go through
/// [`AnonMemory::read`] (volatile) rather than a shared slice.
#[derive(Debug)]
pub struct AnonMemory {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl AnonMemory {
    /// Maps `len` bytes of zeroed read-write memory (`len` rounded up by the kernel to
    /// whole pages).
    pub fn new(len: usize) -> Result<Self, Errno> {
        Self::with_prot(len, libc::PROT_READ | libc::PROT_WRITE)
    }

    /// Maps `len` bytes of inaccessible memory (`PROT_NONE`): it occupies address space
    /// but the kernel cannot pin it.
    pub fn inaccessible(len: usize) -> Result<Self, Errno> {
        Self::with_prot(len, libc::PROT_NONE)
    }

    fn with_prot(len: usize, prot: libc::c_int) -> Result<Self, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: an anonymous private mapping at an address the kernel picks touches
        // no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_errno());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>()).ok_or(Errno::ENOMEM)?;
        Ok(AnonMemory { ptr, len })
    }

    /// The process virtual address of the first byte.
    pub fn addr(&self) -> u64 {
        // usize -> u64 is lossless on every 64-bit and 32-bit target.
        u64::try_from(self.ptr.as_ptr().addr()).unwrap_or(u64::MAX)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a mapping is never empty).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Fills `[offset, offset+len)` with `byte`. Out-of-range requests are clipped.
    pub fn fill(&mut self, offset: usize, len: usize, byte: u8) {
        for i in offset..offset.saturating_add(len).min(self.len) {
            // SAFETY: `i < self.len`, inside the mapping; volatile because a device may
            // access the same memory.
            unsafe { self.ptr.as_ptr().add(i).write_volatile(byte) };
        }
    }

    /// Writes `data` at `offset` (clipped to the mapping).
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (k, b) in data.iter().enumerate() {
            let Some(i) = offset.checked_add(k).filter(|i| *i < self.len) else {
                break;
            };
            // SAFETY: `i < self.len`, inside the mapping.
            unsafe { self.ptr.as_ptr().add(i).write_volatile(*b) };
        }
    }

    /// Reads `len` bytes at `offset` (clipped to the mapping).
    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        (offset..offset.saturating_add(len).min(self.len))
            // SAFETY: `i < self.len`, inside the mapping.
            .map(|i| unsafe { self.ptr.as_ptr().add(i).read_volatile() })
            .collect()
    }
}

impl Drop for AnonMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns;
        // nothing borrows it past this point.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: a plain integer (the container fd argument of VFIO_GROUP_SET_CONTAINER).
unsafe impl Pod for i32 {}
