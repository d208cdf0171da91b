//! Inclusive IOVA ranges and sets of them.
//!
//! Every question this crate answers about an IOMMU address space is a set operation
//! on inclusive ranges: "which IOVAs can this group map" is an aperture minus some
//! reserved regions, "can this container take that group" is an intersection, "what
//! does a guest see as reserved" is a complement.
//!
//! Ranges are stored as `first..=last` so that the whole 64-bit space
//! `[0, u64::MAX]` is an ordinary value. Its length, 2^64, does not fit in a `u64`, so
//! lengths are reported as `u128`. Conversions from the start+size form used by the
//! kernel's MAP/UNMAP ioctls are checked: a size of zero or a range that would run past
//! `u64::MAX` is an error, never a wrapped or truncated value.
//!
//! ```
//! use iova::range::{IovaRange, IovaSet};
//!
//! let aperture = IovaRange::new(0, (1 << 39) - 1)?;
//! let msi = IovaRange::new(0xfee0_0000, 0xfeef_ffff)?;
//! let valid = IovaSet::from(aperture).difference(&IovaSet::from(msi));
//! assert_eq!(valid.ranges(), &[
//!     IovaRange::new(0, 0xfedf_ffff)?,
//!     IovaRange::new(0xfef0_0000, 0x7f_ffff_ffff)?,
//! ]);
//! # Ok::<(), iova::range::RangeError>(())
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a range could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// `last` is below `first`.
    #[error("range is inverted: last {last:#x} is below first {first:#x}")]
    Inverted {
        /// The first address given.
        first: u64,
        /// The last address given.
        last: u64,
    },
    /// A size of zero describes no addresses.
    #[error("range at {start:#x} has size 0")]
    EmptySize {
        /// The start address given.
        start: u64,
    },
    /// `start + size - 1` is beyond `u64::MAX`.
    #[error("range at {start:#x} with size {size:#x} runs past 2^64-1")]
    Wraps {
        /// The start address given.
        start: u64,
        /// The size given.
        size: u128,
    },
}

/// A non-empty inclusive range of IO virtual addresses, `first..=last`.
///
/// Invariant: `first <= last`. The full space `[0, u64::MAX]` is allowed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IovaRange {
    first: u64,
    last: u64,
}

/// The number of bytes in the full 64-bit space, `2^64`.
pub const SPACE_LEN: u128 = 1u128 << 64;

impl IovaRange {
    /// The whole 64-bit IOVA space, `[0, 2^64-1]`.
    pub const FULL: IovaRange = IovaRange {
        first: 0,
        last: u64::MAX,
    };

    /// Builds `first..=last`; fails when `last < first`.
    pub const fn new(first: u64, last: u64) -> Result<Self, RangeError> {
        if last < first {
            Err(RangeError::Inverted { first, last })
        } else {
            Ok(IovaRange { first, last })
        }
    }

    /// Builds the range of `size` bytes starting at `start` (the ioctl form).
    ///
    /// Fails when `size` is 0 or when the range would run past `u64::MAX`.
    pub const fn from_start_size(start: u64, size: u64) -> Result<Self, RangeError> {
        if size == 0 {
            return Err(RangeError::EmptySize { start });
        }
        match start.checked_add(size - 1) {
            Some(last) => Ok(IovaRange { first: start, last }),
            None => Err(RangeError::Wraps {
                start,
                size: size as u128,
            }),
        }
    }

    /// Like [`IovaRange::from_start_size`] but with a `u128` length, so that the full
    /// space (`start` 0, `len` 2^64) can be expressed.
    pub fn from_start_len(start: u64, len: u128) -> Result<Self, RangeError> {
        if len == 0 {
            return Err(RangeError::EmptySize { start });
        }
        let last = u128::from(start) + (len - 1);
        match u64::try_from(last) {
            Ok(last) => Ok(IovaRange { first: start, last }),
            Err(_) => Err(RangeError::Wraps { start, size: len }),
        }
    }

    /// The first address in the range.
    pub const fn first(&self) -> u64 {
        self.first
    }

    /// The last address in the range (inclusive).
    pub const fn last(&self) -> u64 {
        self.last
    }

