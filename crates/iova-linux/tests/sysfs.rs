//! Integration tests of the sysfs reader against fixture trees shaped like real sysfs
//! (devices are symlinks, some dangling) and against the bundled example hosts.
//!
//! Expected values come from facts, not from the reader: the real VT-d registers and
//! reserved regions in `docs/semantics.md`, the kernel's bit layouts, and the
//! fixture files themselves.

use std::path::{Path, PathBuf};

use iova::host::{DomainType, Host, IommuVendor, ReservedKind, ReservedRegion};
use iova::range::IovaRange;
use iova_linux::sysfs::{SysfsError, parse_reserved_regions, read_host};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/hosts")
        .join(name)
}

fn r(first: u64, last: u64) -> IovaRange {
    IovaRange::new(first, last).unwrap()
}

fn rr(first: u64, last: u64, kind: ReservedKind) -> ReservedRegion {
    ReservedRegion {
        range: r(first, last),
        kind,
    }
}

const MSI: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);

fn msi() -> ReservedRegion {
    rr(MSI.0, MSI.1, ReservedKind::Msi)
}

fn ht() -> ReservedRegion {
    rr(0xfd_0000_0000, 0xff_ffff_ffff, ReservedKind::Reserved)
}

fn valid(host: &Host, group: u32) -> Vec<IovaRange> {
    host.valid_iova_ranges(group)
        .unwrap()
        .ranges
        .ranges()
        .to_vec()
}

fn err(name: &str) -> (SysfsError, String) {
    let e = read_host(fixture(name)).expect_err(name);
    let msg = e.to_string();
    (e, msg)
}

// ---------------------------------------------------------------------------------
// Valid hosts

#[test]
fn intel_39_bit() {
    let h = read_host(fixture("intel-vtd-39")).unwrap();

    let names: Vec<&str> = h.iommus.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["dmar0", "dmar1"]);
    for u in &h.iommus {
        assert_eq!(u.vendor, IommuVendor::Intel);
        assert_eq!(u.address_width, Some(39));
        assert_eq!(u.aperture, Some(r(0, (1 << 39) - 1)));
        assert_eq!(u.page_sizes, Some(0x4020_1000));
        // ecap f00f5e: bit 3 (IR) and bit 6 (PT) are set.
        assert_eq!(u.interrupt_remapping, Some(true));
        assert_eq!(u.pass_through, Some(true));
    }

    let ids: Vec<u32> = h.groups.iter().map(|g| g.id).collect();
    assert_eq!(ids, [1, 8, 12]);

    let g8 = h.group(8).unwrap();
    assert_eq!(g8.domain_type, DomainType::Dma);
    assert_eq!(g8.devices, ["0000:00:1f.0", "0000:00:1f.4"]);
    assert_eq!(g8.iommu.as_deref(), Some("dmar1"));
    assert_eq!(
        g8.reserved_regions,
        [rr(0, 0xff_ffff, ReservedKind::DirectRelaxable), msi()]
    );
    assert_eq!(h.group(1).unwrap().domain_type, DomainType::DmaFq);
    assert_eq!(h.group(1).unwrap().iommu.as_deref(), Some("dmar0"));

    // docs/semantics.md: 39-bit VT-d with the MSI window leaves exactly these two ranges;
    // direct-relaxable (the ISA bridge) is not excluded.
    let expected = [r(0x0, 0xfedf_ffff), r(0xfef0_0000, 0x7f_ffff_ffff)];
    assert_eq!(valid(&h, 12), expected);
    assert_eq!(valid(&h, 8), expected);
    assert!(h.valid_iova_ranges(12).unwrap().aperture_known());

    let nic = h.device("03:00.0").unwrap();
    assert_eq!(nic.name, "0000:03:00.0");
    assert_eq!((nic.vendor_id, nic.device_id), (Some(0x8086), Some(0x1533)));
    assert_eq!(nic.class, Some(0x02_0000));
    assert_eq!(nic.group, Some(12));
    assert_eq!(nic.iommu.as_deref(), Some("dmar1"));

    let dev_names: Vec<&str> = h.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        dev_names,
        [
            "0000:00:02.0",
            "0000:00:1f.0",
            "0000:00:1f.4",
            "0000:03:00.0"
        ]
    );

    assert_eq!(h.settings.dma_entry_limit, Some(65535));
    assert_eq!(h.settings.allow_unsafe_interrupts, Some(false));
    assert_eq!(h.settings.cpu_vendor.as_deref(), Some("intel"));
}

