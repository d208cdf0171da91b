//! sPAPR traces: the map/unmap lines of [`crate::trace`] plus the sPAPR container
//! operations, replayed on any [`SpaprSpace`] (the simulation or the real kernel).
//!
//! ```text
//! map IOVA SIZE [VADDR] [r|w|rw|-]        # as in crate::trace
//! unmap IOVA SIZE
//! unmap-all                               # sPAPR has no unmap-all flag: EINVAL
//! register VADDR SIZE                     # VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2)
//! unregister VADDR SIZE                   # VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2)
//! enable                                  # VFIO_IOMMU_ENABLE (v1)
//! disable                                 # VFIO_IOMMU_DISABLE (v1)
//! create-window PAGE_SHIFT SIZE LEVELS    # VFIO_IOMMU_SPAPR_TCE_CREATE
//! remove-window ADDR                      # VFIO_IOMMU_SPAPR_TCE_REMOVE
//! ```
//!
//! Answers: `ok`; `ok 0xSTART` for `create-window`; `ret N` when the kernel returns a
//! positive value (1 for an unaligned IOVA); an errno name; or
//! `refused: BUG` when the request would hit a [`super::KernelDefect`].
//!
//! ```
//! use iova::spapr::{SpaprConfig, SpaprContainer, SpaprVersion};
//! use iova::spapr::trace::{apply, format_outcome, parse_spapr_trace};
//!
//! let t = parse_spapr_trace("register 0x10000000 16M\nmap 0 64K 0x10000000\nmap 0x800 4K 0x10000000\ncreate-window 12 4G 1\n")?;
//! let mut c = SpaprContainer::new(SpaprConfig::qemu_pseries(SpaprVersion::V2));
//! let out: Vec<String> = t.iter().map(|l| format_outcome(&apply(&mut c, &l.op))).collect();
//! assert_eq!(out, ["ok", "ok", "ret 1", "ok 0x800000000000000"]);
//! # Ok::<(), iova::trace::TraceError>(())
//! ```

use std::fmt;

use super::{KernelDefect, SpaprError, SpaprSpace};
use crate::dma::{Access, Errno};
use crate::trace::{TraceError, TraceOp, parse_trace};
use crate::units::parse_number;

/// One operation of a sPAPR trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpaprOp {
    /// `map`.
    Map {
        /// First IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
        /// User address of the first byte.
        vaddr: u64,
        /// Device access.
        access: Access,
    },
    /// `unmap`.
    Unmap {
        /// First IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
    },
    /// `unmap-all` (no such operation in sPAPR: EINVAL).
    UnmapAll,
    /// `register VADDR SIZE`.
    Register {
        /// First user address.
        vaddr: u64,
        /// Bytes.
        size: u64,
    },
    /// `unregister VADDR SIZE`.
    Unregister {
        /// First user address.
        vaddr: u64,
        /// Bytes.
        size: u64,
    },
    /// `enable`.
    Enable,
    /// `disable`.
    Disable,
    /// `create-window PAGE_SHIFT SIZE LEVELS`.
    CreateWindow {
        /// TCE page shift.
        page_shift: u32,
        /// Window bytes.
        size: u64,
        /// Table levels.
        levels: u32,
    },
    /// `remove-window ADDR`.
    RemoveWindow {
        /// Any address inside the window.
        addr: u64,
    },
}

impl SpaprOp {
    /// The user-address range the operation names, if any (`map`, `register`,
    /// `unregister`), so that a real run can move it into memory it holds.
    pub fn user_range(&self) -> Option<(u64, u64)> {
        match *self {
            SpaprOp::Map { vaddr, size, .. }
            | SpaprOp::Register { vaddr, size }
            | SpaprOp::Unregister { vaddr, size } => Some((vaddr, size)),
            _ => None,
        }
    }

    /// The same operation with its user address replaced.
    pub fn with_user_addr(self, new: u64) -> SpaprOp {
        match self {
            SpaprOp::Map {
                iova, size, access, ..
            } => SpaprOp::Map {
                iova,
                size,
                vaddr: new,
                access,
            },
            SpaprOp::Register { size, .. } => SpaprOp::Register { vaddr: new, size },
            SpaprOp::Unregister { size, .. } => SpaprOp::Unregister { vaddr: new, size },
            other => other,
        }
    }
}

