//! The one rule for which IOMMU groups may share a container, and what they allow
//! together.
//!
//! Every question of the form "can these groups be put in one VFIO container or
//! iommufd IOAS, and which IOVAs, page sizes and alignment does it then have" is
//! answered here, once:
//!
//! - the simulated [`Container`](crate::container::Container) attaches a group by
//!   asking [`Member::isolation`], [`Member::interrupts`], [`Member::page_size`] and
//!   [`Domain::combine`] (in the kernel's order for its flavour);
//! - [`Host::group_issues`] reports the same refusals as issues a user must know;
//! - the guest check (`iova-guest`) takes its valid IOVAs, apertures, reserved regions
//!   and alignment from a [`Domain`].
//!
//! The rules (details and kernel references in `docs/semantics.md`):
//!
//! 1. **Isolation.** A group whose default domain is `identity` (`iommu=pt`) is
//!    accepted: VFIO claims the group and attaches its own translating domain, so the
//!    default domain does not decide anything; a group with a
//!    `direct` reserved region (a VT-d RMRR the firmware needs identity-mapped) is
//!    refused with EPERM unless `allow_unsafe_direct`; a group whose IOMMU unit cannot
//!    remap interrupts is refused with EPERM unless `allow_unsafe_interrupts`. An
//!    unknown interrupt-remapping capability is not a refusal (the kernel decides from
//!    facts sysfs does not show); it is reported as unknown by the host, never as "safe".
//! 2. **Aperture.** The domain's aperture is the intersection of every member's
//!    aperture; a member whose aperture is unknown counts as the whole 64-bit space
//!    and the domain says so ([`Domain::aperture_assumed`]).
//! 3. **Valid IOVAs.** The aperture minus every member's reserved regions except
//!    `direct-relaxable` ones. Empty: EINVAL.
//! 4. **Page sizes.** The AND of every member's page-size bitmap. A member whose
//!    bitmap is unknown is assumed to support the CPU page
//!    ([`Domain::page_sizes_assumed`]); a known bitmap of 0, or a combination with no
//!    size in common, is refused (EINVAL). [`Domain::page_sizes`] shows sizes below
//!    the CPU page as the CPU page, as type1's `vfio_update_pgsize_bitmap` (and the
//!    iommufd compatibility container's `GET_INFO`) do. iommufd refuses a member whose
//!    smallest page is larger than the CPU page (EINVAL, `iopt_table_add_domain`).
//! 5. **Alignment** ([`Domain::alignment`]), per flavour:
//!    - type1: the smallest page of the raised bitmap, so never below the CPU page;
//!    - iommufd and `compat-type1v2`: the largest of the members' own smallest pages
//!      (`iopt_table_add_domain`, `iopt_calculate_iova_alignment`), which may be below
//!      the CPU page (the selftests' mock domain has 2 KiB pages: alignment 0x800);
//!    - `compat-type1v1`: at least the CPU page (large pages disabled,
//!      `iopt_disable_large_pages`).
//!
//!    An IOAS with no domain at all has alignment 1 (`compat-type1v1`: the CPU page);
//!    see [`Flavour::alignment_without_domain`].
//!
//! ```
//! use iova::domain::{Domain, DomainConfig, Refusal};
//! use iova::dma::Errno;
//! use iova::host::{DomainType, Group, Host, IommuUnit, IommuVendor};
//!
//! let mut g1 = Group::new(1);
//! g1.iommu = Some("dmar0".into());
//! let mut g2 = Group::new(2);
//! g2.iommu = Some("dmar1".into());
//! let mut g3 = Group::new(3);
//! g3.iommu = Some("dmar1".into());
//! g3.domain_type = DomainType::Identity; // iommu=pt: VFIO installs its own domain
//! let mut g4 = Group::new(4);
//! g4.iommu = Some("dmar2".into());
//! let host = Host {
//!     iommus: vec![
//!         IommuUnit::new("dmar0", IommuVendor::Intel).with_address_width(48)
//!             .with_page_sizes(0x4020_1000).with_interrupt_remapping(true),
//!         IommuUnit::new("dmar1", IommuVendor::Intel).with_address_width(39)
//!             .with_page_sizes(0x20_1000).with_interrupt_remapping(true),
//!         IommuUnit::new("dmar2", IommuVendor::Intel).with_address_width(48)
//!             .with_page_sizes(0x20_1000).with_interrupt_remapping(false),
//!     ],
//!     groups: vec![g1, g2, g3, g4],
//!     ..Host::default()
//! };
//! let d = Domain::new(&host, &[1, 2], DomainConfig::default())?;
//! assert_eq!(d.aperture().last(), (1 << 39) - 1); // the narrower unit wins
//! assert_eq!(d.page_sizes(), 0x20_1000); // 4K | 2M in common
//! assert_eq!(d.alignment(), 0x1000);
//! assert!(Domain::new(&host, &[1, 3], DomainConfig::default()).is_ok());
//! let e = Domain::new(&host, &[1, 4], DomainConfig::default()).unwrap_err();
//! assert_eq!(e, Refusal::UnsafeInterrupts { group: 4 });
//! assert_eq!(e.errno(), Errno::EPERM);
//! # Ok::<(), Refusal>(())
//! ```
//!
//! [`Host::group_issues`]: crate::host::Host::group_issues

