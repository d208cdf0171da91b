use super::*;

const VA: u64 = 0x7fff_b700_0000;

fn v2() -> SpaprContainer {
    SpaprContainer::new(SpaprConfig::qemu_pseries(SpaprVersion::V2))
}

fn v1() -> SpaprContainer {
    SpaprContainer::new(SpaprConfig::qemu_pseries(SpaprVersion::V1))
}

fn e(r: Result<u32, SpaprError>) -> Result<u32, Errno> {
    r.map_err(|e| e.errno())
}

#[test]
fn info_v1_has_no_ddw_v2_has() {
    assert_eq!(v1().tce_info().unwrap().ddw, None);
    let i = v2().tce_info().unwrap();
    assert_eq!(i.dma32_window_size, 0x4000_0000);
    assert_eq!(i.ddw.unwrap().pgsizes, 0x0121_1000);
    assert_eq!(i.ddw.unwrap().max_dynamic_windows_supported, 2);
}

#[test]
fn v1_needs_enable_and_has_no_v2_ops() {
    let mut c = v1();
    assert_eq!(e(c.tce_map(0, VA, 0x1000, Access::RW)), Err(Errno::EPERM));
    assert_eq!(e(c.tce_unmap(0, 0x1000)), Err(Errno::EPERM));
    assert_eq!(c.register_memory(VA, 0x1000), Err(Errno::ENOTTY));
    assert_eq!(c.unregister_memory(VA, 0x1000), Err(Errno::ENOTTY));
    assert_eq!(c.create_window(12, 1 << 32, 1), Err(Errno::ENOTTY));
    assert_eq!(c.remove_window(0), Err(Errno::ENOTTY));
    assert_eq!(c.enable(), Ok(()));
    assert_eq!(c.enable(), Err(Errno::EBUSY));
    // v1 pins any memory: no registration needed.
    assert_eq!(e(c.tce_map(0, VA, 0x2000, Access::RW)), Ok(0));
    assert_eq!(c.translate(0x1234, Access::WRITE), Some(VA + 0x1234));
    assert_eq!(c.disable(), Ok(()));
    assert_eq!(c.disable(), Ok(()));
    assert_eq!(e(c.tce_map(0, VA, 0x1000, Access::RW)), Err(Errno::EPERM));
    // Mappings survive DISABLE.
    assert_eq!(c.enable(), Ok(()));
    assert_eq!(c.tce_count(), 2);
}

#[test]
fn v2_has_no_enable() {
    let mut c = v2();
    assert_eq!(c.enable(), Err(Errno::ENOTTY));
    assert_eq!(c.disable(), Err(Errno::ENOTTY));
    // UNREGISTER before anything set the container's mm.
    assert_eq!(c.unregister_memory(VA, 0x1000), Err(Errno::EPERM));
}

#[test]
fn crossing_maps_are_refused_with_the_bug_named() {
    let mut c = v2();
    c.register_memory(VA, 1 << 24).unwrap();
    let r = c.tce_map(0x3fff_f000, VA, 0x2000, Access::RW);
    assert_eq!(
        r,
        Err(SpaprError::Defect(KernelDefect::MapPastWindowEndOops))
    );
    let w = c.take_warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("tce_iommu_unuse_page_v2"), "{w:?}");
    assert_eq!(c.tce_count(), 0);

    let mut c = v1();
    c.enable().unwrap();
    let r = c.tce_map(0x3fff_f000, VA, 0x2000, Access::RW);
    assert_eq!(
        r,
        Err(SpaprError::Defect(KernelDefect::MapPastWindowEndHParameter))
    );
    assert!(c.take_warnings()[0].contains("H_PARAMETER"));
    assert!(c.map_hits_defect(0x3fff_f000, VA, 0x2000, Access::RW));
    assert!(!c.map_hits_defect(0x3fff_f000, VA, 0x1000, Access::RW));
}

#[test]
fn removing_the_pending_default_window() {
    let mut c = v2();
    c.register_memory(VA, 1 << 20).unwrap();
    assert!(c.default_window_pending());
    assert_eq!(c.remove_window(0), Ok(()));
    assert!(!c.default_window_pending());
    assert_eq!(e(c.tce_map(0, VA, 0x1000, Access::RW)), Err(Errno::ENXIO));
    // The default shape can be created again, at 0.
    assert_eq!(c.create_window(12, 1 << 30, 1), Ok(0));
    // A smaller default-shaped window too... after removing it.
    assert_eq!(c.remove_window(0x1000), Ok(()));
    assert_eq!(c.create_window(12, 1 << 28, 1), Ok(0));
    assert_eq!(c.windows()[0].pages, 1 << 16);
}

