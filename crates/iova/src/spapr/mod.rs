//! The sPAPR TCE IOMMU of IBM Power machines (pseries), as VFIO exposes it
//! (`VFIO_SPAPR_TCE_IOMMU`, "v1", and `VFIO_SPAPR_TCE_v2_IOMMU`, "v2").
//!
//! It is not a type1 container with another aperture. A sPAPR container translates
//! only inside **DMA windows**: a default 32-bit window (`[0, 1 GiB)` on QEMU's pseries
//! machine by default) and, with v2, windows the user creates and removes
//! (`VFIO_IOMMU_SPAPR_TCE_CREATE`/`REMOVE`, "dynamic DMA windows", DDW). Each window
//! is a table of TCEs (translation control entries) of one page size; a map writes
//! one TCE per page and simply replaces what was there. v2 maps only memory the
//! process pre-registered (`VFIO_IOMMU_SPAPR_REGISTER_MEMORY`); v1 needs
//! `VFIO_IOMMU_ENABLE` first.
//!
//! [`SpaprContainer`] simulates one container with one attached group, answering
//! like Linux 6.12 on a QEMU 7.2 pseries guest, errno by errno and including the
//! positive return value `1` the kernel gives for an unaligned IOVA. Every rule is
//! written down, with the kernel source it comes from, in `docs/semantics.md`
//! ("sPAPR TCE"). [`SpaprSpace`] is the interface it shares with the real backend
//! (`iova_linux::spapr`), so that traces ([`trace`]) run on both and are compared.
//!
//! Two kernel defects are not simulated but refused ([`KernelDefect`]): a map that
//! starts inside a window and runs past its end oopses a v2 kernel and leaks the
//! hypervisor's `H_PARAMETER` as errno 4 under v1. The simulation answers such a map
//! with [`SpaprError::Defect`] naming the bug, and the real backend never sends it.
//!
//! ```
//! use iova::spapr::{SpaprConfig, SpaprContainer, SpaprSpace, SpaprVersion};
//! use iova::dma::{Access, Errno};
//!
//! let mut c = SpaprContainer::new(SpaprConfig::qemu_pseries(SpaprVersion::V2));
//! let buf = 0x7fff_0000_0000;
//! // v2: nothing maps before memory is registered.
//! assert_eq!(c.tce_map(0, buf, 0x1_0000, Access::RW).map_err(|e| e.errno()), Err(Errno::EPERM));
//! c.register_memory(buf, 0x100_0000)?;
//! assert_eq!(c.tce_map(0, buf, 0x1_0000, Access::RW), Ok(0));
//! // Outside every window: ENXIO. An unaligned IOVA: the kernel returns 1.
//! assert_eq!(c.tce_map(0x4000_0000, buf, 0x1000, Access::RW).map_err(|e| e.errno()), Err(Errno::ENXIO));
//! assert_eq!(c.tce_map(0x800, buf, 0x1000, Access::RW), Ok(1));
//! // A 64-bit window lands where QEMU puts it.
//! assert_eq!(c.create_window(12, 1 << 32, 1), Ok(0x0800_0000_0000_0000));
//! # Ok::<(), Errno>(())
//! ```

pub mod trace;

use std::collections::BTreeMap;
use std::fmt;

use crate::dma::{Access, DmaInfo, DmaSpace, Errno, InfoError, MapError, UnmapError};
use crate::kernel::KernelVersion;
use crate::range::{IovaRange, IovaSet};

/// Which sPAPR interface the container was set up with (`VFIO_SET_IOMMU` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpaprVersion {
    /// `VFIO_SPAPR_TCE_IOMMU` (2): ENABLE/DISABLE, pins each page at map time, only
    /// the default window.
    V1,
    /// `VFIO_SPAPR_TCE_v2_IOMMU` (7): memory pre-registration and dynamic windows
    /// (what QEMU uses).
    #[default]
    V2,
}

impl SpaprVersion {
    /// The name used on command lines and in reports: `spapr-v1`, `spapr-v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpaprVersion::V1 => "spapr-v1",
            SpaprVersion::V2 => "spapr-v2",
        }
    }

    /// Parses `spapr-v1` / `spapr-v2`.
    pub fn from_name(name: &str) -> Option<SpaprVersion> {
        match name {
            "spapr-v1" => Some(SpaprVersion::V1),
            "spapr-v2" => Some(SpaprVersion::V2),
            _ => None,
        }
    }

    /// The `VFIO_SET_IOMMU` argument.
    pub fn iommu_type(self) -> u32 {
        match self {
            SpaprVersion::V1 => 2,
            SpaprVersion::V2 => 7,
        }
    }
}

