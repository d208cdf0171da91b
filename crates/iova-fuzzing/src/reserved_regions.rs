//! The sysfs `reserved_regions` parser on arbitrary bytes: never panics; what it
//! accepts it accepts exactly (re-printed the kernel's way, it parses to the same).

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match iova_linux::sysfs::parse_reserved_regions(text) {
        Ok(regions) => {
            let printed: String = regions
                .iter()
                .map(|r| {
                    format!(
                        "0x{:016x} 0x{:016x} {}\n",
                        r.range.first(),
                        r.range.last(),
                        r.kind.as_str()
                    )
                })
                .collect();
            let again = iova_linux::sysfs::parse_reserved_regions(&printed)
                .expect("the kernel's own format parses");
            assert_eq!(again, regions);
            // Every accepted line has three fields, so no more regions than lines.
            assert!(regions.len() <= text.lines().count());
        }
        Err(e) => {
            // The error names a line that exists.
            assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}");
            let _ = e.to_string();
        }
    }
}
