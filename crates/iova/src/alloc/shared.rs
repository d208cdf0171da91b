//! The thread-safe allocator: the core behind a mutex, and per-thread magazines.
//!
//! # How the caches stay exact
//!
//! A [`LocalCache`] takes small ranges from the core in batches. The core keeps them in
//! its table of live allocations, each with a *lease*: a tiny atomic state shared by
//! the core and the cache, `IN_CACHE` (in a magazine, free from the user's point of
//! view), `OUT` (handed out by the cache) or `GONE` (no longer the cache's).
//!
//! - The owning thread moves a range `IN_CACHE -> OUT` on alloc and `OUT -> IN_CACHE`
//!   on free, with no lock: the common alloc/free pair touches only memory of its own
//!   cache. A free of a range already in the magazine finds `IN_CACHE` and is refused.
//! - A range handed out by cache A may be freed anywhere else (another thread's cache,
//!   or [`SharedAllocator::free`]). That path takes the core's lock and moves the lease
//!   `OUT -> GONE` with a compare-and-swap, so exactly one of two racing frees wins; the
//!   range goes back to the core's free space, and cache A drops its stale entry the
//!   next time it sees it.
//! - A magazine that overflows, or a cache that is flushed or dropped, gives its
//!   `IN_CACHE` ranges back to the core under the lock.
//!
//! Ranges in a magazine are allocated as far as the core is concerned: `alloc_at` over
//! them reports [`AllocError::Busy`], and another thread cannot get them until the
//! owning cache gives them back ([`LocalCache::flush`], or drop). A cache whose refill
//! finds no space flushes itself and retries once through the core.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{AddrMap, AllocError, Allocator, GONE, IN_CACHE, OUT, Policy};
use crate::range::{IovaRange, IovaSet};

/// Number of size classes kept in magazines: 1 to 32 granules (4 KiB to 128 KiB with a
/// 4 KiB granule), the same reach as the kernel's IOVA rcache.
pub const CACHE_CLASSES: usize = 32;
/// Ranges moved between a magazine and the core at once.
const BATCH: usize = 32;
/// A magazine holds at most this many ranges before half of them go back.
const CAPACITY: usize = 2 * BATCH;

#[derive(Debug)]
struct Shared {
    core: Mutex<Allocator>,
    granule: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Allocator> {
        // No operation of the core panics half-way, so a poisoned lock still guards a
        // consistent allocator.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `Send + Sync` IOVA allocator: an [`Allocator`] behind a mutex, with per-thread
/// [`LocalCache`] handles for lock-free small allocations.
///
/// Cloning gives another handle to the same allocator.
///
/// ```
/// use iova::alloc::{Policy, SharedAllocator};
/// use iova::range::{IovaRange, IovaSet};
///
/// let shared = SharedAllocator::new(&IovaSet::from(IovaRange::new(0, 0xffff_ffff)?), 4096, Policy::FirstFit)?;
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         let mut cache = shared.local();
///         s.spawn(move || {
///             for _ in 0..1000 {
///                 let r = cache.alloc(8192, 4096).unwrap();
///                 cache.free(r).unwrap();
///             }
///         });
///     }
/// });
/// // The caches were dropped at the end of their threads: everything is free again.
/// assert_eq!(shared.with_core(|a| a.allocation_count()), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SharedAllocator {
    inner: Arc<Shared>,
}

impl SharedAllocator {
    /// Builds a shared allocator; same rules as [`Allocator::new`].
    pub fn new(set: &IovaSet, granule: u64, policy: Policy) -> Result<Self, AllocError> {
        Ok(Self::from_core(Allocator::new(set, granule, policy)?))
    }

    /// Wraps an existing allocator.
    pub fn from_core(core: Allocator) -> Self {
        let granule = core.granule();
        SharedAllocator {
            inner: Arc::new(Shared {
                core: Mutex::new(core),
                granule,
            }),
        }
    }

    /// [`Allocator::alloc`] under the lock (no cache).
    pub fn alloc(&self, size: u64, align: u64) -> Result<IovaRange, AllocError> {
        self.inner.lock().alloc(size, align)
    }

    /// [`Allocator::alloc_at`] under the lock. Ranges held in a thread cache's
    /// magazine count as allocated.
    pub fn alloc_at(&self, range: IovaRange) -> Result<(), AllocError> {
        self.inner.lock().alloc_at(range)
    }

    /// [`Allocator::free`] under the lock; also frees ranges handed out by any
    /// [`LocalCache`].
    pub fn free(&self, range: IovaRange) -> Result<(), AllocError> {
        self.inner.lock().free(range)
    }

    /// A new per-thread cache. Move it into the thread that uses it; it gives its
    /// cached ranges back when dropped.
    pub fn local(&self) -> LocalCache {
        let shift = self.inner.granule.trailing_zeros();
        LocalCache {
            shared: Arc::clone(&self.inner),
            granule: self.inner.granule,
            shift,
            mags: Magazines::new(),
            slots: Vec::new(),
            spare: Vec::new(),
            index: AddrMap::default(),
            sweep_at: 4096,
            last_out: u32::MAX,
        }
    }