#[test]
fn unregister_while_mapped_keeps_the_region() {
    let mut c = v2();
    c.register_memory(VA, 1 << 20).unwrap();
    c.tce_map(0, VA, 0x1000, Access::RW).unwrap();
    assert_eq!(c.unregister_memory(VA, 1 << 20), Ok(()));
    // Gone from the container, but the TCE still points into it and maps still work.
    assert_eq!(c.unregister_memory(VA, 1 << 20), Err(Errno::ENOENT));
    assert_eq!(e(c.tce_map(0x1000, VA, 0x1000, Access::RW)), Ok(0));
    // Registering it again lists it again.
    assert_eq!(c.register_memory(VA, 1 << 20), Ok(()));
    assert_eq!(c.register_memory(VA, 1 << 20), Err(Errno::EBUSY));
    c.tce_unmap(0, 0x2000).unwrap();
    assert_eq!(c.unregister_memory(VA, 1 << 20), Ok(()));
    assert!(c.regions().is_empty());
    assert_eq!(c.register_memory(VA, 0), Err(Errno::ENOMEM));
    assert_eq!(c.register_memory(VA + 1, 0x1000), Err(Errno::EINVAL));
    assert_eq!(
        c.register_memory(u64::MAX - 0xfff, 0x2000),
        Err(Errno::EINVAL)
    );
}

#[test]
fn failed_map_clears_what_it_wrote() {
    let mut c = v2();
    c.register_memory(VA, 0x2000).unwrap();
    c.register_memory(VA + 0x10000, 0x1000).unwrap();
    c.tce_map(0x1000, VA + 0x10000, 0x1000, Access::RW).unwrap();
    // Page 0 ok, page 1 ok (replacing), page 2 unregistered: EINVAL and the first two
    // pages end up empty, including the one that was mapped before.
    assert_eq!(e(c.tce_map(0, VA, 0x3000, Access::RW)), Err(Errno::EINVAL));
    assert_eq!(c.tce(0), None);
    assert_eq!(c.tce(0x1000), None);
    assert_eq!(c.tce_count(), 0);
    assert!(c.regions().iter().all(|r| r.mapped == 0));
}

#[test]
fn sixty_four_k_kernel_backs_64k_tces() {
    let mut cfg = SpaprConfig::qemu_pseries(SpaprVersion::V2);
    cfg.host_page_shift = 16;
    let mut c = SpaprContainer::new(cfg);
    c.register_memory(VA, 1 << 24).unwrap();
    let s = c.create_window(16, 1 << 36, 1).unwrap();
    assert_eq!(e(c.tce_map(s, VA, 0x1_0000, Access::RW)), Ok(0));
}

#[test]
fn poisoning() {
    let mut c = v2();
    assert!(!c.create_would_poison(12, 1 << 32, 1));
    c.create_window(12, 1 << 32, 1).unwrap();
    // Slot 0 holds the default window, slot... none left: ENOSPC, no poison.
    assert!(!c.create_would_poison(12, 1 << 32, 1));
    c.remove_window(0).unwrap();
    // Slot 0 free, a DDW exists: EPERM for both shapes, no poison.
    assert_eq!(c.create_window(12, 1 << 30, 1), Err(Errno::EPERM));
    assert_eq!(c.create_window(16, 1 << 32, 1), Err(Errno::EPERM));
    // A window smaller than its page fails in the hypervisor.
    c.remove_window(0x0800_0000_0000_0000).unwrap();
    assert!(c.create_would_poison(16, 1 << 14, 1));
    assert_eq!(c.create_window(16, 1 << 14, 1), Err(Errno::ENODEV));
    assert!(c.poisoned());
    assert_eq!(c.create_window(12, 1 << 30, 1), Err(Errno::ENODEV));
}

#[test]
fn dma_space_view() {
    let mut c = v2();
    let info = DmaSpace::info(&c).unwrap();
    assert!(info.iova_ranges.contains(0x3fff_ffff));
    assert!(!info.iova_ranges.contains(0x4000_0000));
    c.register_memory(VA, 1 << 20).unwrap();
    assert_eq!(DmaSpace::map(&mut c, 0, VA, 0x1000, Access::RW), Ok(()));
    assert_eq!(DmaSpace::unmap(&mut c, 0, 0x1000), Ok(0x1000));
    assert_eq!(
        DmaSpace::map(&mut c, 0x4000_0000, VA, 0x1000, Access::RW)
            .unwrap_err()
            .errno(),
        Errno::ENXIO
    );
    assert_eq!(
        DmaSpace::unmap_all(&mut c).unwrap_err().errno(),
        Errno::EINVAL
    );
}

#[test]
fn saved_info_round_trips() {
    for v in [SpaprVersion::V1, SpaprVersion::V2] {
        let i = SpaprConfig::qemu_pseries(v).info();
        assert_eq!(SpaprInfo::parse_saved(&i.to_saved()), Some(i));
    }
    assert_eq!(SpaprInfo::parse_saved("dma32_window_start=0"), None);
    assert_eq!(
        SpaprInfo::parse_saved("dma32_window_start=0 dma32_window_size=1G pgsizes=1"),
        None
    );
    assert_eq!(
        SpaprInfo::parse_saved("dma32_window_start=0 dma32_window_size=0x100000000"),
        None
    );
    assert_eq!(SpaprInfo::parse_saved("x=1"), None);
}