/// The dynamic-DMA-window part of `VFIO_IOMMU_SPAPR_TCE_GET_INFO` (present when the
/// `VFIO_IOMMU_SPAPR_INFO_DDW` flag is set: v2 on a platform with DDW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DdwInfo {
    /// Supported TCE page sizes (bit n set = 2^n bytes).
    pub pgsizes: u64,
    /// How many windows the group may have at once (the default one included).
    pub max_dynamic_windows_supported: u32,
    /// Maximum TCE table levels.
    pub levels: u32,
}

/// What `VFIO_IOMMU_SPAPR_TCE_GET_INFO` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SpaprInfo {
    /// First IOVA of the default 32-bit window.
    pub dma32_window_start: u32,
    /// Size of the default 32-bit window in bytes.
    pub dma32_window_size: u32,
    /// Dynamic DMA windows, when supported and asked for (v2).
    pub ddw: Option<DdwInfo>,
}

impl SpaprInfo {
    /// The name of the file, in a captured sysfs-shaped tree's group directory, that
    /// holds a saved GET_INFO answer ([`SpaprInfo::to_saved`]). The kernel has no such
    /// file: on a live host the windows come from VFIO only.
    pub const SAVED_FILE: &'static str = "iova-spapr-tce-info";

    /// One line: `dma32_window_start=0x0 dma32_window_size=0x40000000` and, with
    /// DDW, ` pgsizes=0x1211000 max_dynamic_windows_supported=2 levels=1`.
    pub fn to_saved(&self) -> String {
        let mut s = format!(
            "dma32_window_start={:#x} dma32_window_size={:#x}",
            self.dma32_window_start, self.dma32_window_size
        );
        if let Some(d) = self.ddw {
            s.push_str(&format!(
                " pgsizes={:#x} max_dynamic_windows_supported={} levels={}",
                d.pgsizes, d.max_dynamic_windows_supported, d.levels
            ));
        }
        s
    }

    /// Parses [`SpaprInfo::to_saved`]'s form (numbers in the project's grammar).
    pub fn parse_saved(text: &str) -> Option<SpaprInfo> {
        let mut start = None;
        let mut size = None;
        let (mut pg, mut win, mut lv) = (None, None, None);
        for word in text.split_whitespace() {
            let (k, v) = word.split_once('=')?;
            let n = crate::units::parse_number(v).ok()?;
            let slot = match k {
                "dma32_window_start" => &mut start,
                "dma32_window_size" => &mut size,
                "pgsizes" => &mut pg,
                "max_dynamic_windows_supported" => &mut win,
                "levels" => &mut lv,
                _ => return None,
            };
            if slot.replace(n).is_some() {
                return None;
            }
        }
        let ddw = match (pg, win, lv) {
            (None, None, None) => None,
            (Some(p), Some(w), Some(l)) => Some(DdwInfo {
                pgsizes: p,
                max_dynamic_windows_supported: u32::try_from(w).ok()?,
                levels: u32::try_from(l).ok()?,
            }),
            _ => return None,
        };
        Some(SpaprInfo {
            dma32_window_start: u32::try_from(start?).ok()?,
            dma32_window_size: u32::try_from(size?).ok()?,
            ddw,
        })
    }
}

/// One DMA window as the container has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First IOVA.
    pub start: u64,
    /// TCE page size is 2^`page_shift` bytes.
    pub page_shift: u32,
    /// Number of TCEs (pages).
    pub pages: u64,
    /// Whether this is the default 32-bit window (created at the first map, or
    /// re-created in its shape), as opposed to a dynamic window the hypervisor made.
    pub is_default: bool,
}

impl Window {
    /// The window's bytes, or `None` when it has no pages.
    pub fn range(&self) -> Option<IovaRange> {
        let bytes = u128::from(self.pages) << self.page_shift;
        let last = u128::from(self.start)
            .checked_add(bytes)?
            .checked_sub(1)
            .filter(|l| *l >= u128::from(self.start))?;
        IovaRange::new(self.start, u64::try_from(last).ok()?).ok()
    }

