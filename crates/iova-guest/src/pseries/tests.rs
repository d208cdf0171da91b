//! Expected values come from QEMU (hw/ppc/spapr_pci.c property defaults,
//! hw/vfio/spapr.c's level guess) and from the kernel answers recorded on the
//! pseries guest (GET_INFO: 1 GiB 32-bit window at 0, pgsizes 0x1211000, 2 windows,
//! 1 level; TCE_CREATE with 2 levels is EINVAL; the DDW lands at 2^59).

use super::*;
use iova::spapr::DdwInfo;

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn parse(s: &str) -> Result<PseriesVm, QemuError> {
    PseriesVm::parse(&argv(s), None)
}

fn example_info() -> SpaprInfo {
    SpaprInfo {
        dma32_window_start: 0,
        dma32_window_size: 0x4000_0000,
        ddw: Some(DdwInfo {
            pgsizes: 0x0121_1000,
            max_dynamic_windows_supported: 2,
            levels: 1,
        }),
    }
}

fn host(page: u64) -> HostSpapr {
    HostSpapr {
        info: example_info(),
        page_size: page,
    }
}

fn check(vm: &PseriesVm, h: HostSpapr) -> PseriesReport {
    check_pseries(vm, &[(0, 0, h)])
}

fn window(r: &PseriesReport, k: WindowKind) -> &WindowCheck {
    r.windows.iter().find(|w| w.window == k).expect("window")
}

#[test]
fn phb_defaults_are_qemus() {
    let vm =
        parse("qemu-system-ppc64 -M pseries -m 2G -device vfio-pci,host=0000:00:00.0").unwrap();
    assert_eq!(vm.ram, 2 << 30);
    let d = vm.phb(0).unwrap().dma;
    assert_eq!(d.dma_win_addr, 0);
    assert_eq!(d.dma_win_size, 0x4000_0000);
    assert_eq!(d.dma64_win_addr, 0x0800_0000_0000_0000);
    assert!(d.ddw);
    assert_eq!(d.pgsz, 0x0121_1000);
    assert_eq!(
        vm.assigned,
        vec![Assigned {
            device: "0000:00:00.0".to_owned(),
            phb: 0
        }]
    );
}

#[test]
fn globals_and_phb_devices() {
    let vm = parse(
        "qemu-system-ppc64 -machine pseries-9.2,x-vof=on -m 4096 \
         -global spapr-pci-host-bridge.dma_win_size=0x20000000 \
         -device spapr-pci-host-bridge,index=1,id=phb1,ddw=off,pgsz=0x11000 \
         -device vfio-pci,host=0001:00:00.0,bus=phb1.0",
    )
    .unwrap();
    assert_eq!(vm.ram, 4 << 30);
    assert_eq!(vm.phb(0).unwrap().dma.dma_win_size, 0x2000_0000);
    let p1 = vm.phb(1).unwrap().dma;
    assert_eq!(p1.dma_win_size, 0x2000_0000, "-global applies to every PHB");
    assert!(!p1.ddw);
    assert_eq!(p1.pgsz, 0x11000);
    assert_eq!(vm.assigned[0].phb, 1);
}

#[test]
fn unmodelled_and_bad_inputs() {
    let e = parse("qemu-system-ppc64 -M pseries -m 1G,maxmem=4G").unwrap_err();
    assert!(e.is_unmodelled(), "{e}");
    let e = parse("qemu-system-ppc64 -M pseries -global spapr-pci-host-bridge.mem_win_size=1")
        .unwrap_err();
    assert!(e.is_unmodelled(), "{e}");
    let e = parse("qemu-system-ppc64 -M powernv9").unwrap_err();
    assert!(e.is_unmodelled(), "{e}");
    let e = parse("qemu-system-ppc64 -M pseries -mem-path /dev/hugepages").unwrap_err();
    assert!(e.is_unmodelled(), "{e}");
    let e =
        parse("qemu-system-ppc64 -M pseries -device vfio-pci,host=1:0.0,bus=bridge0").unwrap_err();
    assert!(e.is_unmodelled(), "{e}");
    let e =
        parse("qemu-system-ppc64 -M pseries -global spapr-pci-host-bridge.ddw=maybe").unwrap_err();
    assert!(!e.is_unmodelled(), "{e}");
    // qemu-system-ppc64's default machine is pseries.
    assert_eq!(
        parse("qemu-system-ppc64 -m 1G").unwrap().machine_name,
        "pseries"
    );
    assert!(
        PseriesVm::parse(
            &argv("qemu-system-ppc64 -M pseries-9.2"),
            Some(QemuVersion::new(7, 2))
        )
        .is_err()
    );
}

#[test]
fn qemu_level_guess() {
    // 1 GiB of 4 KiB TCEs = 2^18 entries = 2^21 bytes of table; 4 KiB host pages
    // give 20 bits per level: 2 levels, up to (64-12)/12 = 4.
    assert_eq!(qemu_levels(1 << 30, 12, 12), (2, 4));
    assert_eq!(qemu_levels(1 << 29, 12, 12), (1, 4));
    // 64 KiB host pages: 24 bits per level.
    assert_eq!(qemu_levels(1 << 30, 12, 16), (1, 3));
    assert_eq!(qemu_levels(1 << 37, 16, 16), (1, 3));
    assert_eq!(qemu_levels(1 << 38, 16, 16), (2, 3));
    // QEMU's 32-bit `entries` wraps to 0 for 2^32 TCEs or more: ctz64(0) = 64.
    assert_eq!(qemu_levels(1 << 44, 12, 12), (4, 4));
}