#[test]
fn intel_48_bit() {
    let h = read_host(fixture("intel-vtd-48")).unwrap();
    assert_eq!(h.iommus.len(), 1);
    assert_eq!(h.iommus[0].address_width, Some(48));
    assert_eq!(h.iommus[0].page_sizes, Some(0x4020_1000));
    assert_eq!(
        valid(&h, 3),
        [r(0, 0xfedf_ffff), r(0xfef0_0000, 0xffff_ffff_ffff)]
    );
    let nvme = h.device("0000:01:00.0").unwrap();
    assert_eq!(
        (nvme.vendor_id, nvme.class),
        (Some(0x144d), Some(0x01_0802))
    );
    // No modalias in this fixture: the vendor is inferred from the VT-d unit.
    assert_eq!(h.settings.cpu_vendor.as_deref(), Some("intel"));
    // No vfio module parameters in this fixture.
    assert_eq!(h.settings.dma_entry_limit, None);
    assert_eq!(h.settings.allow_unsafe_interrupts, None);
}

#[test]
fn amd_msi_and_hypertransport() {
    let h = read_host(fixture("amd")).unwrap();
    let u = &h.iommus[0];
    assert_eq!(u.name, "ivhd0");
    assert_eq!(u.vendor, IommuVendor::Amd);
    // features f77ef22294: EFR bits 11:10 (HATS) = 0 -> 4 levels -> 12 + 36 = 48 bits.
    assert_eq!(u.address_width, Some(48));
    assert_eq!(u.aperture, Some(r(0, (1 << 48) - 1)));
    assert_eq!(u.interrupt_remapping, Some(true));
    assert_eq!(u.page_sizes, None);

    let g = h.group(14).unwrap();
    assert_eq!(g.reserved_regions, [msi(), ht()]);
    assert_eq!(g.iommu.as_deref(), Some("ivhd0"));
    assert_eq!(
        valid(&h, 14),
        [
            r(0, 0xfedf_ffff),
            r(0xfef0_0000, 0xfc_ffff_ffff),
            r(0x100_0000_0000, 0xffff_ffff_ffff)
        ]
    );
    // The IOMMU's own PCI function is a device without a group.
    let iommu_fn = h.device("0000:00:00.2").unwrap();
    assert_eq!(iommu_fn.group, None);
    assert!(h.group_of_device("0000:00:00.2").is_err());
    assert_eq!(h.settings.cpu_vendor.as_deref(), Some("amd"));
}

#[test]
fn arm_smmuv3_aperture_unknown() {
    let h = read_host(fixture("arm-smmuv3")).unwrap();
    let u = &h.iommus[0];
    assert_eq!(u.name, "smmu3.0x0000000009050000");
    assert_eq!(u.vendor, IommuVendor::ArmSmmuV3);
    assert_eq!(
        (u.aperture, u.page_sizes, u.interrupt_remapping),
        (None, None, None)
    );

    let g0 = h.group(0).unwrap();
    assert_eq!(
        g0.reserved_regions,
        [rr(0x800_0000, 0x80f_ffff, ReservedKind::Msi)]
    );
    assert_eq!(g0.iommu.as_deref(), Some("smmu3.0x0000000009050000"));
    let v = h.valid_iova_ranges(0).unwrap();
    assert!(!v.aperture_known());
    assert_eq!(
        v.ranges.ranges(),
        [r(0, 0x7ff_ffff), r(0x810_0000, u64::MAX)]
    );

    // Group 2: no `type` file, one platform device whose links all dangle.
    let g2 = h.group(2).unwrap();
    assert_eq!(g2.domain_type, DomainType::Unknown);
    assert_eq!(g2.devices, ["9010000.dma"]);
    let dma = h.device("9010000.dma").unwrap();
    assert_eq!(dma.group, Some(2));
    assert_eq!(dma.iommu.as_deref(), Some("smmu3.0x0000000009050000"));
    assert_eq!(dma.vendor_id, None);
    assert_eq!(h.settings.cpu_vendor.as_deref(), Some("arm"));
}