use crate::dma::Errno;
use crate::host::{DomainType, Host, ReservedKind, ReservedRegion};
use crate::range::{IovaRange, IovaSet};

/// Which kernel interface a container or domain behaves like.
///
/// One failed operation changes the container, as in the kernel: an iommufd unmap
/// whose range ends inside an area removes the whole areas below that area, then
/// answers ENOENT (`iopt_unmap_iova_range`; seen on a 6.12 kernel by `vmtest/`).
///
/// Deliberate differences from the kernel, all documented here:
/// - iommufd accepts an IOAS whose valid ranges are empty; this model refuses the
///   attach (EINVAL).
/// - iommufd has no `dma_entry_limit`; `dma_avail` is `None` there (the compatibility
///   container reports `U32_MAX`, as the kernel does).
/// - Pinning failures (EFAULT, ENOMEM) are not simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Flavour {
    /// VFIO type1, v1 interface: unmap removes whole mappings whose first IOVA lies in
    /// the range (possibly more than asked) and ignores a range starting inside one.
    Type1V1,
    /// VFIO type1, v2 interface (the default; what QEMU uses): unmaps must not split.
    #[default]
    Type1V2,
    /// iommufd IOAS: EADDRINUSE/ENOENT/EOVERFLOW flavoured answers, automatic IOVA
    /// allocation and ALLOW_IOVAS.
    Iommufd,
    /// `/dev/vfio/vfio` served by iommufd (`CONFIG_IOMMUFD_VFIO_CONTAINER`,
    /// `drivers/iommu/iommufd/vfio_compat.c`) with `VFIO_TYPE1_IOMMU`: large pages
    /// are disabled (alignment at least the CPU page) and an unmap first cuts the
    /// areas at its two ends, so it may unmap part of a mapping; iommufd's answers
    /// otherwise (but success with 0 bytes when nothing is mapped there).
    CompatType1V1,
    /// `/dev/vfio/vfio` served by iommufd with `VFIO_TYPE1v2_IOMMU`: iommufd's map and
    /// unmap behind the type1 ioctls, so an unmap that would split a mapping answers
    /// ENOENT (type1: EINVAL); an unmap of nothing succeeds with 0 bytes, as in type1.
    CompatType1V2,
}

impl Flavour {
    /// Every flavour, in the order of [`Flavour::as_str`]'s names in documentation.
    pub const ALL: [Flavour; 5] = [
        Flavour::Type1V1,
        Flavour::Type1V2,
        Flavour::Iommufd,
        Flavour::CompatType1V1,
        Flavour::CompatType1V2,
    ];

    /// Whether this is one of the type1 flavours (the `vfio_iommu_type1` driver itself).
    pub fn is_type1(self) -> bool {
        matches!(self, Flavour::Type1V1 | Flavour::Type1V2)
    }

    /// Whether iommufd's io_pagetable is underneath: the iommufd IOAS and the VFIO
    /// compatibility container.
    pub fn is_iommufd(self) -> bool {
        !self.is_type1()
    }

    /// Whether this is iommufd's VFIO compatibility container.
    pub fn is_compat(self) -> bool {
        matches!(self, Flavour::CompatType1V1 | Flavour::CompatType1V2)
    }

