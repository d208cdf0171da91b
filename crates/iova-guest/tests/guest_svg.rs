//! The SVG map shows every conflict and the host's windows, and is well-formed enough
//! for a converter (the PNG conversion itself is tested in iovactl's CLI tests).

#[path = "guest_support.rs"]
mod support;

use iova_guest::{CpuVendor, GuestConfig, Preset, check, svg};

#[test]
fn every_conflict_is_drawn_and_labelled() {
    let host = support::amd();
    let l = Preset::CloudHypervisor
        .layout(&GuestConfig::new(1 << 40, CpuVendor::Amd))
        .unwrap();
    let r = check(&l, &host, &["0000:41:00.0"]).unwrap();
    assert!(!r.conflicts.is_empty());
    let doc = svg::render(&r);
    assert!(doc.starts_with("<?xml") && doc.trim_end().ends_with("</svg>"));
    for c in &r.conflicts {
        assert!(doc.contains(&c.range.to_string()), "missing {}", c.range);
    }
    assert!(doc.contains("#e01e1e"), "conflicts are red");
    // The 1 MiB MSI window gets its own labelled band next to terabytes of RAM.
    assert!(doc.contains("reserved region: msi"));
    assert!(doc.contains("0xfee00000"));
    assert!(doc.contains("NOT OK"));
    // Text is escaped.
    assert!(!doc.contains("<->"));
}

#[test]
fn a_clean_map_says_ok() {
    let host = support::intel39();
    let l = Preset::QemuQ35
        .layout(&GuestConfig::new(8 << 30, CpuVendor::Intel))
        .unwrap();
    let r = check(&l, &host, &["0000:03:00.0"]).unwrap();
    let doc = svg::render(&r);
    assert!(doc.contains("OK: every DMA-mapped section fits"));
    assert!(doc.contains("beyond aperture (dmar0, 39-bit)"));
}