    /// Runs `f` on the core under the lock (for inspection: free space, counts).
    pub fn with_core<R>(&self, f: impl FnOnce(&Allocator) -> R) -> R {
        f(&self.inner.lock())
    }
}

#[derive(Debug)]
struct Slot {
    range: IovaRange,
    class: usize,
    state: Arc<AtomicU8>,
}

/// One stack of slot indices per size class, in a single flat allocation.
#[derive(Debug)]
struct Magazines {
    store: Box<[[u32; CAPACITY]; CACHE_CLASSES]>,
    lens: [usize; CACHE_CLASSES],
}

impl Magazines {
    fn new() -> Self {
        Magazines {
            store: Box::new([[0; CAPACITY]; CACHE_CLASSES]),
            lens: [0; CACHE_CLASSES],
        }
    }

    #[inline]
    fn pop(&mut self, class: usize) -> Option<u32> {
        let (len, mag) = (self.lens.get_mut(class)?, self.store.get(class)?);
        let n = len.checked_sub(1)?;
        let i = *mag.get(n)?;
        *len = n;
        Some(i)
    }

    /// False when the magazine is full.
    #[inline]
    fn push(&mut self, class: usize, i: u32) -> bool {
        let (Some(len), Some(mag)) = (self.lens.get_mut(class), self.store.get_mut(class)) else {
            return false;
        };
        match mag.get_mut(*len) {
            Some(cell) => {
                *cell = i;
                *len += 1;
                true
            }
            None => false,
        }
    }

    /// Removes and returns the `k` oldest entries of a magazine.
    fn take_oldest(&mut self, class: usize, k: usize) -> Vec<u32> {
        let n = self.lens[class];
        let k = k.min(n);
        let mag = &mut self.store[class];
        let out = mag[..k].to_vec();
        mag.copy_within(k..n, 0);
        self.lens[class] = n - k;
        out
    }

    fn count(&self) -> usize {
        self.lens.iter().sum()
    }
}

/// A per-thread front end of a [`SharedAllocator`] with magazines of small ranges.
///
/// Requests of at most [`CACHE_CLASSES`] granules with an alignment of at most the
/// granule are served from the magazine of their size without a lock; other requests
/// go to the core under its lock. [`LocalCache::free`] accepts any live range of the
/// allocator, whichever cache or thread handed it out.
#[derive(Debug)]
pub struct LocalCache {
    shared: Arc<Shared>,
    granule: u64,
    shift: u32,
    mags: Magazines,
    slots: Vec<Slot>,
    spare: Vec<u32>,
    /// First address -> slot, for every range this cache owns (plus stale entries for
    /// ranges freed elsewhere, dropped lazily).
    index: AddrMap<u32>,
    sweep_at: usize,
    /// The slot of the range this cache handed out last (`u32::MAX`: none yet): the
    /// first candidate a free checks before the index. Only a hint: the slot's range
    /// and its lease decide, so a stale value costs one comparison.
    last_out: u32,
}

fn at(i: u32) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

impl LocalCache {
    #[inline]
    fn class_of(&self, size: u64, align: u64) -> Option<usize> {
        if size == 0 || !align.is_power_of_two() || align > self.granule {
            return None;
        }
        // ceil(size / granule) - 1 for size >= 1, without an overflow check.
        let class = (size - 1) >> self.shift;
        (class < CACHE_CLASSES as u64).then_some(class as usize)
    }

    /// Allocates like [`Allocator::alloc`]. Small requests come from this thread's
    /// magazine.
    #[inline]
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<IovaRange, AllocError> {
        if let Some(class) = self.class_of(size, align) {
            if let Some(i) = self.mags.pop(class) {
                if let Some(slot) = self.slots.get(at(i)) {
                    slot.state.store(OUT, Ordering::Release);
                    self.last_out = i;
                    return Ok(slot.range);
                }
            }
            return self.refill(class, size, align);
        }
        self.alloc_uncached(size, align)
    }

    #[cold]
    #[inline(never)]
    fn alloc_uncached(&mut self, size: u64, align: u64) -> Result<IovaRange, AllocError> {
        self.shared.lock().alloc(size, align)
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self, class: usize, size: u64, align: u64) -> Result<IovaRange, AllocError> {
        let shared = Arc::clone(&self.shared);
        let mut core = shared.lock();
        let mut first_err = None;
        for _ in 0..BATCH {
            let state = Arc::new(AtomicU8::new(IN_CACHE));
            match core.alloc_leased(size, align, Some(Arc::clone(&state))) {
                Ok(range) => {
                    if !self.adopt(range, class, state) {
                        // No slot index or magazine room left: give it straight back.
                        let _ = core.release_cached(range);
                        break;
                    }
                }
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
            }
        }
        if let Some(i) = self.mags.pop(class) {
            let slot = &self.slots[at(i)];
            slot.state.store(OUT, Ordering::Release);
            return Ok(slot.range);
        }
        // Nothing came: give back what this cache holds and try once more uncached.
        self.flush_locked(&mut core);
        match first_err {
            Some(AllocError::NoSpace { .. }) | None => core.alloc(size, align),
            Some(e) => Err(e),
        }
    }

