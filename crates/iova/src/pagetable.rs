//! A software IO page table: the radix tree an IOMMU walks to translate a device's DMA
//! address (IOVA) into a host address.
//!
//! The shape of the tree comes from the page-size bitmap of the address space:
//!
//! - the smallest page size is the *granule*; a table holds one granule worth of 8-byte
//!   entries, so each level resolves `log2(granule) - 3` bits (9 bits for 4 KiB, as on
//!   x86 and most ARM setups; 13 bits for the 64 KiB ARM granule);
//! - level 0 holds granule-sized leaves; level `l` covers `granule << (bits * l)` bytes
//!   per entry (4 KiB, 2 MiB, 1 GiB, 512 GiB, ... or 64 KiB, 512 MiB, 4 TiB, ...), and an
//!   entry there may be a leaf (a large page) only when the bitmap has that size;
//! - there are as many levels as the address width needs, at least 4 for a 4 KiB
//!   granule (x86 4-level; 5 levels for up to 57 bits) and at least 3 for larger
//!   granules; a width of 64 bits gets the levels needed to reach `2^64 - 1`.
//!
//! [`PageTable::map`] always uses the largest page the alignment of *both* the IOVA and
//! the host address allows (and that fits in what is left to map), like the kernel's
//! `iommu_map()`. [`PageTable::translate`] walks the tree as hardware does and reports a
//! [`Fault`] for unmapped addresses or missing permission. [`PageTable::unmap`] frees
//! tables that become empty, so [`PageTable::table_count`] and
//! [`PageTable::leaf_counts`] show exactly what is in use.
//!
//! Tables live in one flat arena (`Vec<u64>`) and are referred to by index; freed
//! tables are recycled. Failed operations change nothing.
//!
//! ```
//! use iova::dma::Access;
//! use iova::pagetable::{Fault, PageTable};
//!
//! let mut pt = PageTable::new(0x4020_1000, 48)?; // 4K | 2M | 1G, 48-bit IOVAs
//! pt.map(0x4000_0000, 0x1_4000_0000, 0x4000_0000, Access::RW)?; // one 1 GiB leaf
//! assert_eq!(pt.translate(0x4000_1234, Access::READ), Ok(0x1_4000_1234));
//! assert_eq!(pt.leaf_count(1 << 30), 1);
//! assert_eq!(
//!     pt.translate(0x1000, Access::READ),
//!     Err(Fault::Unmapped { iova: 0x1000 })
//! );
//! # Ok::<(), iova::pagetable::PageTableError>(())
//! ```

use crate::dma::Access;

/// The most levels any table can have (a 4 KiB granule reaching 2^64 needs 6).
pub const MAX_LEVELS: usize = 8;

const VALID: u64 = 1;
const TABLE: u64 = 1 << 1;
const READ: u64 = 1 << 2;
const WRITE: u64 = 1 << 3;
const FLAG_BITS: u32 = 4;

/// A DMA access the page table refused, as an IOMMU reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Fault {
    /// Nothing is mapped at `iova` (or it is beyond the table's reach).
    #[error("DMA fault: nothing mapped at {iova:#x}")]
    Unmapped {
        /// The faulting address.
        iova: u64,
    },
    /// The mapping at `iova` does not allow the access.
    #[error("DMA fault: {iova:#x} does not allow {} access", needed.as_str())]
    Permission {
        /// The faulting address.
        iova: u64,
        /// The access that was asked for.
        needed: Access,
    },
}

/// Why a page-table operation was refused. Nothing changes when one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageTableError {
    /// The page-size bitmap is empty or its smallest page is below 4 KiB or above
    /// 2^32 bytes.
    #[error("unusable page-size bitmap {0:#x}")]
    BadPageSizes(u64),
    /// The address width is 0 or above 64.
    #[error("unusable address width {0} bits")]
    BadWidth(u32),
    /// IOVA, host address or size is not a multiple of the granule, or the size is 0.
    #[error(
        "iova {iova:#x}, host {host:#x} or size {size:#x} not aligned to the granule {granule:#x}"
    )]
    Misaligned {
        /// The IOVA given.
        iova: u64,
        /// The host address given.
        host: u64,
        /// The size given.
        size: u64,
        /// The granule.
        granule: u64,
    },
    /// The IOVA range or the host range runs past 2^64-1.
    #[error("range at {0:#x} runs past 2^64-1")]
    Wraps(u64),
    /// The IOVA range is beyond what the table can translate.
    #[error("iova range ending at {0:#x} is beyond the table's reach")]
    OutOfReach(u64),
    /// Something is already mapped in the range.
    #[error("{0:#x} is already mapped")]
    AlreadyMapped(u64),
    /// A leaf would be split by the unmap (it starts before or ends after the range).
    #[error("the unmap would split the page at {0:#x}")]
    SplitsPage(u64),
    /// No access requested (a mapping must allow read or write).
    #[error("a mapping must allow read or write")]
    NoAccess,
    /// The map could need more tables than [`TABLE_BUDGET_BYTES`] allows (a huge range
    /// that alignment forces into small pages). Nothing is changed.
    #[error("the map could need {needed} more tables, over the budget of {budget} tables")]
    OverBudget {
        /// An upper bound of the tables the map could allocate.
        needed: u64,
        /// The most tables the budget allows in all.
        budget: u64,
    },
}

/// The most memory the tables of one [`PageTable`] may take: 512 MiB, enough to map
/// 256 GiB in 4 KiB pages (or far more in 2 MiB / 1 GiB pages). A map that could go
/// beyond it is refused up front rather than exhausting the process's memory; the
/// container answers it with ENOMEM, as the kernel does when it cannot allocate page
/// tables or pin that much memory.
pub const TABLE_BUDGET_BYTES: u64 = 512 << 20;

