//! Linux kernel versions, and the container behaviours that changed between them.
//!
//! The simulated [`Container`](crate::container::Container) and
//! [`SpaprContainer`](crate::spapr::SpaprContainer) answer as one kernel release does
//! ([`ContainerConfig::kernel`](crate::container::ContainerConfig),
//! [`SpaprConfig::kernel`](crate::spapr::SpaprConfig)). A release is
//! `major.minor.patch`: stable updates change answers inside one series (6.12.112
//! changed sPAPR TCE unmaps), so the point release counts. Every difference is listed
//! in `docs/semantics.md` §9 with the commit that made it. The default is
//! [`KernelVersion::NEWEST`], the newest release modelled; a tool replaying on a live
//! host should pass the host's own release (`uname -r`, parsed by
//! [`KernelVersion::parse`]).
//!
//! ```
//! use iova::kernel::KernelVersion;
//!
//! let v = KernelVersion::parse("6.12.117-1~deb12u1")?;
//! assert_eq!(v, KernelVersion::with_patch(6, 12, 117));
//! assert!(!v.type1_wrap_eoverflow());
//! assert!(v.spapr_unmap_checks_range());
//! assert!(!KernelVersion::parse("6.12.95+deb12-powerpc64le")?.spapr_unmap_checks_range());
//! assert!(KernelVersion::parse("6.18")?.type1_wrap_eoverflow());
//! assert_eq!(KernelVersion::parse("7.2.13-fc")?.to_string(), "7.2.13");
//! assert_eq!(KernelVersion::parse("6.12")?.to_string(), "6.12");
//! # Ok::<(), iova::kernel::KernelVersionError>(())
//! ```

use std::fmt;

/// A Linux kernel release: `major.minor.patch` (the patch level is the stable point
/// release; `6.12` alone is the release 6.12, patch level 0).
///
/// Ordered by major, minor, then patch. Rules that changed in a mainline release
/// compare against `major.minor` (patch 0); rules that changed through stable updates
/// name the first point release of each series that has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    major: u16,
    minor: u16,
    patch: u16,
}

/// A kernel version string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "kernel version '{0}' is not MAJOR.MINOR[.PATCH][-SUFFIX] (for example 6.12, 6.12.118 or 6.18.44-1)"
)]
pub struct KernelVersionError(pub String);

impl KernelVersion {
    /// Linux 6.1 (Debian 12's kernel series).
    pub const V6_1: KernelVersion = KernelVersion::new(6, 1);
    /// Linux 6.12.
    pub const V6_12: KernelVersion = KernelVersion::new(6, 12);
    /// Linux 6.18: type1 checks wrapping ranges with `check_add_overflow` (EOVERFLOW,
    /// checked before flags and alignment) and handles the last page of the space.
    pub const V6_18: KernelVersion = KernelVersion::new(6, 18);
    /// The newest release modelled (Debian unstable's `linux-source` when this was
    /// written, 7.2.13); the default of
    /// [`ContainerConfig`](crate::container::ContainerConfig). A newer kernel is
    /// answered as this one, with a note naming the assumption.
    pub const NEWEST: KernelVersion = KernelVersion::with_patch(7, 2, 13);

    /// The release `major.minor` (patch level 0).
    pub const fn new(major: u16, minor: u16) -> KernelVersion {
        KernelVersion {
            major,
            minor,
            patch: 0,
        }
    }

    /// The point release `major.minor.patch`.
    pub const fn with_patch(major: u16, minor: u16, patch: u16) -> KernelVersion {
        KernelVersion {
            major,
            minor,
            patch,
        }
    }

    /// The major number.
    pub const fn major(self) -> u16 {
        self.major
    }

    /// The minor number.
    pub const fn minor(self) -> u16 {
        self.minor
    }

    /// The patch level (the stable point release; 0 for the release itself).
    pub const fn patch(self) -> u16 {
        self.patch
    }

    /// Whether this release is newer than every release the model knows
    /// ([`KernelVersion::NEWEST`]): its answers are then assumed to be the newest's.
    pub fn is_newer_than_modelled(self) -> bool {
        self > KernelVersion::NEWEST
    }

    /// Reads `6.12`, `6.12.118`, `6.12.117-1~deb12u1`, `6.12.118+deb12-powerpc64le`,
    /// `7.2.13-amd64` (what `uname -r` prints): major, minor and, when a third
    /// dot-separated number follows, the patch level; the rest is ignored.
    pub fn parse(s: &str) -> Result<KernelVersion, KernelVersionError> {
        let bad = || KernelVersionError(s.to_owned());
        let t = s.trim();
        let mut parts = t.split(['.', '-', '+', '~', '_']);
        let major: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        // A third field, when present after a dot, must be a number too.
        let mut patch = 0;
        if let Some(rest) = t.splitn(3, '.').nth(2) {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            patch = digits.parse().map_err(|_| bad())?;
        }
        Ok(KernelVersion::with_patch(major, minor, patch))
    }

    /// iommufd MAP checks `user_va + length` for a wrap (EOVERFLOW) before the length
    /// (0 or above `SIZE_MAX - PAGE_SIZE`: EINVAL). 6.13 moved the wrap check into
    /// `iopt_alloc_user_pages` ahead of `iopt_alloc_pages` (the generalisation of
    /// `iopt_pages` addresses for IOMMU_IOAS_MAP_FILE); seen on 7.2, 6.12 answers
    /// EINVAL first.
    pub fn iommufd_user_range_checked_first(self) -> bool {
        self >= KernelVersion::new(6, 13)
    }