#[test]
fn dangling_links_are_tolerated() {
    let link = fixture("arm-smmuv3").join("kernel/iommu_groups/2/devices/9010000.dma");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(!link.exists(), "fixture link should dangle");
    read_host(fixture("arm-smmuv3")).unwrap();
}

#[test]
fn no_groups_directory_means_no_groups() {
    let h = read_host(fixture("empty-groups")).unwrap();
    assert_eq!(h, Host::default());
}

#[test]
fn this_machine_reads() {
    let h = read_host(Path::new("/sys")).unwrap();
    let on_disk = std::fs::read_dir("/sys/kernel/iommu_groups")
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(h.groups.len(), on_disk);
    let again = iova_linux::sysfs::read_host_default().unwrap();
    assert_eq!(again.groups.len(), on_disk);
}

// ---------------------------------------------------------------------------------
// Bad roots and malformed files: each error names the file (and line).

#[test]
fn missing_root_is_named() {
    let p = fixture("no-such-root");
    let e = read_host(&p).unwrap_err();
    assert!(matches!(e, SysfsError::Root { .. }));
    assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
}

#[test]
fn file_root_is_not_a_directory() {
    let p = fixture("intel-vtd-39").join("README.md");
    let e = read_host(&p).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: not a directory", p.display()));
}

fn rr_path(name: &str) -> String {
    fixture(name)
        .join("kernel/iommu_groups/3/reserved_regions")
        .display()
        .to_string()
}

#[test]
fn reserved_regions_two_fields() {
    let (e, msg) = err("bad-rr-fields");
    assert!(matches!(e, SysfsError::Line { .. }));
    assert_eq!(
        msg,
        format!(
            "{}:2: expected '0x<first> 0x<last> <type>', got '0xfee00000 msi'",
            rr_path("bad-rr-fields")
        )
    );
}

#[test]
fn reserved_regions_extra_field() {
    let (_, msg) = err("bad-rr-extra");
    assert_eq!(
        msg,
        format!(
            "{}:1: expected '0x<first> 0x<last> <type>', got '0x00000000fee00000 0x00000000feefffff msi sw'",
            rr_path("bad-rr-extra")
        )
    );
}

#[test]
fn reserved_regions_not_hex() {
    let (_, msg) = err("bad-rr-hex");
    let prefix = format!("{}:3: ", rr_path("bad-rr-hex"));
    assert!(msg.starts_with(&prefix), "{msg}");
    assert!(msg.contains("first address '0x00000000fee0000g'"), "{msg}");

    let (_, msg) = err("bad-rr-nox");
    assert!(
        msg.starts_with(&format!("{}:1: ", rr_path("bad-rr-nox"))),
        "{msg}"
    );
    assert!(
        msg.contains("'00000000fee00000' is not 0x-prefixed hex"),
        "{msg}"
    );
}

#[test]
fn reserved_regions_overflow() {
    let (_, msg) = err("bad-rr-overflow");
    assert!(
        msg.starts_with(&format!("{}:2: ", rr_path("bad-rr-overflow"))),
        "{msg}"
    );
    assert!(msg.contains("last address '0x10000000000000000'"), "{msg}");
    assert!(msg.contains("larger than"), "{msg}");
}