/// A radix IO page table. See the [module documentation](self).
#[derive(Clone, PartialEq, Eq)]
pub struct PageTable {
    /// log2 of the granule (12 for 4 KiB).
    gshift: u32,
    /// Bits resolved per level.
    bits: u32,
    /// Number of levels (the root is level `levels - 1`).
    levels: u32,
    /// Bit `l` set: level `l` may hold leaves.
    leaf_levels: u32,
    /// The highest IOVA the table can translate.
    max_iova: u64,
    /// A 4-level table of 4 KiB granules (x86 4-level, ARM 4K with 48 bits): the shape
    /// whose one-page maps take [`PageTable::map_4k_fast`].
    four_level_4k: bool,
    /// Every table's entries, `1 << bits` per table; table 0 is the root.
    entries: Vec<u64>,
    /// Number of non-empty entries of each table.
    live: Vec<u32>,
    /// Whether each table slot is in use.
    used: Vec<bool>,
    /// Table slots free for reuse.
    free: Vec<u32>,
    /// Number of leaves at each level.
    leaves: [u64; MAX_LEVELS],
    /// Bytes currently mapped.
    mapped: u128,
}

impl std::fmt::Debug for PageTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTable")
            .field("granule", &self.granule())
            .field("levels", &self.levels)
            .field("tables", &self.table_count())
            .field("leaves", &&self.leaves[..self.levels as usize])
            .field("mapped", &self.mapped)
            .finish()
    }
}

impl PageTable {
    /// A table for the given page-size bitmap covering IOVAs below `2^address_bits`.
    pub fn new(page_sizes: u64, address_bits: u32) -> Result<PageTable, PageTableError> {
        if page_sizes == 0 {
            return Err(PageTableError::BadPageSizes(page_sizes));
        }
        let gshift = page_sizes.trailing_zeros();
        if !(12..=32).contains(&gshift) {
            return Err(PageTableError::BadPageSizes(page_sizes));
        }
        if address_bits == 0 || address_bits > 64 {
            return Err(PageTableError::BadWidth(address_bits));
        }
        let bits = gshift - 3;
        let min_levels = if gshift == 12 { 4 } else { 3 };
        let needed = address_bits.saturating_sub(gshift).div_ceil(bits);
        let levels = needed.max(min_levels);
        if levels as usize > MAX_LEVELS {
            return Err(PageTableError::BadWidth(address_bits));
        }
        // A table holds 2^(gshift - 3) eight-byte entries: it is as large as the
        // granule. The chain of tables one map needs (one per level) must fit in a
        // quarter of the budget: a smallest page of 1 GiB would make the root table
        // alone 1 GiB (found by fuzzing host profiles: an out-of-memory abort). Every
        // granule up to 32 MiB passes (the 2 MiB a type1 container's common page
        // sizes can come to included).
        let chain = u64::from(levels).saturating_mul(1u64 << gshift);
        if chain > TABLE_BUDGET_BYTES / 4 {
            return Err(PageTableError::BadPageSizes(page_sizes));
        }
        let mut leaf_levels = 0u32;
        for l in 0..levels {
            let shift = gshift + bits * l;
            if shift < 64 && page_sizes & (1u64 << shift) != 0 {
                leaf_levels |= 1 << l;
            }
        }
        let reach = gshift + bits * levels;
        let max_iova = if reach >= 64 {
            u64::MAX
        } else {
            (1u64 << reach) - 1
        };
        let mut pt = PageTable {
            gshift,
            bits,
            levels,
            leaf_levels,
            max_iova,
            four_level_4k: levels == 4 && gshift == 12,
            entries: Vec::new(),
            live: Vec::new(),
            used: Vec::new(),
            free: Vec::new(),
            leaves: [0; MAX_LEVELS],
            mapped: 0,
        };
        pt.alloc_table();
        Ok(pt)
    }

    /// An x86-style table: 4 KiB, 2 MiB and 1 GiB pages; 4 levels up to 48 bits, 5 up
    /// to 57, 6 beyond.
    pub fn x86(address_bits: u32) -> Result<PageTable, PageTableError> {
        PageTable::new(crate::host::PGSIZES_4K_2M_1G, address_bits)
    }

    /// An ARM 64 KiB-granule table: 64 KiB and 512 MiB pages, 13 bits per level.
    pub fn granule_64k(address_bits: u32) -> Result<PageTable, PageTableError> {
        PageTable::new(crate::host::PGSIZES_64K_512M, address_bits)
    }

    /// The smallest page (the unit of alignment).
    pub fn granule(&self) -> u64 {
        1u64 << self.gshift
    }

    /// Number of levels.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// Bits resolved per level.
    pub fn bits_per_level(&self) -> u32 {
        self.bits
    }

    /// The page sizes this table maps with, as a bitmap (leaf levels only).
    pub fn page_sizes(&self) -> u64 {
        let mut out = 0;
        for l in 0..self.levels {
            if self.leaf_levels & (1 << l) != 0 {
                out |= 1u64 << self.shift(l);
            }
        }
        out
    }

    /// The highest IOVA the table can translate.
    #[inline]
    pub fn max_iova(&self) -> u64 {
        self.max_iova
    }

    /// Number of tables in use, the root included.
    pub fn table_count(&self) -> usize {
        self.used.len() - self.free.len()
    }

    /// Number of leaf entries of the given page size (0 for sizes the table does not
    /// use).
    pub fn leaf_count(&self, page_size: u64) -> u64 {
        (0..self.levels)
            .find(|&l| 1u64.checked_shl(self.shift(l)) == Some(page_size))
            .map_or(0, |l| self.leaves[l as usize])
    }

    /// `(page size, number of leaves)` for every level that may hold leaves, smallest
    /// first.
    pub fn leaf_counts(&self) -> Vec<(u64, u64)> {
        (0..self.levels)
            .filter(|l| self.leaf_levels & (1 << l) != 0)
            .map(|l| (1u64 << self.shift(l), self.leaves[l as usize]))
            .collect()
    }

