//! The sPAPR simulation against a real kernel's answers: the 82-step v2 run recorded
//! on a Linux 6.12.95 pseries guest (see the header of the trace file), and the
//! unmap rule that 6.12.112 changed, as the 6.12.118 guest of vmtest answers it.

use iova::dma::Access;
use iova::kernel::KernelVersion;
use iova::spapr::trace::{apply, format_outcome, parse_spapr_trace};
use iova::spapr::{SpaprConfig, SpaprContainer, SpaprSpace, SpaprVersion};

#[test]
fn v2_reference_run_reproduces_the_kernel() {
    let trace = include_str!("data/spapr-v2-6.12-reference.trace");
    let expected: Vec<&str> = include_str!("data/spapr-v2-6.12-reference.expected")
        .lines()
        .collect();
    let ops = parse_spapr_trace(trace).expect("trace parses");
    assert_eq!(ops.len(), expected.len());
    // The kernel that answered: Debian's 6.12.95.
    let mut c = SpaprContainer::new(
        SpaprConfig::qemu_pseries(SpaprVersion::V2).kernel(KernelVersion::with_patch(6, 12, 95)),
    );
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

/// An unmap that starts on the last page of the 32-bit window and runs one page past
/// its end: 6.12.95 answers 0 and clears the in-window page; from 6.12.112 on
/// ("powerpc/iommu: Fix the overflow validation in iommu_tce_check_ioba") the kernel
/// returns 1 and changes nothing (seen on Debian's 6.12.118, 4 KiB and 64 KiB pages).
#[test]
fn unmap_crossing_the_window_end_by_point_release() {
    let last = 0x3fff_f000;
    for version in [SpaprVersion::V1, SpaprVersion::V2] {
        for (kernel, answer, still_mapped) in [
            (KernelVersion::with_patch(6, 12, 95), 0, false),
            (KernelVersion::with_patch(6, 12, 111), 0, false),
            (KernelVersion::with_patch(6, 12, 112), 1, true),
            (KernelVersion::with_patch(6, 12, 118), 1, true),
        ] {
            let mut c = SpaprContainer::new(SpaprConfig::qemu_pseries(version).kernel(kernel));
            let va = 0x7f00_0000_0000;
            if version == SpaprVersion::V2 {
                c.register_memory(va, 0x10_0000).unwrap();
            } else {
                c.enable().unwrap();
            }
            assert_eq!(c.tce_map(last, va, 0x1000, Access::RW), Ok(0));
            assert_eq!(
                c.tce_unmap(last, 0x2000),
                Ok(answer),
                "{version:?} {kernel}"
            );
            assert_eq!(c.tce(last).is_some(), still_mapped, "{version:?} {kernel}");
            // Ending exactly at the window's end is accepted by both.
            assert_eq!(c.tce_unmap(last, 0x1000), Ok(0), "{version:?} {kernel}");
            assert!(c.tce(last).is_none());
        }
    }
}
