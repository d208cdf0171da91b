//! The kernel selftests' mock-domain traces replay through the CLI with a 2 KiB-page
//! host profile.
//!
//! The iommufd selftests (tools/testing/selftests/iommu/iommufd.c) run against a mock
//! IOMMU (drivers/iommu/iommufd/selftest.c) whose domains have `pgsize_bitmap =
//! MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2`: 2 KiB pages under 4 KiB CPU pages, aperture
//! `MOCK_APERTURE_START..=MOCK_APERTURE_LAST` = `0x1000000..=0x7fffffff`
//! (iommufd_test.h). `tests/data/iommufd-mock-2k.json` is that IOMMU as a host profile
//! (its one device stands for the selftest's mock device, whose interrupts iommufd
//! does not ask to be isolated: interrupt remapping on). Every expected answer below is
//! what the selftest asserts (mock_domain variant), not what this project's model
//! answers; the type1 rows come from drivers/vfio/vfio_iommu_type1.c.

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

const HOST: u64 = 0x7f00_0000_0000;
const PAGE_SIZE: u64 = 0x1000;
const MOCK_PAGE_SIZE: u64 = PAGE_SIZE / 2;
const MOCK_APERTURE_START: u64 = 1 << 24;

fn data(name: &str) -> String {
    common::root()
        .join("crates/iovactl/tests/data")
        .join(name)
        .display()
        .to_string()
}

