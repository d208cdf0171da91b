//! Host memory that a device may access: anonymous mappings ([`AnonMemory`]) and the
//! set of them a DMA backend holds ([`HeldMemory`]).
//!
//! A DMA map gives a device access to process memory behind the compiler's back. The
//! safe `map` functions of the real backends ([`crate::type1::Container`],
//! [`crate::iommufd::Ioas`]) therefore only send host ranges that lie inside memory the
//! backend holds: an [`AnonMemory`] handed to it with `add_memory`, which it keeps
//! mapped until its file descriptor is closed and its mappings are gone. Such memory
//! is never seen by Rust as ordinary objects: it is read and written only through
//! [`AnonMemory`]'s byte-wise atomic accessors, so device writes race with nothing the
//! language model cares about. Callers that manage memory themselves (a VMM mapping
//! guest RAM) use the backends' `unsafe fn map_raw` instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use iova::dma::Errno;

use crate::sys;

/// Anonymous private memory, page aligned, unmapped on drop.
///
/// Shared freely (`Arc<AnonMemory>`): a device may read and write it while it is
/// DMA-mapped, so it hands out no references to its bytes; [`AnonMemory::read`],
/// [`AnonMemory::write`] and [`AnonMemory::fill`] access it byte by byte with atomic
/// operations. Memory made with [`AnonMemory::inaccessible`] (`PROT_NONE`) cannot be
/// read or written at all: those calls read nothing and write nothing.
#[derive(Debug)]
pub struct AnonMemory {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    accessible: bool,
}

// SAFETY: the mapping belongs to this value alone and every access to its bytes is an
// atomic operation, so it may be used and dropped from any thread.
unsafe impl Send for AnonMemory {}
// SAFETY: shared access only performs atomic byte loads and stores (no references to
// the bytes are handed out), which may race with each other and with a device.
unsafe impl Sync for AnonMemory {}

impl AnonMemory {
    /// Maps `len` bytes of zeroed read-write memory (`len` rounded up by the kernel to
    /// whole pages).
    pub fn new(len: usize) -> Result<Self, Errno> {
        Self::with_prot(len, libc::PROT_READ | libc::PROT_WRITE)
    }

    /// Maps `len` bytes of inaccessible memory (`PROT_NONE`): it occupies address space
    /// but the kernel cannot pin it (a DMA map of it fails with EFAULT).
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
            return Err(sys::last_errno());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>()).ok_or(Errno::ENOMEM)?;
        Ok(AnonMemory {
            ptr,
            len,
            accessible: prot != libc::PROT_NONE,
        })
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

    /// Whether the memory can be read and written (false for [`AnonMemory::inaccessible`]).
    pub fn is_accessible(&self) -> bool {
        self.accessible
    }

    /// Whether `[host, host+size)` lies inside this mapping (`size` > 0).
    pub fn contains(&self, host: u64, size: u64) -> bool {
        let len = u64::try_from(self.len).unwrap_or(u64::MAX);
        let base = self.addr();
        size > 0
            && host >= base
            && host
                .checked_add(size)
                .is_some_and(|end| end <= base.saturating_add(len))
    }

    /// The byte at `i`, which must be below `self.len` in accessible memory.
    fn byte(&self, i: usize) -> &AtomicU8 {
        debug_assert!(self.accessible && i < self.len);
        // SAFETY: `i < self.len`, so the pointer is inside the read-write mapping, which
        // lives as long as `self`; u8 needs no alignment; every access to these bytes
        // goes through atomics (this type never hands out plain references), so the
        // `AtomicU8::from_ptr` requirements hold.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(i)) }
    }

    /// Fills `[offset, offset+len)` with `byte`. Out-of-range requests are clipped.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) {
        if !self.accessible {
            return;
        }
        for i in offset..offset.saturating_add(len).min(self.len) {
            self.byte(i).store(byte, Ordering::Relaxed);
        }
    }

    /// Writes `data` at `offset` (clipped to the mapping).
    pub fn write(&self, offset: usize, data: &[u8]) {
        if !self.accessible {
            return;
        }
        for (k, b) in data.iter().enumerate() {
            let Some(i) = offset.checked_add(k).filter(|i| *i < self.len) else {
                break;
            };
            self.byte(i).store(*b, Ordering::Relaxed);
        }
    }

    /// Reads `len` bytes at `offset` (clipped to the mapping; nothing from
    /// inaccessible memory).
    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        if !self.accessible {
            return Vec::new();
        }
        (offset..offset.saturating_add(len).min(self.len))
            .map(|i| self.byte(i).load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for AnonMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns;
        // nothing borrows it past this point (accessors borrow `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The memory a DMA backend holds: safe maps may point into it.
///
/// The backend keeps every [`AnonMemory`] added here mapped until it has closed its
/// file descriptor (and unmapped everything it mapped), so a device can never reach
/// memory that was handed back to the process for other uses.
#[derive(Debug, Default)]
pub(crate) struct HeldMemory {
    mems: Vec<Arc<AnonMemory>>,
}

impl HeldMemory {
    /// Adds a mapping (adding the same one twice is harmless).
    pub(crate) fn add(&mut self, mem: Arc<AnonMemory>) {
        if !self.mems.iter().any(|m| Arc::ptr_eq(m, &mem)) {
            self.mems.push(mem);
        }
    }

    /// Whether `[host, host+size)` lies inside one held mapping.
    pub(crate) fn contains(&self, host: u64, size: u64) -> bool {
        self.mems.iter().any(|m| m.contains(host, size))
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.mems.is_empty()
    }

    /// Whether a map of `[host, host+size)` may be sent to the kernel by a safe
    /// function: the range is held, or the kernel refuses it before looking at memory
    /// (`size` 0, or `host + size - 1` past 2^64-1: type1 answers EINVAL in
    /// `vfio_dma_do_map`, iommufd EINVAL/EOVERFLOW in `iommufd_ioas_map` and
    /// `iopt_alloc_pages`; neither can pin such a range).
    pub(crate) fn may_map(&self, host: u64, size: u64) -> bool {
        size == 0 || host.checked_add(size - 1).is_none() || self.contains(host, size)
    }

    /// Gives up the memory without unmapping it, for a backend that could not make
    /// sure its mappings are gone: the pages stay reserved for the process lifetime.
    pub(crate) fn leak(&mut self) {
        for m in self.mems.drain(..) {
            std::mem::forget(m);
        }
    }
}

/// Something that holds host memory for DMA: safe maps may point into memory added
/// here (see the module documentation).
pub trait HoldMemory {
    /// Adds `mem`; the holder keeps it mapped at least until its mappings are gone.
    fn add_memory(&mut self, mem: Arc<AnonMemory>);
}

/// Why a safe map with raw flags failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapRawError {
    /// The host range is not inside memory the backend holds (see [`HoldMemory`]);
    /// nothing was sent to the kernel.
    #[error("host range {host:#x}+{size:#x} is not memory this backend holds")]
    NotHeld {
        /// The first host address.
        host: u64,
        /// The size.
        size: u64,
    },
    /// The kernel refused.
    #[error("{0}")]
    Kernel(Errno),
}