    /// Whether `iova` lies in the window (the kernel's `tce_iommu_find_table` test).
    pub fn contains(&self, iova: u64) -> bool {
        let entry = iova >> self.page_shift;
        let first = self.start >> self.page_shift;
        entry >= first && u128::from(entry) < u128::from(first) + u128::from(self.pages)
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> u64 {
        1u64.checked_shl(self.page_shift).unwrap_or(0)
    }
}

/// The platform and kernel a [`SpaprContainer`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SpaprConfig {
    /// v1 or v2.
    pub version: SpaprVersion,
    /// Default window start (`tce32_start`).
    pub dma32_start: u32,
    /// Default window size (`tce32_size`; QEMU's `dma_win_size`, 1 GiB by default).
    pub dma32_size: u32,
    /// Whether the platform offers dynamic windows (`max_dynamic_windows_supported`
    /// non-zero); the windows, page sizes and levels below then apply.
    pub ddw: Option<DdwInfo>,
    /// Where the hypervisor places a dynamic window (QEMU's `dma64_win_addr`).
    pub dma64_start: u64,
    /// The hypervisor's "largest available block" in TCEs (`ibm,query-pe-dma-window`).
    pub largest_block: u64,
    /// The kernel's page shift (12 for Debian's `powerpc64le` flavour, 16 for `-64k`):
    /// registration granularity, and the largest TCE that anonymous memory backs.
    pub host_page_shift: u32,
    /// Simulation budget: most TCEs that may be set at once (ENOMEM beyond it).
    pub max_entries: u64,
    /// The kernel release whose answers to give (default: [`KernelVersion::NEWEST`]);
    /// stable updates changed the unmap check
    /// ([`KernelVersion::spapr_unmap_checks_range`]).
    pub kernel: KernelVersion,
}

impl SpaprConfig {
    /// QEMU 7.2 `-M pseries` defaults with Debian's 6.12 `powerpc64le` kernel: the
    /// 32-bit window `[0, 1 GiB)`, 4K/64K/2M/16M TCEs, 2 windows, 1 level, dynamic
    /// windows at `0x0800_0000_0000_0000`, 4 KiB kernel pages.
    pub fn qemu_pseries(version: SpaprVersion) -> SpaprConfig {
        SpaprConfig {
            version,
            dma32_start: 0,
            dma32_size: 0x4000_0000,
            ddw: Some(DdwInfo {
                pgsizes: 0x0121_1000,
                max_dynamic_windows_supported: 2,
                levels: 1,
            }),
            dma64_start: 0x0800_0000_0000_0000,
            largest_block: 1 << 37,
            host_page_shift: 12,
            max_entries: 1 << 22,
            kernel: KernelVersion::NEWEST,
        }
    }

    /// The same configuration answering as kernel release `kernel`.
    pub fn kernel(mut self, kernel: KernelVersion) -> SpaprConfig {
        self.kernel = kernel;
        self
    }

    /// The same platform, but with the windows a host reported.
    pub fn from_info(version: SpaprVersion, info: &SpaprInfo) -> SpaprConfig {
        let mut c = SpaprConfig::qemu_pseries(version);
        c.dma32_start = info.dma32_window_start;
        c.dma32_size = info.dma32_window_size;
        c.ddw = info.ddw;
        c
    }

    /// What GET_INFO reports for this configuration (no DDW part under v1).
    pub fn info(&self) -> SpaprInfo {
        SpaprInfo {
            dma32_window_start: self.dma32_start,
            dma32_window_size: self.dma32_size,
            ddw: match self.version {
                SpaprVersion::V1 => None,
                SpaprVersion::V2 => self.ddw,
            },
        }
    }

    fn pgsizes(&self) -> u64 {
        // Without DDW the platform still does 4 KiB TCEs (the default window).
        self.ddw.map_or(1 << 12, |d| d.pgsizes | (1 << 12))
    }

    fn slots(&self) -> usize {
        // IOMMU_TABLE_GROUP_MAX_TABLES
        2
    }
}

/// A kernel defect a request would trigger; the simulation refuses such requests and
/// the real backend never sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelDefect {
    /// v2: a map starting inside a window and running past its end writes the
    /// userspace-address cache beyond the table, and the rollback in
    /// `tce_iommu_unuse_page_v2` oopses the kernel.
    MapPastWindowEndOops,
    /// v1: the same map fails in `H_PUT_TCE`, and the hypervisor's `H_PARAMETER` (-4)
    /// reaches user space as errno 4 (EINTR).
    MapPastWindowEndHParameter,
}

impl KernelDefect {
    /// A short name of the bug (what traces print after `refused:`).
    pub fn name(self) -> &'static str {
        match self {
            KernelDefect::MapPastWindowEndOops => "kernel-oops-tce_iommu_unuse_page_v2",
            KernelDefect::MapPastWindowEndHParameter => "kernel-leaks-H_PARAMETER-as-errno-4",
        }
    }

    /// What the real kernel would do.
    pub fn description(self) -> &'static str {
        match self {
            KernelDefect::MapPastWindowEndOops => {
                "a v2 MAP_DMA that starts inside a DMA window and runs past its end \
                 oopses the kernel in tce_iommu_unuse_page_v2 (drivers/vfio/vfio_iommu_spapr_tce.c)"
            }
            KernelDefect::MapPastWindowEndHParameter => {
                "a v1 MAP_DMA that starts inside a DMA window and runs past its end \
                 returns the hypervisor's H_PARAMETER (-4) as errno 4 (EINTR)"
            }
        }
    }
}

