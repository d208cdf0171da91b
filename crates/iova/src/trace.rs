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
//! ```
//!
//! `-` asks for no access at all (the kernel refuses it: EINVAL).
//!
//! Outcomes are written `ok` (map), `ok 0x<bytes>` (unmap, unmap-all) or the errno name
//! (`EINVAL`, `EEXIST`, ...).
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

use crate::dma::{Access, DmaSpace, Errno, MapError, UnmapError};
use crate::units::parse_number;

/// One operation of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
        }
    }
}

/// An operation and the line it came from (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The result of one operation: `Some(bytes)` for unmaps, `None` for maps, or the errno.
pub type Outcome = Result<Option<u128>, Errno>;

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
                _ => unreachable!("length checked above"),
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
        w => {
            return Err(err(format!(
                "unknown operation '{w}' (expected map, unmap or unmap-all)"
            )));
        }
    };
    Ok(Some(TraceLine { line_no, op }))
}

/// Runs one operation on a DMA space.
pub fn apply(space: &mut dyn DmaSpace, op: &TraceOp) -> Outcome {
    apply_detailed(space, op).map_err(|e| e.errno())
}

/// Why an operation of a trace was refused: the DMA space's own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A map was refused.
    #[error(transparent)]
    Map(#[from] MapError),
    /// An unmap (or unmap-all) was refused.
    #[error(transparent)]
    Unmap(#[from] UnmapError),
}

impl OpError {
    /// The errno the kernel answers.
    pub fn errno(&self) -> Errno {
        match self {
            OpError::Map(e) => e.errno(),
            OpError::Unmap(e) => e.errno(),
        }
    }
}

/// [`apply`], keeping the space's error (which says why) instead of just its errno.
pub fn apply_detailed(space: &mut dyn DmaSpace, op: &TraceOp) -> Result<Option<u128>, OpError> {
    match *op {
        TraceOp::Map {
            iova,
            size,
            host_addr,
            access,
        } => Ok(space.map(iova, host_addr, size, access).map(|()| None)?),
        TraceOp::Unmap { iova, size } => Ok(space.unmap(iova, size).map(Some)?),
        TraceOp::UnmapAll => Ok(space.unmap_all().map(Some)?),
    }
}

/// `ok`, `ok 0x<bytes>` or the errno name.
pub fn format_outcome(o: &Outcome) -> String {
    match o {
        Ok(None) => "ok".to_owned(),
        Ok(Some(bytes)) => format!("ok {bytes:#x}"),
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
        // Display round-trips.
        for l in &t {
            let back = parse_trace(&l.op.to_string()).unwrap();
            assert_eq!(back[0].op, l.op);
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(format_outcome(&Ok(None)), "ok");
        assert_eq!(format_outcome(&Ok(Some(0x20_0000))), "ok 0x200000");
        assert_eq!(format_outcome(&Ok(Some(0))), "ok 0x0");
        assert_eq!(format_outcome(&Err(Errno::EEXIST)), "EEXIST");
    }
}