    /// Bytes currently mapped.
    pub fn mapped_bytes(&self) -> u128 {
        self.mapped
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.mapped == 0
    }

    #[inline]
    fn shift(&self, level: u32) -> u32 {
        self.gshift + self.bits * level
    }

    #[inline]
    fn index(&self, iova: u64, level: u32) -> usize {
        let shift = self.shift(level);
        let mask = (1u64 << self.bits) - 1;
        // The shift is below 64 for every level that exists (see `new`) except possibly
        // the root of a table reaching past 2^64, where checked_shr gives 0.
        usize::try_from(iova.checked_shr(shift).unwrap_or(0) & mask).unwrap_or(0)
    }

    #[inline]
    fn table_len(&self) -> usize {
        1usize << self.bits
    }

    /// Refuses a map of `size` bytes that could take the tables past
    /// [`TABLE_BUDGET_BYTES`]. The leaves can be no smaller than the largest leaf size
    /// that `iova`, `host` and `size` are all multiples of, so tables are needed from
    /// that level up; below the root, a range of `size` bytes touches at most
    /// `size / span + 2` tables of a level whose tables each cover `span` bytes.
    fn check_budget(&self, iova: u64, host: u64, size: u64) -> Result<(), PageTableError> {
        let table_bytes = (1u64 << self.bits) * 8;
        let budget = TABLE_BUDGET_BYTES / table_bytes;
        let align = iova | host | size;
        let lowest = (0..self.levels)
            .rev()
            .find(|&l| {
                let s = self.shift(l);
                self.leaf_levels & (1 << l) != 0 && s < 64 && align & ((1u64 << s) - 1) == 0
            })
            .unwrap_or(0);
        let mut needed: u64 = 0;
        for l in lowest..self.levels.saturating_sub(1) {
            let span_shift = self.shift(l) + self.bits;
            let per_level = if span_shift >= 64 {
                0
            } else {
                size >> span_shift
            };
            needed = needed.saturating_add(per_level).saturating_add(2);
        }
        let live = u64::try_from(self.table_count()).unwrap_or(u64::MAX);
        if live.saturating_add(needed) > budget {
            return Err(PageTableError::OverBudget { needed, budget });
        }
        Ok(())
    }

    /// Refuses to add `count` tables when that would take the tables past
    /// [`TABLE_BUDGET_BYTES`]: the single-granule path's check, two subtractions on the
    /// rare walk that creates tables.
    #[inline]
    fn check_new_tables(&self, count: u32) -> Result<(), PageTableError> {
        let table_bytes = (1u64 << self.bits) * 8;
        let budget = TABLE_BUDGET_BYTES / table_bytes;
        let live = u64::try_from(self.table_count()).unwrap_or(u64::MAX);
        let needed = u64::from(count);
        if live.saturating_add(needed) > budget {
            return Err(PageTableError::OverBudget { needed, budget });
        }
        Ok(())
    }

    fn alloc_table(&mut self) -> u32 {
        let len = self.table_len();
        if let Some(t) = self.free.pop() {
            let base = t as usize * len;
            self.entries[base..base + len].fill(0);
            self.live[t as usize] = 0;
            self.used[t as usize] = true;
            t
        } else {
            let t = u32::try_from(self.used.len()).unwrap_or(u32::MAX);
            self.entries.resize(self.entries.len() + len, 0);
            self.live.push(0);
            self.used.push(true);
            t
        }
    }

    fn free_table(&mut self, t: u32) {
        self.used[t as usize] = false;
        self.free.push(t);
    }

    fn child(entry: u64) -> Option<u32> {
        (entry & (VALID | TABLE) == (VALID | TABLE))
            .then(|| u32::try_from(entry >> FLAG_BITS).unwrap_or(u32::MAX))
    }

    /// Translates a device access at `iova` into a host address.
    #[inline]
    pub fn translate(&self, iova: u64, access: Access) -> Result<u64, Fault> {
        // The common shapes get a walk whose trip count the compiler knows (unrolled).
        match (self.levels, self.gshift) {
            (4, 12) => self.translate_in::<4, 12>(iova, access),
            (5, 12) => self.translate_in::<5, 12>(iova, access),
            _ => self.translate_in::<0, 0>(iova, access),
        }
    }

    /// [`PageTable::translate`] for a table of `LEVELS` levels and a granule of
    /// `2^GSHIFT` bytes (0: read at run time).
    #[inline(always)]
    fn translate_in<const LEVELS: u32, const GSHIFT: u32>(
        &self,
        iova: u64,
        access: Access,
    ) -> Result<u64, Fault> {
        if iova > self.max_iova {
            return Err(Fault::Unmapped { iova });
        }
        let levels = if LEVELS == 0 { self.levels } else { LEVELS };
        let gshift = if GSHIFT == 0 { self.gshift } else { GSHIFT };
        let bits = gshift - 3;
        let need = if access.read { READ } else { 0 } | if access.write { WRITE } else { 0 };
        let mask = (1u64 << bits) - 1;
        let mut base = 0usize;
        for level in (0..levels).rev() {
            let shift = gshift + bits * level;
            // Only the root's shift may reach 64 (large granules): no bits left there.
            let here = if level == levels - 1 {
                iova.checked_shr(shift).unwrap_or(0)
            } else {
                iova.wrapping_shr(shift)
            };
            let i = usize::try_from(here & mask).unwrap_or(usize::MAX);
            let e = self.entries.get(base.wrapping_add(i)).copied().unwrap_or(0);
            if e & VALID == 0 {
                break;
            }
            if e & TABLE == 0 {
                if e & need != need {
                    return Err(Fault::Permission {
                        iova,
                        needed: access,
                    });
                }
                // Leaves exist only where the page size fits in 64 bits.
                let offset_mask = 1u64.checked_shl(shift).map_or(u64::MAX, |p| p - 1);
                let page = e & !((1u64 << FLAG_BITS) - 1) & !offset_mask;
                return Ok(page | (iova & offset_mask));
            }
            base = usize::try_from(e >> FLAG_BITS).unwrap_or(usize::MAX) << bits;
        }
        Err(Fault::Unmapped { iova })
    }