    /// The alignment of an IOAS with no domain attached: 1 (`iopt_init_table`), or the
    /// CPU page for `compat-type1v1` (`iopt_calculate_iova_alignment` with large pages
    /// disabled). Type1 has no such state (it answers EINVAL until a group is set).
    pub fn alignment_without_domain(self, cpu_page_size: u64) -> u64 {
        match self {
            Flavour::CompatType1V1 | Flavour::Type1V1 | Flavour::Type1V2 => cpu_page_size,
            Flavour::Iommufd | Flavour::CompatType1V2 => 1,
        }
    }

    /// The name used on command lines and in reports (`type1v2`, `iommufd`,
    /// `compat-type1v2`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Type1V1 => "type1v1",
            Flavour::Type1V2 => "type1v2",
            Flavour::Iommufd => "iommufd",
            Flavour::CompatType1V1 => "compat-type1v1",
            Flavour::CompatType1V2 => "compat-type1v2",
        }
    }

    /// The flavour named `name` (one of the [`Flavour::as_str`] names).
    pub fn from_name(name: &str) -> Option<Flavour> {
        Flavour::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// The settings a domain is judged under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DomainConfig {
    /// The interface to behave like.
    pub flavour: Flavour,
    /// The CPU page size (4096 on x86); a power of two from 4 KiB to 4 GiB.
    pub cpu_page_size: u64,
    /// Accept groups whose IOMMU cannot remap interrupts
    /// (`vfio_iommu_type1.allow_unsafe_interrupts`); unsafe: a device can then forge
    /// interrupts.
    pub allow_unsafe_interrupts: bool,
    /// Accept groups with a `direct` reserved region (a VT-d RMRR the firmware needs
    /// identity-mapped). The Intel driver refuses such devices in an unmanaged domain
    /// with EPERM ("ineligible for IOMMU domain attach due to platform RMRR
    /// requirement"); unsafe: the firmware may keep doing DMA there behind the guest.
    pub allow_unsafe_direct: bool,
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            flavour: Flavour::Type1V2,
            cpu_page_size: 4096,
            allow_unsafe_interrupts: false,
            allow_unsafe_direct: false,
        }
    }
}

impl DomainConfig {
    /// The default settings (safe, 4 KiB CPU pages) with another flavour.
    pub fn with_flavour(flavour: Flavour) -> Self {
        DomainConfig {
            flavour,
            ..DomainConfig::default()
        }
    }

    /// The same settings with another CPU page size.
    pub fn cpu_page_size(mut self, bytes: u64) -> Self {
        self.cpu_page_size = bytes;
        self
    }

    /// The same settings with the two unsafe opt-ins set as given (interrupts, direct
    /// regions).
    pub fn allow_unsafe(mut self, interrupts: bool, direct: bool) -> Self {
        self.allow_unsafe_interrupts = interrupts;
        self.allow_unsafe_direct = direct;
        self
    }

    /// Refuses a CPU page size that is not a power of two from 4 KiB to 4 GiB.
    pub fn validate(&self) -> Result<(), Refusal> {
        let cpu = self.cpu_page_size;
        if cpu.is_power_of_two() && (4096..=1 << 32).contains(&cpu) {
            Ok(())
        } else {
            Err(Refusal::BadCpuPageSize(cpu))
        }
    }
}

