//! Hostile names (any Unicode text: controls, NUL, ESC, line breaks, XML specials, the
//! bidirectional overrides, U+FFFE/U+FFFF) through every output: the SVG must parse as
//! XML, the TOML a plan proposes must parse back to the same names, JSON must round-trip
//! them exactly, and the text `iovactl` prints (names, conflicts, notes, blockers, all
//! through `text::clean`) must hold no control character, no line break and no bidi
//! override.

use crate::common::mixed_host;
use iova::range::IovaRange;
use iova_guest::{Layout, Section, SectionKind, check, layout_file, svg, text};

fn assert_clean(what: &str, s: &str) {
    let cleaned = text::clean(s);
    assert!(
        !cleaned.chars().any(text::is_hostile),
        "{what}: {cleaned:?} still holds a hostile character"
    );
}

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    // Names separated by 0xff bytes (never in UTF-8); the first is the layout's name.
    let mut names: Vec<String> = data
        .split(|&b| b == 0xff)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .take(9)
        .collect();
    if names.len() < 2 {
        return;
    }
    let layout_name = names.remove(0);
    names.sort();
    names.dedup();
    let sections: Vec<Section> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.trim().is_empty())
        .map(|(i, n)| {
            // 256 MiB apart from 0xf000_0000: the first ones meet the MSI window.
            let first = 0xf000_0000u64 + (i as u64) * 0x1000_0000;
            let kind = if i % 2 == 0 {
                SectionKind::Ram
            } else {
                SectionKind::Mmio
            };
            Section::new(
                n.clone(),
                kind,
                IovaRange::new(first, first + 0xfff_ffff).unwrap(),
            )
        })
        .collect();
    let Ok(layout) = Layout::new(layout_name.clone(), sections) else {
        return;
    };
    if layout.sections().is_empty() {
        return; // a layout file needs a section: nothing to round-trip
    }
    let host = mixed_host();
    for device in ["0000:01:00.0", "0000:05:00.0", "0000:07:00.0"] {
        let Ok(report) = check(&layout, &host, &[device]) else {
            continue;
        };
        let doc = svg::render(&report);
        if let Err(e) = roxmltree::Document::parse(&doc) {
            panic!("invalid XML ({e}):\n{doc}");
        }
        for c in &report.conflicts {
            assert_clean("conflict", &c.section);
            assert_clean("conflict", &c.to_string());
            assert_clean("reason", &c.reason.to_string());
        }
        for n in report.notes.iter().chain(report.layout.notes.iter()) {
            assert_clean("note", n);
        }
        for b in &report.blockers {
            assert_clean("blocker", &b.message);
        }
        let json = serde_json::to_string(&report).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let back: Vec<&str> = v["layout"]["sections"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
            .unwrap_or_default();
        let want: Vec<&str> = layout.sections().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(back, want);
    }
    // The TOML a plan proposes: no hostile character raw, and it reads back.
    let toml = layout_file::to_toml(&layout);
    assert!(
        !toml.chars().any(|c| text::is_hostile(c) && c != '\n'),
        "{toml:?}"
    );
    let again = layout_file::parse("again.toml", &toml).expect("to_toml output parses");
    assert_eq!(again.sections(), layout.sections());
    assert_eq!(again.name, layout.name);
    for s in layout.sections() {
        assert_clean("name", &s.name);
    }
    assert_clean("layout name", &layout_name);
}