    /// The number of bytes, from 1 to 2^64.
    pub const fn len(&self) -> u128 {
        (self.last - self.first) as u128 + 1
    }

    /// The number of bytes if it fits in a `u64` (everything but the full space).
    pub fn size(&self) -> Option<u64> {
        (self.last - self.first).checked_add(1)
    }

    /// Always false: a range is never empty. Present for clippy's `len_without_is_empty`.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Whether `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.first <= addr && addr <= self.last
    }

    /// Whether every address of `other` lies in `self`.
    pub const fn contains_range(&self, other: &IovaRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    /// Whether the two ranges share at least one address.
    pub const fn overlaps(&self, other: &IovaRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// Whether the two ranges overlap or are directly adjacent (so their union is one
    /// range).
    pub const fn touches(&self, other: &IovaRange) -> bool {
        // self.last + 1 >= other.first, written without overflow.
        (self.last >= other.first || other.first - self.last == 1)
            && (other.last >= self.first || self.first - other.last == 1)
    }

    /// The common part of two ranges, if any.
    pub fn intersection(&self, other: &IovaRange) -> Option<IovaRange> {
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last).then_some(IovaRange { first, last })
    }

    /// Whether `first` and the length are both multiples of `align` (a power of two).
    /// The full space counts as aligned to anything.
    pub fn is_aligned(&self, align: u64) -> bool {
        if align == 0 {
            return false;
        }
        let mask = align - 1;
        self.first & mask == 0 && self.last & mask == mask
    }
}

impl fmt::Debug for IovaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.first, self.last)
    }
}

impl fmt::Display for IovaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.first, self.last)
    }
}

pub use crate::units::{ParseNumberError, parse_size, parse_u64};

#[derive(Serialize, Deserialize)]
struct RangeRepr {
    first: HexU64,
    last: HexU64,
}

/// A `u64` that serializes as a `0x…` hex string and deserializes from a hex or decimal
/// string or from a JSON/TOML integer. Used for every address in the crate's serde form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HexU64(pub u64);

impl Serialize for HexU64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#x}", self.0))
    }
}

impl<'de> Deserialize<'de> for HexU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HexU64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address as a \"0x…\" string or an unsigned integer")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HexU64, E> {
                Ok(HexU64(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HexU64, E> {
                u64::try_from(v)
                    .map(HexU64)
                    .map_err(|_| E::custom(format!("negative address {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HexU64, E> {
                parse_u64(v).map(HexU64).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for IovaRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RangeRepr {
            first: HexU64(self.first),
            last: HexU64(self.last),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for IovaRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RangeRepr::deserialize(d)?;
        IovaRange::new(r.first.0, r.last.0).map_err(serde::de::Error::custom)
    }
}

/// A set of IOVAs kept as sorted, disjoint, non-adjacent inclusive ranges.
///
/// Adjacent or overlapping ranges are merged on insertion, so two sets holding the same
/// addresses always compare equal.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct IovaSet {
    ranges: Vec<IovaRange>,
}

impl fmt::Debug for IovaSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges.iter()).finish()
    }
}

impl fmt::Display for IovaSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("(empty)");
        }
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl From<IovaRange> for IovaSet {
    fn from(r: IovaRange) -> Self {
        IovaSet { ranges: vec![r] }
    }
}

impl FromIterator<IovaRange> for IovaSet {
    fn from_iter<I: IntoIterator<Item = IovaRange>>(iter: I) -> Self {
        let mut v: Vec<IovaRange> = iter.into_iter().collect();
        v.sort_unstable();
        IovaSet {
            ranges: coalesce_sorted(v),
        }
    }
}

impl<'a> IntoIterator for &'a IovaSet {
    type Item = &'a IovaRange;
    type IntoIter = std::slice::Iter<'a, IovaRange>;
    fn into_iter(self) -> Self::IntoIter {
        self.ranges.iter()
    }
}

impl Serialize for IovaSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ranges.serialize(s)
    }
}