#[test]
fn reserved_regions_unknown_type() {
    let (_, msg) = err("bad-rr-kind");
    assert!(
        msg.starts_with(&format!("{}:1: ", rr_path("bad-rr-kind"))),
        "{msg}"
    );
    assert!(msg.contains("unknown region type 'doorbell'"), "{msg}");
}

#[test]
fn reserved_regions_inverted() {
    let (_, msg) = err("bad-rr-inverted");
    assert_eq!(
        msg,
        format!(
            "{}:1: last address 0xfee00000 is below first address 0xfeefffff, in '0x00000000feefffff 0x00000000fee00000 msi'",
            rr_path("bad-rr-inverted")
        )
    );
}

#[test]
fn reserved_regions_empty_line() {
    let (_, msg) = err("bad-rr-empty-line");
    assert!(
        msg.starts_with(&format!("{}:2: empty line", rr_path("bad-rr-empty-line"))),
        "{msg}"
    );
}

#[test]
fn unknown_domain_type() {
    let (e, msg) = err("bad-type");
    let path = fixture("bad-type").join("kernel/iommu_groups/3/type");
    assert_eq!(e.path(), path);
    assert!(
        msg.starts_with(&format!("{}: unknown domain type 'DMA-XL'", path.display())),
        "{msg}"
    );
}

#[test]
fn bad_group_directory_name() {
    for (name, dir) in [
        ("bad-group-name", "group3"),
        ("bad-group-too-big", "4294967296"),
    ] {
        let (e, msg) = err(name);
        let path = fixture(name).join("kernel/iommu_groups").join(dir);
        assert!(matches!(e, SysfsError::BadGroupName { .. }));
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("'{dir}'")), "{msg}");
    }
}

#[test]
fn bad_vtd_cap() {
    let (e, msg) = err("bad-cap-hex");
    assert!(matches!(e, SysfsError::BadValue { .. }));
    // The path goes through the class/iommu symlink, as a user would look it up.
    let path = fixture("bad-cap-hex").join("class/iommu/dmar0/intel-iommu/cap");
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.ends_with("got 'd2008c2226028z'"), "{msg}");
}

#[test]
fn bad_amd_features() {
    let (_, msg) = err("bad-amd-features");
    let path = fixture("bad-amd-features").join("class/iommu/ivhd0/amd-iommu/features");
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("'f77ef22294:0:1'"), "{msg}");
}

#[test]
fn bad_iommu_group_link() {
    let (_, msg) = err("bad-group-link");
    let path = fixture("bad-group-link").join("bus/pci/devices/0000:03:00.0/iommu_group");
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("'../../../kernel/iommu_groups/twelve'"),
        "{msg}"
    );
}

#[test]
fn bad_pci_vendor() {
    let (_, msg) = err("bad-pci-vendor");
    let path = fixture("bad-pci-vendor").join("bus/pci/devices/0000:03:00.0/vendor");
    assert_eq!(
        msg,
        format!(
            "{}: expected a 0x-prefixed 16-bit hex id, got '8086'",
            path.display()
        )
    );
}

#[test]
fn bad_vfio_parameter() {
    let (_, msg) = err("bad-param");
    let path =
        fixture("bad-param").join("module/vfio_iommu_type1/parameters/allow_unsafe_interrupts");
    assert_eq!(
        msg,
        format!("{}: expected Y, N, 1 or 0, got 'maybe'", path.display())
    );
}

#[test]
fn group_link_disagreeing_with_listing() {
    let (e, msg) = err("bad-group-mismatch");
    assert!(matches!(
        e,
        SysfsError::GroupMismatch {
            linked: 4,
            listed: 3,
            ..
        }
    ));
    assert!(msg.contains("0000:03:00.0"), "{msg}");
}

// ---------------------------------------------------------------------------------
// Bundled example hosts (used by iovactl tests and the README).

