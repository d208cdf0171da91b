//! Backing trace host addresses with real process memory.
//!
//! A DMA trace ([`iova::trace`]) carries arbitrary host addresses (by default equal to
//! the IOVA), but the real kernel pins process memory behind every map. A
//! [`TraceArena`] owns a block of anonymous memory and moves each map's host address
//! into it: `arena + (host % len)`, keeping the page offset so a misaligned host address
//! stays misaligned; when the range would run past the end of the arena only the
//! in-page offset is kept. A host range that wraps past 2^64 is passed unchanged: the
//! kernel and the simulation both refuse it before looking at memory. Give the
//! simulation the translated operation too, so both answer the same question.
//!
//! Hand the arena's memory to the real backend ([`TraceArena::memory`]): its safe
//! `map` sends only host ranges inside memory it holds, and every placed range is
//! inside the arena (or wraps, which the kernel refuses without touching memory) as
//! long as the map is no larger than the arena.

use iova::dma::Errno;
use iova::trace::TraceOp;

use std::sync::Arc;

use crate::memory::AnonMemory;

/// Anonymous memory standing in for a trace's host addresses.
#[derive(Debug)]
pub struct TraceArena {
    mem: Arc<AnonMemory>,
    len: u64,
}

impl TraceArena {
    /// The default arena size, 64 MiB.
    pub const DEFAULT_LEN: u64 = 64 << 20;

    /// Maps an arena of `len` bytes (a multiple of 4 KiB, at least one page).
    pub fn new(len: u64) -> Result<TraceArena, Errno> {
        if len < 0x1000 || len % 0x1000 != 0 {
            return Err(Errno::EINVAL);
        }
        let bytes = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
        Ok(TraceArena {
            mem: Arc::new(AnonMemory::new(bytes)?),
            len,
        })
    }

    /// The arena's first address.
    pub fn addr(&self) -> u64 {
        self.mem.addr()
    }

    /// The arena's memory, to hand to a real backend
    /// ([`crate::memory::HoldMemory::add_memory`]) so that its safe `map` accepts the
    /// placed operations.
    pub fn memory(&self) -> Arc<AnonMemory> {
        Arc::clone(&self.mem)
    }

    /// The operation with its host address moved into the arena (maps only).
    pub fn place(&self, op: TraceOp) -> TraceOp {
        match op {
            TraceOp::Map {
                iova,
                size,
                host_addr,
                access,
            } => TraceOp::Map {
                iova,
                size,
                host_addr: place_host(self.addr(), self.len, host_addr, size),
                access,
            },
            other => other,
        }
    }
}

/// Where `host`..`host+size` lands in an arena at `base` of `len` bytes.
fn place_host(base: u64, len: u64, host: u64, size: u64) -> u64 {
    if host.checked_add(size.saturating_sub(1)).is_none() {
        return host;
    }
    let mut off = host % len;
    if off.saturating_add(size) > len {
        off %= 0x1000;
    }
    base.saturating_add(off)
}

#[cfg(test)]
mod tests {
    use super::place_host;

    #[test]
    fn keeps_offsets_and_wraps() {
        let base = 0x7f00_0000_0000;
        let len = 64 << 20;
        assert_eq!(place_host(base, len, 0x10_0000, 0x1000), base + 0x10_0000);
        assert_eq!(place_host(base, len, 0x400_0800, 0x1000), base + 0x800);
        assert_eq!(
            place_host(base, len, u64::MAX - 0xfff, 0x2000),
            u64::MAX - 0xfff
        );
        // Too big to fit after its offset: only the in-page offset is kept.
        assert_eq!(place_host(base, len, 0x3ff_f000, 0x2000), base);
    }
}
