//! Intel VT-d capability decoding (`class/iommu/dmarN/intel-iommu/{cap,ecap}`).
//!
//! The kernel prints the 64-bit Capability and Extended Capability registers in hex
//! (`%llx`). The fields used here, with the kernel macros that read them
//! (`drivers/iommu/intel/iommu.h`):
//!
//! | field | bits | macro | meaning |
//! |---|---|---|---|
//! | MGAW | cap 21:16 | `cap_mgaw` (value + 1) | maximum guest address width |
//! | SAGAW | cap 12:8 | `cap_sagaw` | supported page-table depths: bit n = 30 + 9n bits |
//! | SLLPS | cap 37:34 | `cap_super_page_val` | second-level large pages: bit 0 = 2 MiB, bit 1 = 1 GiB |
//! | IR | ecap 3 | `ecap_ir_support` | interrupt remapping supported |
//! | PT | ecap 6 | `ecap_pass_through` | pass-through (identity) supported |
//!
//! The width of a DMA domain's aperture is what the kernel gives a second-level
//! (legacy) paging domain: the widest SAGAW depth not above 57 bits, capped at MGAW
//! (`paging_domain_alloc`: `min(agaw_to_width(iommu->agaw), cap_mgaw(cap))`). Both real
//! values of this crate's tests agree: cap `d2008c22260286` → 39 bits and cap
//! `d2008c222f0686` → 48 bits, each with page sizes 4K|2M|1G (`0x40201000`), the
//! bitmap VFIO reports on those hosts.
//!
//! Interrupt remapping and pass-through are what the hardware *supports*; sysfs does
//! not show whether the kernel enabled them (`intremap=off` disables IR).

/// The maximum guest address width, in bits (cap bits 21:16, plus 1).
pub fn mgaw(cap: u64) -> u8 {
    low_byte((cap >> 16) & 0x3f).saturating_add(1)
}

/// The SAGAW field (cap bits 12:8): bit n set = a (2 + n)-level table, 30 + 9n bits.
pub fn sagaw(cap: u64) -> u8 {
    low_byte((cap >> 8) & 0x1f)
}

/// The widest address a supported second-level table depth covers, limited to 57 bits
/// (the kernel's default domain width); `None` when SAGAW names no depth up to 57.
pub fn sagaw_width(cap: u64) -> Option<u8> {
    let s = sagaw(cap);
    (0u8..=3)
        .rev()
        .find(|n| s & (1 << n) != 0)
        .map(|n| 30 + 9 * n)
}

/// The address width of a DMA domain on this unit: [`sagaw_width`] capped at
/// [`mgaw`] (just MGAW when SAGAW names no usable depth).
pub fn address_width(cap: u64) -> u8 {
    let m = mgaw(cap);
    sagaw_width(cap).map_or(m, |s| s.min(m))
}

/// The second-level large page support field (cap bits 37:34).
pub fn sllps(cap: u64) -> u8 {
    low_byte((cap >> 34) & 0xf)
}

/// The page-size bitmap: 4 KiB always, 2 MiB if SLLPS bit 0, 1 GiB if SLLPS bit 1.
pub fn page_sizes(cap: u64) -> u64 {
    let s = sllps(cap);
    let mut sizes = 1u64 << 12;
    if s & 1 != 0 {
        sizes |= 1 << 21;
    }
    if s & 2 != 0 {
        sizes |= 1 << 30;
    }
    sizes
}

/// Whether the unit supports interrupt remapping (ecap bit 3).
pub fn interrupt_remapping(ecap: u64) -> bool {
    ecap & (1 << 3) != 0
}

/// Whether the unit supports pass-through (ecap bit 6).
pub fn pass_through(ecap: u64) -> bool {
    ecap & (1 << 6) != 0
}

/// The low byte of a value already masked to fit.
fn low_byte(v: u64) -> u8 {
    u8::try_from(v & 0xff).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real registers (docs/semantics.md, seen on QEMU's emulated VT-d).
    const CAP_39: u64 = 0xd2008c22260286;
    const CAP_48: u64 = 0xd2008c222f0686;

    #[test]
    fn known_caps_decode_to_known_widths() {
        assert_eq!(mgaw(CAP_39), 39);
        assert_eq!(address_width(CAP_39), 39);
        assert_eq!(mgaw(CAP_48), 48);
        assert_eq!(address_width(CAP_48), 48);
        assert_eq!(page_sizes(CAP_39), 0x4020_1000);
        assert_eq!(page_sizes(CAP_48), 0x4020_1000);
    }

    #[test]
    fn fields_by_hand() {
        // MGAW field 0x2f (= 47, width 48), SAGAW 0b00100 (48 bits), no large pages.
        let cap = (0x2f << 16) | (0b00100 << 8);
        assert_eq!(
            (mgaw(cap), sagaw_width(cap), page_sizes(cap)),
            (48, Some(48), 0x1000)
        );
        // SAGAW says 57 but MGAW caps at 48.
        let cap = (0x2f << 16) | (0b01000 << 8) | (0b0001 << 34);
        assert_eq!((address_width(cap), page_sizes(cap)), (48, 0x20_1000));
        // No SAGAW depth: MGAW alone.
        assert_eq!(address_width(0x26 << 16), 39);
        assert_eq!(mgaw(u64::MAX), 64);
        assert!(interrupt_remapping(1 << 3) && !interrupt_remapping(!(1 << 3)));
        assert!(pass_through(1 << 6) && !pass_through(!(1 << 6)));
    }
}
