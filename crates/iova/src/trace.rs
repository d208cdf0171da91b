//! DMA traces: sequences of map/unmap operations replayed against any [`DmaSpace`].
//!
//! The same trace runs on the simulated [`crate::container::Container`] and on the real
//! kernel (through `iova-linux`), and the outcomes, formatted by [`format_outcome`], are
//! compared line by line. That is how the simulation is held to the kernel.
//!
//! # Format
//!
//! One operation per line; `#` starts a comment; blank lines are ignored. Numbers follow
//! the project's one grammar ([`crate::units::parse_number`]): hex (`0x…`) or decimal,
//! `_` separators allowed, with an optional binary unit (`4K`, `2M`, `1G`).
//!
//! ```text
//! map IOVA SIZE [HOST_ADDR] [r|w|rw|-] [bar] # host address defaults to IOVA,
//!                                        # access to rw; bar: a device BAR mmap
//! unmap IOVA SIZE
//! unmap-all
//! attach GROUP                           # add an IOMMU group of the host
//! detach GROUP
//! allow-iovas [FIRST-LAST[,FIRST-LAST...]] # iommufd ALLOW_IOVAS; none: no restriction
//! map-auto SIZE [HOST_ADDR] [r|w|rw|-]   # iommufd map, the kernel picks the IOVA
//! copy SRC_IOVA LENGTH DST_IOVA|auto [r|w|rw|-] # iommufd IOAS_COPY within the IOAS
//! iova-ranges [CAPACITY]                 # iommufd IOVA_RANGES (array of CAPACITY)
//! ```
//!
//! `-` asks for no access at all (the kernel refuses it: EINVAL). `bar` says the host
//! address is an `mmap` of a device BAR rather than memory (type1 maps it, iommufd
//! refuses it once it has to pin: EFAULT; docs/semantics.md §14). Every operation but
//! `map` (without `bar`), `unmap` and `unmap-all` needs a simulated container and its
//! host ([`apply_sim`]); on any other [`DmaSpace`] [`apply`] answers them ENOTTY.
//!
//! Outcomes are written `ok` (map, attach, detach, allow-iovas), `ok 0x<bytes>`
//! (unmap, unmap-all), `ok 0x<iova>` (map-auto, copy: the destination IOVA),
//! `ok FIRST-LAST,... align 0x<n>` (iova-ranges: the valid ranges and the IOAS
//! alignment), `EMSGSIZE need <n> got FIRST-LAST,... align 0x<n>` (iova-ranges with a
//! CAPACITY smaller than the number of ranges: the kernel's count, the ranges it wrote
//! and the alignment) or the errno name (`EINVAL`, `EEXIST`, ...). An empty list is
//! written `-`.
//!
//! ```
//! use iova::trace::{parse_trace, TraceOp};
//! use iova::dma::Access;
//!
//! let t = parse_trace("map 0x100000 0x200000\n# comment\nunmap 1M 2M\nunmap-all\n")?;
//! assert_eq!(t[0].op, TraceOp::Map { iova: 0x100000, size: 0x200000, host_addr: 0x100000, access: Access::RW });
//! assert_eq!(t[1].line_no, 3);
//! assert_eq!(t[1].op, TraceOp::Unmap { iova: 0x100000, size: 0x200000 });
//! # Ok::<(), iova::trace::TraceError>(())
//! ```

use std::fmt;

use crate::container::Container;
use crate::dma::{Access, Backing, DmaSpace, Errno, MapError, UnmapError};
use crate::host::Host;
use crate::range::{IovaRange, IovaSet};
use crate::units::parse_number;