impl fmt::Display for KernelDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a sPAPR map or unmap did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SpaprError {
    /// The kernel's answer.
    #[error("{0}")]
    Kernel(Errno),
    /// Refused: the kernel would misbehave (see [`KernelDefect`]).
    #[error("refused, the kernel has a bug here: {}", .0.description())]
    Defect(KernelDefect),
}

impl SpaprError {
    /// The errno (a refused request reports EINVAL: it was not sent).
    pub fn errno(&self) -> Errno {
        match self {
            SpaprError::Kernel(e) => *e,
            SpaprError::Defect(_) => Errno::EINVAL,
        }
    }
}

impl From<Errno> for SpaprError {
    fn from(e: Errno) -> Self {
        SpaprError::Kernel(e)
    }
}

/// A sPAPR map's answer as a [`DmaSpace`] answer, for the simulation and the real
/// backend alike: a positive return (the IOVA is not aligned to the TCE page; nothing
/// was mapped) is a misalignment, EFAULT a bad host address, anything else the errno.
pub fn map_answer(r: Result<u32, SpaprError>) -> Result<(), MapError> {
    match r {
        Ok(0) => Ok(()),
        Ok(_) => Err(MapError::Misaligned { page_size: 4096 }),
        Err(SpaprError::Kernel(Errno::EFAULT)) => Err(MapError::BadAddress),
        Err(e) => Err(MapError::Kernel(e.errno())),
    }
}

/// A sPAPR unmap's answer as a [`DmaSpace`] answer: the kernel does not say how much it
/// unmapped, so a success counts the `size` asked for; a positive return is a
/// misalignment.
pub fn unmap_answer(size: u64, r: Result<u32, SpaprError>) -> Result<u128, UnmapError> {
    match r {
        Ok(0) => Ok(u128::from(size)),
        Ok(_) => Err(UnmapError::Misaligned { page_size: 4096 }),
        Err(e) => Err(UnmapError::Kernel(e.errno())),
    }
}

/// The sPAPR container interface shared by the simulation and the real backend.
///
/// `tce_map` and `tce_unmap` return the ioctl's non-negative return value: 0, or 1
/// when the IOVA is not aligned to the window's TCE page size (the kernel's
/// parameter check is a `||` of two checks, so it returns `true`, not an errno).
pub trait SpaprSpace {
    /// `VFIO_IOMMU_SPAPR_TCE_GET_INFO`.
    fn tce_info(&self) -> Result<SpaprInfo, Errno>;
    /// `VFIO_IOMMU_MAP_DMA`: one TCE per page of `size` bytes at `iova`.
    fn tce_map(
        &mut self,
        iova: u64,
        vaddr: u64,
        size: u64,
        access: Access,
    ) -> Result<u32, SpaprError>;
    /// `VFIO_IOMMU_UNMAP_DMA`: clears the TCEs of `[iova, iova + size)` in the
    /// window holding `iova`.
    fn tce_unmap(&mut self, iova: u64, size: u64) -> Result<u32, SpaprError>;
    /// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY` (v2).
    fn register_memory(&mut self, vaddr: u64, size: u64) -> Result<(), Errno>;
    /// `VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY` (v2).
    fn unregister_memory(&mut self, vaddr: u64, size: u64) -> Result<(), Errno>;
    /// `VFIO_IOMMU_ENABLE` (v1).
    fn enable(&mut self) -> Result<(), Errno>;
    /// `VFIO_IOMMU_DISABLE` (v1).
    fn disable(&mut self) -> Result<(), Errno>;
    /// `VFIO_IOMMU_SPAPR_TCE_CREATE`: returns the window's start address.
    fn create_window(&mut self, page_shift: u32, size: u64, levels: u32) -> Result<u64, Errno>;
    /// `VFIO_IOMMU_SPAPR_TCE_REMOVE`: removes the window holding `addr`.
    fn remove_window(&mut self, addr: u64) -> Result<(), Errno>;
}

/// One TCE: the user address it points at and the access it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tce {
    /// User virtual address of the page.
    pub vaddr: u64,
    /// Device access.
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    win: Window,
    /// Absolute entry number (IOVA >> page_shift) → TCE.
    tces: BTreeMap<u64, Tce>,
}

/// A pre-registered memory region (`mm_iommu_table_group_mem_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// First user address.
    pub vaddr: u64,
    /// Bytes.
    pub size: u64,
    /// Largest TCE page shift this memory backs (`mem->pageshift`).
    pub page_shift: u32,
    /// TCEs pointing into it.
    pub mapped: u64,
    /// Whether this container lists it (`prereg_list`); an unregister while TCEs
    /// still point into the region drops it from the container but the region
    /// stays in the process.
    pub listed: bool,
}