#[test]
fn guest_64bit_window() {
    let d = PhbDma::default();
    assert_eq!(guest_ddw(&d, 2 << 30), Ok((24, 2 << 30)));
    assert_eq!(guest_ddw(&d, 3 << 30), Ok((24, 4 << 30)));
    let small = PhbDma { pgsz: 0x1000, ..d };
    assert_eq!(guest_ddw(&small, 1 << 30), Ok((12, 1 << 30)));
    // 4 KiB pages: 2^37 TCEs cover 2^49 bytes; more RAM gets a 2^49 window.
    assert_eq!(guest_ddw(&small, 1 << 50), Ok((12, 1 << 49)));
    assert!(guest_ddw(&PhbDma { ddw: false, ..d }, 1 << 30).is_err());
    assert!(guest_ddw(&PhbDma { pgsz: 1 << 20, ..d }, 1 << 30).is_err());
}

#[test]
fn default_guest_passes_on_a_64k_host() {
    let vm = PseriesVm::preset(8 << 30, &["0000:00:00.0".to_owned()]);
    let r = check(&vm, host(0x1_0000));
    assert!(r.ok, "{r:?}");
    let w32 = window(&r, WindowKind::Dma32);
    assert_eq!(w32.attempts[0].answer, "ok 0x0");
    assert_eq!(w32.host_page_shift, Some(12));
    let w64 = window(&r, WindowKind::Dma64);
    assert_eq!(w64.size, 8 << 30);
    assert_eq!(w64.guest_page_shift, 24);
    // 16 MiB guest pages backed by 64 KiB anonymous RAM: 64 KiB host TCEs.
    assert_eq!(w64.host_page_shift, Some(16));
    assert_eq!(w64.attempts[0].answer, "ok 0x800000000000000");
}

#[test]
fn default_32bit_window_needs_two_levels_on_a_4k_host() {
    let vm = PseriesVm::preset(1 << 30, &["0000:00:00.0".to_owned()]);
    let r = check(&vm, host(0x1000));
    assert!(!r.ok);
    let w = window(&r, WindowKind::Dma32);
    let answers: Vec<(u32, &str)> = w
        .attempts
        .iter()
        .map(|a| (a.levels, a.answer.as_str()))
        .collect();
    assert_eq!(answers, vec![(2, "EINVAL"), (3, "EINVAL"), (4, "EINVAL")]);
    assert!(w.reason.as_deref().unwrap().contains("2-level"), "{w:?}");
}

#[test]
fn big_ram_exceeds_one_level_on_a_64k_host() {
    // 256 GiB of 64 KiB TCEs = 2^22 entries: 2^25 bytes of table, 2 levels.
    let vm = PseriesVm::preset(256 << 30, &["0000:00:00.0".to_owned()]);
    let r = check(&vm, host(0x1_0000));
    assert!(!r.ok);
    assert!(window(&r, WindowKind::Dma32).ok);
    let w = window(&r, WindowKind::Dma64);
    assert!(!w.ok);
    assert!(w.reason.as_deref().unwrap().contains("2-level"), "{w:?}");
    // 128 GiB still fits one level.
    let vm = PseriesVm::preset(128 << 30, &["0000:00:00.0".to_owned()]);
    assert!(check(&vm, host(0x1_0000)).ok);
}

#[test]
fn one_window_host_cannot_take_the_64bit_window() {
    let mut h = host(0x1_0000);
    h.info.ddw = Some(DdwInfo {
        pgsizes: 0x0121_1000,
        max_dynamic_windows_supported: 1,
        levels: 1,
    });
    let vm = PseriesVm::preset(2 << 30, &["0000:00:00.0".to_owned()]);
    let r = check(&vm, h);
    let w = window(&r, WindowKind::Dma64);
    assert!(!w.ok);
    assert!(
        w.reason.as_deref().unwrap().contains("host allows 1"),
        "{w:?}"
    );
}

#[test]
fn unsupported_page_size() {
    let mut h = host(0x1_0000);
    h.info.ddw = Some(DdwInfo {
        pgsizes: 0x0100_0000,
        max_dynamic_windows_supported: 2,
        levels: 1,
    });
    let vm = PseriesVm::preset(2 << 30, &["0000:00:00.0".to_owned()]);
    let r = check(&vm, h);
    let w = window(&r, WindowKind::Dma32);
    assert!(!w.ok);
    assert!(w.reason.as_deref().unwrap().contains("page size"), "{w:?}");
    assert!(w.attempts.is_empty());
}

#[test]
fn window_positions_must_match() {
    let mut vm = PseriesVm::preset(2 << 30, &["0000:00:00.0".to_owned()]);
    vm.phbs[0].dma.dma64_win_addr = 0x100_0000_0000;
    let r = check(&vm, host(0x1_0000));
    let w = window(&r, WindowKind::Dma64);
    assert!(!w.ok);
    assert!(
        w.reason.as_deref().unwrap().contains("0x800000000000000"),
        "{w:?}"
    );
    let p = plan_pseries(&vm, &[(0, 0, host(0x1_0000))]);
    assert!(p.fits, "{p:?}");
    assert_eq!(
        p.options,
        vec!["-global spapr-pci-host-bridge.dma64_win_addr=0x800000000000000".to_owned()]
    );
}

#[test]
fn plan_on_a_4k_host_shrinks_the_32bit_window_and_drops_ddw() {
    let vm = PseriesVm::preset(2 << 30, &["0000:00:00.0".to_owned()]);
    let p = plan_pseries(&vm, &[(0, 0, host(0x1000))]);
    assert!(p.fits, "{p:?}");
    assert_eq!(
        p.options,
        vec![
            "-global spapr-pci-host-bridge.dma_win_size=0x20000000".to_owned(),
            "-global spapr-pci-host-bridge.ddw=off".to_owned(),
        ]
    );
    assert!(p.notes.iter().any(|n| n.contains("512 MiB")), "{p:?}");
}
