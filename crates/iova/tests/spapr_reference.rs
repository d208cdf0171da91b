//! The sPAPR simulation against a real kernel's answers: the 82-step v2 run recorded
//! on a Linux 6.12 pseries guest (see the header of the trace file).

use iova::spapr::trace::{apply, format_outcome, parse_spapr_trace};
use iova::spapr::{SpaprConfig, SpaprContainer, SpaprVersion};

#[test]
fn v2_reference_run_reproduces_the_kernel() {
    let trace = include_str!("data/spapr-v2-6.12-reference.trace");
    let expected: Vec<&str> = include_str!("data/spapr-v2-6.12-reference.expected")
        .lines()
        .collect();
    let ops = parse_spapr_trace(trace).expect("trace parses");
    assert_eq!(ops.len(), expected.len());
    let mut c = SpaprContainer::new(SpaprConfig::qemu_pseries(SpaprVersion::V2));
    let mut bad = Vec::new();
    for (l, want) in ops.iter().zip(&expected) {
        let got = format_outcome(&apply(&mut c, &l.op));
        if got != *want {
            bad.push(format!(
                "line {}: {} -> {got}, kernel: {want}",
                l.line_no, l.op
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(c.poisoned());
}