impl Region {
    fn end(&self) -> u128 {
        u128::from(self.vaddr) + u128::from(self.size)
    }
}

/// A simulated sPAPR TCE container with one group attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaprContainer {
    config: SpaprConfig,
    slots: Vec<Option<Slot>>,
    def_window_pending: bool,
    enabled: bool,
    mm_set: bool,
    /// Keyed by first user address.
    regions: BTreeMap<u64, Region>,
    poisoned: bool,
    entries: u64,
    warnings: Vec<String>,
}

impl SpaprContainer {
    /// A container right after `VFIO_GROUP_SET_CONTAINER` + `VFIO_SET_IOMMU`: the
    /// default window is pending (created by the first map, unmap or create).
    pub fn new(config: SpaprConfig) -> SpaprContainer {
        SpaprContainer {
            config,
            slots: vec![None; config.slots()],
            def_window_pending: true,
            enabled: false,
            mm_set: false,
            regions: BTreeMap::new(),
            poisoned: false,
            entries: 0,
            warnings: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SpaprConfig {
        &self.config
    }

    /// The windows that exist, by table slot (the pending default window is not
    /// listed until something creates it).
    pub fn windows(&self) -> Vec<Window> {
        self.slots.iter().flatten().map(|s| s.win).collect()
    }

    /// Whether the default window is still to be created.
    pub fn default_window_pending(&self) -> bool {
        self.def_window_pending
    }

    /// Whether a failed window creation put the device on the kernel's failed-DDW
    /// list (every later create is ENODEV until the guest reboots).
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// Whether a create with these parameters would poison the device (a real run
    /// should avoid it).
    pub fn create_would_poison(&self, page_shift: u32, size: u64, levels: u32) -> bool {
        let mut c = self.clone();
        let _ = c.create_window(page_shift, size, levels);
        !self.poisoned && c.poisoned
    }

    /// Whether a map with these parameters would hit a [`KernelDefect`].
    pub fn map_hits_defect(&self, iova: u64, vaddr: u64, size: u64, access: Access) -> bool {
        let mut c = self.clone();
        matches!(
            c.tce_map(iova, vaddr, size, access),
            Err(SpaprError::Defect(_))
        )
    }

    /// The registered regions.
    pub fn regions(&self) -> Vec<Region> {
        self.regions.values().copied().collect()
    }

    /// The TCE at `iova` (the page holding it), if one is set.
    pub fn tce(&self, iova: u64) -> Option<Tce> {
        let slot = self.find(iova)?;
        let s = self.slots.get(slot)?.as_ref()?;
        s.tces.get(&(iova >> s.win.page_shift)).copied()
    }

    /// How many TCEs are set, over all windows.
    pub fn tce_count(&self) -> u64 {
        self.entries
    }

    /// Translates a device access at `iova` to the user address it reaches.
    pub fn translate(&self, iova: u64, needed: Access) -> Option<u64> {
        let slot = self.find(iova)?;
        let s = self.slots.get(slot)?.as_ref()?;
        let t = s.tces.get(&(iova >> s.win.page_shift))?;
        if !t.access.allows(needed) {
            return None;
        }
        let mask = s.win.page_size().checked_sub(1)?;
        t.vaddr.checked_add(iova & mask)
    }

    /// Warnings given so far (requests refused because of a kernel defect), oldest
    /// first; taking them empties the list.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn v2(&self) -> bool {
        self.config.version == SpaprVersion::V2
    }

    fn host_page(&self) -> u64 {
        1u64.checked_shl(self.config.host_page_shift).unwrap_or(0)
    }

    fn find(&self, iova: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.win.contains(iova)))
    }

    fn ddw_exists(&self) -> bool {
        self.slots.iter().flatten().any(|s| !s.win.is_default)
    }

    /// `tce_iommu_create_default_window`.
    fn ensure_default(&mut self) -> Result<(), Errno> {
        if !self.def_window_pending {
            return Ok(());
        }
        self.create_inner(12, u64::from(self.config.dma32_size), 1)?;
        self.def_window_pending = false;
        Ok(())
    }

    /// `tce_iommu_create_window` + pseries `spapr_tce_create_table`.
    fn create_inner(&mut self, page_shift: u32, size: u64, levels: u32) -> Result<u64, Errno> {
        let num = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Errno::ENOSPC)?;
        let pgsizes = self.config.pgsizes();
        if page_shift >= 64 || pgsizes & (1u64 << page_shift) == 0 {
            return Err(Errno::EINVAL);
        }
        // spapr_tce_get_table_size: 0 (EINVAL) for a window smaller than one page
        // of TCEs; multi-level tables get a non-zero placeholder.
        if levels <= 1 {
            let table = page_shift
                .checked_sub(3)
                .and_then(|s| size.checked_shr(s))
                .unwrap_or(0);
            if table == 0 {
                return Err(Errno::EINVAL);
            }
        }
        if !size.is_power_of_two() || levels > 1 {
            return Err(Errno::EINVAL);
        }
        let window_shift = size.trailing_zeros();
        if self.poisoned {
            return Err(Errno::ENODEV);
        }
        if num == 0 {
            let default_shaped = size <= u64::from(self.config.dma32_size) && page_shift == 12;
            if self.ddw_exists() {
                // "64-bit window already present" / "would destroy the 64-bit window"
                return Err(Errno::EPERM);
            }
            if default_shaped {
                let win = Window {
                    start: u64::from(self.config.dma32_start),
                    page_shift: 12,
                    pages: size >> 12,
                    is_default: true,
                };
                return Ok(self.install(num, win));
            }
        }
        let ddw_ok = self
            .config
            .ddw
            .is_some_and(|d| d.max_dynamic_windows_supported >= 2);
        if window_shift >= page_shift {
            let pages = 1u64 << (window_shift - page_shift);
            if ddw_ok && pages > self.config.largest_block {
                return Err(Errno::EINVAL);
            }
        }
        // The hypervisor keeps the default window counted, so one dynamic window
        // fits; ibm,create-pe-dma-window failing puts the PE on failed_ddw_pdn_list.
        if !ddw_ok || window_shift < page_shift || self.ddw_exists() {
            self.poisoned = true;
            return Err(Errno::ENODEV);
        }
        let win = Window {
            start: self.config.dma64_start,
            page_shift,
            pages: 1u64 << (window_shift - page_shift),
            is_default: false,
        };
        if win.range().is_none() {
            self.poisoned = true;
            return Err(Errno::ENODEV);
        }
        Ok(self.install(num, win))
    }

    fn install(&mut self, num: usize, win: Window) -> u64 {
        if let Some(s) = self.slots.get_mut(num) {
            *s = Some(Slot {
                win,
                tces: BTreeMap::new(),
            });
        }
        win.start
    }

    /// The region listed in the process that holds `[ua, ua + len)`.
    fn lookup(&self, ua: u64, len: u64) -> Option<u64> {
        let (_, r) = self.regions.range(..=ua).next_back()?;
        (u128::from(ua) + u128::from(len) <= r.end()).then_some(r.vaddr)
    }

    /// Drops the TCE at `entry` of `slot` (`tce_iommu_clear` for one entry).
    fn clear_entry(&mut self, slot: usize, entry: u64) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        let shift = s.win.page_shift;
        if let Some(old) = s.tces.remove(&entry) {
            self.entries = self.entries.saturating_sub(1);
            self.unuse(old.vaddr, shift);
        }
    }

    fn unuse(&mut self, vaddr: u64, shift: u32) {
        if !self.v2() {
            return;
        }
        let len = 1u64.checked_shl(shift).unwrap_or(0);
        if let Some(key) = self.lookup(vaddr, len)
            && let Some(r) = self.regions.get_mut(&key)
        {
            r.mapped = r.mapped.saturating_sub(1);
        }
    }

    fn clear_range(&mut self, slot: usize, first: u64, pages: u64) {
        let Some(Some(s)) = self.slots.get(slot) else {
            return;
        };
        let last = first.saturating_add(pages.saturating_sub(1));
        if pages == 0 {
            return;
        }
        let keys: Vec<u64> = s.tces.range(first..=last).map(|(k, _)| *k).collect();
        for k in keys {
            self.clear_entry(slot, k);
        }
    }
}