impl<'de> Deserialize<'de> for IovaSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<IovaRange>::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// Merges overlapping or adjacent neighbours of a sorted list.
fn coalesce_sorted(sorted: Vec<IovaRange>) -> Vec<IovaRange> {
    let mut out: Vec<IovaRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(prev) if prev.touches(&r) => {
                prev.last = prev.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

impl IovaSet {
    /// The empty set.
    pub const fn new() -> Self {
        IovaSet { ranges: Vec::new() }
    }

    /// The set of every 64-bit address.
    pub fn full() -> Self {
        IovaSet::from(IovaRange::FULL)
    }

    /// The ranges, sorted, disjoint and non-adjacent.
    pub fn ranges(&self) -> &[IovaRange] {
        &self.ranges
    }

    /// Iterates over the ranges in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, IovaRange> {
        self.ranges.iter()
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The number of disjoint ranges.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The number of addresses in the set, from 0 to 2^64.
    pub fn len(&self) -> u128 {
        self.ranges.iter().map(IovaRange::len).sum()
    }

    /// The smallest range that covers the whole set, if it is not empty.
    pub fn span(&self) -> Option<IovaRange> {
        match (self.ranges.first(), self.ranges.last()) {
            (Some(a), Some(b)) => Some(IovaRange {
                first: a.first,
                last: b.last,
            }),
            _ => None,
        }
    }

    /// Index of the first range whose `last` is at or above `addr`.
    fn lower_bound(&self, addr: u64) -> usize {
        self.ranges.partition_point(|r| r.last < addr)
    }

    /// Whether `addr` is in the set.
    pub fn contains(&self, addr: u64) -> bool {
        self.range_containing(addr).is_some()
    }

    /// The range of the set that holds `addr`.
    pub fn range_containing(&self, addr: u64) -> Option<IovaRange> {
        let i = self.lower_bound(addr);
        self.ranges.get(i).copied().filter(|r| r.contains(addr))
    }

    /// Whether every address of `range` is in the set (that is, inside one of its
    /// ranges, since the ranges are non-adjacent).
    pub fn contains_range(&self, range: &IovaRange) -> bool {
        self.range_containing(range.first)
            .is_some_and(|r| r.contains_range(range))
    }

    /// Whether any address of `range` is in the set.
    pub fn overlaps(&self, range: &IovaRange) -> bool {
        let i = self.lower_bound(range.first);
        self.ranges.get(i).is_some_and(|r| r.overlaps(range))
    }

    /// Adds every address of `range`.
    pub fn insert(&mut self, range: IovaRange) {
        let i = self.lower_bound(range.first.saturating_sub(1));
        // Ranges from i onwards that touch `range` are merged into it.
        let mut merged = range;
        let mut j = i;
        while let Some(r) = self.ranges.get(j) {
            if !r.touches(&merged) {
                break;
            }
            merged.first = merged.first.min(r.first);
            merged.last = merged.last.max(r.last);
            j += 1;
        }
        self.ranges.splice(i..j, std::iter::once(merged));
    }

    /// Removes every address of `range`.
    pub fn remove(&mut self, range: IovaRange) {
        let i = self.lower_bound(range.first);
        let mut j = i;
        let mut keep: Vec<IovaRange> = Vec::with_capacity(2);
        while let Some(r) = self.ranges.get(j) {
            if r.first > range.last {
                break;
            }
            if r.first < range.first {
                keep.push(IovaRange {
                    first: r.first,
                    last: range.first - 1,
                });
            }
            if r.last > range.last {
                keep.push(IovaRange {
                    first: range.last + 1,
                    last: r.last,
                });
            }
            j += 1;
        }
        self.ranges.splice(i..j, keep);
    }

    /// The addresses in `self` or in `other`.
    pub fn union(&self, other: &IovaSet) -> IovaSet {
        let mut all: Vec<IovaRange> = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        // Merge two sorted lists, then coalesce.
        let (mut a, mut b) = (
            self.ranges.iter().peekable(),
            other.ranges.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x <= y {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some(r) = next {
                all.push(*r);
            }
        }
        IovaSet {
            ranges: coalesce_sorted(all),
        }
    }

    /// The addresses in both `self` and `other`.
    pub fn intersection(&self, other: &IovaSet) -> IovaSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.ranges.get(i), other.ranges.get(j)) {
            if let Some(c) = a.intersection(b) {
                out.push(c);
            }
            if a.last < b.last {
                i += 1;
            } else {
                j += 1;
            }
        }
        // Pieces of two disjoint, non-adjacent lists are themselves non-adjacent.
        IovaSet { ranges: out }
    }

    /// The addresses in `self` but not in `other`.
    pub fn difference(&self, other: &IovaSet) -> IovaSet {
        self.intersection(&other.complement())
    }

    /// Every 64-bit address not in the set.
    pub fn complement(&self) -> IovaSet {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut next: Option<u64> = Some(0); // first address not yet covered; None past 2^64-1
        for r in &self.ranges {
            if let Some(n) = next {
                if r.first > n {
                    out.push(IovaRange {
                        first: n,
                        last: r.first - 1,
                    });
                }
            }
            next = r.last.checked_add(1);
        }
        if let Some(n) = next {
            out.push(IovaRange {
                first: n,
                last: u64::MAX,
            });
        }
        IovaSet { ranges: out }
    }

    /// The addresses of `bound` that are not in the set.
    pub fn complement_within(&self, bound: IovaRange) -> IovaSet {
        IovaSet::from(bound).difference(self)
    }

    /// The set restricted to `bound`.
    pub fn clamp(&self, bound: IovaRange) -> IovaSet {
        self.intersection(&IovaSet::from(bound))
    }

    /// The lowest range of `size` bytes, starting at a multiple of `align`, that lies
    /// entirely in the set. `align` must be a power of two (0 is treated as 1).
    /// Returns `None` when `size` is 0, `align` is not a power of two, or nothing fits.
    pub fn first_fit(&self, size: u64, align: u64) -> Option<IovaRange> {
        let align = normalize_align(align)?;
        if size == 0 {
            return None;
        }
        self.ranges.iter().find_map(|r| fit_low(r, size, align))
    }

    /// The highest range of `size` bytes, starting at a multiple of `align`, that lies
    /// entirely in the set (top-down policy). Same rules as [`IovaSet::first_fit`].
    pub fn last_fit(&self, size: u64, align: u64) -> Option<IovaRange> {
        let align = normalize_align(align)?;
        if size == 0 {
            return None;
        }
        self.ranges
            .iter()
            .rev()
            .find_map(|r| fit_high(r, size, align))
    }
}

fn normalize_align(align: u64) -> Option<u64> {
    match align {
        0 => Some(1),
        a if a.is_power_of_two() => Some(a),
        _ => None,
    }
}

/// Lowest aligned placement of `size` bytes inside `r`.
pub(crate) fn fit_low(r: &IovaRange, size: u64, align: u64) -> Option<IovaRange> {
    let mask = align - 1;
    let start = r.first.checked_add(mask)? & !mask;
    let last = start.checked_add(size - 1)?;
    (last <= r.last).then_some(IovaRange { first: start, last })
}

/// Highest aligned placement of `size` bytes inside `r`.
pub(crate) fn fit_high(r: &IovaRange, size: u64, align: u64) -> Option<IovaRange> {
    let mask = align - 1;
    // Highest start such that start + size - 1 <= r.last.
    let max_start = r.last.checked_sub(size - 1)?;
    let start = max_start & !mask;
    (start >= r.first).then_some(IovaRange {
        first: start,
        last: start + (size - 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> IovaRange {
        IovaRange::new(a, b).unwrap()
    }

    #[test]
    fn constructors_check_their_input() {
        assert_eq!(
            IovaRange::new(5, 4),
            Err(RangeError::Inverted { first: 5, last: 4 })
        );
        assert_eq!(
            IovaRange::from_start_size(7, 0),
            Err(RangeError::EmptySize { start: 7 })
        );
        assert_eq!(
            IovaRange::from_start_size(u64::MAX - 0xfff, 0x2000),
            Err(RangeError::Wraps {
                start: u64::MAX - 0xfff,
                size: 0x2000
            })
        );
        let last_page = IovaRange::from_start_size(0xffff_ffff_ffff_f000, 0x1000).unwrap();
        assert_eq!(last_page.last(), u64::MAX);
        assert_eq!(last_page.size(), Some(0x1000));
        let full = IovaRange::from_start_len(0, SPACE_LEN).unwrap();
        assert_eq!(full, IovaRange::FULL);
        assert_eq!(full.len(), SPACE_LEN);
        assert_eq!(full.size(), None);
        assert!(IovaRange::from_start_len(1, SPACE_LEN).is_err());
        assert!(IovaRange::from_start_len(0, 0).is_err());
    }

    #[test]
    fn touches_and_overlaps_at_the_edges() {
        assert!(r(0, 4).touches(&r(5, 9)));
        assert!(r(5, 9).touches(&r(0, 4)));
        assert!(!r(0, 4).touches(&r(6, 9)));
        assert!(!r(0, 4).overlaps(&r(5, 9)));
        assert!(r(0, u64::MAX).touches(&r(u64::MAX, u64::MAX)));
        assert!(r(u64::MAX, u64::MAX).touches(&r(0, u64::MAX - 1)));
        assert!(!r(u64::MAX, u64::MAX).touches(&r(0, u64::MAX - 2)));
    }

    #[test]
    fn vt_d_39_bit_minus_msi_window() {
        let aperture = r(0, (1 << 39) - 1);
        let msi = r(0xfee0_0000, 0xfeef_ffff);
        let valid = IovaSet::from(aperture).difference(&IovaSet::from(msi));
        assert_eq!(
            valid.ranges(),
            &[r(0, 0xfedf_ffff), r(0xfef0_0000, 0x7f_ffff_ffff)]
        );
        assert_eq!(valid.len(), (1u128 << 39) - 0x10_0000);
    }

    #[test]
    fn complement_of_empty_and_full() {
        assert_eq!(IovaSet::new().complement(), IovaSet::full());
        assert_eq!(IovaSet::full().complement(), IovaSet::new());
        let s: IovaSet = [r(0, 0), r(u64::MAX, u64::MAX)].into_iter().collect();
        assert_eq!(s.complement().ranges(), &[r(1, u64::MAX - 1)]);
    }

    #[test]
    fn fits_respect_alignment_and_the_top() {
        let s: IovaSet = [r(0x1001, 0x4fff), r(0xffff_ffff_ffff_e000, u64::MAX)]
            .into_iter()
            .collect();
        assert_eq!(s.first_fit(0x1000, 0x1000), Some(r(0x2000, 0x2fff)));
        assert_eq!(s.first_fit(0x3000, 0x1000), Some(r(0x2000, 0x4fff)));
        assert_eq!(s.first_fit(0x4000, 0x1000), None);
        assert_eq!(s.first_fit(0x2000, 0x1000), Some(r(0x2000, 0x3fff)));
        assert_eq!(
            s.last_fit(0x1000, 0x1000),
            Some(r(0xffff_ffff_ffff_f000, u64::MAX))
        );
        assert_eq!(s.first_fit(0x2000, 0x2000), Some(r(0x2000, 0x3fff)));
        assert_eq!(s.first_fit(0x1000, 3), None);
        assert_eq!(s.first_fit(0, 1), None);
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(parse_u64("0xfee0_0000"), Ok(0xfee0_0000));
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(parse_u64("0x1_0000_0000_0000_0000").is_err());
        assert!(parse_u64("").is_err());
        assert!(parse_u64("0x").is_err());
        assert!(parse_u64("-1").is_err());
        assert!(parse_u64("12ab").is_err());
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("15E"), Ok(15 << 60));
        assert!(parse_size("16E").is_err());
        assert!(parse_size("1.5T").is_err());
        assert!(parse_size("5Q").is_err());
        let e = parse_size("1.5T").unwrap_err();
        assert!(e.to_string().contains("1.5T"));
    }

    #[test]
    fn serde_uses_hex_strings() {
        let x = r(0, 0xfedf_ffff);
        let j = serde_json::to_string(&x).unwrap();
        assert_eq!(j, r#"{"first":"0x0","last":"0xfedfffff"}"#);
        let back: IovaRange = serde_json::from_str(&j).unwrap();
        assert_eq!(back, x);
        let from_int: IovaRange = serde_json::from_str(r#"{"first":16,"last":"4096"}"#).unwrap();
        assert_eq!(from_int, r(16, 4096));
        assert!(serde_json::from_str::<IovaRange>(r#"{"first":"0x10","last":"0x1"}"#).is_err());
    }
}