/// One operation of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TraceOp {
    /// Map `size` bytes at `iova` to `host_addr`.
    Map {
        /// First IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
        /// Host (process virtual) address of the first byte.
        host_addr: u64,
        /// Device access.
        access: Access,
    },
    /// Unmap `[iova, iova + size - 1]`.
    Unmap {
        /// First IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
    },
    /// Unmap everything.
    UnmapAll,
    /// Attach an IOMMU group of the host.
    Attach {
        /// The group id.
        group: u32,
    },
    /// Detach an IOMMU group.
    Detach {
        /// The group id.
        group: u32,
    },
    /// iommufd ALLOW_IOVAS: the ranges as written, `(first, last)` inclusive (kept raw,
    /// so that inverted and overlapping requests reach the kernel's checks).
    AllowIovas {
        /// The ranges; empty lifts the restriction.
        ranges: Vec<(u64, u64)>,
    },
    /// iommufd IOMMU_IOAS_MAP without FIXED_IOVA: the kernel chooses the IOVA.
    MapAuto {
        /// Bytes.
        size: u64,
        /// Host address of the first byte.
        host_addr: u64,
        /// Device access.
        access: Access,
    },
    /// A map whose host address is an `mmap` of a device BAR (`map ... bar`).
    MapBar {
        /// First IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
        /// Host address of the first byte (inside the BAR mapping).
        host_addr: u64,
        /// Device access.
        access: Access,
    },
    /// iommufd IOMMU_IOAS_COPY with the IOAS as source and destination.
    Copy {
        /// First source IOVA.
        src_iova: u64,
        /// Bytes.
        length: u64,
        /// Destination IOVA (`FIXED_IOVA`); `None`: the kernel picks it.
        dst_iova: Option<u64>,
        /// Device access of the new mapping.
        access: Access,
    },
    /// iommufd IOMMU_IOAS_IOVA_RANGES: the valid ranges and the alignment.
    IovaRanges {
        /// Room in the caller's array (`num_iovas` on input); `None`: as much as
        /// needed (a caller that retries after EMSGSIZE).
        capacity: Option<u32>,
    },
}

impl fmt::Display for TraceOp {
    /// The trace-file spelling, parseable by [`parse_trace`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceOp::Map {
                iova,
                size,
                host_addr,
                access,
            } => write!(
                f,
                "map {iova:#x} {size:#x} {host_addr:#x} {}",
                access.as_str()
            ),
            TraceOp::Unmap { iova, size } => write!(f, "unmap {iova:#x} {size:#x}"),
            TraceOp::UnmapAll => f.write_str("unmap-all"),
            TraceOp::Attach { group } => write!(f, "attach {group}"),
            TraceOp::Detach { group } => write!(f, "detach {group}"),
            TraceOp::AllowIovas { ranges } => {
                f.write_str("allow-iovas")?;
                for (i, (a, b)) in ranges.iter().enumerate() {
                    write!(f, "{}{a:#x}-{b:#x}", if i == 0 { " " } else { "," })?;
                }
                Ok(())
            }
            TraceOp::MapAuto {
                size,
                host_addr,
                access,
            } => write!(f, "map-auto {size:#x} {host_addr:#x} {}", access.as_str()),
            TraceOp::MapBar {
                iova,
                size,
                host_addr,
                access,
            } => write!(
                f,
                "map {iova:#x} {size:#x} {host_addr:#x} {} bar",
                access.as_str()
            ),
            TraceOp::Copy {
                src_iova,
                length,
                dst_iova,
                access,
            } => {
                write!(f, "copy {src_iova:#x} {length:#x} ")?;
                match dst_iova {
                    Some(d) => write!(f, "{d:#x}")?,
                    None => f.write_str("auto")?,
                }
                write!(f, " {}", access.as_str())
            }
            TraceOp::IovaRanges { capacity: None } => f.write_str("iova-ranges"),
            TraceOp::IovaRanges { capacity: Some(n) } => write!(f, "iova-ranges {n}"),
        }
    }
}

/// An operation and the line it came from (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLine {
    /// Line number in the trace text, from 1.
    pub line_no: usize,
    /// The operation.
    pub op: TraceOp,
}

/// A trace line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line_no}: '{text}': {reason}")]
pub struct TraceError {
    /// Line number, from 1.
    pub line_no: usize,
    /// The line as written (comment removed, trimmed).
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// What a successful operation answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nothing more than success (map, attach, detach, allow-iovas).
    Done,
    /// Bytes unmapped (unmap, unmap-all).
    Bytes(u128),
    /// The IOVA the kernel chose (map-auto).
    Iova(u64),
    /// The valid ranges and the IOAS alignment (iova-ranges).
    Ranges {
        /// The valid ranges.
        ranges: IovaSet,
        /// `out_iova_alignment`.
        alignment: u64,
    },
    /// iova-ranges with an array too small: the ioctl fails with EMSGSIZE, but
    /// `ioas.c: iommufd_ioas_iova_ranges` has still written back the whole count
    /// (`num_iovas`), `out_iova_alignment`, and the first CAPACITY ranges.
    RangesTooSmall {
        /// How many ranges there are (`num_iovas` written back).
        needed: u32,
        /// The ranges written into the caller's array (the first CAPACITY).
        got: IovaSet,
        /// `out_iova_alignment`.
        alignment: u64,
    },
}