    #[inline]
    fn check_range(&self, iova: u64, host: u64, size: u64) -> Result<u64, PageTableError> {
        let g = self.granule() - 1;
        let h = host;
        if size == 0 || (iova | h | size) & g != 0 {
            return Err(PageTableError::Misaligned {
                iova,
                host: h,
                size,
                granule: self.granule(),
            });
        }
        let last = iova
            .checked_add(size - 1)
            .ok_or(PageTableError::Wraps(iova))?;
        if h.checked_add(size - 1).is_none() {
            return Err(PageTableError::Wraps(h));
        }
        if last > self.max_iova() {
            return Err(PageTableError::OutOfReach(last));
        }
        Ok(last)
    }

    /// The first mapped address in `[first, last]`, if any.
    fn first_mapped(&self, first: u64, last: u64) -> Option<u64> {
        self.first_mapped_in(0, self.levels - 1, 0, first, last)
    }

    fn first_mapped_in(
        &self,
        table: usize,
        level: u32,
        base: u64,
        first: u64,
        last: u64,
    ) -> Option<u64> {
        let len = self.table_len();
        let shift = self.shift(level);
        let lo = self.index(first.max(base), level);
        let span_last = if shift + self.bits >= 64 {
            u64::MAX
        } else {
            base | ((1u64 << (shift + self.bits)) - 1)
        };
        let hi = self.index(last.min(span_last), level);
        for i in lo..=hi {
            let e = self.entries[table * len + i];
            if e & VALID == 0 {
                continue;
            }
            let ebase = base | ((i as u64).checked_shl(shift).unwrap_or(0));
            match Self::child(e) {
                Some(c) => {
                    if let Some(a) = self.first_mapped_in(c as usize, level - 1, ebase, first, last)
                    {
                        return Some(a);
                    }
                }
                None => return Some(ebase.max(first)),
            }
        }
        None
    }

    /// Maps `size` bytes at `iova` to `host` with the given access, using the largest
    /// pages the alignment of both addresses allows. Fails, changing nothing, when an
    /// argument is not granule-aligned, a range wraps or is out of reach, or anything
    /// in the range is already mapped.
    #[inline]
    pub fn map(
        &mut self,
        iova: u64,
        host: u64,
        size: u64,
        access: Access,
    ) -> Result<(), PageTableError> {
        if size == 1 << 12 && self.four_level_4k && self.map_4k_fast(iova, host, access) {
            return Ok(());
        }
        self.map_checked(iova, host, size, access)
    }

    /// The common single map, in the shape most tables have (4 levels of 4 KiB tables):
    /// one 4 KiB page where every table on the way already exists. Checks what
    /// [`PageTable::map`] checks (alignment, reach, no wrap, some access, nothing
    /// mapped there) and returns true when it mapped the page; false, having changed
    /// nothing, for anything else (an error, or tables to create), which the general
    /// path then answers. Like the kernel's iommupt, it reads each level's entry once
    /// and writes the leaf and the counters, nothing more.
    #[inline(always)]
    fn map_4k_fast(&mut self, iova: u64, host: u64, access: Access) -> bool {
        const LOW: u64 = (1 << 12) - 1;
        // `iova` aligned and at most `max_iova` (which ends a 4 KiB page): the page
        // fits. An aligned `host` cannot wrap: `host + 0xfff <= 2^64 - 1`.
        if (iova | host) & LOW != 0 || iova > self.max_iova || !(access.read || access.write) {
            return false;
        }
        let leaf = host
            | VALID
            | if access.read { READ } else { 0 }
            | if access.write { WRITE } else { 0 };
        let Some((table, idx)) = self.leaf_slot_4k(iova) else {
            return false;
        };
        let (Some(pte), Some(live)) = (self.entries.get_mut(idx), self.live.get_mut(table)) else {
            return false;
        };
        if *pte & VALID != 0 {
            return false;
        }
        *pte = leaf;
        *live += 1;
        self.leaves[0] += 1;
        self.mapped += 1 << 12;
        true
    }

    /// [`PageTable::map`] in full: every shape, every error.
    #[inline(never)]
    fn map_checked(
        &mut self,
        iova: u64,
        host: u64,
        size: u64,
        access: Access,
    ) -> Result<(), PageTableError> {
        if !access.read && !access.write {
            return Err(PageTableError::NoAccess);
        }
        let last = self.check_range(iova, host, size)?;
        let perm =
            VALID | if access.read { READ } else { 0 } | if access.write { WRITE } else { 0 };
        if size == self.granule() {
            return self.map_one(iova, host | perm);
        }
        self.map_range(iova, last, host, size, perm)
    }

