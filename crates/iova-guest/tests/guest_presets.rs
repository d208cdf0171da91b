//! Each preset against facts from its VMM's sources (section boundaries for several
//! memory sizes). Expected values are written from the sources, not from the code.

use iova_guest::presets::ram_ranges;
use iova_guest::{CpuVendor, GuestConfig, Preset, SectionKind};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const G4: u64 = 1 << 32;
const TIB: u64 = 1 << 40;

fn ram(p: Preset, mem: u64, v: CpuVendor) -> Vec<(u64, u64)> {
    ram_ranges(&p.layout(&GuestConfig::new(mem, v)).unwrap())
}

fn span(first: u64, size: u64) -> (u64, u64) {
    (first, first + size - 1)
}

#[test]
fn q35_keeps_everything_low_below_2_75g() {
    // pc_q35.c: ram_size < 0xb0000000 -> lowmem 0xb0000000, so all RAM is below 4G.
    let r = ram(Preset::QemuQ35, 2 * GIB, CpuVendor::Intel);
    assert_eq!(r, vec![(0, 0x9_ffff), (0x10_0000, 2 * GIB - 1)]);
    let r = ram(Preset::QemuQ35, 0xafe0_0000, CpuVendor::Intel);
    assert_eq!(r.last(), Some(&(0x10_0000, 0xafdf_ffff)));
}

#[test]
fn q35_splits_at_2g_from_2_75g() {
    // ram_size >= 0xb0000000 -> lowmem 0x80000000; the rest at 4 GiB.
    let r = ram(Preset::QemuQ35, 0xb000_0000, CpuVendor::Intel);
    assert_eq!(
        r,
        vec![
            (0, 0x9_ffff),
            (0x10_0000, 0x7fff_ffff),
            span(G4, 0x3000_0000)
        ]
    );
    let r = ram(Preset::QemuQ35, 8 * GIB, CpuVendor::Intel);
    assert_eq!(r[2], span(G4, 6 * GIB));
}

#[test]
fn q35_pci_hole64_follows_ram_rounded_to_1g_with_32g() {
    // pc_pci_hole64_start(): ROUND_UP(above_4g_end, 1 GiB); Q35 default size 1<<35.
    let l = Preset::QemuQ35
        .layout(&GuestConfig::new(8 * GIB + 512 * MIB, CpuVendor::Intel))
        .unwrap();
    let h = l.section("pci-hole64").unwrap();
    // above = 6.5 GiB at 4 GiB -> ends at 10.5 GiB -> hole at 11 GiB.
    assert_eq!(h.range.first(), 11 * GIB);
    assert_eq!(h.range.last(), 11 * GIB + 32 * GIB - 1);
    assert!(h.p2p && h.kind == SectionKind::Mmio);
    // MMCONFIG at 0xb0000000 (256 MiB); IOAPIC at 0xfec00000.
    assert_eq!(
        l.section("pcie-mmconfig").unwrap().range.first(),
        0xb000_0000
    );
    assert_eq!(l.section("ioapic").unwrap().range.first(), 0xfec0_0000);
}

#[test]
fn q35_amd_relocation_matches_pc_memory_init() {
    // pc.c: AMD vCPU and pc_max_used_gpa() = hole64_start + hole64_size - 1 >= 0xfd00000000
    // -> above_4g_mem_start = 1 TiB. With 2 GiB low and a 32 GiB hole64: relocation iff
    // ROUND_UP(4G + (ram - 2G), 1G) + 32G - 1 >= 1012G, i.e. ram > 978 GiB.
    let r = ram(Preset::QemuQ35, 978 * GIB, CpuVendor::Amd);
    assert_eq!(r[2], span(G4, 976 * GIB), "978 GiB stays at 4 GiB");
    let r = ram(Preset::QemuQ35, 979 * GIB, CpuVendor::Amd);
    assert_eq!(r[2], span(TIB, 977 * GIB), "979 GiB moves to 1 TiB");
    let r = ram(Preset::QemuQ35, TIB, CpuVendor::Amd);
    assert_eq!(r[2], span(0x100_0000_0000, 1022 * GIB));
    // The same guest with an Intel vCPU is not relocated.
    let r = ram(Preset::QemuQ35, TIB, CpuVendor::Intel);
    assert_eq!(r[2], span(G4, 1022 * GIB));
}

