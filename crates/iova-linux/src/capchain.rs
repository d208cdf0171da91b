//! A bounds-checked parser for the reply of `VFIO_IOMMU_GET_INFO`.
//!
//! The kernel writes a `struct vfio_iommu_type1_info` (24 bytes: `argsz`, `flags`,
//! `iova_pgsizes`, `cap_offset`, padding) followed by a chain of capabilities. Each
//! capability starts with `{u16 id, u16 version, u32 next}`; `next` is the offset of
//! the following capability counted from the start of the info struct (not from the
//! capability), 0 ends the chain.
//!
//! This module is pure (a function over `&[u8]`), so it can be fed arbitrary bytes in
//! tests. The rules it enforces, all derived from how the kernel builds the chain
//! (`vfio_info_cap_add` appends each capability after the previous one and links the
//! old tail to it):
//!
//! - a capability lies after the 24-byte info header and inside the buffer;
//! - offsets are multiples of 4 (the header's natural alignment). Kernels before the
//!   capability-alignment fix (6.1 among them) place capabilities only 4-byte aligned
//!   (the 6.1 reply is 116 bytes with IOVA_RANGE at offset 68), so 8-byte alignment
//!   cannot be required; all 64-bit fields are read byte-wise;
//! - every `next` points past the end of the current capability, so offsets strictly
//!   increase: a looping or backwards chain is an error, and the walk ends after at most
//!   `len / 8` steps;
//! - a known capability must fit whole, including `nr_iovas` range entries;
//! - unknown capability ids (or unknown versions of known ones) are skipped and listed;
//! - a known capability appearing twice is an error.
//!
//! Errors name the offset where the chain went wrong; the parser never panics.

use iova::range::IovaRange;

use std::mem::{offset_of, size_of};

use vfio_bindings::bindings::vfio as abi;

/// A capability id of the bindings as the `u16` of the capability header.
const fn cap_id(id: u32) -> u16 {
    assert!(id <= 0xffff);
    id as u16
}

/// Capability id of the valid IOVA ranges (`VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`).
pub const CAP_IOVA_RANGE: u16 = cap_id(abi::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
/// Capability id of the dirty-tracking facts (`VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION`).
pub const CAP_MIGRATION: u16 = cap_id(abi::VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION);
/// Capability id of the remaining mapping count (`VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`).
pub const CAP_DMA_AVAIL: u16 = cap_id(abi::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);

/// `flags` bit: `iova_pgsizes` is valid.
pub const INFO_FLAG_PGSIZES: u32 = abi::VFIO_IOMMU_INFO_PGSIZES;
/// `flags` bit: `cap_offset` is valid.
pub const INFO_FLAG_CAPS: u32 = abi::VFIO_IOMMU_INFO_CAPS;

/// Size of `struct vfio_iommu_type1_info` with `cap_offset` and its padding.
pub const INFO_HEADER_LEN: usize = size_of::<abi::vfio_iommu_type1_info>();
/// The smallest reply the kernel accepts (`argsz` up to `iova_pgsizes`).
pub const INFO_MIN_LEN: usize = offset_of!(abi::vfio_iommu_type1_info, cap_offset);
const INFO_FLAGS: usize = offset_of!(abi::vfio_iommu_type1_info, flags);
const INFO_PGSIZES: usize = offset_of!(abi::vfio_iommu_type1_info, iova_pgsizes);
const INFO_CAP_OFFSET: usize = offset_of!(abi::vfio_iommu_type1_info, cap_offset);
const CAP_HEADER_LEN: usize = size_of::<abi::vfio_info_cap_header>();
const CAP_VERSION: usize = offset_of!(abi::vfio_info_cap_header, version);
const CAP_NEXT: usize = offset_of!(abi::vfio_info_cap_header, next);
const IOVA_RANGE_FIXED_LEN: usize = size_of::<abi::vfio_iommu_type1_info_cap_iova_range>();
const IOVA_RANGE_NR: usize = offset_of!(abi::vfio_iommu_type1_info_cap_iova_range, nr_iovas);
const IOVA_RANGE_ENTRY_LEN: usize = size_of::<abi::vfio_iova_range>();
const IOVA_RANGE_END: usize = offset_of!(abi::vfio_iova_range, end);
const MIGRATION_LEN: usize = size_of::<abi::vfio_iommu_type1_info_cap_migration>();
const MIGRATION_FLAGS: usize = offset_of!(abi::vfio_iommu_type1_info_cap_migration, flags);
const MIGRATION_PGSIZES: usize =
    offset_of!(abi::vfio_iommu_type1_info_cap_migration, pgsize_bitmap);
const MIGRATION_MAX_BITMAP: usize = offset_of!(
    abi::vfio_iommu_type1_info_cap_migration,
    max_dirty_bitmap_size
);
const DMA_AVAIL_LEN: usize = size_of::<abi::vfio_iommu_type1_info_dma_avail>();
const DMA_AVAIL_AVAIL: usize = offset_of!(abi::vfio_iommu_type1_info_dma_avail, avail);

/// The migration (dirty page tracking) capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationCap {
    /// Capability flags.
    pub flags: u32,
    /// Page sizes supported for dirty tracking.
    pub pgsize_bitmap: u64,
    /// The largest dirty bitmap the kernel will fill, in bytes.
    pub max_dirty_bitmap_size: u64,
}