    /// [`PageTable::map`] of more than one granule, arguments checked.
    #[inline(never)]
    fn map_range(
        &mut self,
        iova: u64,
        last: u64,
        host: u64,
        size: u64,
        perm: u64,
    ) -> Result<(), PageTableError> {
        if let Some(a) = self.first_mapped(iova, last) {
            return Err(PageTableError::AlreadyMapped(a));
        }
        self.check_budget(iova, host, size)?;
        let len = self.table_len();
        // When the map needs granule leaves throughout (no level-1 leaves, or the two
        // addresses can never align to one), it needs about one level-0 table per
        // level-1 page: reserve them at once rather than growing the arena by doubling.
        let level1 = 1u64 << self.shift(1);
        if self.leaf_levels & 2 == 0 || (iova ^ host) & (level1 - 1) != 0 {
            let tables = (size / level1).saturating_add(u64::from(self.levels));
            let tables = usize::try_from(tables.min(1 << 16)).unwrap_or(1 << 16);
            let _ = self.entries.try_reserve(tables * len);
            let _ = self.live.try_reserve(tables);
            let _ = self.used.try_reserve(tables);
        }
        let mut iova = iova;
        let mut host = host;
        // Bytes left to map, minus one (so that 2^64 - granule ... fits).
        let mut left = size - 1;
        loop {
            // Largest leaf level allowed by alignment and remaining size.
            let align = iova | host;
            let mut level = 0;
            for l in (1..self.levels).rev() {
                if self.leaf_levels & (1 << l) == 0 {
                    continue;
                }
                let s = self.shift(l);
                if s >= 64 {
                    continue;
                }
                let psz_m1 = (1u64 << s) - 1;
                if align & psz_m1 == 0 && left >= psz_m1 {
                    level = l;
                    break;
                }
            }
            // Walk to the table at `level`, creating tables.
            let mut table = 0usize;
            let mut l = self.levels - 1;
            while l > level {
                let idx = table * len + self.index(iova, l);
                let e = self.entries[idx];
                table = match Self::child(e) {
                    Some(c) => c as usize,
                    None => {
                        let c = self.alloc_table();
                        self.entries[idx] = (u64::from(c) << FLAG_BITS) | VALID | TABLE;
                        self.live[table] += 1;
                        c as usize
                    }
                };
                l -= 1;
            }
            // Fill consecutive entries of this table: as many pages of this size as are
            // left, up to the end of the table. A larger page can only become possible
            // where the IOVA crosses into the next table (the table spans exactly one
            // page of the level above), so that is where the next walk starts.
            let s = self.shift(level);
            let psz_m1 = (1u64 << s) - 1;
            let i = self.index(iova, level);
            // The level was chosen so that at least one page fits: `left >= psz - 1`.
            let pages_left = usize::try_from(((left - psz_m1) >> s) + 1).unwrap_or(usize::MAX);
            let n = (len - i).min(pages_left);
            let start = table * len + i;
            let psz = psz_m1 + 1;
            let mut leaf = host | perm;
            for e in &mut self.entries[start..start + n] {
                *e = leaf;
                leaf = leaf.wrapping_add(psz);
            }
            // n <= len <= 2^29 entries per table.
            let n64 = u64::try_from(n).unwrap_or(u64::MAX);
            self.live[table] += u32::try_from(n).unwrap_or(u32::MAX);
            self.leaves[level as usize] += n64;
            let bytes = n64 << s;
            self.mapped += u128::from(bytes);
            // `left + 1` bytes were left; `bytes` of them are now mapped.
            if bytes - 1 == left {
                return Ok(());
            }
            left -= bytes;
            iova += bytes;
            host += bytes;
        }
    }

    /// Maps the single granule at `iova` with the leaf entry `leaf`, in one walk
    /// from the root that checks each level as it goes: an empty entry above the leaf
    /// level means nothing is mapped below it, so the missing tables are created and
    /// cannot meet a conflict; a leaf or a non-empty entry on the way is refused before
    /// anything changes.
    #[inline]
    fn map_one(&mut self, iova: u64, leaf: u64) -> Result<(), PageTableError> {
        // The common shapes get a walk whose trip count the compiler knows (unrolled).
        match (self.levels, self.gshift) {
            (4, 12) => self.map_one_in::<4, 12>(iova, leaf),
            (5, 12) => self.map_one_in::<5, 12>(iova, leaf),
            _ => self.map_one_in::<0, 0>(iova, leaf),
        }
    }

    /// [`PageTable::map_one`] for a table of `LEVELS` levels and a granule of
    /// `2^GSHIFT` bytes (0: read at run time).
    #[inline(always)]
    fn map_one_in<const LEVELS: u32, const GSHIFT: u32>(
        &mut self,
        iova: u64,
        leaf: u64,
    ) -> Result<(), PageTableError> {
        let levels = if LEVELS == 0 { self.levels } else { LEVELS };
        let gshift = if GSHIFT == 0 { self.gshift } else { GSHIFT };
        let bits = gshift - 3;
        let mask = (1u64 << bits) - 1;
        let mut table = 0usize;
        for level in (1..levels).rev() {
            // Only the root's shift may reach 64 (see `translate`).
            let shift = gshift + bits * level;
            let bits_here = if level == levels - 1 {
                iova.checked_shr(shift).unwrap_or(0)
            } else {
                iova.wrapping_shr(shift)
            };
            let i = usize::try_from(bits_here & mask).unwrap_or(0);
            let idx = (table << bits) + i;
            let e = self.entries[idx];
            if e & VALID == 0 {
                // Nothing below: build the chain of tables down to level 0, within the
                // budget (this path must hold it as `map_range` does).
                self.check_new_tables(level)?;
                let mut idx = idx;
                for l in (0..level).rev() {
                    let c = self.alloc_table();
                    self.entries[idx] = (u64::from(c) << FLAG_BITS) | VALID | TABLE;
                    self.live[table] += 1;
                    table = c as usize;
                    let i =
                        usize::try_from(iova.wrapping_shr(gshift + bits * l) & mask).unwrap_or(0);
                    idx = (table << bits) + i;
                }
                self.put_leaf(table, idx, leaf);
                return Ok(());
            }
            if e & TABLE == 0 {
                // A larger page covers `iova`.
                return Err(PageTableError::AlreadyMapped(iova));
            }
            table = usize::try_from(e >> FLAG_BITS).unwrap_or(usize::MAX);
        }
        let i = usize::try_from(iova.wrapping_shr(gshift) & mask).unwrap_or(0);
        let idx = (table << bits) + i;
        if self.entries[idx] & VALID != 0 {
            return Err(PageTableError::AlreadyMapped(iova));
        }
        self.put_leaf(table, idx, leaf);
        Ok(())
    }