#[test]
fn pc_i440fx_split_follows_pc_piix() {
    // pc_piix.c: lowmem = max-ram-below-4g (default 0xe0000000); ram >= it with
    // gigabyte_align -> lowmem 0xc0000000. Comment examples: -m 4G -> 3072M low, 1024M
    // high; max-ram-below-4g=2G -m 4G -> 2048M low, 2048M high.
    let r = ram(Preset::QemuPc, 3 * GIB, CpuVendor::Intel);
    assert_eq!(r, vec![(0, 0x9_ffff), (0x10_0000, 3 * GIB - 1)]);
    let r = ram(Preset::QemuPc, 0xdfe0_0000, CpuVendor::Intel);
    assert_eq!(r.len(), 2, "just under 3.5 GiB stays low");
    let r = ram(Preset::QemuPc, 0xe000_0000, CpuVendor::Intel);
    assert_eq!(r[1], (0x10_0000, 0xbfff_ffff));
    assert_eq!(r[2], span(G4, 512 * MIB));
    let r = ram(Preset::QemuPc, 4 * GIB, CpuVendor::Intel);
    assert_eq!(r[1], (0x10_0000, 3 * GIB - 1));
    assert_eq!(r[2], span(G4, GIB));
    let cfg = GuestConfig::new(4 * GIB, CpuVendor::Intel).max_ram_below_4g(Some(2 * GIB));
    let r = ram_ranges(&Preset::QemuPc.layout(&cfg).unwrap());
    assert_eq!(r[1], (0x10_0000, 2 * GIB - 1));
    assert_eq!(r[2], span(G4, 2 * GIB));
    // I440FX_PCI_HOST_HOLE64_SIZE_DEFAULT is 2 GiB.
    let l = Preset::QemuPc
        .layout(&GuestConfig::new(4 * GIB, CpuVendor::Intel))
        .unwrap();
    assert_eq!(
        l.section("pci-hole64").unwrap().range,
        iova::IovaRange::new(5 * GIB, 7 * GIB - 1).unwrap()
    );
}

#[test]
fn qemu_virt_ram_at_1g_and_high_window_at_512g() {
    let l = Preset::QemuVirt
        .layout(&GuestConfig::new(4 * GIB, CpuVendor::Arm))
        .unwrap();
    assert_eq!(ram_ranges(&l), vec![span(GIB, 4 * GIB)]);
    assert_eq!(l.section("pcie-mmio").unwrap().range.first(), 0x1000_0000);
    assert_eq!(l.section("pcie-ecam").unwrap().range.first(), 0x3f00_0000);
    let high = l.section("pcie-mmio-high").unwrap().range;
    assert_eq!((high.first(), high.last()), span(512 * GIB, 512 * GIB));
    // Past 255 GiB (LEGACY_RAMLIMIT_GB) QEMU moves the high regions above RAM rather
    // than refusing; the preset is the command line, so it does the same.
    let big = Preset::QemuVirt
        .layout(&GuestConfig::new(300 * GIB, CpuVendor::Arm))
        .unwrap();
    assert_eq!(ram_ranges(&big), vec![span(GIB, 300 * GIB)]);
    // The flash is a ROM device QEMU does not DMA-map.
    assert!(!l.section("flash").unwrap().is_dma_mapped());
}

#[test]
fn qemu_presets_are_their_documented_command_lines() {
    // docs/guest-layouts.md names these lines; iovactl's guest_cli test checks that
    // `--guest` and the line after `--` answer alike.
    let mut cfg = GuestConfig::new(8 * GIB, CpuVendor::Intel);
    cfg.max_ram_below_4g = Some(GIB);
    cfg.pci_hole64_size = Some(64 * GIB);
    assert_eq!(
        Preset::QemuQ35.canonical_argv(&cfg).unwrap().join(" "),
        "qemu-system-x86_64 -accel kvm -machine q35,max-ram-below-4g=1073741824 -m 8589934592b \
         -global q35-pcihost.pci-hole64-size=68719476736 -cpu host"
    );
    assert_eq!(
        Preset::QemuVirt
            .canonical_argv(&GuestConfig::new(GIB, CpuVendor::Arm))
            .unwrap()
            .join(" "),
        "qemu-system-aarch64 -accel kvm -machine virt -m 1073741824b -cpu host"
    );
    assert_eq!(
        Preset::Firecracker.canonical_argv(&GuestConfig::new(GIB, CpuVendor::Intel)),
        None
    );
    // The knobs plan turns reach the layout through the line.
    let l = Preset::QemuQ35.layout(&cfg).unwrap();
    assert_eq!(l.section("ram-below-4g").unwrap().range.last(), GIB - 1);
}