impl fmt::Display for SpaprOp {
    /// The trace spelling, parseable by [`parse_spapr_trace`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SpaprOp::Map {
                iova,
                size,
                vaddr,
                access,
            } => write!(f, "map {iova:#x} {size:#x} {vaddr:#x} {}", access.as_str()),
            SpaprOp::Unmap { iova, size } => write!(f, "unmap {iova:#x} {size:#x}"),
            SpaprOp::UnmapAll => f.write_str("unmap-all"),
            SpaprOp::Register { vaddr, size } => write!(f, "register {vaddr:#x} {size:#x}"),
            SpaprOp::Unregister { vaddr, size } => write!(f, "unregister {vaddr:#x} {size:#x}"),
            SpaprOp::Enable => f.write_str("enable"),
            SpaprOp::Disable => f.write_str("disable"),
            SpaprOp::CreateWindow {
                page_shift,
                size,
                levels,
            } => write!(f, "create-window {page_shift} {size:#x} {levels}"),
            SpaprOp::RemoveWindow { addr } => write!(f, "remove-window {addr:#x}"),
        }
    }
}

/// An operation and the line it came from (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaprLine {
    /// Line number, from 1.
    pub line_no: usize,
    /// The operation.
    pub op: SpaprOp,
}

/// The answer to one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpaprOutcome {
    /// Success with return value 0.
    Ok,
    /// Success with a positive return value.
    Ret(u32),
    /// A window was created at this address.
    Start(u64),
    /// The kernel's errno.
    Err(Errno),
    /// Not sent: the kernel would misbehave.
    Refused(KernelDefect),
}

/// Parses a sPAPR trace (see the [module documentation](self)).
pub fn parse_spapr_trace(text: &str) -> Result<Vec<SpaprLine>, TraceError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = body.split_whitespace().collect();
        let Some(first) = words.first() else {
            continue;
        };
        let err = |reason: String| TraceError {
            line_no,
            text: body.to_owned(),
            reason,
        };
        let num = |k: usize, what: &str| -> Result<u64, TraceError> {
            let w = words.get(k).ok_or_else(|| err(format!("missing {what}")))?;
            parse_number(w).map_err(|e| err(format!("{what}: {e}")))
        };
        let small = |k: usize, what: &str| -> Result<u32, TraceError> {
            u32::try_from(num(k, what)?).map_err(|_| err(format!("{what} is too large")))
        };
        let arity = |n: usize, usage: &str| -> Result<(), TraceError> {
            if words.len() == n {
                Ok(())
            } else {
                Err(err(format!("expected: {usage}")))
            }
        };
        let op = match *first {
            "map" | "unmap" | "unmap-all" => {
                let parsed = parse_trace(body).map_err(|e| TraceError { line_no, ..e })?;
                match parsed.first().map(|l| l.op.clone()) {
                    Some(TraceOp::Map {
                        iova,
                        size,
                        host_addr,
                        access,
                    }) => SpaprOp::Map {
                        iova,
                        size,
                        vaddr: host_addr,
                        access,
                    },
                    Some(TraceOp::Unmap { iova, size }) => SpaprOp::Unmap { iova, size },
                    Some(TraceOp::UnmapAll) => SpaprOp::UnmapAll,
                    _ => return Err(err("unsupported operation".into())),
                }
            }
            "register" => {
                arity(3, "register VADDR SIZE")?;
                SpaprOp::Register {
                    vaddr: num(1, "VADDR")?,
                    size: num(2, "SIZE")?,
                }
            }
            "unregister" => {
                arity(3, "unregister VADDR SIZE")?;
                SpaprOp::Unregister {
                    vaddr: num(1, "VADDR")?,
                    size: num(2, "SIZE")?,
                }
            }
            "enable" => {
                arity(1, "enable")?;
                SpaprOp::Enable
            }
            "disable" => {
                arity(1, "disable")?;
                SpaprOp::Disable
            }
            "create-window" => {
                arity(4, "create-window PAGE_SHIFT SIZE LEVELS")?;
                SpaprOp::CreateWindow {
                    page_shift: small(1, "PAGE_SHIFT")?,
                    size: num(2, "SIZE")?,
                    levels: small(3, "LEVELS")?,
                }
            }
            "remove-window" => {
                arity(2, "remove-window ADDR")?;
                SpaprOp::RemoveWindow {
                    addr: num(1, "ADDR")?,
                }
            }
            w => {
                return Err(err(format!(
                    "unknown operation '{w}' (expected map, unmap, unmap-all, register, \
                     unregister, enable, disable, create-window or remove-window)"
                )));
            }
        };
        out.push(SpaprLine { line_no, op });
    }
    Ok(out)
}