#[test]
fn example_intel_vtd_39() {
    let h = read_host(example("intel-vtd-39")).unwrap();
    let ids: Vec<u32> = h.groups.iter().map(|g| g.id).collect();
    assert_eq!(ids, [0, 1, 5, 8, 12]);
    assert_eq!(h.group(0).unwrap().domain_type, DomainType::Identity);
    assert_eq!(h.group(0).unwrap().devices, ["0000:00:00.0"]);
    assert_eq!(h.group_of_device("0000:03:00.0").unwrap().id, 12);
    assert_eq!(
        valid(&h, 12),
        [r(0x0, 0xfedf_ffff), r(0xfef0_0000, 0x7f_ffff_ffff)]
    );
    // The USB controller's RMRR is `direct`, so it is excluded.
    assert_eq!(
        h.group(5).unwrap().reserved_regions,
        [rr(0xbd80_0000, 0xbd9f_ffff, ReservedKind::Direct), msi()]
    );
    assert_eq!(
        valid(&h, 5),
        [
            r(0, 0xbd7f_ffff),
            r(0xbda0_0000, 0xfedf_ffff),
            r(0xfef0_0000, 0x7f_ffff_ffff)
        ]
    );
    assert_eq!(valid(&h, 8), valid(&h, 12));
}

#[test]
fn example_intel_vtd_48() {
    let h = read_host(example("intel-vtd-48")).unwrap();
    assert_eq!(
        valid(&h, 3),
        [r(0, 0xfedf_ffff), r(0xfef0_0000, 0xffff_ffff_ffff)]
    );
}

#[test]
fn example_amd_epyc() {
    let h = read_host(example("amd-epyc")).unwrap();
    assert_eq!(h.iommus[0].address_width, Some(48));
    for g in &h.groups {
        assert!(g.reserved_regions.contains(&ht()), "group {}", g.id);
        assert!(g.reserved_regions.contains(&msi()), "group {}", g.id);
    }
    assert_eq!(h.group_of_device("0000:41:00.0").unwrap().id, 14);
}

#[test]
fn example_arm_smmuv3() {
    let h = read_host(example("arm-smmuv3")).unwrap();
    assert_eq!(h.iommus[0].vendor, IommuVendor::ArmSmmuV3);
    let v = h.valid_iova_ranges(0).unwrap();
    assert!(!v.aperture_known());
    assert!(!v.ranges.overlaps(&r(0x800_0000, 0x80f_ffff)));
}

#[test]
fn every_example_has_a_readme_and_reads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hosts");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            assert!(p.join("README.md").is_file(), "{}", p.display());
            let h = read_host(&p).unwrap();
            assert!(!h.groups.is_empty(), "{}", p.display());
            n += 1;
        }
    }
    assert_eq!(n, 5);
}

// ---------------------------------------------------------------------------------
// Properties

fn kind_strategy() -> impl Strategy<Value = ReservedKind> {
    prop_oneof![
        Just(ReservedKind::Direct),
        Just(ReservedKind::DirectRelaxable),
        Just(ReservedKind::Reserved),
        Just(ReservedKind::Msi),
    ]
}