#[test]
fn cloud_hypervisor_ram_below_3g_then_at_4g() {
    // layout.rs: MEM_32BIT_RESERVED_START 0xc0000000, RAM_64BIT_START 4 GiB.
    assert_eq!(
        ram(Preset::CloudHypervisor, 2 * GIB, CpuVendor::Intel),
        vec![span(0, 2 * GIB)]
    );
    assert_eq!(
        ram(Preset::CloudHypervisor, 16 * GIB, CpuVendor::Intel),
        vec![span(0, 3 * GIB), span(G4, 13 * GIB)]
    );
    // No HyperTransport hole, whatever the vendor.
    assert_eq!(
        ram(Preset::CloudHypervisor, TIB, CpuVendor::Amd),
        vec![span(0, 3 * GIB), span(G4, 1021 * GIB)]
    );
    let l = Preset::CloudHypervisor
        .layout(&GuestConfig::new(16 * GIB, CpuVendor::Intel))
        .unwrap();
    assert_eq!(
        l.section("pci-mmconfig").unwrap().range.first(),
        0xe800_0000
    );
}

#[test]
fn firecracker_gap_below_4g_and_mmio64() {
    // MMIO32_MEM_START = 4G - 1G; MMIO64 at 256 GiB for 256 GiB; RAM resumes at 512 GiB.
    assert_eq!(
        ram(Preset::Firecracker, 8 * GIB, CpuVendor::Intel),
        vec![span(0, 3 * GIB), span(G4, 5 * GIB)]
    );
    assert_eq!(
        ram(Preset::Firecracker, 300 * GIB, CpuVendor::Intel),
        vec![
            span(0, 3 * GIB),
            span(G4, 252 * GIB),
            span(512 * GIB, 45 * GIB)
        ]
    );
    let l = Preset::Firecracker
        .layout(&GuestConfig::new(8 * GIB, CpuVendor::Intel))
        .unwrap();
    assert_eq!(
        l.section("pci-mmconfig").unwrap().range.first(),
        0xeec0_0000
    );
}

#[test]
fn crosvm_ram_below_0xd0000000_then_at_4g() {
    // END_ADDR_BEFORE_32BITS = 4G - 768M = 0xd0000000.
    assert_eq!(
        ram(Preset::Crosvm, GIB, CpuVendor::Intel),
        vec![span(0, GIB)]
    );
    assert_eq!(
        ram(Preset::Crosvm, 8 * GIB, CpuVendor::Intel),
        vec![(0, 0xcfff_ffff), span(G4, 8 * GIB - 0xd000_0000)]
    );
}

#[test]
fn every_preset_keeps_the_requested_ram_and_never_overlaps() {
    for p in Preset::ALL {
        for mem in [64 * MIB, 2 * GIB, 3 * GIB, 5 * GIB, 100 * GIB, 255 * GIB] {
            let v = if p.is_arm() {
                CpuVendor::Arm
            } else {
                CpuVendor::Amd
            };
            let l = p.layout(&GuestConfig::new(mem, v)).unwrap();
            // On QEMU's PC machines the VGA window and the ROM shadow (0xa0000-0xfffff)
            // hide 384 KiB of the RAM block below 1 MiB.
            let hidden = if p.depends_on_cpu_vendor() {
                0x6_0000
            } else {
                0
            };
            assert_eq!(l.ram_bytes() + hidden, u128::from(mem), "{p} {mem:#x}");
        }
    }
}

#[test]
fn names_and_bad_sizes() {
    assert_eq!(Preset::from_name("qemu-q35"), Some(Preset::QemuQ35));
    assert_eq!(Preset::from_name("i440fx"), Some(Preset::QemuPc));
    assert_eq!(Preset::from_name("bochs"), None);
    assert!(Preset::known_names().contains("firecracker"));
    let e = Preset::QemuQ35
        .layout(&GuestConfig::new(1000, CpuVendor::Intel))
        .unwrap_err();
    assert!(e.to_string().contains("qemu-q35"));
    let huge = Preset::QemuQ35.layout(&GuestConfig::new(u64::MAX - 0xfff, CpuVendor::Intel));
    assert!(huge.is_err(), "a layout past 2^64 is refused, not wrapped");
}