    /// Records a range just leased from the core; false when no slot index or
    /// magazine room is left (the range is then not recorded).
    fn adopt(&mut self, range: IovaRange, class: usize, state: Arc<AtomicU8>) -> bool {
        let slot = Slot {
            range,
            class,
            state,
        };
        let i = match self.spare.pop() {
            Some(i) => {
                self.slots[at(i)] = slot;
                i
            }
            None => {
                let Ok(i) = u32::try_from(self.slots.len()) else {
                    return false;
                };
                self.slots.push(slot);
                i
            }
        };
        if !self.mags.push(class, i) {
            self.spare.push(i);
            return false;
        }
        if let Some(old) = self.index.insert(range.first(), i) {
            // A stale entry for a range freed elsewhere and now leased again.
            self.spare.push(old);
        }
        true
    }

    /// Frees like [`Allocator::free`]. A range this cache handed out goes back to its
    /// magazine without a lock; anything else goes to the core.
    #[inline]
    pub fn free(&mut self, range: IovaRange) -> Result<(), AllocError> {
        // The slot of the range: the one handed out last, else the index's.
        let memo = self.last_out;
        let found = match self.slots.get(at(memo)) {
            Some(slot) if slot.range == range => Some((memo, slot)),
            _ => self
                .index
                .get(&range.first())
                .and_then(|&i| Some((i, self.slots.get(at(i))?)))
                .filter(|(_, slot)| slot.range == range),
        };
        if let Some((i, slot)) = found {
            if slot
                .state
                .compare_exchange(OUT, IN_CACHE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let class = slot.class;
                if !self.mags.push(class, i) {
                    self.spill_and_push(class, i);
                }
                return Ok(());
            }
        }
        self.free_slow(range)
    }

    #[cold]
    #[inline(never)]
    fn free_slow(&mut self, range: IovaRange) -> Result<(), AllocError> {
        if let Some(&i) = self.index.get(&range.first()) {
            let slot = &self.slots[at(i)];
            // Only this cache moves a lease out of IN_CACHE, and GONE is final, so the
            // state read here cannot change under us except OUT -> GONE.
            let state = slot.state.load(Ordering::Acquire);
            if slot.range != range && state == OUT {
                return Err(AllocError::Mismatch {
                    range,
                    allocated: slot.range,
                });
            }
            if state == IN_CACHE {
                return Err(AllocError::NotAllocated { range });
            }
            if state == GONE {
                // Freed elsewhere since: forget it and ask the core.
                self.index.remove(&range.first());
                self.spare.push(i);
            }
        }
        self.shared.lock().free(range)
    }

    /// [`Allocator::alloc_at`] through the core.
    pub fn alloc_at(&mut self, range: IovaRange) -> Result<(), AllocError> {
        self.shared.lock().alloc_at(range)
    }

    /// The number of ranges waiting in this cache's magazines.
    pub fn cached_count(&self) -> usize {
        self.mags.count()
    }

    /// Gives every range in the magazines back to the core.
    pub fn flush(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut core = shared.lock();
        self.flush_locked(&mut core);
    }

    fn flush_locked(&mut self, core: &mut Allocator) {
        for class in 0..CACHE_CLASSES {
            for i in self.mags.take_oldest(class, CAPACITY) {
                self.give_back(core, i);
            }
        }
        self.sweep();
    }

    /// Gives the older half of a full magazine back to the core, then pushes `i`.
    #[cold]
    #[inline(never)]
    fn spill_and_push(&mut self, class: usize, i: u32) {
        let shared = Arc::clone(&self.shared);
        let mut core = shared.lock();
        for old in self.mags.take_oldest(class, BATCH) {
            self.give_back(&mut core, old);
        }
        if !self.mags.push(class, i) {
            self.give_back(&mut core, i);
        }
        if self.index.len() > self.sweep_at {
            self.sweep();
        }
    }

    fn give_back(&mut self, core: &mut Allocator, i: u32) {
        let range = self.slots[at(i)].range;
        // The range is IN_CACHE and leased to this cache: the core has it live.
        let _ = core.release_cached(range);
        self.index.remove(&range.first());
        self.spare.push(i);
    }

    /// Drops index entries of ranges freed elsewhere.
    fn sweep(&mut self) {
        let slots = &self.slots;
        let spare = &mut self.spare;
        self.index.retain(|_, i| {
            let gone = slots[at(*i)].state.load(Ordering::Acquire) == GONE;
            if gone {
                spare.push(*i);
            }
            !gone
        });
        self.sweep_at = self.index.len().saturating_mul(2).max(4096);
    }
}

impl Drop for LocalCache {
    fn drop(&mut self) {
        self.flush();
    }
}
