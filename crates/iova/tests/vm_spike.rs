//! Replays the MAP/UNMAP sequence of the real 6.1 kernel run (vm-spike, aw-bits=39) on
//! the simulated container and compares with the kernel's answers read from the log.

mod common;

use iova::container::{Container, ContainerConfig, KernelVersion};
use iova::dma::DmaSpace;
use iova::trace::{apply, format_outcome, parse_trace};

#[test]
fn simulated_container_answers_like_the_kernel() {
    let trace = parse_trace(include_str!("data/vm-spike-39.trace")).unwrap();
    let expected: Vec<&str> = include_str!("data/vm-spike-39.expected")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        trace.len(),
        expected.len(),
        "trace and expected answers differ in length"
    );
    let host = common::intel39();
    // Recorded on a 6.1 kernel: the simulation answers as that version.
    let mut c = Container::new(ContainerConfig::default().kernel(KernelVersion::V6_1));
    c.attach(&host, 1).unwrap();
    // The kernel's first GET_INFO, from the same log.
    let info = c.info().unwrap();
    assert_eq!(info.page_sizes, 0x4020_1000);
    assert_eq!(info.dma_avail, Some(65535));
    assert_eq!(
        info.iova_ranges.ranges(),
        &[
            common::r(0, 0xfedf_ffff),
            common::r(0xfef0_0000, 0x7f_ffff_ffff)
        ]
    );
    let mut mismatches = Vec::new();
    for (line, want) in trace.iter().zip(&expected) {
        let got = format_outcome(&apply(&mut c, &line.op));
        if got != *want {
            mismatches.push(format!(
                "line {}: {} -> {got}, kernel said {want}",
                line.line_no, line.op
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(c.mapping_count(), 0);
    assert_eq!(c.info().unwrap().dma_avail, Some(65535));
}