/// `iovactl replay` of `trace` (a path, or `-` with `stdin`) on the mock-domain
/// profile with the device attached.
fn replay(flavour: &str, trace: &str, stdin: Option<&str>) -> Output {
    let profile = data("iommufd-mock-2k.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args([
            "replay",
            "--host",
            &profile,
            "--flavour",
            flavour,
            "--device",
            "0000:00:01.0",
            "--kernel",
            "6.12",
            trace,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run iovactl");
    // Standard input is written from another thread: the answers fill the stdout pipe
    // while a long trace is still being written. A replay that refuses before reading
    // leaves standard input undrained (the write then meets EPIPE).
    let mut input = child.stdin.take().unwrap();
    let text = stdin.unwrap_or("").to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// The answers, one per operation; a panic with stderr when the replay failed.
fn answers(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "replay failed ({}): {}",
        out.status,
        common::stderr(out)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether `got` is the answer `expected` asserts: the same, or `expected` followed by
/// words the selftest does not look at (`ok` matches `ok 0x1000`).
fn matches(got: &str, expected: &str) -> bool {
    got == expected
        || got
            .strip_prefix(expected)
            .is_some_and(|rest| rest.starts_with(' '))
}

/// The IOVA of a successful `map-auto` answer (`ok 0x<iova>`).
fn iova_of(answer: &str) -> u64 {
    let hex = answer
        .strip_prefix("ok 0x")
        .unwrap_or_else(|| panic!("not a map-auto success: {answer:?}"));
    u64::from_str_radix(hex, 16).unwrap()
}

/// The selftest's fixed-IOVA steps (iova_ranges, area, unmap_fully_contained_areas,
/// access_rw_unaligned, copy_area) as a trace file, answered as the selftest asserts.
#[test]
fn selftest_mock_domain_trace_replays_with_a_2k_page_profile() {
    let out = replay("iommufd", &data("mock-domain-selftest.trace"), None);
    let got = answers(&out);
    let expected = std::fs::read_to_string(data("mock-domain-selftest.expected")).unwrap();
    let expected: Vec<&str> = expected
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            matches(g, e),
            "operation {}: got {g:?}, expected {e:?}",
            i + 1
        );
    }
}

/// TEST_F(iommufd_ioas, ioas_iova_alloc), mock_domain variant: every length from 1 to
/// two CPU pages is mapped at an IOVA the kernel picks; a length that is not a
/// multiple of MOCK_PAGE_SIZE is EINVAL, every other succeeds (and unmaps).
#[test]
fn selftest_ioas_iova_alloc_sweeps_lengths_at_the_2k_granule() {
    let mut trace = String::new();
    for length in 1..PAGE_SIZE * 2 {
        trace.push_str(&format!("map-auto {length:#x} {HOST:#x}\nunmap-all\n"));
    }
    let got = answers(&replay("iommufd", "-", Some(&trace)));
    assert_eq!(got.len() as u64, (PAGE_SIZE * 2 - 1) * 2);
    for (length, pair) in (1..PAGE_SIZE * 2).zip(got.chunks(2)) {
        if length % MOCK_PAGE_SIZE != 0 {
            assert_eq!(pair[0], "EINVAL", "length {length:#x}");
        } else {
            assert!(matches(&pair[0], "ok"), "length {length:#x}: {pair:?}");
            assert!(matches(&pair[1], "ok"), "length {length:#x}: {pair:?}");
        }
    }
}

/// TEST_F(iommufd_ioas, area_auto_iova), mock_domain variant, without the steps that
/// need the test-only IOMMU_TEST_OP_ADD_RESERVED: automatic IOVAs are aligned to the
/// length's lowest set bit; an allowed range that meets the reserved space below the
/// aperture is EADDRINUSE; allocations stay inside an allowed range.
#[test]
fn selftest_area_auto_iova_with_a_2k_page_profile() {
    let mut trace = String::new();
    // Simple 4k pages
    for _ in 0..10 {
        trace.push_str(&format!("map-auto {PAGE_SIZE:#x} {HOST:#x}\n"));
    }
    trace.push_str("unmap-all\n");
    // Kernel automatically aligns IOVAs properly
    for i in 1..=10u64 {
        trace.push_str(&format!("map-auto {:#x} {HOST:#x}\n", PAGE_SIZE * i));
    }
    trace.push_str("unmap-all\n");
    // Allowed region intersects with a reserved region
    trace.push_str(&format!(
        "allow-iovas {PAGE_SIZE:#x}-{:#x}\n",
        PAGE_SIZE * 600
    ));
    // Allocate from an allowed region
    let (start, last) = (
        MOCK_APERTURE_START + PAGE_SIZE,
        MOCK_APERTURE_START + PAGE_SIZE * 600 - 1,
    );
    trace.push_str(&format!("allow-iovas {start:#x}-{last:#x}\n"));
    for i in 1..=10u64 {
        trace.push_str(&format!("map-auto {:#x} {HOST:#x}\n", PAGE_SIZE * i));
    }
    trace.push_str("unmap-all\n");

    let got = answers(&replay("iommufd", "-", Some(&trace)));
    assert_eq!(got.len(), 10 + 1 + 10 + 1 + 2 + 10 + 1, "{got:?}");
    let (simple, rest) = got.split_at(11);
    for a in &simple[..10] {
        iova_of(a);
    }
    assert!(matches(&simple[10], "ok"));
    let (aligned, rest) = rest.split_at(11);
    for (i, a) in (1..=10u64).zip(&aligned[..10]) {
        let length = PAGE_SIZE * i;
        // EXPECT_EQ(0, iovas[i] % (1UL << (ffs(length) - 1)))
        assert_eq!(iova_of(a) % (1 << length.trailing_zeros()), 0, "{a}");
    }
    assert!(matches(&aligned[10], "ok"));
    assert_eq!(rest[0], "EADDRINUSE");
    assert!(matches(&rest[1], "ok"), "{rest:?}");
    for (i, a) in (1..=10u64).zip(&rest[2..12]) {
        let length = PAGE_SIZE * i;
        let iova = iova_of(a);
        assert_eq!(iova % (1 << length.trailing_zeros()), 0, "{a}");
        assert!(iova >= start && iova <= last, "{a}");
        assert!(iova + length > start && iova + length <= last + 1, "{a}");
    }
    assert!(matches(&rest[12], "ok"));
}

/// The same IOMMU under type1 (drivers/vfio/vfio_iommu_type1.c): the group attaches,
/// `vfio_update_pgsize_bitmap` shows the 2 KiB page as the CPU page, so
/// `vfio_dma_do_map` wants 4 KiB-aligned IOVAs and sizes (EINVAL otherwise); the
/// iommufd compatibility container keeps iommufd's 2 KiB alignment.
#[test]
fn type1_raises_the_2k_page_to_the_cpu_page() {
    let trace = format!(
        "map 0x1000800 0x1000 {HOST:#x}\nmap 0x1000000 0x800 {HOST:#x}\n\
         map 0x1000000 0x1000 {HOST:#x}\nunmap 0x1000000 0x1000\n"
    );
    let got = answers(&replay("type1v2", "-", Some(&trace)));
    assert_eq!(got, ["EINVAL", "EINVAL", "ok", "ok 0x1000"]);
    let trace = format!("map 0x1000800 0x8000 {:#x}\n", HOST + 0x800);
    let got = answers(&replay("compat-type1v2", "-", Some(&trace)));
    assert_eq!(got, ["ok"]);
}
