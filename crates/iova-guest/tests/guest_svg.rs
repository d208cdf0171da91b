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

/// Every name a layout can hold gives a picture that parses as XML: the XML specials,
/// C0 and C1 controls (NUL and ESC are not allowed in XML at all, even as character
/// references), U+FFFE/U+FFFF and the bidirectional overrides.
#[test]
fn hostile_names_give_valid_xml() {
    use iova::range::IovaRange;
    use iova_guest::{Layout, Section, SectionKind};
    let host = support::amd();
    let names = [
        "ram\u{1b}[31mRED\u{0}\nrow",
        "<script>&amp;\"'",
        "\u{7}\u{8}\u{b}\u{c}\u{7f}\u{85}\u{9b}",
        "\u{fffe}\u{ffff}\u{202e}\u{2066}",
        "\r\t]]>",
    ];
    let sections = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let first = (i as u64) << 32;
            Section::new(
                *n,
                SectionKind::Ram,
                IovaRange::new(first, first + 0xfff_ffff).unwrap(),
            )
        })
        .collect();
    let layout = Layout::new("\u{1b}]0;title\u{7}<&>", sections).unwrap();
    let r = check(&layout, &host, &["0000:41:00.0"]).unwrap();
    let doc = svg::render(&r);
    roxmltree::Document::parse(&doc).unwrap_or_else(|e| panic!("invalid XML: {e}\n{doc}"));
    for c in ['\u{0}', '\u{1b}', '\u{7}', '\u{fffe}', '\u{202e}'] {
        assert!(!doc.contains(c), "raw {c:?} in the SVG");
    }
}