fn kind_name(k: ReservedKind) -> &'static str {
    match k {
        ReservedKind::Direct => "direct",
        ReservedKind::DirectRelaxable => "direct-relaxable",
        ReservedKind::Reserved => "reserved",
        ReservedKind::Msi => "msi",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Well-formed files, written the way the kernel writes them, parse back.
    #[test]
    fn kernel_format_round_trips(
        regions in prop::collection::vec((any::<u64>(), any::<u64>(), kind_strategy()), 0..8)
    ) {
        let mut text = String::new();
        let mut expected = Vec::new();
        for (a, b, k) in regions {
            let (first, last) = if a <= b { (a, b) } else { (b, a) };
            text.push_str(&format!("0x{first:016x} 0x{last:016x} {}\n", kind_name(k)));
            expected.push((first, last, k));
        }
        let parsed = parse_reserved_regions(&text).unwrap();
        let got: Vec<(u64, u64, ReservedKind)> = parsed
            .iter()
            .map(|r| (r.range.first(), r.range.last(), r.kind))
            .collect();
        prop_assert_eq!(got, expected);
    }

    /// Arbitrary text never panics; an error names a real line of the input.
    #[test]
    fn arbitrary_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_reserved_regions(&text) {
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert!(e.line >= 1 && e.line <= lines.len());
            prop_assert_eq!(lines[e.line - 1], e.text.as_str());
        }
    }

    /// Text made of the tokens the format uses (so near-misses are common) never panics.
    #[test]
    fn near_miss_text_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "0x", "0x0", "0xffffffffffffffff", "0x1ffffffffffffffff", "0xg", " ", "  ",
                "\n", "\t", "msi", "direct", "direct-relaxable", "reserved", "x", "-", "",
            ]),
            0..24,
        )
    ) {
        let text: String = parts.concat();
        let _ = parse_reserved_regions(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Arbitrary bytes in a group's files, read through the file system, never panic,
    /// and any error names a path inside the tree.
    #[test]
    fn arbitrary_files_never_panic(
        rr_bytes in prop::collection::vec(any::<u8>(), 0..120),
        type_bytes in prop::collection::vec(any::<u8>(), 0..12),
    ) {
        let root = scratch_dir();
        let g = root.join("kernel/iommu_groups/7");
        std::fs::create_dir_all(&g).unwrap();
        std::fs::write(g.join("reserved_regions"), &rr_bytes).unwrap();
        std::fs::write(g.join("type"), &type_bytes).unwrap();
        let result = read_host(&root);
        if let Err(e) = &result {
            prop_assert!(e.path().starts_with(&root), "{}", e);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}

fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("iova-sysfs-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn unreadable_directory_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let root = scratch_dir();
    let groups = root.join("kernel/iommu_groups");
    std::fs::create_dir_all(groups.join("3")).unwrap();
    std::fs::set_permissions(&groups, std::fs::Permissions::from_mode(0o000)).unwrap();
    let privileged = std::fs::read_dir(&groups).is_ok();
    let result = read_host(&root);
    std::fs::set_permissions(&groups, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    if privileged {
        // Running as root: permissions do not stop us, so there is nothing to check.
        return;
    }
    let e = result.unwrap_err();
    assert!(matches!(e, SysfsError::Io { .. }));
    assert!(
        e.to_string().starts_with(&groups.display().to_string()),
        "{e}"
    );
}

#[test]
fn kernel_unknown_type_string_is_unknown() {
    // drivers/iommu/iommu.c prints "unknown" for a group without a default domain.
    let root = scratch_dir();
    let g = root.join("kernel/iommu_groups/9");
    std::fs::create_dir_all(&g).unwrap();
    std::fs::write(g.join("type"), "unknown\n").unwrap();
    std::fs::write(g.join("reserved_regions"), "").unwrap();
    let h = read_host(&root);
    std::fs::remove_dir_all(&root).unwrap();
    let h = h.unwrap();
    assert_eq!(h.group(9).unwrap().domain_type, DomainType::Unknown);
    assert!(h.group(9).unwrap().reserved_regions.is_empty());
}

#[test]
fn missing_reserved_regions_is_an_error_not_none() {
    // Unknown means unsafe: "no reserved regions" would make the MSI window mappable.
    let root = scratch_dir();
    let g = root.join("kernel/iommu_groups/4");
    std::fs::create_dir_all(g.join("devices")).unwrap();
    std::fs::write(g.join("type"), "DMA\n").unwrap();
    let e = read_host(&root).unwrap_err();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(matches!(e, SysfsError::MissingFact { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("kernel/iommu_groups/4/reserved_regions"),
        "{msg}"
    );
    assert!(msg.contains("group 4"), "{msg}");
}

#[test]
fn a_root_not_shaped_like_sysfs_is_refused() {
    let empty = scratch_dir();
    for root in [
        empty.clone(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hosts"),
    ] {
        let e = read_host(&root).unwrap_err();
        assert!(matches!(e, SysfsError::NotSysfs { .. }), "{e}");
        assert!(e.to_string().contains("does not look like sysfs"), "{e}");
    }
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn symlink_loops_in_devices_are_not_devices() {
    let root = scratch_dir();
    let g = root.join("kernel/iommu_groups/2");
    std::fs::create_dir_all(g.join("devices")).unwrap();
    std::fs::write(g.join("reserved_regions"), "").unwrap();
    std::fs::write(g.join("devices/0000:01:00.0"), "").unwrap();
    std::os::unix::fs::symlink("loop", g.join("devices/loop")).unwrap();
    std::os::unix::fs::symlink("b", g.join("devices/a")).unwrap();
    std::os::unix::fs::symlink("a", g.join("devices/b")).unwrap();
    let h = read_host(&root);
    std::fs::remove_dir_all(&root).unwrap();
    let h = h.unwrap();
    assert_eq!(h.group(2).unwrap().devices, ["0000:01:00.0"]);
}

/// examples/hosts/intel-vtd-39 (README): drivers are `driver` links in the device
/// directories; group 8 holds the ISA bridge (lpc_ich) and the SMBus controller
/// (i801_smbus); the identity group's host bridge has none. Its kernel/irq shows
/// remapped chips (IR-IO-APIC, IR-PCI-MSI...).
#[test]
fn drivers_viability_and_interrupt_remapping_evidence() {
    use iova::host::{Binding, Viability};
    let h = read_host(example("intel-vtd-39")).unwrap();
    let drv = |d: &str| h.device(d).unwrap().driver.clone();
    assert_eq!(drv("00:1f.4"), Some(Binding::Driver("i801_smbus".into())));
    assert_eq!(drv("03:00.0"), Some(Binding::Driver("igb".into())));
    assert_eq!(drv("00:00.0"), Some(Binding::Unbound));
    // Assigning the ISA bridge alone: the SMBus function keeps the group from VFIO.
    assert_eq!(
        h.viability(8, &["0000:00:1f.0"]).unwrap(),
        Viability::NotViable {
            devices: vec![("0000:00:1f.4".into(), "i801_smbus".into())]
        }
    );
    // Both functions assigned (and so rebound): nothing else is in the group.
    assert_eq!(
        h.viability(8, &["0000:00:1f.0", "0000:00:1f.4"]).unwrap(),
        Viability::Viable
    );
    // The NIC's own driver does not count: it is the device being assigned.
    assert_eq!(
        h.viability(12, &["0000:03:00.0"]).unwrap(),
        Viability::Viable
    );
    assert_eq!(h.settings.interrupt_remapping_active, Some(true));
    assert!(
        h.settings
            .interrupt_remapping_evidence
            .as_deref()
            .is_some_and(
                |e| e.ends_with("kernel/irq/0/chip_name: IR-IO-APIC (a remapped interrupt chip)")
            ),
        "{:?}",
        h.settings.interrupt_remapping_evidence
    );
}

/// `intremap=off`: VT-d's ecap still has IR, the kernel's chips are not remapped ones;
/// a tree without kernel/irq (or with only chips that say nothing) is unknown.
#[test]
fn interrupt_remapping_evidence_off_and_unknown() {
    use iova_linux::sysfs::interrupt_remapping_evidence;
    let dir = std::env::temp_dir().join(format!("iova-irq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let chip = |irq: u32, name: &str| {
        let d = dir.join(format!("kernel/irq/{irq}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("chip_name"), format!("{name}\n")).unwrap();
    };
    assert_eq!(interrupt_remapping_evidence(&dir).unwrap(), None);
    chip(5, "ITS-PCI-MSIX-0000:00:01.0");
    chip(7, "DMAR-MSI");
    assert_eq!(interrupt_remapping_evidence(&dir).unwrap(), None);
    chip(9, "IO-APIC");
    chip(24, "PCI-MSI-0000:00:03.0");
    let (on, why) = interrupt_remapping_evidence(&dir).unwrap().unwrap();
    assert!(!on);
    assert!(why.contains("kernel/irq/9/chip_name: IO-APIC"), "{why}");
    chip(25, "IR-PCI-MSIX-0000:00:04.0");
    assert!(interrupt_remapping_evidence(&dir).unwrap().unwrap().0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The kernel's rule before 5.19 (`vfio_dev_driver_allowed`) let any bridge keep its
/// driver; from 5.19 only drivers with `driver_managed_dma` (pci-stub, pcieport, VFIO's)
/// may. An unknown kernel makes a bridge with another driver unknown.
#[test]
fn viability_of_bridges_depends_on_the_kernel() {
    use iova::host::{Binding, Device, Group, Viability};
    let mut h = Host::default();
    let mut g = Group::new(3);
    g.devices = vec!["0000:00:1c.0".into(), "0000:01:00.0".into()];
    h.groups.push(g);
    let mut bridge = Device::new("0000:00:1c.0");
    bridge.class = Some(0x06_0400);
    bridge.group = Some(3);
    bridge.driver = Some(Binding::Driver("shpchp".into()));
    let mut nic = Device::new("0000:01:00.0");
    nic.group = Some(3);
    nic.driver = Some(Binding::Driver("vfio-pci".into()));
    h.devices = vec![bridge, nic];
    let v = |h: &Host| h.viability(3, &["0000:01:00.0"]).unwrap();
    assert_eq!(
        v(&h),
        Viability::Unknown {
            devices: vec!["0000:00:1c.0".into()]
        }
    );
    h.settings.kernel = Some("5.15.0".into());
    assert_eq!(v(&h), Viability::Viable);
    h.settings.kernel = Some("6.1.0".into());
    assert!(matches!(v(&h), Viability::NotViable { .. }));
    for ok in ["pcieport", "pci-stub", "vfio-pci", "mlx5_vfio_pci"] {
        h.devices[0].driver = Some(Binding::Driver(ok.into()));
        assert_eq!(v(&h), Viability::Viable, "{ok}");
    }
    h.devices[0].driver = None;
    assert!(matches!(v(&h), Viability::Unknown { .. }));
}

/// The scoped read holds exactly the full read's facts for the groups it reads: the same
/// units and settings, the devices' groups whole, their member devices, nothing else.
#[test]
fn a_scoped_read_is_the_full_read_cut_to_the_devices_groups() {
    for name in [
        "intel-vtd-39",
        "intel-vtd-48",
        "amd-epyc",
        "arm-smmuv3",
        "pseries-qemu",
    ] {
        let full = read_host(example(name)).unwrap();
        for d in full.devices.iter().filter(|d| d.group.is_some()) {
            let scoped = iova_linux::sysfs::read_host_for_devices(
                example(name),
                std::slice::from_ref(&d.name),
            )
            .unwrap();
            assert_eq!(scoped.iommus, full.iommus, "{name} {}", d.name);
            assert_eq!(scoped.settings, full.settings, "{name} {}", d.name);
            let g = full.group(d.group.unwrap()).unwrap();
            assert_eq!(scoped.groups, vec![g.clone()], "{name} {}", d.name);
            let want: Vec<_> = full
                .devices
                .iter()
                .filter(|x| g.devices.contains(&x.name))
                .cloned()
                .collect();
            assert_eq!(scoped.devices, want, "{name} {}", d.name);
        }
        // A device the tree does not have: the whole host, as read_host answers.
        let whole =
            iova_linux::sysfs::read_host_for_devices(example(name), &["0000:99:00.0".into()])
                .unwrap();
        assert_eq!(whole, full, "{name}");
    }
}