impl SpaprSpace for SpaprContainer {
    fn tce_info(&self) -> Result<SpaprInfo, Errno> {
        Ok(self.config.info())
    }

    fn tce_map(
        &mut self,
        iova: u64,
        vaddr: u64,
        size: u64,
        access: Access,
    ) -> Result<u32, SpaprError> {
        if !self.enabled {
            return Err(Errno::EPERM.into());
        }
        self.ensure_default()?;
        let slot = self.find(iova).ok_or(Errno::ENXIO)?;
        let win = self
            .slots
            .get(slot)
            .and_then(|s| s.as_ref())
            .map(|s| s.win)
            .ok_or(Errno::ENXIO)?;
        let mask = win.page_size().wrapping_sub(1);
        if size & mask != 0 || vaddr & mask != 0 {
            return Err(Errno::EINVAL.into());
        }
        if access == Access::NONE {
            return Err(Errno::EINVAL.into());
        }
        if iova & mask != 0 {
            return Ok(1);
        }
        let pages = size >> win.page_shift;
        if pages == 0 {
            return Ok(0);
        }
        let entry = iova >> win.page_shift;
        let win_end = (win.start >> win.page_shift).saturating_add(win.pages);
        if u128::from(entry) + u128::from(pages) > u128::from(win_end) {
            let d = if self.v2() {
                KernelDefect::MapPastWindowEndOops
            } else {
                KernelDefect::MapPastWindowEndHParameter
            };
            self.warnings.push(format!(
                "refused map iova={iova:#x} size={size:#x}: {}",
                d.description()
            ));
            return Err(SpaprError::Defect(d));
        }
        if self.entries.saturating_add(pages) > self.config.max_entries {
            return Err(Errno::ENOMEM.into());
        }
        let psize = win.page_size();
        for i in 0..pages {
            let ua = u128::from(vaddr) + u128::from(i) * u128::from(psize);
            let ua = u64::try_from(ua).ok();
            if self.v2() {
                let region = ua.and_then(|ua| self.lookup(ua, psize));
                let ok = region
                    .and_then(|k| self.regions.get(&k))
                    .is_some_and(|r| r.page_shift >= win.page_shift);
                let (Some(key), Some(ua), true) = (region, ua, ok) else {
                    // tce_iommu_prereg_ua_to_hpa failed: roll back what was written.
                    self.clear_range(slot, entry, i);
                    return Err(Errno::EINVAL.into());
                };
                if let Some(r) = self.regions.get_mut(&key) {
                    r.mapped = r.mapped.saturating_add(1);
                }
                self.put(slot, entry.saturating_add(i), ua, access);
            } else {
                let Some(ua) = ua else {
                    self.clear_range(slot, entry, i);
                    return Err(Errno::EFAULT.into());
                };
                self.put(slot, entry.saturating_add(i), ua, access);
            }
        }
        Ok(0)
    }