    #[inline(always)]
    fn put_leaf(&mut self, table: usize, idx: usize, leaf: u64) {
        self.entries[idx] = leaf;
        self.live[table] += 1;
        self.leaves[0] += 1;
        self.mapped += u128::from(self.granule());
    }

    /// Unmaps every page in `[iova, iova + size - 1]`; returns the bytes that were
    /// mapped there. Fails, changing nothing, when the range is misaligned, wraps or
    /// would split a page.
    #[inline]
    pub fn unmap(&mut self, iova: u64, size: u64) -> Result<u64, PageTableError> {
        if size == 1 << 12 && self.four_level_4k && self.unmap_4k_fast(iova) {
            return Ok(1 << 12);
        }
        self.unmap_checked(iova, size)
    }

    /// The common single unmap in a 4-level table of 4 KiB tables: `iova` is a mapped
    /// 4 KiB page and its leaf table keeps other entries (no table is freed). Clears
    /// the leaf and the counters and returns true; false, having changed nothing, for
    /// anything else, which the general path then answers.
    /// The lean paths' walk of a 4-level table down to the last-level table of `iova`:
    /// its table number and the index of `iova`'s entry, when every level above holds a
    /// table; `None` sends the caller to the full path.
    #[inline(always)]
    fn leaf_slot_4k(&self, iova: u64) -> Option<(usize, usize)> {
        let slot = |shift: u32| usize::try_from((iova >> shift) & 511).unwrap_or(0);
        let mut table = 0usize;
        for shift in [39u32, 30, 21] {
            let e = *self.entries.get((table << 9) | slot(shift))?;
            if e & (VALID | TABLE) != VALID | TABLE {
                return None;
            }
            table = usize::try_from(e >> FLAG_BITS).unwrap_or(usize::MAX >> 9);
        }
        Some((table, (table << 9) | slot(12)))
    }

    #[inline(always)]
    fn unmap_4k_fast(&mut self, iova: u64) -> bool {
        if iova & ((1 << 12) - 1) != 0 || iova > self.max_iova {
            return false;
        }
        let Some((table, idx)) = self.leaf_slot_4k(iova) else {
            return false;
        };
        let (Some(pte), Some(live)) = (self.entries.get_mut(idx), self.live.get_mut(table)) else {
            return false;
        };
        // A level-0 entry is always a leaf; the last one of its table takes the path
        // that frees tables.
        if *pte & VALID == 0 || *live < 2 {
            return false;
        }
        *pte = 0;
        *live -= 1;
        self.leaves[0] -= 1;
        self.mapped -= 1 << 12;
        true
    }

    /// [`PageTable::unmap`] in full: every shape, every error.
    #[inline(never)]
    fn unmap_checked(&mut self, iova: u64, size: u64) -> Result<u64, PageTableError> {
        let g = self.granule() - 1;
        if size == 0 || (iova | size) & g != 0 {
            return Err(PageTableError::Misaligned {
                iova,
                host: 0,
                size,
                granule: self.granule(),
            });
        }
        let last = iova
            .checked_add(size - 1)
            .ok_or(PageTableError::Wraps(iova))?;
        if iova > self.max_iova() {
            return Ok(0);
        }
        let last = last.min(self.max_iova());
        if let Some(bytes) = self.unmap_one(iova, last) {
            return Ok(bytes);
        }
        if let Some((first, _)) = self.leaf_at(iova) {
            if first != iova {
                return Err(PageTableError::SplitsPage(first));
            }
        }
        if let Some((first, leaf_last)) = self.leaf_at(last) {
            if leaf_last != last {
                return Err(PageTableError::SplitsPage(first));
            }
        }
        let before = self.mapped;
        self.unmap_in(0, self.levels - 1, 0, iova, last);
        Ok(u64::try_from(before - self.mapped).unwrap_or(u64::MAX))
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        let len = self.table_len();
        self.entries.truncate(len);
        self.entries.fill(0);
        self.live.truncate(1);
        self.live[0] = 0;
        self.used.truncate(1);
        self.free.clear();
        self.leaves = [0; MAX_LEVELS];
        self.mapped = 0;
    }

    /// The common case of an unmap: `[iova, last]` is exactly one leaf. Walks from the
    /// root once, clears the leaf and frees the tables it leaves empty, bottom up; the
    /// bytes unmapped. `None` (nothing changed) for any other shape of range.
    #[inline]
    fn unmap_one(&mut self, iova: u64, last: u64) -> Option<u64> {
        let len = self.table_len();
        // path[l]: the index in `entries` of the entry used at level l.
        let mut path = [0usize; MAX_LEVELS];
        let mut table = 0usize;
        let mut level = self.levels;
        while level > 0 {
            level -= 1;
            let idx = table * len + self.index(iova, level);
            let e = self.entries[idx];
            if e & VALID == 0 {
                return None;
            }
            if e & TABLE != 0 {
                path[level as usize] = idx;
                table = usize::try_from(e >> FLAG_BITS).unwrap_or(usize::MAX);
                continue;
            }
            let m = 1u64.checked_shl(self.shift(level))?.wrapping_sub(1);
            if iova & m != 0 || iova | m != last {
                return None;
            }
            self.entries[idx] = 0;
            self.live[table] -= 1;
            self.leaves[level as usize] -= 1;
            self.mapped -= u128::from(m) + 1;
            // Free the tables this leaves empty, bottom up (never the root).
            while table != 0 && self.live[table] == 0 {
                self.free_table(u32::try_from(table).unwrap_or(u32::MAX));
                level += 1;
                let up = path[level as usize];
                self.entries[up] = 0;
                table = up / len;
                self.live[table] -= 1;
            }
            return Some(m + 1);
        }
        None
    }

