//! Guest layout TOML files on arbitrary text: never a panic; an error names the file;
//! an accepted layout has disjoint sections, survives `to_toml` and re-parsing, and can
//! be checked against a container, rendered and exported.

use crate::common::mixed_host;
use iova_guest::{Container, check_container, layout_file, svg, virtio_iommu};

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let layout = match layout_file::parse("fuzz.toml", text) {
        Ok(l) => l,
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
            if let Some(l) = e.line {
                assert!(l >= 1 && l <= text.split('\n').count(), "{e}");
            }
            return;
        }
    };
    let s = layout.sections();
    for (i, a) in s.iter().enumerate() {
        for b in &s[i + 1..] {
            assert!(
                !a.range.overlaps(&b.range),
                "{} and {} overlap",
                a.name,
                b.name
            );
        }
    }
    let again = layout_file::parse("again.toml", &layout_file::to_toml(&layout))
        .expect("to_toml output parses");
    assert_eq!(again.sections(), layout.sections());
    let host = mixed_host();
    let device_sets: [&[&str]; 3] = [
        &["0000:01:00.0"],
        &["0000:02:00.0", "0000:06:00.0"],
        &["0000:03:00.0"],
    ];
    for devices in device_sets {
        let Ok(c) = Container::of_devices(&host, devices) else {
            continue;
        };
        let report = check_container(&layout, &c);
        let _ = svg::render(&report);
        if let Some(cfg) = virtio_iommu::export(&c) {
            let _ = virtio_iommu::reserved_set(&cfg);
        }
    }
}
