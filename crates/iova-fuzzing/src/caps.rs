//! The VT-d cap/ecap decoders and the AMD-Vi `features` parser: never panic, and the
//! decoded values stay in their documented ranges.

use iova_linux::sysfs::{amd, vtd};

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (k, x) in b.iter_mut().enumerate() {
            *x = data.get(i * 8 + k).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let (cap, ecap) = (word(0), word(1));
    let w = vtd::address_width(cap);
    assert!((1..=64).contains(&w), "width {w}");
    assert!(w <= vtd::mgaw(cap));
    if let Some(s) = vtd::sagaw_width(cap) {
        assert!([30, 39, 48, 57].contains(&s));
        assert!(w <= s);
    }
    assert!(iova::host::aperture_for_width(w).is_some());
    let p = vtd::page_sizes(cap);
    assert!(p & 0x1000 != 0 && p & !(0x1000 | 0x20_0000 | 0x4000_0000) == 0);
    let _ = (vtd::interrupt_remapping(ecap), vtd::pass_through(ecap));
    if let Some(l) = amd::host_levels(cap) {
        assert!((4..=6).contains(&l));
        assert!(amd::levels_width(l) <= 64);
    }
    let unit = iova::IommuUnit::new("dmar0", iova::IommuVendor::Intel)
        .with_address_width(w)
        .with_page_sizes(p);
    assert!(unit.aperture.is_some());

    let text = String::from_utf8_lossy(data.get(16..).unwrap_or_default());
    if let Ok(f) = amd::parse_features(&text) {
        // Of two numbers, the one taken as the EFR is never 0 (0 means "the other").
        if text.contains(':') {
            assert!(f.efr != Some(0), "{f:?}");
        }
        if let Some(efr) = f.efr {
            let _ = amd::host_levels(efr).map(amd::levels_width);
        }
    }
}