    /// The leaf containing `iova`: its first and last address.
    fn leaf_at(&self, iova: u64) -> Option<(u64, u64)> {
        let len = self.table_len();
        let mut table = 0usize;
        let mut level = self.levels;
        while level > 0 {
            level -= 1;
            let e = self.entries[table * len + self.index(iova, level)];
            if e & VALID == 0 {
                return None;
            }
            match Self::child(e) {
                Some(c) => table = usize::try_from(c).unwrap_or(0),
                None => {
                    let m = (1u64 << self.shift(level)) - 1;
                    return Some((iova & !m, iova | m));
                }
            }
        }
        None
    }

    fn unmap_in(&mut self, table: usize, level: u32, base: u64, first: u64, last: u64) {
        let len = self.table_len();
        let shift = self.shift(level);
        let span_last = if shift + self.bits >= 64 {
            u64::MAX
        } else {
            base | ((1u64 << (shift + self.bits)) - 1)
        };
        let lo = self.index(first.max(base), level);
        let hi = self.index(last.min(span_last), level);
        for i in lo..=hi {
            let e = self.entries[table * len + i];
            if e & VALID == 0 {
                continue;
            }
            match Self::child(e) {
                Some(c) => {
                    let ebase = base | ((i as u64).checked_shl(shift).unwrap_or(0));
                    self.unmap_in(c as usize, level - 1, ebase, first, last);
                    if self.live[c as usize] == 0 {
                        self.free_table(c);
                        self.entries[table * len + i] = 0;
                        self.live[table] -= 1;
                    }
                }
                None => {
                    self.entries[table * len + i] = 0;
                    self.live[table] -= 1;
                    self.leaves[level as usize] -= 1;
                    self.mapped -= 1u128 << shift;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let pt = PageTable::x86(48).unwrap();
        assert_eq!(
            (pt.levels(), pt.bits_per_level(), pt.granule()),
            (4, 9, 0x1000)
        );
        assert_eq!(pt.max_iova(), (1 << 48) - 1);
        assert_eq!(PageTable::x86(39).unwrap().levels(), 4);
        assert_eq!(PageTable::x86(57).unwrap().levels(), 5);
        assert_eq!(PageTable::x86(64).unwrap().max_iova(), u64::MAX);
        let g = PageTable::granule_64k(48).unwrap();
        assert_eq!(
            (g.levels(), g.bits_per_level(), g.granule()),
            (3, 13, 0x10000)
        );
        assert_eq!(g.page_sizes(), 0x2001_0000);
        assert!(PageTable::new(0, 48).is_err());
        assert!(PageTable::new(0x800, 48).is_err());
        assert!(PageTable::new(0x1000, 0).is_err());
    }

    #[test]
    fn largest_pages_for_alignment_of_both_addresses() {
        let mut pt = PageTable::x86(48).unwrap();
        // IOVA 1G-aligned but host only 2M-aligned: 2M pages.
        pt.map(0x4000_0000, 0x20_0000, 0x4000_0000, Access::RW)
            .unwrap();
        assert_eq!(pt.leaf_count(1 << 30), 0);
        assert_eq!(pt.leaf_count(1 << 21), 512);
        // Both 1G aligned: one 1G leaf.
        pt.map(0x8000_0000, 0x4000_0000, 0x4000_0000, Access::READ)
            .unwrap();
        assert_eq!(pt.leaf_count(1 << 30), 1);
        // 4K head, 2M middle, 4K tail.
        pt.map(0x1_001f_f000, 0x1_001f_f000, 0x20_2000, Access::WRITE)
            .unwrap();
        assert_eq!(pt.leaf_count(0x1000), 2);
        assert_eq!(pt.leaf_count(1 << 21), 513);
        assert_eq!(
            pt.translate(0x1_0020_0010, Access::WRITE),
            Ok(0x1_0020_0010)
        );
        assert_eq!(
            pt.translate(0x1_0020_0010, Access::READ),
            Err(Fault::Permission {
                iova: 0x1_0020_0010,
                needed: Access::READ
            })
        );
        assert_eq!(
            pt.translate(0x4000_0000 + 0x12_3456, Access::RW),
            Ok(0x20_0000 + 0x12_3456)
        );
    }

    #[test]
    fn unmap_frees_tables_and_refuses_splits() {
        let mut pt = PageTable::x86(48).unwrap();
        assert_eq!(pt.table_count(), 1);
        pt.map(0x20_0000, 0x20_0000, 0x20_0000, Access::RW).unwrap();
        assert_eq!(pt.table_count(), 3); // root, L2, L1 holding a 2M leaf
        let before = pt.clone();
        assert_eq!(
            pt.unmap(0x20_1000, 0x1000),
            Err(PageTableError::SplitsPage(0x20_0000))
        );
        assert_eq!(pt, before);
        assert_eq!(pt.unmap(0, 0x100_0000), Ok(0x20_0000));
        assert_eq!(pt.table_count(), 1);
        assert!(pt.is_empty());
    }

    #[test]
    fn last_page_of_the_space() {
        let mut pt = PageTable::x86(64).unwrap();
        pt.map(
            0xffff_ffff_ffff_f000,
            0xffff_ffff_ffff_f000,
            0x1000,
            Access::RW,
        )
        .unwrap();
        assert_eq!(pt.translate(u64::MAX, Access::RW), Ok(u64::MAX));
        assert_eq!(pt.unmap(0xffff_ffff_ffff_f000, 0x1000), Ok(0x1000));
        assert_eq!(pt.table_count(), 1);
        let mut small = PageTable::x86(48).unwrap();
        assert_eq!(
            small.map(1 << 48, 0, 0x1000, Access::RW),
            Err(PageTableError::OutOfReach((1 << 48) + 0xfff))
        );
        assert_eq!(
            small.translate(u64::MAX, Access::READ),
            Err(Fault::Unmapped { iova: u64::MAX })
        );
    }

    #[test]
    fn overlap_refused_without_change() {
        let mut pt = PageTable::x86(48).unwrap();
        pt.map(0x5000, 0x9000, 0x2000, Access::RW).unwrap();
        let before = pt.clone();
        assert_eq!(
            pt.map(0x0, 0x0, 0x6000, Access::RW),
            Err(PageTableError::AlreadyMapped(0x5000))
        );
        assert_eq!(pt, before);
    }

    mod single_leaf_props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        const PG: u64 = 0x1000;
        const HUGE: u64 = 512; // pages per 2 MiB

        #[derive(Debug, Clone)]
        enum Op {
            Map4k(u64, bool),
            Map2m(u64),
            Unmap4k(u64),
            Unmap2m(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            // Pages 0..2048: four 2 MiB blocks, so single pages and huge pages collide.
            prop_oneof![
                4 => (0u64..2048, any::<bool>()).prop_map(|(p, w)| Op::Map4k(p, w)),
                1 => (0u64..4).prop_map(Op::Map2m),
                4 => (0u64..2048).prop_map(Op::Unmap4k),
                1 => (0u64..4).prop_map(Op::Unmap2m),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// The one-walk paths (single-granule map, single-leaf unmap) against a
            /// model of leaves: first page -> (pages, host page, writable).
            #[test]
            fn single_leaf_paths_match_a_leaf_model(ops in proptest::collection::vec(op(), 1..120)) {
                let mut pt = PageTable::x86(48).unwrap();
                let mut leaves: BTreeMap<u64, (u64, u64, bool)> = BTreeMap::new();
                let covering = |leaves: &BTreeMap<u64, (u64, u64, bool)>, p: u64| {
                    leaves.range(..=p).next_back().filter(|(f, l)| *f + l.0 > p).map(|(f, l)| (*f, *l))
                };
                for op in ops {
                    let before = pt.clone();
                    match op {
                        Op::Map4k(p, w) => {
                            let acc = if w { Access::RW } else { Access::READ };
                            let host = 0x10_0000 + p;
                            let r = pt.map(p * PG, host * PG, PG, acc);
                            match covering(&leaves, p) {
                                Some(_) => {
                                    prop_assert_eq!(r, Err(PageTableError::AlreadyMapped(p * PG)));
                                    prop_assert!(pt == before);
                                }
                                None => {
                                    prop_assert_eq!(r, Ok(()));
                                    leaves.insert(p, (1, host, w));
                                }
                            }
                        }
                        Op::Map2m(b) => {
                            let (first, host) = (b * HUGE, 0x20_0000 + b * HUGE);
                            let r = pt.map(first * PG, host * PG, HUGE * PG, Access::RW);
                            // The lowest mapped page of the block.
                            let hit = covering(&leaves, first).map(|(f, _)| f)
                                .or_else(|| leaves.range(first..first + HUGE).next().map(|(f, _)| *f));
                            match hit {
                                Some(f) => {
                                    prop_assert_eq!(r, Err(PageTableError::AlreadyMapped(f.max(first) * PG)));
                                    prop_assert!(pt == before);
                                }
                                None => {
                                    prop_assert_eq!(r, Ok(()));
                                    leaves.insert(first, (HUGE, host, true));
                                }
                            }
                        }
                        Op::Unmap4k(p) => {
                            let r = pt.unmap(p * PG, PG);
                            match covering(&leaves, p) {
                                Some((f, (n, _, _))) if n > 1 => {
                                    prop_assert_eq!(r, Err(PageTableError::SplitsPage(f * PG)));
                                    prop_assert!(pt == before);
                                }
                                Some(_) => {
                                    prop_assert_eq!(r, Ok(PG));
                                    leaves.remove(&p);
                                }
                                None => prop_assert_eq!(r, Ok(0)),
                            }
                        }
                        Op::Unmap2m(b) => {
                            let first = b * HUGE;
                            let doomed: Vec<u64> = leaves.range(first..first + HUGE).map(|(f, _)| *f).collect();
                            let bytes: u64 = doomed.iter().map(|f| leaves[f].0 * PG).sum();
                            prop_assert_eq!(pt.unmap(first * PG, HUGE * PG), Ok(bytes));
                            for f in doomed {
                                leaves.remove(&f);
                            }
                        }
                    }
                    // Every page agrees with the model.
                    for p in (0..2048).step_by(37).chain([0, 511, 512, 2047]) {
                        let want = match covering(&leaves, p) {
                            None => Err(Fault::Unmapped { iova: p * PG + 8 }),
                            Some((f, (_, h, _))) => Ok((h + (p - f)) * PG + 8),
                        };
                        prop_assert_eq!(pt.translate(p * PG + 8, Access::READ), want);
                    }
                    let total: u64 = leaves.values().map(|l| l.0 * PG).sum();
                    prop_assert_eq!(pt.mapped_bytes(), u128::from(total));
                    // Tables: the root, one level-2 and one level-1 table once anything
                    // is mapped (all of it lies in the first 1 GiB), and one level-0
                    // table per 2 MiB block holding 4 KiB leaves: emptied tables are freed.
                    let small: std::collections::BTreeSet<u64> = leaves.iter()
                        .filter(|(_, l)| l.0 == 1).map(|(f, _)| f / HUGE).collect();
                    let want_tables = 1 + if leaves.is_empty() { 0 } else { 2 } + small.len();
                    prop_assert_eq!(pt.table_count(), want_tables);
                }
                let all = pt.unmap(0, 2048 * PG);
                prop_assert!(all.is_ok());
                prop_assert_eq!(pt.table_count(), 1);
            }
        }
    }
}