fn ret(r: Result<u32, SpaprError>) -> SpaprOutcome {
    match r {
        Ok(0) => SpaprOutcome::Ok,
        Ok(n) => SpaprOutcome::Ret(n),
        Err(SpaprError::Kernel(e)) => SpaprOutcome::Err(e),
        Err(SpaprError::Defect(d)) => SpaprOutcome::Refused(d),
    }
}

fn unit(r: Result<(), Errno>) -> SpaprOutcome {
    match r {
        Ok(()) => SpaprOutcome::Ok,
        Err(e) => SpaprOutcome::Err(e),
    }
}

/// Runs one operation.
pub fn apply(space: &mut dyn SpaprSpace, op: &SpaprOp) -> SpaprOutcome {
    match *op {
        SpaprOp::Map {
            iova,
            size,
            vaddr,
            access,
        } => ret(space.tce_map(iova, vaddr, size, access)),
        SpaprOp::Unmap { iova, size } => ret(space.tce_unmap(iova, size)),
        SpaprOp::UnmapAll => SpaprOutcome::Err(Errno::EINVAL),
        SpaprOp::Register { vaddr, size } => unit(space.register_memory(vaddr, size)),
        SpaprOp::Unregister { vaddr, size } => unit(space.unregister_memory(vaddr, size)),
        SpaprOp::Enable => unit(space.enable()),
        SpaprOp::Disable => unit(space.disable()),
        SpaprOp::CreateWindow {
            page_shift,
            size,
            levels,
        } => match space.create_window(page_shift, size, levels) {
            Ok(start) => SpaprOutcome::Start(start),
            Err(e) => SpaprOutcome::Err(e),
        },
        SpaprOp::RemoveWindow { addr } => unit(space.remove_window(addr)),
    }
}

/// `ok`, `ok 0xSTART`, `ret N`, the errno name, or `refused: BUG`.
pub fn format_outcome(o: &SpaprOutcome) -> String {
    match o {
        SpaprOutcome::Ok => "ok".to_owned(),
        SpaprOutcome::Ret(n) => format!("ret {n}"),
        SpaprOutcome::Start(s) => format!("ok {s:#x}"),
        SpaprOutcome::Err(e) => e.name(),
        SpaprOutcome::Refused(d) => format!("refused: {}", d.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let text = "register 0x10000 64K\nunregister 0x10000 0x10000\nenable\ndisable\n\
                    create-window 16 1G 1\nremove-window 0x800000000000000\nmap 0 4K 0x10000 r\n\
                    unmap 0 4K\nunmap-all\n";
        let t = parse_spapr_trace(text).unwrap();
        assert_eq!(t.len(), 9);
        for l in &t {
            let back = parse_spapr_trace(&l.op.to_string()).unwrap();
            assert_eq!(back[0].op, l.op);
        }
        assert_eq!(
            t[4].op,
            SpaprOp::CreateWindow {
                page_shift: 16,
                size: 1 << 30,
                levels: 1
            }
        );
    }

    #[test]
    fn parse_errors() {
        assert!(parse_spapr_trace("register 1").is_err());
        assert!(parse_spapr_trace("enable 1").is_err());
        assert!(parse_spapr_trace("create-window 12 4G").is_err());
        assert!(parse_spapr_trace("create-window 0x100000000 4G 1").is_err());
        let e = parse_spapr_trace("enable\nmap 1 zz\n").unwrap_err();
        assert_eq!(e.line_no, 2);
        assert!(
            parse_spapr_trace("frob")
                .unwrap_err()
                .reason
                .contains("frob")
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(format_outcome(&SpaprOutcome::Ret(1)), "ret 1");
        assert_eq!(
            format_outcome(&SpaprOutcome::Start(0x0800_0000_0000_0000)),
            "ok 0x800000000000000"
        );
        assert_eq!(format_outcome(&SpaprOutcome::Err(Errno::ENXIO)), "ENXIO");
        assert!(
            format_outcome(&SpaprOutcome::Refused(KernelDefect::MapPastWindowEndOops))
                .starts_with("refused: ")
        );
    }
}