    fn tce_unmap(&mut self, iova: u64, size: u64) -> Result<u32, SpaprError> {
        if !self.enabled {
            return Err(Errno::EPERM.into());
        }
        self.ensure_default()?;
        let slot = self.find(iova).ok_or(Errno::ENXIO)?;
        let win = self
            .slots
            .get(slot)
            .and_then(|s| s.as_ref())
            .map(|s| s.win)
            .ok_or(Errno::ENXIO)?;
        let mask = win.page_size().wrapping_sub(1);
        if size & mask != 0 {
            return Err(Errno::EINVAL.into());
        }
        if iova & mask != 0 {
            return Ok(1);
        }
        let first = iova >> win.page_shift;
        let pages = size >> win.page_shift;
        if self.config.kernel.spapr_unmap_checks_range() {
            // iommu_tce_check_ioba with the unmap's page count: a range past the end of
            // the window that holds its start is refused (the `||` of
            // iommu_tce_clear_param_check makes that 1) before anything is cleared.
            let offset = win.start >> win.page_shift;
            if u128::from(first.saturating_sub(offset)) + u128::from(pages) > u128::from(win.pages)
            {
                return Ok(1);
            }
        }
        // Before that check (kernels without "powerpc/iommu: Fix the overflow validation
        // in iommu_tce_check_ioba"), entries past the window's end fail in the
        // hypervisor and are skipped.
        self.clear_range(slot, first, pages);
        Ok(0)
    }

    fn register_memory(&mut self, vaddr: u64, size: u64) -> Result<(), Errno> {
        if !self.v2() {
            return Err(Errno::ENOTTY);
        }
        self.mm_set = true;
        let pmask = self.host_page().wrapping_sub(1);
        if vaddr & pmask != 0 || size & pmask != 0 || vaddr.checked_add(size).is_none() {
            return Err(Errno::EINVAL);
        }
        if let Some(r) = self.regions.get_mut(&vaddr)
            && r.size == size
        {
            if r.listed {
                return Err(Errno::EBUSY);
            }
            r.listed = true;
            self.enabled = true;
            return Ok(());
        }
        if size == 0 {
            // vzalloc(0) of the page array fails.
            return Err(Errno::ENOMEM);
        }
        let end = u128::from(vaddr) + u128::from(size);
        if self
            .regions
            .values()
            .any(|r| u128::from(r.vaddr) < end && u128::from(vaddr) < r.end())
        {
            return Err(Errno::EINVAL);
        }
        let page_shift = (vaddr | size)
            .trailing_zeros()
            .min(self.config.host_page_shift);
        self.regions.insert(
            vaddr,
            Region {
                vaddr,
                size,
                page_shift,
                mapped: 0,
                listed: true,
            },
        );
        self.enabled = true;
        Ok(())
    }