impl Reply {
    /// The errno of an answer that is a failed ioctl carrying data
    /// ([`Reply::RangesTooSmall`]: EMSGSIZE); `None` for a success.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Reply::RangesTooSmall { .. } => Some(Errno::EMSGSIZE),
            _ => None,
        }
    }

    /// The IOVA_RANGES answer for an IOAS whose holes are `ranges`, to a caller with
    /// room for `capacity` entries (`None`: room for all).
    pub fn iova_ranges(ranges: &IovaSet, alignment: u64, capacity: Option<u32>) -> Reply {
        let count = ranges.iter().count();
        match capacity {
            Some(cap) if count > usize::try_from(cap).unwrap_or(usize::MAX) => {
                let cap = usize::try_from(cap).unwrap_or(usize::MAX);
                Reply::RangesTooSmall {
                    needed: u32::try_from(count).unwrap_or(u32::MAX),
                    got: ranges.iter().take(cap).copied().collect(),
                    alignment,
                }
            }
            _ => Reply::Ranges {
                ranges: ranges.clone(),
                alignment,
            },
        }
    }
}

/// The result of one operation: its [`Reply`] or the errno.
pub type Outcome = Result<Reply, Errno>;

fn parse_access(s: &str) -> Option<Access> {
    Some(match s {
        "rw" | "wr" => Access::RW,
        "r" => Access::READ,
        "w" => Access::WRITE,
        "-" => Access::NONE,
        _ => return None,
    })
}

/// Parses a trace (see the [module documentation](self) for the format).
pub fn parse_trace(text: &str) -> Result<Vec<TraceLine>, TraceError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if let Some(line) = parse_trace_line(i + 1, raw)? {
            out.push(line);
        }
    }
    Ok(out)
}

/// The fast path of [`parse_trace_line`] for the lines a machine writes, on the
/// line's bytes (without its `\n`): `Some` only where [`parse_trace_line`] gives the same
/// operation, `None` where it must decide (with its messages).
///
/// A plain line is printable ASCII words separated by ASCII blanks, with no comment,
/// and is `map IOVA SIZE [HOST_ADDR] [ACCESS]` or `unmap IOVA SIZE` whose numbers are
/// bare decimal or `0x` hex digits. Anything else (a comment, a unit, `_`, `0X`, a
/// `bar`/`mem` word, other operations, non-ASCII text, an error of any kind) is `None`.
///
/// ```
/// use iova::trace::{parse_plain_trace_line, parse_trace_line};
/// for line in ["map 0x1000 0x1000", "unmap 4096 4096\r", "map 1 2 3 r"] {
///     let fast = parse_plain_trace_line(7, line.as_bytes());
///     assert_eq!(fast, parse_trace_line(7, line)?);
/// }
/// assert_eq!(parse_plain_trace_line(1, b"map 4K 4K"), None);
/// assert_eq!(parse_plain_trace_line(1, b"map 0x1000 0x1000 # c"), None);
/// # Ok::<(), iova::trace::TraceError>(())
/// ```
pub fn parse_plain_trace_line(line_no: usize, line: &[u8]) -> Option<TraceLine> {
    let mut words = PlainWords { b: line, i: 0 };
    let op = match words.next()? {
        b"unmap" => {
            let iova = plain_number(words.next()?)?;
            let size = plain_number(words.next()?)?;
            TraceOp::Unmap { iova, size }
        }
        b"map" => {
            let iova = plain_number(words.next()?)?;
            let size = plain_number(words.next()?)?;
            let (mut host_addr, mut access) = (iova, Access::RW);
            if let Some(w) = words.next() {
                match plain_access(w) {
                    Some(a) => access = a,
                    None => {
                        host_addr = plain_number(w)?;
                        if let Some(a) = words.next() {
                            access = plain_access(a)?;
                        }
                    }
                }
            }
            TraceOp::Map {
                iova,
                size,
                host_addr,
                access,
            }
        }
        _ => return None,
    };
    // Nothing may follow (a `bar`/`mem` word, an extra field, a comment, a byte that
    // is not plain): the full parser decides.
    words.at_end().then_some(TraceLine { line_no, op })
}