impl MapRawError {
    /// The kernel's errno name, or `NOT-HELD` when nothing was sent.
    pub fn name(&self) -> String {
        match self {
            MapRawError::NotHeld { .. } => "NOT-HELD".to_owned(),
            MapRawError::Kernel(e) => e.name(),
        }
    }

    /// As a [`iova::dma::MapError`]: the kernel's EFAULT and a range that is not held
    /// both become `BadAddress` (the host range is not memory this space can map),
    /// any other errno `Kernel`.
    pub fn to_map_error(self) -> iova::dma::MapError {
        match self {
            MapRawError::NotHeld { .. } | MapRawError::Kernel(Errno::EFAULT) => {
                iova::dma::MapError::BadAddress
            }
            MapRawError::Kernel(e) => iova::dma::MapError::Kernel(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_and_forwarding() {
        let m = Arc::new(AnonMemory::new(0x4000).unwrap());
        let a = m.addr();
        let mut h = HeldMemory::default();
        assert!(!h.may_map(a, 0x1000));
        h.add(m.clone());
        h.add(m.clone());
        assert!(h.contains(a, 0x4000));
        assert!(h.contains(a + 0x800, 0x1000));
        assert!(!h.contains(a + 0x3000, 0x2000));
        assert!(!h.contains(a - 0x1000, 0x2000));
        assert!(h.may_map(0, 0));
        assert!(h.may_map(u64::MAX - 0xfff, 0x2000));
        assert!(!h.may_map(u64::MAX - 0xfff, 0x1000));
        assert!(!h.may_map(0x1_0000, 0x1000));
    }

    #[test]
    fn atomic_accessors_and_inaccessible_memory() {
        let m = AnonMemory::new(0x1000).unwrap();
        m.fill(0, 0x1000, 0xaa);
        m.write(0xffe, &[1, 2, 3]);
        assert_eq!(m.read(0xffc, 8), vec![0xaa, 0xaa, 1, 2]);
        let n = AnonMemory::inaccessible(0x1000).unwrap();
        n.fill(0, 0x1000, 1);
        n.write(0, &[1]);
        assert!(n.read(0, 16).is_empty());
        assert!(!n.is_accessible());
    }
}