/// Why a group cannot join a domain, or why groups cannot share one. Each carries the
/// errno the kernel answers ([`Refusal::errno`]) and names the group and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The host has no such group.
    #[error("no IOMMU group {0} on this host")]
    NoSuchGroup(u32),
    /// The group has a `direct` reserved region (RMRR) and `allow_unsafe_direct` is off.
    #[error(
        "IOMMU group {group} has a direct (RMRR) region {range}; the device needs an identity mapping there and is refused unless unsafe direct regions are allowed"
    )]
    DirectRegion {
        /// The group.
        group: u32,
        /// The region.
        range: IovaRange,
    },
    /// The group's IOMMU cannot remap interrupts and `allow_unsafe_interrupts` is off.
    #[error(
        "IOMMU group {group} has no interrupt remapping; refused unless unsafe interrupts are allowed"
    )]
    UnsafeInterrupts {
        /// The group.
        group: u32,
    },
    /// No IOVA would be left to map (disjoint apertures, or reserved regions covering
    /// the whole aperture).
    #[error("no valid IOVA would be left with IOMMU group {group}")]
    NoValidIova {
        /// The group whose limits left nothing.
        group: u32,
    },
    /// The members have no page size in common (or a member reports none).
    #[error("IOMMU group {group}: no common page size (combined bitmap {bitmap:#x})")]
    NoCommonPageSize {
        /// The group whose bitmap left nothing.
        group: u32,
        /// The combined bitmap.
        bitmap: u64,
    },
    /// iommufd: the group's smallest IOMMU page is larger than the CPU page.
    #[error(
        "IOMMU group {group}: the smallest IOMMU page {page_size:#x} is larger than the CPU page"
    )]
    PageSizeAboveCpuPage {
        /// The group.
        group: u32,
        /// The IOMMU's smallest page.
        page_size: u64,
    },
    /// The configured CPU page size is not a power of two from 4 KiB to 4 GiB.
    #[error("bad CPU page size {0:#x}")]
    BadCpuPageSize(u64),
    /// A domain needs at least one group.
    #[error("no IOMMU group given")]
    NoGroups,
}

impl Refusal {
    /// The errno the kernel gives (or, for model-only refusals, would give).
    pub fn errno(&self) -> Errno {
        match self {
            Refusal::NoSuchGroup(_) => Errno::ENOENT,
            Refusal::UnsafeInterrupts { .. } | Refusal::DirectRegion { .. } => Errno::EPERM,
            Refusal::NoValidIova { .. }
            | Refusal::NoCommonPageSize { .. }
            | Refusal::PageSizeAboveCpuPage { .. }
            | Refusal::BadCpuPageSize(_)
            | Refusal::NoGroups => Errno::EINVAL,
        }
    }

    /// The group the refusal names, if it names one.
    pub fn group(&self) -> Option<u32> {
        match self {
            Refusal::NoSuchGroup(g)
            | Refusal::DirectRegion { group: g, .. }
            | Refusal::UnsafeInterrupts { group: g }
            | Refusal::NoValidIova { group: g }
            | Refusal::NoCommonPageSize { group: g, .. }
            | Refusal::PageSizeAboveCpuPage { group: g, .. } => Some(*g),
            Refusal::BadCpuPageSize(_) | Refusal::NoGroups => None,
        }
    }

    /// Whether the refusal is one the unsafe opt-ins can lift (direct region,
    /// interrupts): the group is unsafe to assign, not impossible.
    pub fn is_isolation(&self) -> bool {
        matches!(
            self,
            Refusal::DirectRegion { .. } | Refusal::UnsafeInterrupts { .. }
        )
    }
}

/// What one IOMMU group brings to a domain: the facts of its IOMMU unit and its
/// reserved regions, as the host knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The group.
    pub group: u32,
    /// Its default domain type.
    pub domain_type: DomainType,
    /// The IOMMU unit behind it, when known.
    pub unit: Option<String>,
    /// The unit's input address width in bits, when known.
    pub width: Option<u8>,
    /// The unit's aperture; `None` when unknown (the whole 64-bit space is assumed).
    pub aperture: Option<IovaRange>,
    /// The unit's page-size bitmap; `None` when unknown.
    pub page_sizes: Option<u64>,
    /// Whether interrupts are remapped for this group: `Some(false)` when the unit
    /// cannot or the running kernel did not enable it, `Some(true)` when the kernel
    /// shows it enabled ([`HostSettings::interrupt_remapping_active`]); `None` when
    /// unknown.
    ///
    /// [`HostSettings::interrupt_remapping_active`]: crate::host::HostSettings::interrupt_remapping_active
    pub interrupt_remapping: Option<bool>,
    /// The group's reserved regions, as the kernel reports them.
    pub reserved: Vec<ReservedRegion>,
}