    /// type1 answers a map or unmap whose range wraps past 2^64-1 with EOVERFLOW
    /// instead of EINVAL (6.18, "vfio/type1: sanitize for overflow using
    /// check_*_overflow()").
    pub fn type1_wrap_eoverflow(self) -> bool {
        self >= KernelVersion::V6_18
    }

    /// type1 MAP_DMA checks size 0 and the wrap before the access flags and the
    /// alignment (6.18, same commit).
    pub fn type1_map_checks_wrap_first(self) -> bool {
        self >= KernelVersion::V6_18
    }

    /// type1 handles ranges that end at 2^64-1 (6.18, "vfio/type1: handle DMA map/unmap
    /// up to the addressable limit"). Before, `iova + size` wrapped to 0 in the
    /// mapping searches: a map ending there never saw an overlapping mapping, and an
    /// unmap ending there removed nothing (success, 0 bytes); which mappings a walk
    /// meets then depends on the shape of the kernel's tree, which the simulation
    /// keeps node for node (seen on 6.12 with virtio-iommu).
    pub fn type1_top_page_fixed(self) -> bool {
        self >= KernelVersion::V6_18
    }

    /// sPAPR TCE: an unmap checks its whole range against the window that holds its
    /// start, and one that runs past the window's end is refused with the positive
    /// return 1, changing nothing ("powerpc/iommu: Fix the overflow validation in
    /// iommu_tce_check_ioba", mainline 0b271f7d7f5e in 7.3). Before, only the first
    /// page was checked: the in-window part was cleared and the rest skipped, answer 0.
    /// Stable backports: 6.1.189, 6.6.158, 6.12.112, 6.18.54, 7.2.8 (5.10 and 5.15 got
    /// it at point releases not modelled here, and are answered as before the fix).
    pub fn spapr_unmap_checks_range(self) -> bool {
        let first_fixed: u16 = match (self.major, self.minor) {
            (6, 1) => 189,
            (6, 6) => 158,
            (6, 12) => 112,
            (6, 18) => 54,
            (7, 2) => 8,
            _ => return self >= KernelVersion::new(7, 3),
        };
        self.patch >= first_fixed
    }
}

impl Default for KernelVersion {
    fn default() -> Self {
        KernelVersion::NEWEST
    }
}

impl fmt::Display for KernelVersion {
    /// `6.12` for a release, `6.12.118` for a point release.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

impl std::str::FromStr for KernelVersion {
    type Err = KernelVersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KernelVersion::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_strings() {
        for (s, v) in [
            ("6.1", KernelVersion::V6_1),
            ("6.1.0-37-amd64", KernelVersion::V6_1),
            ("6.12.117-1~deb12u1", KernelVersion::with_patch(6, 12, 117)),
            (
                "6.12.118+deb12-powerpc64le-64k",
                KernelVersion::with_patch(6, 12, 118),
            ),
            ("6.18.44-fc-v782", KernelVersion::with_patch(6, 18, 44)),
            ("7.2.13", KernelVersion::NEWEST),
            (" 6.12\n", KernelVersion::V6_12),
        ] {
            assert_eq!(KernelVersion::parse(s), Ok(v), "{s}");
        }
        for s in [
            "",
            "6",
            "six.1",
            "6.x",
            "6.12.x",
            "-1.2",
            "70000.1",
            "6.12.70000",
        ] {
            assert!(KernelVersion::parse(s).is_err(), "{s}");
        }
        assert!(KernelVersion::V6_12 < KernelVersion::V6_18);
        assert!(KernelVersion::with_patch(6, 12, 118) < KernelVersion::V6_18);
        assert!(KernelVersion::with_patch(6, 12, 95) < KernelVersion::with_patch(6, 12, 118));
        assert!(!KernelVersion::V6_12.type1_top_page_fixed());
        assert!(KernelVersion::NEWEST.type1_map_checks_wrap_first());
        assert!(KernelVersion::with_patch(7, 3, 0).is_newer_than_modelled());
        assert!(!KernelVersion::NEWEST.is_newer_than_modelled());
    }

    #[test]
    fn spapr_unmap_range_check_by_point_release() {
        let v = KernelVersion::with_patch;
        for (k, fixed) in [
            (v(6, 1, 188), false),
            (v(6, 1, 189), true),
            (v(6, 6, 157), false),
            (v(6, 6, 158), true),
            (v(6, 12, 95), false),
            (v(6, 12, 111), false),
            (v(6, 12, 112), true),
            (v(6, 12, 118), true),
            (v(6, 13, 12), false),
            (v(6, 18, 53), false),
            (v(6, 18, 54), true),
            (v(7, 2, 7), false),
            (v(7, 2, 8), true),
            (v(7, 3, 0), true),
            (v(5, 15, 190), false),
        ] {
            assert_eq!(k.spapr_unmap_checks_range(), fixed, "{k}");
        }
        assert!(KernelVersion::NEWEST.spapr_unmap_checks_range());
    }
}