    fn unregister_memory(&mut self, vaddr: u64, size: u64) -> Result<(), Errno> {
        if !self.v2() {
            return Err(Errno::ENOTTY);
        }
        if !self.mm_set {
            return Err(Errno::EPERM);
        }
        let pmask = self.host_page().wrapping_sub(1);
        if vaddr & pmask != 0 || size & pmask != 0 {
            return Err(Errno::EINVAL);
        }
        let Some(r) = self.regions.get_mut(&vaddr).filter(|r| r.size == size) else {
            return Err(Errno::ENOENT);
        };
        if !r.listed {
            return Err(Errno::ENOENT);
        }
        // The container drops it; the region itself goes only when no TCE points
        // into it (mm_iommu_put's EBUSY is ignored by the caller).
        r.listed = false;
        if r.mapped == 0 {
            self.regions.remove(&vaddr);
        }
        Ok(())
    }

    fn enable(&mut self) -> Result<(), Errno> {
        if self.v2() {
            return Err(Errno::ENOTTY);
        }
        if self.enabled {
            return Err(Errno::EBUSY);
        }
        if self.config.dma32_size == 0 {
            return Err(Errno::EPERM);
        }
        self.mm_set = true;
        self.enabled = true;
        Ok(())
    }

    fn disable(&mut self) -> Result<(), Errno> {
        if self.v2() {
            return Err(Errno::ENOTTY);
        }
        self.enabled = false;
        Ok(())
    }

    fn create_window(&mut self, page_shift: u32, size: u64, levels: u32) -> Result<u64, Errno> {
        if !self.v2() {
            return Err(Errno::ENOTTY);
        }
        self.mm_set = true;
        self.ensure_default()?;
        self.create_inner(page_shift, size, levels)
    }

    fn remove_window(&mut self, addr: u64) -> Result<(), Errno> {
        if !self.v2() {
            return Err(Errno::ENOTTY);
        }
        self.mm_set = true;
        if self.def_window_pending && addr == 0 {
            self.def_window_pending = false;
            return Ok(());
        }
        let slot = self.find(addr).ok_or(Errno::EINVAL)?;
        let keys: Vec<u64> = self
            .slots
            .get(slot)
            .and_then(|s| s.as_ref())
            .map(|s| s.tces.keys().copied().collect())
            .unwrap_or_default();
        for k in keys {
            self.clear_entry(slot, k);
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
        Ok(())
    }
}

impl SpaprContainer {
    fn put(&mut self, slot: usize, entry: u64, vaddr: u64, access: Access) {
        let shift = match self.slots.get(slot) {
            Some(Some(s)) => s.win.page_shift,
            _ => return,
        };
        let old = match self.slots.get_mut(slot) {
            Some(Some(s)) => s.tces.insert(entry, Tce { vaddr, access }),
            _ => return,
        };
        match old {
            Some(o) => self.unuse(o.vaddr, shift),
            None => self.entries = self.entries.saturating_add(1),
        }
    }
}

/// The windows as IOVA ranges (the pending default window included).
fn window_set(c: &SpaprContainer) -> IovaSet {
    let mut ranges: Vec<IovaRange> = c.windows().iter().filter_map(Window::range).collect();
    if c.def_window_pending
        && let Some(size) = u64::from(c.config.dma32_size).checked_sub(1)
        && let Ok(r) = IovaRange::new(
            u64::from(c.config.dma32_start),
            u64::from(c.config.dma32_start).saturating_add(size),
        )
    {
        ranges.push(r);
    }
    let mut set = IovaSet::new();
    for r in ranges {
        set.insert(r);
    }
    set
}

/// The generic DMA interface over a sPAPR container: maps and unmaps are the TCE
/// ones; the kernel's positive return 1 (unaligned IOVA) becomes
/// [`MapError::Misaligned`] / [`UnmapError::Misaligned`]; a successful unmap reports
/// the bytes asked for (the kernel reports nothing); `unmap_all` is EINVAL (sPAPR has
/// no unmap-all flag).
impl DmaSpace for SpaprContainer {
    fn info(&self) -> Result<DmaInfo, InfoError> {
        let mut page_sizes = 0u64;
        for w in self.windows() {
            page_sizes |= w.page_size();
        }
        if self.def_window_pending {
            page_sizes |= 1 << 12;
        }
        Ok(DmaInfo {
            iova_ranges: window_set(self),
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
        map_answer(self.tce_map(iova, host_addr, size, access))
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<u128, UnmapError> {
        unmap_answer(size, self.tce_unmap(iova, size))
    }

    fn unmap_all(&mut self) -> Result<u128, UnmapError> {
        Err(UnmapError::BadFlags)
    }
}

#[cfg(test)]
mod tests;