impl Member {
    /// The facts of group `group` of `host`.
    pub fn of(host: &Host, group: u32) -> Result<Member, Refusal> {
        let g = host.group(group).map_err(|_| Refusal::NoSuchGroup(group))?;
        let unit = host.iommu_of_group(g);
        Ok(Member {
            group,
            domain_type: g.domain_type.clone(),
            unit: unit.map(|u| u.name.clone()),
            width: unit.and_then(|u| u.address_width),
            // sPAPR TCE: what a container can map before it creates windows is the
            // default 32-bit window VFIO reported (semantics §11).
            aperture: unit.and_then(|u| u.aperture).or_else(|| {
                g.spapr.and_then(|sp| {
                    IovaRange::from_start_size(
                        u64::from(sp.dma32_window_start),
                        u64::from(sp.dma32_window_size),
                    )
                    .ok()
                })
            }),
            page_sizes: unit.and_then(|u| u.page_sizes),
            // A unit that cannot remap does not; one that can, does when the running
            // kernel shows it enabled remapping; without that evidence it is unknown.
            interrupt_remapping: match (
                unit.and_then(|u| u.interrupt_remapping),
                host.settings.interrupt_remapping_active,
            ) {
                (Some(false), _) => Some(false),
                (_, active) => active,
            },
            reserved: g.reserved_regions.clone(),
        })
    }

    /// The aperture, or the whole 64-bit space when unknown.
    pub fn aperture_or_full(&self) -> IovaRange {
        self.aperture.unwrap_or(IovaRange::FULL)
    }

    /// The reserved IOVAs no mapping may touch (every kind but `direct-relaxable`).
    pub fn excluded(&self) -> IovaSet {
        self.reserved
            .iter()
            .filter(|r| r.kind.excludes_iova())
            .map(|r| r.range)
            .collect()
    }

    /// The IOVAs this group alone can map: its aperture minus [`Member::excluded`].
    pub fn valid(&self) -> IovaSet {
        IovaSet::from(self.aperture_or_full()).difference(&self.excluded())
    }

    /// The first `direct` (RMRR) region, if any.
    pub fn direct_region(&self) -> Option<IovaRange> {
        self.reserved
            .iter()
            .find(|r| r.kind == ReservedKind::Direct)
            .map(|r| r.range)
    }

    /// Every isolation refusal of this group under `config`, in the kernel's order
    /// (each `direct` region, interrupts). The default domain's type is not one: an
    /// `identity` group is claimed by VFIO like any other. Empty when the group is safe to
    /// assign or the opt-ins allow it.
    pub fn refusals(&self, config: &DomainConfig) -> Vec<Refusal> {
        let mut out = Vec::new();
        if !config.allow_unsafe_direct {
            out.extend(
                self.reserved
                    .iter()
                    .filter(|r| r.kind == ReservedKind::Direct)
                    .map(|r| Refusal::DirectRegion {
                        group: self.group,
                        range: r.range,
                    }),
            );
        }
        if let Err(e) = self.interrupts(config) {
            out.push(e);
        }
        out
    }

