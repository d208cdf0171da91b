//! The trace parser on arbitrary text; accepted traces print and re-parse to the same
//! operations, and replay on every flavour over a mixed host keeps the container's
//! invariants. The replay is the simulation's own (`apply_sim`), so every operation
//! runs, those that need the host included: attach and detach mid-trace, IOAS copy,
//! the IOVA_RANGES capacity protocol, BAR-backed maps, allowed IOVAs.

use crate::common::{FLAVOURS, check_invariants, config, mixed_host};
use iova::container::Container;
use iova::dma::Errno;
use iova::trace::{TraceOp, apply_sim, format_outcome, parse_trace};

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ops = match parse_trace(text) {
        Ok(ops) => ops,
        Err(e) => {
            assert!(e.line_no >= 1);
            assert!(e.to_string().contains(&format!("line {}", e.line_no)));
            return;
        }
    };
    let printed: String = ops.iter().map(|l| format!("{}\n", l.op)).collect();
    let again = parse_trace(&printed).expect("printed traces parse");
    assert_eq!(
        again.iter().map(|l| l.op.clone()).collect::<Vec<_>>(),
        ops.iter().map(|l| l.op.clone()).collect::<Vec<_>>()
    );
    let host = mixed_host();
    // The group set comes from the trace length so different inputs attach differently.
    let groups: &[u32] = match ops.len() % 4 {
        0 => &[1],
        1 => &[2, 6],
        2 => &[3, 1],
        _ => &[4, 5, 7, 2],
    };
    for fl in FLAVOURS {
        let mut c = Container::new(config(fl, ops.len() % 3 == 0));
        for g in groups {
            let _ = c.attach(&host, *g);
        }
        for l in ops.iter().take(256) {
            let before = c.clone();
            let out = apply_sim(&mut c, &host, &l.op);
            let _ = format_outcome(&out);
            if let Err(e) = out {
                // The kernel's one non-atomic failure: an unmap through iommufd's
                // io_pagetable (the IOAS, and the compatibility container) ending inside
                // an area removes the whole areas below it, then answers ENOENT.
                let partial = fl.is_iommufd()
                    && matches!(l.op, TraceOp::Unmap { .. })
                    && e == Errno::ENOENT
                    && c.is_before_less_whole_mappings(&before);
                assert!(
                    c == before || partial,
                    "failed {} changed the container",
                    l.op
                );
            }
            check_invariants(&c);
        }
    }
}
