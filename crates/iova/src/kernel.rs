//! Linux kernel versions, and the container behaviours that changed between them.
//!
//! The simulated [`Container`](crate::container::Container) answers as one kernel
//! version does ([`ContainerConfig::kernel`](crate::container::ContainerConfig)). Only the
//! major and minor numbers matter; every difference is listed in `docs/semantics.md`
//! §9 with the commit that made it. The default is [`KernelVersion::NEWEST`], the
//! newest version modelled; a tool replaying on a live host should pass the host's own
//! version (`uname -r`, parsed by [`KernelVersion::parse`]).
//!
//! ```
//! use iova::kernel::KernelVersion;
//!
//! let v = KernelVersion::parse("6.12.117-1~deb12u1")?;
//! assert_eq!(v, KernelVersion::V6_12);
//! assert!(!v.type1_wrap_eoverflow());
//! assert!(KernelVersion::parse("6.18")?.type1_wrap_eoverflow());
//! assert_eq!(KernelVersion::parse("7.2.13-fc")?.to_string(), "7.2");
//! # Ok::<(), iova::kernel::KernelVersionError>(())
//! ```

use std::fmt;

/// A Linux kernel version (major.minor; the patch level never changes these rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    major: u16,
    minor: u16,
}

/// A kernel version string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel version '{0}' is not MAJOR.MINOR[.PATCH][-SUFFIX] (for example 6.12 or 6.18.44-1)")]
pub struct KernelVersionError(pub String);

impl KernelVersion {
    /// Linux 6.1 (Debian 12's kernel).
    pub const V6_1: KernelVersion = KernelVersion::new(6, 1);
    /// Linux 6.12.
    pub const V6_12: KernelVersion = KernelVersion::new(6, 12);
    /// Linux 6.18: type1 checks wrapping ranges with `check_add_overflow` (EOVERFLOW,
    /// checked before flags and alignment) and handles the last page of the space.
    pub const V6_18: KernelVersion = KernelVersion::new(6, 18);
    /// The newest version modelled (Debian unstable's `linux-source` when this was
    /// written); the default of [`ContainerConfig`](crate::container::ContainerConfig).
    pub const NEWEST: KernelVersion = KernelVersion::new(7, 2);

    /// The version `major.minor`.
    pub const fn new(major: u16, minor: u16) -> KernelVersion {
        KernelVersion { major, minor }
    }

    /// The major number.
    pub const fn major(self) -> u16 {
        self.major
    }

    /// The minor number.
    pub const fn minor(self) -> u16 {
        self.minor
    }

    /// Reads `6.12`, `6.12.117`, `6.12.117-1~deb12u1`, `7.2.13-amd64` (what `uname -r`
    /// prints): the first two dot-separated numbers count, the rest is ignored.
    pub fn parse(s: &str) -> Result<KernelVersion, KernelVersionError> {
        let bad = || KernelVersionError(s.to_owned());
        let t = s.trim();
        let mut parts = t.split(['.', '-', '+', '~', '_']);
        let major: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor: u16 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        // A third field, when present after a dot, must be a number too.
        if let Some(rest) = t.splitn(3, '.').nth(2) {
            let patch: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if patch.is_empty() {
                return Err(bad());
            }
        }
        Ok(KernelVersion::new(major, minor))
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
}

impl Default for KernelVersion {
    fn default() -> Self {
        KernelVersion::NEWEST
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
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
            ("6.12.117-1~deb12u1", KernelVersion::V6_12),
            ("6.18.44-fc-v782", KernelVersion::V6_18),
            ("7.2.13", KernelVersion::NEWEST),
            (" 6.12\n", KernelVersion::V6_12),
        ] {
            assert_eq!(KernelVersion::parse(s), Ok(v), "{s}");
        }
        for s in ["", "6", "six.1", "6.x", "6.12.x", "-1.2", "70000.1"] {
            assert!(KernelVersion::parse(s).is_err(), "{s}");
        }
        assert!(KernelVersion::V6_12 < KernelVersion::V6_18);
        assert!(!KernelVersion::V6_12.type1_top_page_fixed());
        assert!(KernelVersion::NEWEST.type1_map_checks_wrap_first());
    }
}