/// The words of a plain line: runs of printable ASCII other than `#`, separated by
/// the ASCII characters `char::is_whitespace` accepts.
struct PlainWords<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> PlainWords<'a> {
    fn skip_blanks(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                break;
            }
            self.i += 1;
        }
    }

    /// The next word; `None` at the end or at a byte that is neither a blank nor a
    /// word's.
    fn next(&mut self) -> Option<&'a [u8]> {
        self.skip_blanks();
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if !(0x21..=0x7e).contains(&c) || c == b'#' {
                break;
            }
            self.i += 1;
        }
        let w = self.b.get(start..self.i)?;
        (!w.is_empty()).then_some(w)
    }

    /// Whether only blanks are left.
    fn at_end(&mut self) -> bool {
        self.skip_blanks();
        self.i >= self.b.len()
    }
}

/// [`parse_access`] of a plain word.
fn plain_access(w: &[u8]) -> Option<Access> {
    parse_access(std::str::from_utf8(w).ok()?)
}

/// The value of each byte as a hex digit; 0xff for a byte that is not one.
static HEX_DIGIT: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A number of the plain form only: `0x` and hex digits, or decimal digits (no
/// unit, no `_`, no `0X`); `None` for anything else, including a value above
/// 2^64-1. Where it answers, [`parse_number`] answers the same.
fn plain_number(w: &[u8]) -> Option<u64> {
    let (digits, radix) = match w {
        [b'0', b'x', rest @ ..] => (rest, 16u64),
        _ => (w, 10u64),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    if radix == 16 {
        for &c in digits {
            let d = HEX_DIGIT[usize::from(c)];
            if d > 0xf {
                return None;
            }
            // Four more bits must fit.
            if value >> 60 != 0 {
                return None;
            }
            value = (value << 4) | u64::from(d);
        }
    } else {
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
    }
    Some(value)
}

/// Parses one line of a trace (`line_no` from 1, for errors): `None` for a blank or
/// comment-only line. Lets a reader apply a trace line by line, in bounded memory.
pub fn parse_trace_line(line_no: usize, raw: &str) -> Result<Option<TraceLine>, TraceError> {
    if let Some(line) = parse_plain_trace_line(line_no, raw.as_bytes()) {
        return Ok(Some(line));
    }
    parse_line_full(line_no, raw)
}

/// [`parse_trace_line`] without its fast path: the whole grammar and its messages.
fn parse_line_full(line_no: usize, raw: &str) -> Result<Option<TraceLine>, TraceError> {
    let body = raw.split('#').next().unwrap_or("").trim();
    if body.is_empty() {
        return Ok(None);
    }
    let err = |reason: String| TraceError {
        line_no,
        text: body.to_owned(),
        reason,
    };
    let words: Vec<&str> = body.split_whitespace().collect();
    let num = |k: usize, what: &str| -> Result<u64, TraceError> {
        let w = words.get(k).ok_or_else(|| err(format!("missing {what}")))?;
        parse_number(w).map_err(|e| err(format!("{what}: {e}")))
    };
    let op = match words[0] {
        "map" => {
            // An optional last word says what backs the host address.
            let (words, backing) = match words.last().copied() {
                Some("bar") if words.len() > 3 => (&words[..words.len() - 1], Backing::Bar),
                Some("mem") if words.len() > 3 => (&words[..words.len() - 1], Backing::Memory),
                _ => (&words[..], Backing::Memory),
            };
            if words.len() > 5 {
                return Err(err(
                    "too many fields (map IOVA SIZE [HOST_ADDR] [r|w|rw] [bar|mem])".into(),
                ));
            }
            let num = |k: usize, what: &str| -> Result<u64, TraceError> {
                let w = words.get(k).ok_or_else(|| err(format!("missing {what}")))?;
                parse_number(w).map_err(|e| err(format!("{what}: {e}")))
            };
            let iova = num(1, "IOVA")?;
            let size = num(2, "SIZE")?;
            let mut host_addr = iova;
            let mut access = Access::RW;
            match &words[3..] {
                [] => {}
                [a] => match parse_access(a) {
                    Some(acc) => access = acc,
                    None => host_addr = num(3, "HOST_ADDR")?,
                },
                [_, a] => {
                    host_addr = num(3, "HOST_ADDR")?;
                    access = parse_access(a)
                        .ok_or_else(|| err(format!("access '{a}' is not one of r, w, rw, -")))?;
                }
                _ => return Err(err("too many fields".into())),
            }
            match backing {
                Backing::Memory => TraceOp::Map {
                    iova,
                    size,
                    host_addr,
                    access,
                },
                Backing::Bar => TraceOp::MapBar {
                    iova,
                    size,
                    host_addr,
                    access,
                },
            }
        }
        "unmap" => {
            if words.len() != 3 {
                return Err(err("expected: unmap IOVA SIZE".into()));
            }
            TraceOp::Unmap {
                iova: num(1, "IOVA")?,
                size: num(2, "SIZE")?,
            }
        }
        "unmap-all" => {
            if words.len() != 1 {
                return Err(err("unmap-all takes no arguments".into()));
            }
            TraceOp::UnmapAll
        }
        "attach" | "detach" => {
            if words.len() != 2 {
                return Err(err(format!("expected: {} GROUP", words[0])));
            }
            let group = words[1]
                .parse::<u32>()
                .map_err(|e| err(format!("GROUP '{}': {e}", words[1])))?;
            if words[0] == "attach" {
                TraceOp::Attach { group }
            } else {
                TraceOp::Detach { group }
            }
        }
        "allow-iovas" => {
            if words.len() > 2 {
                return Err(err(
                    "expected: allow-iovas [FIRST-LAST[,FIRST-LAST...]]".into()
                ));
            }
            let mut ranges = Vec::new();
            if let Some(list) = words.get(1) {
                for part in list.split(',') {
                    let (a, b) = part
                        .split_once('-')
                        .ok_or_else(|| err(format!("range '{part}' is not FIRST-LAST")))?;
                    let a = parse_number(a).map_err(|e| err(format!("FIRST: {e}")))?;
                    let b = parse_number(b).map_err(|e| err(format!("LAST: {e}")))?;
                    ranges.push((a, b));
                }
            }
            TraceOp::AllowIovas { ranges }
        }
        "map-auto" => {
            if words.len() > 4 {
                return Err(err(
                    "too many fields (map-auto SIZE [HOST_ADDR] [r|w|rw])".into()
                ));
            }
            let size = num(1, "SIZE")?;
            let mut host_addr = 0;
            let mut access = Access::RW;
            match &words[2..] {
                [] => {}
                [a] => match parse_access(a) {
                    Some(acc) => access = acc,
                    None => host_addr = num(2, "HOST_ADDR")?,
                },
                [_, a] => {
                    host_addr = num(2, "HOST_ADDR")?;
                    access = parse_access(a)
                        .ok_or_else(|| err(format!("access '{a}' is not one of r, w, rw, -")))?;
                }
                _ => return Err(err("too many fields".into())),
            }
            TraceOp::MapAuto {
                size,
                host_addr,
                access,
            }
        }
        "iova-ranges" => {
            if words.len() > 2 {
                return Err(err("expected: iova-ranges [CAPACITY]".into()));
            }
            let capacity =
                match words.get(1) {
                    None => None,
                    Some(_) => Some(u32::try_from(num(1, "CAPACITY")?).map_err(|_| {
                        err("CAPACITY is above 2^32-1 (num_iovas is 32-bit)".into())
                    })?),
                };
            TraceOp::IovaRanges { capacity }
        }
        "copy" => {
            if !(4..=5).contains(&words.len()) {
                return Err(err(
                    "expected: copy SRC_IOVA LENGTH DST_IOVA|auto [r|w|rw|-]".into(),
                ));
            }
            let src_iova = num(1, "SRC_IOVA")?;
            let length = num(2, "LENGTH")?;
            let dst_iova = match words[3] {
                "auto" => None,
                _ => Some(num(3, "DST_IOVA")?),
            };
            let access = match words.get(4) {
                None => Access::RW,
                Some(a) => parse_access(a)
                    .ok_or_else(|| err(format!("access '{a}' is not one of r, w, rw, -")))?,
            };
            TraceOp::Copy {
                src_iova,
                length,
                dst_iova,
                access,
            }
        }
        w => {
            return Err(err(format!(
                "unknown operation '{w}' (expected map, unmap, unmap-all, attach, \
                 detach, allow-iovas, map-auto, copy or iova-ranges)"
            )));
        }
    };
    Ok(Some(TraceLine { line_no, op }))
}

/// Runs one operation on a DMA space. The operations a bare [`DmaSpace`] has no call
/// for (attach, detach, allow-iovas, map-auto, map ... bar, copy, iova-ranges) answer
/// ENOTTY; see [`apply_sim`].
pub fn apply(space: &mut dyn DmaSpace, op: &TraceOp) -> Outcome {
    apply_detailed(space, op).map_err(|e| e.errno())
}

/// Why an operation of a trace was refused: the DMA space's own error where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// A map was refused.
    #[error(transparent)]
    Map(#[from] MapError),
    /// An unmap (or unmap-all) was refused.
    #[error(transparent)]
    Unmap(#[from] UnmapError),
    /// Another operation was refused with this errno.
    #[error("refused with {0}")]
    Other(Errno),
}

impl OpError {
    /// The errno the kernel answers.
    pub fn errno(&self) -> Errno {
        match self {
            OpError::Map(e) => e.errno(),
            OpError::Unmap(e) => e.errno(),
            OpError::Other(e) => *e,
        }
    }
}

/// [`apply`], keeping the space's error (which says why) instead of just its errno.
pub fn apply_detailed(space: &mut dyn DmaSpace, op: &TraceOp) -> Result<Reply, OpError> {
    match *op {
        TraceOp::Map {
            iova,
            size,
            host_addr,
            access,
        } => Ok(space
            .map(iova, host_addr, size, access)
            .map(|()| Reply::Done)?),
        TraceOp::Unmap { iova, size } => Ok(space.unmap(iova, size).map(Reply::Bytes)?),
        TraceOp::UnmapAll => Ok(space.unmap_all().map(Reply::Bytes)?),
        TraceOp::Attach { .. }
        | TraceOp::Detach { .. }
        | TraceOp::AllowIovas { .. }
        | TraceOp::MapAuto { .. }
        | TraceOp::MapBar { .. }
        | TraceOp::Copy { .. }
        | TraceOp::IovaRanges { .. } => Err(OpError::Other(Errno::ENOTTY)),
    }
}

/// Runs any operation on a simulated container whose groups come from `host`.
///
/// `allow-iovas` refuses, as `iommufd_ioas_load_iovas` does, a range with
/// `first >= last` and two ranges that overlap (EINVAL) before the container's own
/// checks. `iova-ranges` and `copy` are iommufd ioctls (type1 flavours: ENOTTY); on
/// the compatibility container they answer ENOTTY too (its IOAS is reached through
/// `IOMMU_VFIO_IOAS` only). `iova-ranges CAPACITY` answers
/// [`Reply::RangesTooSmall`] when the IOAS has more ranges than that.
pub fn apply_sim(c: &mut Container, host: &Host, op: &TraceOp) -> Outcome {
    use crate::domain::Flavour;
    match op {
        TraceOp::Attach { group } => c
            .attach(host, *group)
            .map(|()| Reply::Done)
            .map_err(|e| e.errno()),
        TraceOp::Detach { group } => c
            .detach(*group)
            .map(|()| Reply::Done)
            .map_err(|e| e.errno()),
        TraceOp::AllowIovas { ranges } => {
            if c.config().flavour() != Flavour::Iommufd {
                return Err(Errno::ENOTTY);
            }
            let mut set = IovaSet::default();
            for &(a, b) in ranges {
                let r = IovaRange::new(a, b).map_err(|_| Errno::EINVAL)?;
                if a >= b || set.overlaps(&r) {
                    return Err(Errno::EINVAL);
                }
                set.insert(r);
            }
            c.allow_iovas(&set)
                .map(|()| Reply::Done)
                .map_err(|e| e.errno())
        }
        TraceOp::MapAuto {
            size,
            host_addr,
            access,
        } => c
            .map_auto(*host_addr, *size, *access)
            .map(Reply::Iova)
            .map_err(|e| e.errno()),
        TraceOp::IovaRanges { capacity } => {
            if c.config().flavour() != Flavour::Iommufd {
                return Err(Errno::ENOTTY);
            }
            Ok(Reply::iova_ranges(
                &c.valid_iovas(),
                c.alignment(),
                *capacity,
            ))
        }
        TraceOp::MapBar {
            iova,
            size,
            host_addr,
            access,
        } => c
            .map_backed(*iova, *host_addr, *size, *access, Backing::Bar)
            .map(|()| Reply::Done)
            .map_err(|e| e.errno()),
        TraceOp::Copy {
            src_iova,
            length,
            dst_iova,
            access,
        } => c
            .copy(*src_iova, *length, *dst_iova, *access)
            .map(Reply::Iova)
            .map_err(|e| e.errno()),
        other => apply(c, other),
    }
}

/// `FIRST-LAST,...`, or `-` for none.
fn range_list(ranges: &IovaSet) -> String {
    let list: Vec<String> = ranges
        .iter()
        .map(|r| format!("{:#x}-{:#x}", r.first(), r.last()))
        .collect();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(",")
    }
}

/// `ok`, `ok 0x<bytes>`, `ok 0x<iova>`, `ok FIRST-LAST,... align 0x<n>`,
/// `EMSGSIZE need <n> got FIRST-LAST,... align 0x<n>` or the errno name.
pub fn format_outcome(o: &Outcome) -> String {
    match o {
        Ok(Reply::Done) => "ok".to_owned(),
        Ok(Reply::Bytes(bytes)) => format!("ok {bytes:#x}"),
        Ok(Reply::Iova(iova)) => format!("ok {iova:#x}"),
        Ok(Reply::Ranges { ranges, alignment }) => {
            format!("ok {} align {alignment:#x}", range_list(ranges))
        }
        Ok(Reply::RangesTooSmall {
            needed,
            got,
            alignment,
        }) => format!(
            "EMSGSIZE need {needed} got {} align {alignment:#x}",
            range_list(got)
        ),
        Err(e) => e.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_line_and_text() {
        let e = parse_trace("map 0x1000 0x1000\n\nmap 0x1000 zz\n").unwrap_err();
        assert_eq!(e.line_no, 3);
        assert_eq!(e.text, "map 0x1000 zz");
        assert!(e.to_string().contains("SIZE"), "{e}");
        assert!(parse_trace("frob 1 2").unwrap_err().reason.contains("frob"));
        assert!(parse_trace("unmap 1").is_err());
        assert!(parse_trace("unmap-all 0").is_err());
        assert!(parse_trace("map 0 0x1000 0 rw extra").is_err());
        assert!(parse_trace("map 0 0x1000 0 x").is_err());
    }

    #[test]
    fn the_fast_path_answers_only_as_the_full_parser_does() {
        let words = [
            "map",
            "unmap",
            "unmap-all",
            "0x1000",
            "4096",
            "0X1000",
            "0x",
            "4K",
            "1_000",
            "0xfffffffffffffffff",
            "18446744073709551615",
            "18446744073709551616",
            "0xffff_ffff",
            "r",
            "w",
            "rw",
            "wr",
            "-",
            "x",
            "bar",
            "mem",
            "#",
            "#c",
            "\u{a0}",
            "é",
            "0x00000000000000001",
            "",
        ];
        let seps = [" ", "\t", "  ", "\r", "\u{2003}", "\x0b", "\x1f"];
        let mut lines = Vec::new();
        for a in &words[..3] {
            for b in words {
                for c in words {
                    for sep in seps {
                        lines.push(format!("{a}{sep}{b} {c}"));
                        lines.push(format!("{sep}{a} {b}{sep}{c}{sep}"));
                        for d in ["r", "0x9000", "bar", "#x", "0x9000 w", "0x9000 x", "1 2 3"] {
                            lines.push(format!("{a} {b}{sep}{c} {d}"));
                        }
                    }
                }
            }
        }
        let mut fast = 0;
        for (i, line) in lines.iter().enumerate() {
            let full = parse_line_full(i + 1, line);
            if let Some(got) = parse_plain_trace_line(i + 1, line.as_bytes()) {
                fast += 1;
                assert_eq!(full, Ok(Some(got)), "{line:?}");
            }
            assert_eq!(parse_trace_line(i + 1, line), full, "{line:?}");
        }
        assert!(fast > 500, "{fast}");
    }

    #[test]
    fn parse_forms() {
        let t =
            parse_trace("map 0x2000 4096 r # ro\nmap 0x3000 0x1000 0x9000\nmap 1 2 3 -\n").unwrap();
        assert_eq!(
            t[0].op,
            TraceOp::Map {
                iova: 0x2000,
                size: 4096,
                host_addr: 0x2000,
                access: Access::READ
            }
        );
        assert_eq!(
            t[1].op,
            TraceOp::Map {
                iova: 0x3000,
                size: 0x1000,
                host_addr: 0x9000,
                access: Access::RW
            }
        );
        assert_eq!(
            t[2].op,
            TraceOp::Map {
                iova: 1,
                size: 2,
                host_addr: 3,
                access: Access::NONE
            }
        );
        let more = parse_trace(
            "attach 3\ndetach 3\nallow-iovas 0x1000-0x1fff,16K-20K\nallow-iovas\n\
             map-auto 0x2000\nmap-auto 8K 0x7f00 r\niova-ranges\niova-ranges 0\n\
             copy 0x1000 4K auto\ncopy 0x1000 0x1000 0x9000 r\nmap 0x1000 4K 0x5000 r bar\n\
             map 0x1000 4K bar\nmap 0x1000 4K mem\n",
        )
        .unwrap();
        assert_eq!(more[0].op, TraceOp::Attach { group: 3 });
        assert_eq!(
            more[2].op,
            TraceOp::AllowIovas {
                ranges: vec![(0x1000, 0x1fff), (0x4000, 0x5000)]
            }
        );
        assert_eq!(more[3].op, TraceOp::AllowIovas { ranges: vec![] });
        assert_eq!(more[6].op, TraceOp::IovaRanges { capacity: None });
        assert_eq!(more[7].op, TraceOp::IovaRanges { capacity: Some(0) });
        assert_eq!(
            more[8].op,
            TraceOp::Copy {
                src_iova: 0x1000,
                length: 0x1000,
                dst_iova: None,
                access: Access::RW
            }
        );
        assert_eq!(
            more[9].op,
            TraceOp::Copy {
                src_iova: 0x1000,
                length: 0x1000,
                dst_iova: Some(0x9000),
                access: Access::READ
            }
        );
        assert_eq!(
            more[10].op,
            TraceOp::MapBar {
                iova: 0x1000,
                size: 0x1000,
                host_addr: 0x5000,
                access: Access::READ
            }
        );
        assert_eq!(
            more[11].op,
            TraceOp::MapBar {
                iova: 0x1000,
                size: 0x1000,
                host_addr: 0x1000,
                access: Access::RW
            }
        );
        assert_eq!(
            more[12].op,
            TraceOp::Map {
                iova: 0x1000,
                size: 0x1000,
                host_addr: 0x1000,
                access: Access::RW
            }
        );
        assert_eq!(
            more[5].op,
            TraceOp::MapAuto {
                size: 0x2000,
                host_addr: 0x7f00,
                access: Access::READ
            }
        );
        for bad in [
            "attach",
            "attach x",
            "detach 1 2",
            "allow-iovas 1",
            "allow-iovas 1-2 3-4",
            "map-auto",
            "map-auto 1 2 r x",
            "iova-ranges 1 2",
            "iova-ranges x",
            "iova-ranges 0x100000000",
            "copy 1 2",
            "copy 1 2 x",
            "copy 1 2 3 rw 4",
            "copy 1 2 3 q",
            "map bar",
            "map 1 bar",
            "map 1 2 3 rw x bar",
        ] {
            assert!(parse_trace(bad).is_err(), "{bad}");
        }
        // Display round-trips.
        for l in t.iter().chain(&more) {
            let back = parse_trace(&l.op.to_string()).unwrap();
            assert_eq!(back[0].op, l.op);
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(format_outcome(&Ok(Reply::Done)), "ok");
        assert_eq!(format_outcome(&Ok(Reply::Bytes(0x20_0000))), "ok 0x200000");
        assert_eq!(format_outcome(&Ok(Reply::Bytes(0))), "ok 0x0");
        assert_eq!(format_outcome(&Ok(Reply::Iova(0x1000))), "ok 0x1000");
        let ranges = IovaSet::from(IovaRange::new(0x100_0000, 0x7fff_ffff).unwrap());
        assert_eq!(
            format_outcome(&Ok(Reply::Ranges {
                ranges,
                alignment: 0x800
            })),
            "ok 0x1000000-0x7fffffff align 0x800"
        );
        assert_eq!(format_outcome(&Err(Errno::EEXIST)), "EEXIST");
        let two: IovaSet = [
            IovaRange::new(0, 0xfedf_ffff).unwrap(),
            IovaRange::new(0xfef0_0000, 0x7f_ffff_ffff).unwrap(),
        ]
        .into_iter()
        .collect();
        let short = Reply::iova_ranges(&two, 0x1000, Some(1));
        assert_eq!(short.errno(), Some(Errno::EMSGSIZE));
        assert_eq!(
            format_outcome(&Ok(short)),
            "EMSGSIZE need 2 got 0x0-0xfedfffff align 0x1000"
        );
        assert_eq!(
            format_outcome(&Ok(Reply::iova_ranges(&two, 0x1000, Some(0)))),
            "EMSGSIZE need 2 got - align 0x1000"
        );
        let fits = Reply::iova_ranges(&two, 0x1000, Some(2));
        assert_eq!(fits.errno(), None);
        assert_eq!(fits, Reply::iova_ranges(&two, 0x1000, None));
    }
}