/// A capability the parser does not interpret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCap {
    /// Capability id.
    pub id: u16,
    /// Capability version.
    pub version: u16,
    /// Where it starts in the reply.
    pub offset: usize,
}

/// What `VFIO_IOMMU_GET_INFO` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type1Info {
    /// The `argsz` the kernel wrote back (the size it needs for the whole reply).
    pub argsz: u32,
    /// The `flags` field.
    pub flags: u32,
    /// The page-size bitmap, when `INFO_FLAG_PGSIZES` is set.
    pub iova_pgsizes: Option<u64>,
    /// The valid IOVA ranges (inclusive), when the IOVA_RANGE capability is present,
    /// in the order the kernel listed them.
    pub iova_ranges: Option<Vec<IovaRange>>,
    /// The migration capability, if present.
    pub migration: Option<MigrationCap>,
    /// Mappings left (`DMA_AVAIL`), if present.
    pub dma_avail: Option<u32>,
    /// Capabilities that were skipped.
    pub unknown: Vec<UnknownCap>,
}

/// Why a GET_INFO reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapChainError {
    /// Shorter than the fixed part of the info struct.
    #[error("GET_INFO reply is {len} bytes, shorter than the {need}-byte header")]
    ShortHeader {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// `argsz` says the kernel needs more than the buffer holds (grow and retry).
    #[error("GET_INFO reply needs {argsz} bytes but the buffer holds {len}")]
    NeedsMore {
        /// The size the kernel asked for.
        argsz: u32,
        /// Bytes given.
        len: usize,
    },
    /// A capability offset points into the info header.
    #[error("capability at offset {offset} overlaps the {INFO_HEADER_LEN}-byte info header")]
    InHeader {
        /// The offending offset.
        offset: u64,
    },
    /// A capability offset is not a multiple of 4.
    #[error("capability offset {offset} is not 4-byte aligned")]
    Misaligned {
        /// The offending offset.
        offset: u64,
    },
    /// A capability (header or body) runs past the end of the reply.
    #[error("capability at offset {offset} needs {need} bytes, only {len} in the reply")]
    OutOfBounds {
        /// Where the capability starts.
        offset: u64,
        /// Bytes it needs from its start.
        need: u64,
        /// Bytes in the reply.
        len: usize,
    },
    /// `next` does not point past the end of the current capability (a loop, a
    /// backwards link or an overlap).
    #[error("capability at offset {offset} links back to offset {next} (loop or overlap)")]
    BadLink {
        /// The capability holding the link.
        offset: u64,
        /// Its `next`.
        next: u64,
    },
    /// `nr_iovas` claims more entries than the reply can hold.
    #[error("IOVA_RANGE at offset {offset} claims {nr_iovas} ranges, room for {room}")]
    TooManyRanges {
        /// Where the capability starts.
        offset: u64,
        /// The claimed count.
        nr_iovas: u32,
        /// How many would fit.
        room: u64,
    },
    /// A range with `end < start`.
    #[error("IOVA_RANGE entry {index} is inverted: start {start:#x} > end {end:#x}")]
    InvertedRange {
        /// Entry index.
        index: u32,
        /// Its start.
        start: u64,
        /// Its (inclusive) end.
        end: u64,
    },
    /// A known capability appears twice.
    #[error("capability id {id} appears twice (second at offset {offset})")]
    Duplicate {
        /// The capability id.
        id: u16,
        /// Offset of the second copy.
        offset: u64,
    },
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([b[0], b[1]]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_ne_bytes(a))
}

