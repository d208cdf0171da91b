//! AMD-Vi capability decoding (`class/iommu/ivhdN/amd-iommu/{cap,features}`).
//!
//! What the kernel shows (`drivers/iommu/amd/init.c`):
//!
//! - `cap`: the 32-bit IOMMU capability header from PCI config space (`%x`). Bit 27
//!   (`IOMMU_CAP_EFR`, EFRSup) says whether the Extended Feature Register exists.
//!   Nothing in it describes the address space.
//! - `features`: the Extended Feature Register (EFR). Its format changed over time:
//!   older kernels print `%llx` (EFR alone); kernels that learned EFR2 print two hex
//!   numbers separated by `:`, first `features2:features` and, once EFR and EFR2 became
//!   driver-wide values, `efr:efr2`. The two-number form is therefore ambiguous. It is
//!   resolved by what the registers hold: every EFR2 bit the kernel defines lies below
//!   bit 12 (SEV-TIO bit 1, GCR3TRPMode bit 3, SNPAVICSup 7:5, NumIntRemap 9:8,
//!   HtRangeIgnore bit 11), while real EFRs set bits above (GATS, GLX, PASmax, ...). The
//!   number with bits at or above 12 is the EFR; if one number is zero, the other is;
//!   otherwise the EFR is treated as unknown.
//!
//! From the EFR this module reads HATS (bits 11:10, `FEATURE_HATS`): the host (v1)
//! page table may have `HATS + 4` levels, 3 being invalid. A v1 table of L levels
//! translates `12 + 9L` bits (48 for 4 levels, 57 for 5, all 64 for 6). Kernels since
//! commit 025d1371cc8c (2025, "iommu/amd: Add efr\[HATS\] max v1 page table level") use
//! exactly that as the domain aperture; older kernels advertised the full 64-bit space
//! but the hardware still cannot walk a deeper table, so the HATS width is the usable
//! limit on every kernel.
//!
//! Assumptions, stated because sysfs cannot show them:
//! - **Interrupt remapping**: AMD-Vi units always implement it and the kernel enables it
//!   with the IOMMU unless told otherwise (`amd_iommu_intr=`, `intremap=off`), which
//!   sysfs does not reveal. An AMD unit is reported as remapping interrupts.
//! - **Pass-through**: every AMD-Vi unit can run a device untranslated (DTE with
//!   translation off); reported as supported.
//! - **Page sizes** depend on the kernel version and page-table mode (v1: every power of
//!   two from 4 KiB up, minus 512 GiB, capped at 2^51 on newer kernels; v2: 4K|2M|1G),
//!   none of which sysfs shows: left unknown.

/// EFRSup: bit 27 of the capability header.
pub const CAP_EFR_SUP: u32 = 1 << 27;

/// The two registers the `features` file may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// The Extended Feature Register, when it could be identified.
    pub efr: Option<u64>,
    /// The Extended Feature 2 Register, when it could be identified.
    pub efr2: Option<u64>,
}

/// Parses the content of a `features` file (`<hex>` or `<hex>:<hex>`, surrounding
/// white space ignored). `Err` holds a description of the expected format.
pub fn parse_features(text: &str) -> Result<Features, &'static str> {
    const EXPECTED: &str = "'<hex>' or '<hex>:<hex>' (EFR, or EFR and EFR2)";
    let t = text.trim();
    match t.split_once(':') {
        None => Ok(Features {
            efr: Some(parse_hex(t).ok_or(EXPECTED)?),
            efr2: None,
        }),
        Some((a, b)) => {
            let a = parse_hex(a).ok_or(EXPECTED)?;
            let b = parse_hex(b).ok_or(EXPECTED)?;
            Ok(resolve_pair(a, b))
        }
    }
}

/// Decides which of the two numbers is the EFR (see the module docs).
fn resolve_pair(a: u64, b: u64) -> Features {
    const HIGH: u64 = !0xfff;
    let (a_high, b_high) = (a & HIGH != 0, b & HIGH != 0);
    let efr_first = match (a, b) {
        (0, 0) => None,
        (_, 0) => Some(true),
        (0, _) => Some(false),
        _ if a_high && !b_high => Some(true),
        _ if b_high && !a_high => Some(false),
        _ => None,
    };
    match efr_first {
        Some(true) => Features {
            efr: Some(a),
            efr2: Some(b),
        },
        Some(false) => Features {
            efr: Some(b),
            efr2: Some(a),
        },
        None => Features::default(),
    }
}

/// Bare hex (the kernel prints `%x`/`%llx`, no `0x`); a `0x` prefix is tolerated.
pub(crate) fn parse_hex(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(t, 16).ok()
}

/// The maximum number of host (v1) page-table levels, `HATS + 4`; `None` for the
/// invalid HATS value 3.
pub fn host_levels(efr: u64) -> Option<u8> {
    match (efr >> 10) & 3 {
        0 => Some(4),
        1 => Some(5),
        2 => Some(6),
        _ => None,
    }
}

/// The address width a v1 table of `levels` levels translates: `12 + 9 * levels`,
/// at most 64.
pub fn levels_width(levels: u8) -> u8 {
    let bits = 12u16 + 9 * u16::from(levels);
    u8::try_from(bits.min(64)).unwrap_or(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hats_levels_and_widths() {
        assert_eq!(host_levels(0), Some(4));
        assert_eq!(host_levels(1 << 10), Some(5));
        assert_eq!(host_levels(2 << 10), Some(6));
        assert_eq!(host_levels(3 << 10), None);
        assert_eq!(levels_width(4), 48);
        assert_eq!(levels_width(5), 57);
        assert_eq!(levels_width(6), 64);
    }

    #[test]
    fn features_formats() {
        let efr = 0xf7_7ef2_2294;
        assert_eq!(parse_features("f77ef22294\n").unwrap().efr, Some(efr));
        // New order efr:efr2 and old order efr2:efr resolve to the same EFR.
        assert_eq!(parse_features("f77ef22294:0\n").unwrap().efr, Some(efr));
        assert_eq!(parse_features("0:f77ef22294\n").unwrap().efr, Some(efr));
        assert_eq!(parse_features("f77ef22294:a2").unwrap().efr, Some(efr));
        assert_eq!(parse_features("a2:f77ef22294").unwrap().efr2, Some(0xa2));
        // Both with high bits, or both zero: unknown.
        assert_eq!(parse_features("1000:2000").unwrap(), Features::default());
        assert_eq!(parse_features("0:0").unwrap(), Features::default());
        assert!(parse_features("").is_err());
        assert!(parse_features("xyz").is_err());
        assert!(parse_features("1:2:3").is_err());
        assert!(parse_features("11111111111111111").is_err());
    }
}
