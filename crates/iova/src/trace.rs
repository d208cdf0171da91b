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
//! map IOVA SIZE [HOST_ADDR] [r|w|rw|-]   # host address defaults to IOVA, access to rw
//! unmap IOVA SIZE
//! unmap-all
//! attach GROUP                           # add an IOMMU group of the host
//! detach GROUP
//! allow-iovas [FIRST-LAST[,FIRST-LAST...]] # iommufd ALLOW_IOVAS; none: no restriction
//! map-auto SIZE [HOST_ADDR] [r|w|rw|-]   # iommufd map, the kernel picks the IOVA
//! iova-ranges                            # iommufd IOVA_RANGES
//! ```
//!
//! `-` asks for no access at all (the kernel refuses it: EINVAL). The last five need a
//! simulated container and its host ([`apply_sim`]); on any other [`DmaSpace`]
//! [`apply`] answers them ENOTTY.
//!
//! Outcomes are written `ok` (map, attach, detach, allow-iovas), `ok 0x<bytes>`
//! (unmap, unmap-all), `ok 0x<iova>` (map-auto), `ok FIRST-LAST,... align 0x<n>`
//! (iova-ranges: the valid ranges and the IOAS alignment) or the errno name (`EINVAL`,
//! `EEXIST`, ...).
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
use crate::dma::{Access, DmaSpace, Errno, MapError, UnmapError};
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
    /// iommufd IOMMU_IOAS_IOVA_RANGES: the valid ranges and the alignment.
    IovaRanges,
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
            TraceOp::IovaRanges => f.write_str("iova-ranges"),
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

/// Parses one line of a trace (`line_no` from 1, for errors): `None` for a blank or
/// comment-only line. Lets a reader apply a trace line by line, in bounded memory.
pub fn parse_trace_line(line_no: usize, raw: &str) -> Result<Option<TraceLine>, TraceError> {
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
            if words.len() > 5 {
                return Err(err(
                    "too many fields (map IOVA SIZE [HOST_ADDR] [r|w|rw])".into()
                ));
            }
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
            TraceOp::Map {
                iova,
                size,
                host_addr,
                access,
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
            if words.len() != 1 {
                return Err(err("iova-ranges takes no arguments".into()));
            }
            TraceOp::IovaRanges
        }
        w => {
            return Err(err(format!(
                "unknown operation '{w}' (expected map, unmap, unmap-all, attach, \
                 detach, allow-iovas, map-auto or iova-ranges)"
            )));
        }
    };
    Ok(Some(TraceLine { line_no, op }))
}

/// Runs one operation on a DMA space. The operations a bare [`DmaSpace`] has no call
/// for (attach, detach, allow-iovas, map-auto, iova-ranges) answer ENOTTY; see
/// [`apply_sim`].
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
        | TraceOp::IovaRanges => Err(OpError::Other(Errno::ENOTTY)),
    }
}

/// Runs any operation on a simulated container whose groups come from `host`.
///
/// `allow-iovas` refuses, as `iommufd_ioas_load_iovas` does, a range with
/// `first >= last` and two ranges that overlap (EINVAL) before the container's own
/// checks. `iova-ranges` is an iommufd ioctl (type1 flavours: ENOTTY); on the
/// compatibility container it answers ENOTTY too (its IOAS is reached through
/// `IOMMU_VFIO_IOAS` only).
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
        TraceOp::IovaRanges => {
            if c.config().flavour() != Flavour::Iommufd {
                return Err(Errno::ENOTTY);
            }
            Ok(Reply::Ranges {
                ranges: c.valid_iovas(),
                alignment: c.alignment(),
            })
        }
        other => apply(c, other),
    }
}

/// `ok`, `ok 0x<bytes>`, `ok 0x<iova>`, `ok FIRST-LAST,... align 0x<n>` or the errno
/// name.
pub fn format_outcome(o: &Outcome) -> String {
    match o {
        Ok(Reply::Done) => "ok".to_owned(),
        Ok(Reply::Bytes(bytes)) => format!("ok {bytes:#x}"),
        Ok(Reply::Iova(iova)) => format!("ok {iova:#x}"),
        Ok(Reply::Ranges { ranges, alignment }) => {
            let list: Vec<String> = ranges
                .iter()
                .map(|r| format!("{:#x}-{:#x}", r.first(), r.last()))
                .collect();
            let list = if list.is_empty() {
                "-".to_owned()
            } else {
                list.join(",")
            };
            format!("ok {list} align {alignment:#x}")
        }
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
             map-auto 0x2000\nmap-auto 8K 0x7f00 r\niova-ranges\n",
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
            "iova-ranges 1",
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
    }
}