/// Checks that `need` bytes starting at `offset` lie in `buf` and returns the offset as
/// a `usize`.
fn fits(buf: &[u8], offset: u64, need: u64) -> Result<usize, CapChainError> {
    let oob = CapChainError::OutOfBounds {
        offset,
        need,
        len: buf.len(),
    };
    let end = offset.checked_add(need).ok_or(oob.clone())?;
    let len = u64::try_from(buf.len()).map_err(|_| oob.clone())?;
    if end > len {
        return Err(oob);
    }
    usize::try_from(offset).map_err(|_| oob)
}

fn to_u64(n: usize) -> u64 {
    // usize is at most 64 bits on every target Rust supports for this crate.
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Parses a `VFIO_IOMMU_GET_INFO` reply.
///
/// `buf` is the buffer handed to the kernel (its length is the `argsz` the caller
/// passed). When the kernel's `argsz` is larger than `buf` and it asked for
/// capabilities, the answer is [`CapChainError::NeedsMore`]: grow the buffer to
/// `argsz` and call the ioctl again. (The kernel leaves `cap_offset` 0 in that case,
/// but the parser does not rely on that.)
pub fn parse_type1_info(buf: &[u8]) -> Result<Type1Info, CapChainError> {
    let (Some(argsz), Some(flags), Some(pgsizes)) = (
        read_u32(buf, 0),
        read_u32(buf, INFO_FLAGS),
        read_u64(buf, INFO_PGSIZES),
    ) else {
        return Err(CapChainError::ShortHeader {
            len: buf.len(),
            need: INFO_MIN_LEN,
        });
    };
    let mut info = Type1Info {
        argsz,
        flags,
        iova_pgsizes: (flags & INFO_FLAG_PGSIZES != 0).then_some(pgsizes),
        iova_ranges: None,
        migration: None,
        dma_avail: None,
        unknown: Vec::new(),
    };
    if flags & INFO_FLAG_CAPS == 0 {
        return Ok(info);
    }
    let Some(cap_offset) = read_u32(buf, INFO_CAP_OFFSET) else {
        return Err(CapChainError::ShortHeader {
            len: buf.len(),
            need: INFO_HEADER_LEN,
        });
    };
    let argsz_big = usize::try_from(argsz).map_or(true, |a| a > buf.len());
    if argsz_big {
        return Err(CapChainError::NeedsMore {
            argsz,
            len: buf.len(),
        });
    }
    let mut next = u64::from(cap_offset);
    while next != 0 {
        let offset = next;
        if offset < to_u64(INFO_HEADER_LEN) {
            return Err(CapChainError::InHeader { offset });
        }
        if offset % 4 != 0 {
            return Err(CapChainError::Misaligned { offset });
        }
        let at = fits(buf, offset, to_u64(CAP_HEADER_LEN))?;
        let (Some(id), Some(version), Some(link)) = (
            read_u16(buf, at),
            read_u16(buf, at + CAP_VERSION),
            read_u32(buf, at + CAP_NEXT),
        ) else {
            return Err(CapChainError::OutOfBounds {
                offset,
                need: to_u64(CAP_HEADER_LEN),
                len: buf.len(),
            });
        };
        let size = match (id, version) {
            (CAP_IOVA_RANGE, 1) => {
                if info.iova_ranges.is_some() {
                    return Err(CapChainError::Duplicate { id, offset });
                }
                let (ranges, size) = parse_iova_range(buf, offset)?;
                info.iova_ranges = Some(ranges);
                size
            }
            (CAP_MIGRATION, 1) => {
                if info.migration.is_some() {
                    return Err(CapChainError::Duplicate { id, offset });
                }
                let at = fits(buf, offset, to_u64(MIGRATION_LEN))?;
                let oob = || CapChainError::OutOfBounds {
                    offset,
                    need: to_u64(MIGRATION_LEN),
                    len: buf.len(),
                };
                info.migration = Some(MigrationCap {
                    flags: read_u32(buf, at + MIGRATION_FLAGS).ok_or_else(oob)?,
                    pgsize_bitmap: read_u64(buf, at + MIGRATION_PGSIZES).ok_or_else(oob)?,
                    max_dirty_bitmap_size: read_u64(buf, at + MIGRATION_MAX_BITMAP)
                        .ok_or_else(oob)?,
                });
                to_u64(MIGRATION_LEN)
            }
            (CAP_DMA_AVAIL, 1) => {
                if info.dma_avail.is_some() {
                    return Err(CapChainError::Duplicate { id, offset });
                }
                let at = fits(buf, offset, to_u64(DMA_AVAIL_LEN))?;
                info.dma_avail = Some(read_u32(buf, at + DMA_AVAIL_AVAIL).ok_or(
                    CapChainError::OutOfBounds {
                        offset,
                        need: to_u64(DMA_AVAIL_LEN),
                        len: buf.len(),
                    },
                )?);
                to_u64(DMA_AVAIL_LEN)
            }
            _ => {
                info.unknown.push(UnknownCap {
                    id,
                    version,
                    offset: at,
                });
                to_u64(CAP_HEADER_LEN)
            }
        };
        next = u64::from(link);
        // `offset + size` cannot overflow: both were checked against the buffer length.
        if next != 0 && next < offset.saturating_add(size) {
            return Err(CapChainError::BadLink { offset, next });
        }
    }
    Ok(info)
}

/// Parses an IOVA_RANGE capability at `offset`; returns the ranges and its size.
fn parse_iova_range(buf: &[u8], offset: u64) -> Result<(Vec<IovaRange>, u64), CapChainError> {
    let at = fits(buf, offset, to_u64(IOVA_RANGE_FIXED_LEN))?;
    let nr = read_u32(buf, at + IOVA_RANGE_NR).ok_or(CapChainError::OutOfBounds {
        offset,
        need: to_u64(IOVA_RANGE_FIXED_LEN),
        len: buf.len(),
    })?;
    // Room left after the fixed part, counted in whole entries.
    let room = to_u64(buf.len())
        .saturating_sub(offset)
        .saturating_sub(to_u64(IOVA_RANGE_FIXED_LEN))
        / to_u64(IOVA_RANGE_ENTRY_LEN);
    if u64::from(nr) > room {
        return Err(CapChainError::TooManyRanges {
            offset,
            nr_iovas: nr,
            room,
        });
    }
    let size = to_u64(IOVA_RANGE_FIXED_LEN) + u64::from(nr) * to_u64(IOVA_RANGE_ENTRY_LEN);
    fits(buf, offset, size)?;
    let mut ranges = Vec::new();
    for index in 0..nr {
        let rel = to_u64(IOVA_RANGE_FIXED_LEN) + u64::from(index) * to_u64(IOVA_RANGE_ENTRY_LEN);
        let entry = fits(buf, offset + rel, to_u64(IOVA_RANGE_ENTRY_LEN))?;
        let oob = CapChainError::OutOfBounds {
            offset,
            need: size,
            len: buf.len(),
        };
        let start = read_u64(buf, entry).ok_or(oob.clone())?;
        let end = read_u64(buf, entry + IOVA_RANGE_END).ok_or(oob)?;
        let range = IovaRange::new(start, end).map_err(|_| CapChainError::InvertedRange {
            index,
            start,
            end,
        })?;
        ranges.push(range);
    }
    Ok((ranges, size))
}

/// Builders for GET_INFO replies, for tests here and in the in-guest test binary.
pub mod build {
    use super::*;

    /// One capability to put in a synthetic reply.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Cap {
        /// IOVA_RANGE with these `(start, end)` pairs.
        IovaRange(Vec<(u64, u64)>),
        /// MIGRATION.
        Migration(MigrationCap),
        /// DMA_AVAIL.
        DmaAvail(u32),
        /// Any other id/version with this many body bytes (after the header).
        Other {
            /// Id.
            id: u16,
            /// Version.
            version: u16,
            /// Body length.
            body: usize,
        },
    }

    fn put_u16(buf: &mut Vec<u8>, v: u16) {
        buf.extend_from_slice(&v.to_ne_bytes());
    }
    fn put_u32(buf: &mut Vec<u8>, v: u32) {
        buf.extend_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(buf: &mut Vec<u8>, v: u64) {
        buf.extend_from_slice(&v.to_ne_bytes());
    }

    /// Builds a well-formed reply: header, then the caps in order, each padded to
    /// `align` bytes (4 like 6.1, or 8 like newer kernels), linked front to back.
    pub fn reply(pgsizes: u64, caps: &[Cap], align: usize) -> Vec<u8> {
        let align = align.max(4);
        let mut body: Vec<u8> = Vec::new();
        let mut starts = Vec::new();
        for cap in caps {
            while body.len() % align != 0 {
                body.push(0);
            }
            starts.push(INFO_HEADER_LEN + body.len());
            match cap {
                Cap::IovaRange(r) => {
                    put_u16(&mut body, CAP_IOVA_RANGE);
                    put_u16(&mut body, 1);
                    put_u32(&mut body, 0);
                    put_u32(&mut body, u32::try_from(r.len()).unwrap_or(u32::MAX));
                    put_u32(&mut body, 0);
                    for (s, e) in r {
                        put_u64(&mut body, *s);
                        put_u64(&mut body, *e);
                    }
                }
                Cap::Migration(m) => {
                    put_u16(&mut body, CAP_MIGRATION);
                    put_u16(&mut body, 1);
                    put_u32(&mut body, 0);
                    put_u32(&mut body, m.flags);
                    put_u32(&mut body, 0);
                    put_u64(&mut body, m.pgsize_bitmap);
                    put_u64(&mut body, m.max_dirty_bitmap_size);
                }
                Cap::DmaAvail(n) => {
                    put_u16(&mut body, CAP_DMA_AVAIL);
                    put_u16(&mut body, 1);
                    put_u32(&mut body, 0);
                    put_u32(&mut body, *n);
                }
                Cap::Other {
                    id,
                    version,
                    body: n,
                } => {
                    put_u16(&mut body, *id);
                    put_u16(&mut body, *version);
                    put_u32(&mut body, 0);
                    body.extend(std::iter::repeat_n(0xa5, *n));
                }
            }
        }
        let total = INFO_HEADER_LEN + body.len();
        let mut buf = Vec::with_capacity(total);
        put_u32(&mut buf, u32::try_from(total).unwrap_or(u32::MAX));
        put_u32(
            &mut buf,
            INFO_FLAG_PGSIZES | if caps.is_empty() { 0 } else { INFO_FLAG_CAPS },
        );
        put_u64(&mut buf, pgsizes);
        put_u32(
            &mut buf,
            starts
                .first()
                .map_or(0, |s| u32::try_from(*s).unwrap_or(u32::MAX)),
        );
        put_u32(&mut buf, 0);
        buf.extend_from_slice(&body);
        for (i, s) in starts.iter().enumerate() {
            let next = starts.get(i + 1).copied().unwrap_or(0);
            let next = u32::try_from(next).unwrap_or(u32::MAX).to_ne_bytes();
            buf[s + 4..s + 8].copy_from_slice(&next);
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::build::{Cap, reply};
    use super::*;
    use proptest::prelude::*;

    fn set_u32(buf: &mut [u8], at: usize, v: u32) {
        buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// The 6.1 reply seen in the vm-spike: MIGRATION, DMA_AVAIL, IOVA_RANGE, 116 bytes.
    fn spike_reply() -> Vec<u8> {
        reply(
            0x4020_1000,
            &[
                Cap::Migration(MigrationCap {
                    flags: 0,
                    pgsize_bitmap: 0x1000,
                    max_dirty_bitmap_size: 0x1000_0000,
                }),
                Cap::DmaAvail(65535),
                Cap::IovaRange(vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]),
            ],
            4,
        )
    }

    #[test]
    fn parses_the_6_1_reply() {
        let buf = spike_reply();
        assert_eq!(buf.len(), 116, "6.1 needs 116 bytes for this chain");
        let info = parse_type1_info(&buf).unwrap();
        assert_eq!(info.iova_pgsizes, Some(0x4020_1000));
        assert_eq!(info.dma_avail, Some(65535));
        assert_eq!(
            info.iova_ranges.unwrap(),
            vec![
                IovaRange::new(0, 0xfedf_ffff).unwrap(),
                IovaRange::new(0xfef0_0000, 0x7f_ffff_ffff).unwrap()
            ]
        );
        assert_eq!(info.migration.unwrap().max_dirty_bitmap_size, 0x1000_0000);
        assert!(info.unknown.is_empty());
    }

    #[test]
    fn short_header_and_needs_more() {
        assert!(matches!(
            parse_type1_info(&[0; 15]),
            Err(CapChainError::ShortHeader { .. })
        ));
        let mut buf = spike_reply();
        buf.truncate(24);
        assert_eq!(
            parse_type1_info(&buf),
            Err(CapChainError::NeedsMore {
                argsz: 116,
                len: 24
            })
        );
        // Without the CAPS flag a 16-byte reply is complete.
        let mut small = buf[..16].to_vec();
        set_u32(&mut small, 4, INFO_FLAG_PGSIZES);
        assert_eq!(
            parse_type1_info(&small).unwrap().iova_pgsizes,
            Some(0x4020_1000)
        );
    }

    #[test]
    fn loops_are_errors() {
        let mut buf = spike_reply();
        // Point the last capability (IOVA_RANGE at 68) back at the first (24).
        set_u32(&mut buf, 68 + 4, 24);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::BadLink {
                offset: 68,
                next: 24
            })
        ));
        // A self-loop.
        let mut buf = spike_reply();
        set_u32(&mut buf, 24 + 4, 24);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::BadLink { .. })
        ));
    }

    #[test]
    fn bad_offsets_are_errors() {
        let mut buf = spike_reply();
        set_u32(&mut buf, 16, 8);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::InHeader { offset: 8 })
        ));
        set_u32(&mut buf, 16, 26);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::Misaligned { offset: 26 })
        ));
        set_u32(&mut buf, 16, 116);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::OutOfBounds { .. })
        ));
        set_u32(&mut buf, 16, u32::MAX - 3);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn oversized_nr_iovas_is_an_error() {
        let mut buf = spike_reply();
        set_u32(&mut buf, 68 + 8, 3);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::TooManyRanges {
                nr_iovas: 3,
                room: 2,
                ..
            })
        ));
        set_u32(&mut buf, 68 + 8, u32::MAX);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::TooManyRanges { .. })
        ));
    }

    #[test]
    fn inverted_range_and_duplicates_are_errors() {
        let buf = reply(0x1000, &[Cap::IovaRange(vec![(0x2000, 0x1000)])], 8);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::InvertedRange { .. })
        ));
        let buf = reply(0x1000, &[Cap::DmaAvail(1), Cap::DmaAvail(2)], 8);
        assert!(matches!(
            parse_type1_info(&buf),
            Err(CapChainError::Duplicate { id: 3, .. })
        ));
    }

    #[test]
    fn unknown_caps_are_skipped() {
        let buf = reply(
            0x1000,
            &[
                Cap::Other {
                    id: 99,
                    version: 1,
                    body: 20,
                },
                Cap::IovaRange(vec![(0, u64::MAX)]),
                Cap::Other {
                    id: CAP_DMA_AVAIL,
                    version: 7,
                    body: 0,
                },
            ],
            8,
        );
        let info = parse_type1_info(&buf).unwrap();
        assert_eq!(info.iova_ranges, Some(vec![IovaRange::FULL]));
        assert_eq!(info.dma_avail, None);
        let ids: Vec<_> = info.unknown.iter().map(|u| (u.id, u.version)).collect();
        assert_eq!(ids, vec![(99, 1), (CAP_DMA_AVAIL, 7)]);
    }

    fn arb_cap() -> impl Strategy<Value = Cap> {
        prop_oneof![
            prop::collection::vec((any::<u64>(), any::<u64>()), 0..5).prop_map(|v| Cap::IovaRange(
                v.into_iter().map(|(a, b)| (a.min(b), a.max(b))).collect()
            )),
            (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(f, p, m)| Cap::Migration(
                MigrationCap {
                    flags: f,
                    pgsize_bitmap: p,
                    max_dirty_bitmap_size: m
                }
            )),
            any::<u32>().prop_map(Cap::DmaAvail),
            (4u16..1000, 0u16..3, 0usize..40).prop_map(|(id, version, body)| Cap::Other {
                id,
                version,
                body
            }),
        ]
    }

    /// Keeps at most one of each known capability (duplicates are an error by design).
    fn dedup(caps: Vec<Cap>) -> Vec<Cap> {
        let mut seen = [false; 4];
        caps.into_iter()
            .filter(|c| {
                let k = match c {
                    Cap::IovaRange(_) => 1,
                    Cap::Migration(_) => 2,
                    Cap::DmaAvail(_) => 3,
                    Cap::Other { .. } => 0,
                };
                if k == 0 {
                    return true;
                }
                !std::mem::replace(&mut seen[k], true)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A well-formed chain parses back to what was built (the builder is an
        /// independent model of the kernel's layout).
        #[test]
        fn well_formed_round_trip(caps in prop::collection::vec(arb_cap(), 0..6), align8 in any::<bool>(), pg in any::<u64>()) {
            let caps = dedup(caps);
            let buf = reply(pg, &caps, if align8 { 8 } else { 4 });
            let info = parse_type1_info(&buf).unwrap();
            prop_assert_eq!(info.iova_pgsizes, Some(pg));
            let mut unknown = 0;
            for c in &caps {
                match c {
                    Cap::IovaRange(r) => {
                        let want: Vec<_> = r.iter().map(|(s, e)| IovaRange::new(*s, *e).unwrap()).collect();
                        prop_assert_eq!(info.iova_ranges.as_ref(), Some(&want));
                    }
                    Cap::Migration(m) => prop_assert_eq!(info.migration, Some(*m)),
                    Cap::DmaAvail(n) => prop_assert_eq!(info.dma_avail, Some(*n)),
                    Cap::Other { .. } => unknown += 1,
                }
            }
            prop_assert_eq!(info.unknown.len(), unknown);
        }

        /// Any truncation of a reply (with argsz lowered to match, as a lying kernel
        /// would) is an error or a complete parse, never a panic or a read past the end.
        #[test]
        fn truncated_never_panics(caps in prop::collection::vec(arb_cap(), 1..5), cut in any::<prop::sample::Index>()) {
            let caps = dedup(caps);
            let mut buf = reply(0x1000, &caps, 8);
            let len = cut.index(buf.len() + 1);
            buf.truncate(len);
            if buf.len() >= 4 {
                let l = u32::try_from(buf.len()).unwrap();
                set_u32(&mut buf, 0, l);
            }
            let full_len = reply(0x1000, &caps, 8).len();
            match parse_type1_info(&buf) {
                Ok(_) => {
                    let tail_unknown = matches!(caps.last(), Some(Cap::Other { .. }));
                    prop_assert!(len == full_len || caps.is_empty() || tail_unknown);
                }
                Err(_) => prop_assert!(len < full_len),
            }
        }

        /// Arbitrary bytes after a valid header never panic, and a successful parse
        /// only reports ranges that lie inside the buffer.
        #[test]
        fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..256), first in 0u32..300) {
            if bytes.len() >= 24 {
                let l = u32::try_from(bytes.len()).unwrap();
                set_u32(&mut bytes, 0, l);
                set_u32(&mut bytes, 4, INFO_FLAG_CAPS | INFO_FLAG_PGSIZES);
                set_u32(&mut bytes, 16, first);
            }
            if let Ok(info) = parse_type1_info(&bytes) {
                let n = info.iova_ranges.map_or(0, |r| r.len());
                prop_assert!(24 + 16 + n * 16 <= bytes.len() || n == 0);
            }
        }

        /// Rewriting one `next` link to any value gives an error or a shorter walk,
        /// never a loop.
        #[test]
        fn rewritten_links_terminate(caps in prop::collection::vec(arb_cap(), 2..6), which in any::<prop::sample::Index>(), to in any::<u32>()) {
            let caps = dedup(caps);
            prop_assume!(caps.len() >= 2);
            let mut buf = reply(0x1000, &caps, 4);
            // Find the capability offsets by walking the well-formed chain.
            let mut offs = Vec::new();
            let mut at = u32::from_ne_bytes(buf[16..20].try_into().unwrap()) as usize;
            while at != 0 {
                offs.push(at);
                at = u32::from_ne_bytes(buf[at + 4..at + 8].try_into().unwrap()) as usize;
            }
            let victim = offs[which.index(offs.len())];
            set_u32(&mut buf, victim + 4, to);
            let _ = parse_type1_info(&buf);
        }
    }
}