    /// The check both interfaces make before anything else: a `direct` reserved
    /// region.
    pub fn isolation(&self, config: &DomainConfig) -> Result<(), Refusal> {
        match self
            .refusals(config)
            .into_iter()
            .find(|r| !matches!(r, Refusal::UnsafeInterrupts { .. }))
        {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// Interrupt isolation: refused when the unit is known not to remap interrupts
    /// and unsafe interrupts are not allowed.
    pub fn interrupts(&self, config: &DomainConfig) -> Result<(), Refusal> {
        if self.interrupt_remapping == Some(false) && !config.allow_unsafe_interrupts {
            Err(Refusal::UnsafeInterrupts { group: self.group })
        } else {
            Ok(())
        }
    }

    /// The smallest page of this member's IOMMU, the CPU page when unknown.
    pub fn smallest_page(&self, cpu_page_size: u64) -> u64 {
        match self.page_sizes {
            Some(b) if b != 0 => 1u64 << b.trailing_zeros(),
            _ => cpu_page_size,
        }
    }

    /// iommufd only: a smallest IOMMU page above the CPU page is refused.
    pub fn page_size(&self, config: &DomainConfig) -> Result<(), Refusal> {
        if config.flavour.is_type1() {
            return Ok(());
        }
        match self.page_sizes {
            Some(b) if b != 0 && 1u64 << b.trailing_zeros() > config.cpu_page_size => {
                Err(Refusal::PageSizeAboveCpuPage {
                    group: self.group,
                    page_size: 1u64 << b.trailing_zeros(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Groups sharing one container: the combined aperture, valid IOVAs, page sizes and
/// alignment. See the [module documentation](self) for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    config: DomainConfig,
    members: Vec<Member>,
    aperture: IovaRange,
    valid: IovaSet,
    page_sizes: u64,
    page_sizes_assumed: bool,
    alignment: u64,
}

impl Domain {
    /// The domain of `groups` of `host` under `config`, or the first refusal in the
    /// kernel's order (groups in the order given; each group's isolation and
    /// page-size checks, then the combination). Repeated group ids count once.
    pub fn new(host: &Host, groups: &[u32], config: DomainConfig) -> Result<Domain, Refusal> {
        config.validate()?;
        let mut members: Vec<Member> = Vec::with_capacity(groups.len());
        for &g in groups {
            if members.iter().any(|m| m.group == g) {
                continue;
            }
            let m = Member::of(host, g)?;
            m.isolation(&config)?;
            m.interrupts(&config)?;
            m.page_size(&config)?;
            members.push(m);
        }
        Domain::combine(members, config)
    }

    /// The geometry of `members` under `config`, without the isolation checks (the
    /// caller makes those in its own order). An empty member list is refused
    /// ([`Refusal::NoGroups`]).
    pub fn combine(members: Vec<Member>, config: DomainConfig) -> Result<Domain, Refusal> {
        config.validate()?;
        let cpu = config.cpu_page_size;
        let mut aperture = IovaRange::FULL;
        let mut excluded = IovaSet::default();
        let mut bitmap = u64::MAX;
        let mut assumed = false;
        for m in &members {
            aperture = aperture
                .intersection(&m.aperture_or_full())
                .ok_or(Refusal::NoValidIova { group: m.group })?;
            excluded = excluded.union(&m.excluded());
            match m.page_sizes {
                Some(b) => bitmap &= b,
                None => {
                    // Only what every IOMMU must support: the CPU page.
                    assumed = true;
                    bitmap &= cpu;
                }
            }
            if bitmap == 0 {
                return Err(Refusal::NoCommonPageSize {
                    group: m.group,
                    bitmap,
                });
            }
        }
        let Some(last) = members.last().map(|m| m.group) else {
            return Err(Refusal::NoGroups);
        };
        // Sizes below the CPU page become the CPU page (vfio_pgsize_bitmap).
        if bitmap & (cpu - 1) != 0 {
            bitmap &= !(cpu - 1);
            bitmap |= cpu;
        }
        if bitmap.trailing_zeros() > 32 {
            return Err(Refusal::NoCommonPageSize {
                group: last,
                bitmap,
            });
        }
        let valid = IovaSet::from(aperture).difference(&excluded);
        if valid.is_empty() {
            return Err(Refusal::NoValidIova { group: last });
        }
        let alignment = if config.flavour.is_type1() {
            1u64 << bitmap.trailing_zeros()
        } else {
            // iopt_table_add_domain: the largest smallest page of the domains, from the
            // IOAS's own starting alignment.
            members
                .iter()
                .map(|m| m.smallest_page(cpu))
                .fold(config.flavour.alignment_without_domain(cpu), u64::max)
        };
        Ok(Domain {
            config,
            members,
            aperture,
            valid,
            page_sizes: bitmap,
            page_sizes_assumed: assumed,
            alignment,
        })
    }

    /// The settings the domain was judged under.
    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    /// The members, in the order they joined.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member group ids, in the order they joined.
    pub fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.members.iter().map(|m| m.group)
    }

    /// The intersection of the members' apertures.
    pub fn aperture(&self) -> IovaRange {
        self.aperture
    }

    /// Whether a member's aperture is unknown (the whole 64-bit space was assumed for
    /// it).
    pub fn aperture_assumed(&self) -> bool {
        self.members.iter().any(|m| m.aperture.is_none())
    }

    /// The IOVAs the domain can map.
    pub fn valid(&self) -> &IovaSet {
        &self.valid
    }

    /// The page sizes every member supports (sizes below the CPU page raised to it).
    pub fn page_sizes(&self) -> u64 {
        self.page_sizes
    }

    /// Whether a member did not report its page sizes (the CPU page was assumed).
    pub fn page_sizes_assumed(&self) -> bool {
        self.page_sizes_assumed
    }

    /// The alignment every map's IOVA, size and host address needs, per flavour (see
    /// the [module documentation](self), rule 5): type1 the smallest common page (never
    /// below the CPU page); iommufd the largest of the members' smallest pages, which
    /// may be below the CPU page.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The reserved regions of every member, with the group each comes from.
    pub fn reserved(&self) -> impl Iterator<Item = (u32, &ReservedRegion)> + '_ {
        self.members
            .iter()
            .flat_map(|m| m.reserved.iter().map(move |r| (m.group, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Group, IommuUnit, IommuVendor};

    fn host(units: Vec<IommuUnit>, groups: Vec<(u32, &str)>) -> Host {
        Host {
            iommus: units,
            groups: groups
                .into_iter()
                .map(|(id, u)| {
                    let mut g = Group::new(id);
                    g.iommu = Some(u.to_owned());
                    g
                })
                .collect(),
            ..Host::default()
        }
    }

    #[test]
    fn unknown_page_sizes_are_the_cpu_page_and_zero_is_refused() {
        let h = host(
            vec![
                IommuUnit::new("a", IommuVendor::Amd).with_address_width(48),
                IommuUnit::new("z", IommuVendor::Intel)
                    .with_address_width(48)
                    .with_page_sizes(0),
            ],
            vec![(1, "a"), (2, "z")],
        );
        let d = Domain::new(&h, &[1], DomainConfig::default()).unwrap();
        assert_eq!(d.page_sizes(), 0x1000);
        assert_eq!(d.alignment(), 4096);
        assert!(d.page_sizes_assumed());
        let d = Domain::new(&h, &[1], DomainConfig::default().cpu_page_size(0x10000)).unwrap();
        assert_eq!(d.alignment(), 0x10000);
        let e = Domain::new(&h, &[1, 2], DomainConfig::default()).unwrap_err();
        assert_eq!(
            e,
            Refusal::NoCommonPageSize {
                group: 2,
                bitmap: 0
            }
        );
        assert_eq!(e.errno(), Errno::EINVAL);
    }

    #[test]
    fn sub_cpu_pages_are_raised_and_iommufd_refuses_larger_pages() {
        let h = host(
            vec![
                IommuUnit::new("s", IommuVendor::ArmSmmuV3)
                    .with_address_width(48)
                    .with_page_sizes(0x4020_1000),
                IommuUnit::new("b", IommuVendor::ArmSmmuV3)
                    .with_address_width(48)
                    .with_page_sizes(0x2001_0000),
            ],
            vec![(1, "s"), (2, "b")],
        );
        let cfg = DomainConfig::default().cpu_page_size(0x4000);
        let d = Domain::new(&h, &[1], cfg).unwrap();
        assert_eq!(d.page_sizes(), 0x4020_4000);
        let iommufd = DomainConfig {
            flavour: Flavour::Iommufd,
            ..cfg
        };
        assert_eq!(
            Domain::new(&h, &[2], iommufd).unwrap_err(),
            Refusal::PageSizeAboveCpuPage {
                group: 2,
                page_size: 0x10000
            }
        );
        assert!(Domain::new(&h, &[2], cfg).is_ok());
    }

    #[test]
    fn disjoint_limits_leave_nothing() {
        let mut h = host(
            vec![IommuUnit::new("a", IommuVendor::Intel).with_address_width(39)],
            vec![(1, "a")],
        );
        h.groups[0].reserved_regions.push(ReservedRegion {
            range: IovaRange::new(0, (1 << 39) - 1).unwrap(),
            kind: ReservedKind::Reserved,
        });
        assert_eq!(
            Domain::new(&h, &[1], DomainConfig::default()).unwrap_err(),
            Refusal::NoValidIova { group: 1 }
        );
        assert_eq!(
            Domain::new(&h, &[7], DomainConfig::default()).unwrap_err(),
            Refusal::NoSuchGroup(7)
        );
        assert_eq!(
            Domain::new(&h, &[1], DomainConfig::default().cpu_page_size(3000)).unwrap_err(),
            Refusal::BadCpuPageSize(3000)
        );
    }
}
