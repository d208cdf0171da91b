//! `iova-vmtest spapr`: the real sPAPR TCE backend (`iova_linux::spapr`) on a pseries
//! guest (QEMU `-M pseries`, Linux 6.12), against facts and against the simulation.
//!
//! Expected values are facts recorded from the real kernel and QEMU's defaults (the
//! 32-bit window `[0, 1 GiB)`, DDW page sizes 4K|64K|2M|16M, 2 windows, 1 level, the
//! 64-bit window at `0x0800_0000_0000_0000`; `docs/semantics.md`, "sPAPR TCE"), and
//! the data the `edu` device's DMA leaves in memory. QEMU's `edu` registers are
//! big-endian on `qemu-system-ppc64` (DEVICE_NATIVE_ENDIAN), so register values are
//! byte-swapped here.
//!
//! The checks run on both of Debian's ppc64el kernel flavours (4 KiB and 64 KiB
//! pages, boots `pseries:6.12` and `pseries:6.12-64k`). What depends on the kernel's
//! page size (registration granularity, the largest TCE anonymous memory backs, the
//! TCE-table levels QEMU asks for) is expected from the page size read independently
//! in [`live_host::page_size`], and the simulation is given that page size.
//!
//! Nothing here poisons the device (a failed DDW creation in the hypervisor) or
//! triggers the kernel defects: the random traces skip creations the model says would
//! fail in the hypervisor, and crossing maps are refused by the backend unsent. The
//! creations QEMU would send for a default guest, refused on a 4 KiB-page kernel, run
//! last ([`live_host::qemu_create_sequence`]).

mod live_host;

use std::sync::Arc;
use std::time::{Duration, Instant};

use iova::dma::{Access, Errno};
use iova::spapr::trace::{SpaprOp, apply, format_outcome};
use iova::spapr::{
    SpaprConfig, SpaprContainer as Sim, SpaprError, SpaprInfo, SpaprSpace, SpaprVersion,
};
use iova_linux::device::{Device, PCI_BAR0_REGION_INDEX, RegionInfo};
use iova_linux::memory::{AnonMemory, HoldMemory};
use iova_linux::spapr::SpaprContainer;

use crate::report::Report;

/// QEMU 7.2's pseries defaults, as the real kernel reported them (facts).
const DMA32_SIZE: u32 = 0x4000_0000;
const PGSIZES: u64 = 0x0121_1000;
const DMA64: u64 = 0x0800_0000_0000_0000;
const BUF: usize = 16 << 20;

/// Buffers stay mapped for the whole run: a region the kernel keeps registered in the
/// process (after an unregister while TCEs pointed into it) must never be overlapped
/// by a later buffer.
struct Keep(Vec<Arc<AnonMemory>>);

fn buffer(keep: &mut Keep, c: &mut SpaprContainer) -> Option<Arc<AnonMemory>> {
    // One spare MiB past what is registered, so that maps running past the registered
    // region are still inside held memory (and sent).
    let m = Arc::new(AnonMemory::new(BUF + 0x10_0000).ok()?);
    c.add_memory(m.clone());
    keep.0.push(m.clone());
    Some(m)
}

fn open(r: &mut Report, name: &str, group: u32, v: SpaprVersion) -> Option<SpaprContainer> {
    let mut c = match SpaprContainer::open() {
        Ok(c) => c,
        Err(e) => {
            r.fail(name, &e.to_string());
            return None;
        }
    };
    match c.attach_group(group, v) {
        Ok(()) => {
            r.pass(name);
            Some(c)
        }
        Err(e) => {
            r.fail(name, &e.to_string());
            None
        }
    }
}

fn group_of(bdf: &str) -> Option<u32> {
    let link = std::fs::read_link(format!("/sys/bus/pci/devices/{bdf}/iommu_group")).ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// edu through the VFIO device fd (pread/pwrite), registers big-endian.
struct Edu {
    dev: Device,
    bar: RegionInfo,
}

impl Edu {
    fn open(r: &mut Report, dev: Device) -> Option<Edu> {
        if let Err(e) = dev.enable_bus_master() {
            r.fail("spapr-edu-bus-master", &e.name());
            return None;
        }
        let bar = match dev.region_info(PCI_BAR0_REGION_INDEX) {
            Ok(b) => b,
            Err(e) => {
                r.fail("spapr-edu-bar0", &e.name());
                return None;
            }
        };
        let edu = Edu { dev, bar };
        let id = edu.rd32(0).unwrap_or(0);
        r.eq("spapr-edu-ident-big-endian", id, 0x0100_00ed);
        Some(edu)
    }
    fn rd32(&self, off: u64) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        self.dev.read_region(&self.bar, off, &mut b)?;
        Ok(u32::from_be_bytes(b))
    }
    fn wr64(&self, off: u64, v: u64) -> Result<(), Errno> {
        self.dev.write_region(&self.bar, off, &v.to_be_bytes())
    }
    fn wr32(&self, off: u64, v: u32) -> Result<(), Errno> {
        self.dev.write_region(&self.bar, off, &v.to_be_bytes())
    }
    /// One transfer of `cnt` bytes; `to_ram`: edu buffer → `iova`, else `iova` → edu.
    fn dma(&self, iova: u64, cnt: u64, to_ram: bool) -> Result<(), String> {
        let e = |x: Errno| x.name();
        let (src, dst) = if to_ram {
            (0x4_0000, iova)
        } else {
            (iova, 0x4_0000)
        };
        self.wr64(0x80, src).map_err(e)?;
        self.wr64(0x88, dst).map_err(e)?;
        self.wr64(0x90, cnt).map_err(e)?;
        self.wr32(0x98, if to_ram { 3 } else { 1 }).map_err(e)?;
        let t0 = Instant::now();
        while self.rd32(0x98).map_err(e)? & 1 != 0 {
            if t0.elapsed() > Duration::from_secs(5) {
                return Err("edu DMA timed out".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
    /// Device reads 256 bytes at `iova` and writes them back at `iova + 1024`; whether
    /// the bytes at `mem[off..]` arrived at `mem[off + 1024..]`.
    fn round_trip(
        &self,
        mem: &AnonMemory,
        off: usize,
        iova: u64,
        seed: u8,
    ) -> Result<bool, String> {
        let pat: Vec<u8> = (0..256u16)
            .map(|i| u8::try_from(i & 0xff).unwrap_or(0) ^ seed)
            .collect();
        mem.write(off, &pat);
        mem.fill(off + 1024, 256, 0);
        self.dma(iova, 256, false)?;
        self.dma(iova + 1024, 256, true)?;
        Ok(mem.read(off + 1024, 256) == pat)
    }
}

fn err(r: Result<u32, SpaprError>) -> String {
    match r {
        Ok(0) => "ok".into(),
        Ok(n) => format!("ret {n}"),
        Err(SpaprError::Kernel(e)) => e.name(),
        Err(SpaprError::Defect(d)) => format!("refused: {}", d.name()),
        Err(e) => e.to_string(),
    }
}

fn unit(r: Result<(), Errno>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.name(),
    }
}

fn dma_check(
    r: &mut Report,
    name: &str,
    edu: Option<&Edu>,
    mem: &AnonMemory,
    off: usize,
    iova: u64,
    want: bool,
) {
    let Some(edu) = edu else {
        r.fail(name, "no edu device");
        return;
    };
    match edu.round_trip(mem, off, iova, 0x5a) {
        Ok(got) if got == want => r.pass(name),
        Ok(got) => r.fail(name, &format!("data copied: {got}, expected {want}")),
        Err(e) => r.fail(name, &e),
    }
}

/// Runs every sPAPR check for the device `bdf`.
pub fn run(r: &mut Report, bdf: &str, seed: u64) {
    let Some(group) = group_of(bdf) else {
        r.fail("spapr-group", &format!("{bdf} has no IOMMU group"));
        return;
    };
    r.pass("spapr-group-found");
    let page = live_host::page_size(r);
    capture(r, bdf, group);
    cli(r, bdf, page);
    live_host::cli(r, bdf, page);
    let mut keep = Keep(Vec::new());
    // Without a trustworthy page size, the page-dependent expectations take 4 KiB (and
    // the page-size check has already failed).
    let pg = page.unwrap_or(0x1000);
    v2_checks(r, bdf, group, &mut keep, pg);
    v1_checks(r, bdf, group, &mut keep);
    for v in [SpaprVersion::V2, SpaprVersion::V1] {
        differential(r, group, v, seed, &mut keep, pg);
    }
    live_host::qemu_create_sequence(r, group, page);
}

/// Prints the facts an example host (`examples/hosts/pseries-qemu`) is made from.
fn capture(r: &mut Report, bdf: &str, group: u32) {
    let rd = |p: String| std::fs::read_to_string(p).unwrap_or_else(|_| "-".into());
    let g = format!("/sys/kernel/iommu_groups/{group}");
    r.note(&format!(
        "capture group {group} type {}",
        rd(format!("{g}/type")).trim()
    ));
    r.note(&format!(
        "capture group {group} reserved_regions [{}]",
        rd(format!("{g}/reserved_regions")).trim()
    ));
    for f in ["vendor", "device", "class"] {
        r.note(&format!(
            "capture device {bdf} {f} {}",
            rd(format!("/sys/bus/pci/devices/{bdf}/{f}")).trim()
        ));
    }
    let link = |p: String| {
        std::fs::read_link(p)
            .map(|l| l.display().to_string())
            .unwrap_or_default()
    };
    for u in std::fs::read_dir("/sys/class/iommu")
        .into_iter()
        .flatten()
        .flatten()
    {
        let devs: Vec<String> = std::fs::read_dir(u.path().join("devices"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .collect();
        r.note(&format!(
            "capture /sys/class/iommu/{} -> {} devices {devs:?}",
            u.file_name().to_string_lossy(),
            link(u.path().display().to_string())
        ));
    }
    r.note(&format!(
        "capture /sys/bus/pci/devices/{bdf} -> {}",
        link(format!("/sys/bus/pci/devices/{bdf}"))
    ));
    r.note(&format!(
        "capture /sys/bus/pci/devices/{bdf}/iommu -> {}",
        link(format!("/sys/bus/pci/devices/{bdf}/iommu"))
    ));
}

/// `iovactl` on the live pseries guest: inspect asks VFIO for the windows, replay
/// simulates a sPAPR trace against them.
fn cli(r: &mut Report, bdf: &str, page: Option<u64>) {
    let run = |args: &[&str]| {
        std::process::Command::new("/iovactl")
            .args(args)
            .output()
            .map(|o| {
                (
                    o.status.code(),
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                )
            })
    };
    match run(&["inspect", "--json", "--device", bdf]) {
        Ok((Some(0), out))
            if out.contains("\"dma32_window_size\": \"0x40000000\"")
                && out.contains("\"pgsizes\": \"0x1211000\"") =>
        {
            r.pass("spapr-iovactl-inspect-live-windows")
        }
        Ok((code, out)) => r.fail(
            "spapr-iovactl-inspect-live-windows",
            &format!("exit {code:?}: {out}"),
        ),
        Err(e) => r.fail("spapr-iovactl-inspect-live-windows", &e.to_string()),
    }
    let _ = std::fs::write(
        "/tmp/spapr.trace",
        "register 0x10000000 1M\nmap 0 64K 0x10000000\nmap 0x800 4K 0x10000000\ncreate-window 12 4G 1\n",
    );
    match run(&[
        "replay",
        "--device",
        bdf,
        "--flavour",
        "spapr-v2",
        "/tmp/spapr.trace",
    ]) {
        Ok((Some(0), out)) => r.eq(
            "spapr-iovactl-replay-live-host",
            out,
            "ok\nok\nret 1\nok 0x800000000000000\n".to_owned(),
        ),
        Ok((code, out)) => r.fail(
            "spapr-iovactl-replay-live-host",
            &format!("exit {code:?}: {out}"),
        ),
        Err(e) => r.fail("spapr-iovactl-replay-live-host", &e.to_string()),
    }
    // The same trace on the real sPAPR container: the same answers as the simulation.
    match run(&[
        "replay",
        "--vfio",
        "--device",
        bdf,
        "--flavour",
        "spapr-v2",
        "/tmp/spapr.trace",
    ]) {
        Ok((Some(0), out)) => r.eq(
            "spapr-iovactl-replay-vfio-matches-simulation",
            out,
            "ok\nok\nret 1\nok 0x800000000000000\n".to_owned(),
        ),
        Ok((code, out)) => r.fail(
            "spapr-iovactl-replay-vfio-matches-simulation",
            &format!("exit {code:?}: {out}"),
        ),
        Err(e) => r.fail(
            "spapr-iovactl-replay-vfio-matches-simulation",
            &e.to_string(),
        ),
    }
    // Registration is in kernel pages (tce_iommu_register_pages: vaddr and size
    // PAGE_SIZE-aligned, else EINVAL): 4 KiB registers on a 4 KiB-page kernel only.
    // The simulation must take the live host's page size, and agree with the kernel.
    let Some(page) = page else {
        r.fail(
            "spapr-iovactl-replay-sub-page-register",
            "page size unknown",
        );
        return;
    };
    let _ = std::fs::write(
        "/tmp/spapr-4k.trace",
        "register 0x10000000 4K\nunregister 0x10000000 4K\n",
    );
    let want = if page == 0x1000 {
        "ok\nok\n"
    } else {
        "EINVAL\nEINVAL\n"
    };
    for (name, vfio) in [
        ("spapr-iovactl-replay-sub-page-register", false),
        ("spapr-iovactl-replay-vfio-sub-page-register", true),
    ] {
        let mut args = vec!["replay"];
        if vfio {
            args.push("--vfio");
        }
        args.extend([
            "--device",
            bdf,
            "--flavour",
            "spapr-v2",
            "/tmp/spapr-4k.trace",
        ]);
        match run(&args) {
            Ok((Some(0), out)) => r.eq(name, out, want.to_owned()),
            Ok((code, out)) => r.fail(name, &format!("exit {code:?}: {out}")),
            Err(e) => r.fail(name, &e.to_string()),
        }
    }
}

fn v2_checks(r: &mut Report, bdf: &str, group: u32, keep: &mut Keep, page: u64) {
    let Some(mut c) = open(r, "spapr-v2-attach", group, SpaprVersion::V2) else {
        return;
    };
    let info = c.tce_info();
    match info {
        Ok(i) => {
            r.note(&format!(
                "capture {} {}",
                SpaprInfo::SAVED_FILE,
                i.to_saved()
            ));
            r.eq(
                "spapr-v2-info-dma32",
                (i.dma32_window_start, i.dma32_window_size),
                (0, DMA32_SIZE),
            );
            r.eq(
                "spapr-v2-info-ddw",
                i.ddw
                    .map(|d| (d.pgsizes, d.max_dynamic_windows_supported, d.levels)),
                Some((PGSIZES, 2, 1)),
            );
            r.eq(
                "spapr-v2-info-matches-model",
                Some(i),
                Some(SpaprConfig::qemu_pseries(SpaprVersion::V2).info()),
            );
        }
        Err(e) => r.fail("spapr-v2-info", &e.name()),
    }
    let edu = c.device(bdf).ok().and_then(|d| Edu::open(r, d));
    let Some(m) = buffer(keep, &mut c) else {
        r.fail("spapr-v2-buffer", "cannot allocate");
        return;
    };
    let va = m.addr();
    r.eq(
        "spapr-v2-map-unregistered-eperm",
        err(c.tce_map(0, va, 0x1_0000, Access::RW)),
        "EPERM".into(),
    );
    r.eq(
        "spapr-v2-register",
        unit(c.register_memory(va, BUF as u64)),
        "ok".into(),
    );
    r.eq(
        "spapr-v2-register-again-ebusy",
        unit(c.register_memory(va, BUF as u64)),
        "EBUSY".into(),
    );
    r.eq(
        "spapr-v2-register-overlap-einval",
        unit(c.register_memory(va + 0x10_0000, 0x10_0000)),
        "EINVAL".into(),
    );
    r.eq(
        "spapr-v2-map-dma32",
        err(c.tce_map(0, va, 0x1_0000, Access::RW)),
        "ok".into(),
    );
    dma_check(r, "spapr-v2-edu-dma-dma32", edu.as_ref(), &m, 0, 0, true);
    // Map the same IOVA to other memory: the TCE is replaced, and DMA follows it.
    r.eq(
        "spapr-v2-map-over-replaces",
        err(c.tce_map(0, va + 0x2_0000, 0x1_0000, Access::RW)),
        "ok".into(),
    );
    dma_check(
        r,
        "spapr-v2-edu-dma-follows-replacement",
        edu.as_ref(),
        &m,
        0x2_0000,
        0,
        true,
    );
    let last = u64::from(DMA32_SIZE) - 0x1000;
    r.eq(
        "spapr-v2-map-last-page",
        err(c.tce_map(last, va, 0x1000, Access::RW)),
        "ok".into(),
    );
    r.eq(
        "spapr-v2-map-past-dma32-enxio",
        err(c.tce_map(u64::from(DMA32_SIZE), va, 0x1000, Access::RW)),
        "ENXIO".into(),
    );
    r.eq(
        "spapr-v2-map-dma64-base-no-window-enxio",
        err(c.tce_map(DMA64, va, 0x1000, Access::RW)),
        "ENXIO".into(),
    );
    r.eq(
        "spapr-v2-map-unaligned-iova-ret1",
        err(c.tce_map(0x2_0800, va, 0x1000, Access::RW)),
        "ret 1".into(),
    );
    r.eq(
        "spapr-v2-map-unaligned-vaddr-einval",
        err(c.tce_map(0x2_0000, va + 0x800, 0x1000, Access::RW)),
        "EINVAL".into(),
    );
    r.eq(
        "spapr-v2-map-size0-ok",
        err(c.tce_map(0x2_0000, va, 0, Access::RW)),
        "ok".into(),
    );
    r.eq(
        "spapr-v2-map-no-access-einval",
        err(c.tce_map(0x5_0000, va, 0x1000, Access::NONE)),
        "EINVAL".into(),
    );
    r.eq(
        "spapr-v2-map-past-registered-einval",
        err(c.tce_map(0x4_0000, va + BUF as u64 - 0x1000, 0x2000, Access::RW)),
        "EINVAL".into(),
    );
    r.eq(
        "spapr-v2-crossing-map-refused-unsent",
        err(c.tce_map(last, va, 0x2000, Access::RW)),
        "refused: kernel-oops-tce_iommu_unuse_page_v2".into(),
    );
    r.eq(
        "spapr-v2-unmap-unaligned-ret1",
        err(c.tce_unmap(0x800, 0x1000)),
        "ret 1".into(),
    );
    // Before 6.12.112 (and the other stable releases of "powerpc/iommu: Fix the
    // overflow validation in iommu_tce_check_ioba") only the first page was checked:
    // 0, the in-window part cleared. From it on: 1, nothing changed. Taken for the
    // booted release.
    let (want, row) = if crate::facts::kernel().1.spapr_unmap_checks_range() {
        ("ret 1", "spapr-v2-unmap-crossing-end-ret1")
    } else {
        ("ok", "spapr-v2-unmap-crossing-end-ok")
    };
    r.eq(row, err(c.tce_unmap(last, 0x2000)), want.into());
    r.eq(
        "spapr-v2-unmap-past-enxio",
        err(c.tce_unmap(u64::from(DMA32_SIZE), 0x1000)),
        "ENXIO".into(),
    );
    r.eq("spapr-v2-unmap", err(c.tce_unmap(0, 0x1_0000)), "ok".into());
    dma_check(
        r,
        "spapr-v2-edu-dma-blocked-after-unmap",
        edu.as_ref(),
        &m,
        0,
        0,
        false,
    );
    for (name, shift, size, levels) in [
        ("spapr-v2-create-non-power-of-two-einval", 12, 3u64 << 30, 1),
        ("spapr-v2-create-two-levels-einval", 12, 1 << 32, 2),
        ("spapr-v2-create-page-shift-13-einval", 13, 1 << 32, 1),
        ("spapr-v2-create-2pow50-einval", 12, 1 << 50, 1),
    ] {
        r.eq(
            name,
            unit(c.create_window(shift, size, levels).map(|_| ())),
            "EINVAL".into(),
        );
    }
    let s64 = c.create_window(12, 1 << 28, 1);
    r.eq("spapr-v2-create-64bit-window-at-dma64", s64, Ok(DMA64));
    r.eq(
        "spapr-v2-map-dma64",
        err(c.tce_map(DMA64, va + 0x4_0000, 0x1_0000, Access::RW)),
        "ok".into(),
    );
    dma_check(
        r,
        "spapr-v2-edu-dma-64bit-window",
        edu.as_ref(),
        &m,
        0x4_0000,
        DMA64,
        true,
    );
    r.eq(
        "spapr-v2-map-dma64-past-end-enxio",
        err(c.tce_map(DMA64 + (1 << 28), va, 0x1000, Access::RW)),
        "ENXIO".into(),
    );
    r.eq(
        "spapr-v2-create-third-window-enospc",
        unit(c.create_window(12, 1 << 28, 1).map(|_| ())),
        "ENOSPC".into(),
    );
    r.eq(
        "spapr-v2-remove-no-window-einval",
        unit(c.remove_window(0x4000_0000_0000_0000)),
        "EINVAL".into(),
    );
    r.eq(
        "spapr-v2-remove-by-inside-address",
        unit(c.remove_window(DMA64 + 0x1_0000)),
        "ok".into(),
    );
    r.eq(
        "spapr-v2-map-removed-window-enxio",
        err(c.tce_map(DMA64, va, 0x1000, Access::RW)),
        "ENXIO".into(),
    );
    // A registered region backs TCEs up to the kernel page size (mm_iommu_do_alloc's
    // pageshift, min(PAGE_SHIFT, the alignment) without huge pages).
    match c.create_window(16, 1 << 28, 1) {
        Ok(s) if page >= 0x1_0000 => {
            r.eq(
                "spapr-v2-64k-tce-over-64k-memory-ok",
                err(c.tce_map(s, va + 0x8_0000, 0x1_0000, Access::RW)),
                "ok".into(),
            );
            dma_check(
                r,
                "spapr-v2-edu-dma-64k-tce-window",
                edu.as_ref(),
                &m,
                0x8_0000,
                s,
                true,
            );
            r.eq(
                "spapr-v2-unmap-64k-tce",
                err(c.tce_unmap(s, 0x1_0000)),
                "ok".into(),
            );
            r.eq(
                "spapr-v2-remove-64k-window",
                unit(c.remove_window(s)),
                "ok".into(),
            );
        }
        Ok(s) => {
            r.eq(
                "spapr-v2-64k-tce-over-4k-memory-einval",
                err(c.tce_map(s, va, 0x1_0000, Access::RW)),
                "EINVAL".into(),
            );
            r.eq(
                "spapr-v2-remove-64k-window",
                unit(c.remove_window(s)),
                "ok".into(),
            );
        }
        Err(e) => r.fail("spapr-v2-create-64k-window", &e.name()),
    }
    r.eq(
        "spapr-v2-remove-default-window",
        unit(c.remove_window(0)),
        "ok".into(),
    );
    r.eq(
        "spapr-v2-map-removed-default-enxio",
        err(c.tce_map(0, va, 0x1000, Access::RW)),
        "ENXIO".into(),
    );
    r.eq(
        "spapr-v2-recreate-default-shape-at-0",
        c.create_window(12, u64::from(DMA32_SIZE), 1),
        Ok(0),
    );
    r.eq(
        "spapr-v2-map-recreated-default",
        err(c.tce_map(0, va + 0x6_0000, 0x1000, Access::RW)),
        "ok".into(),
    );
    dma_check(
        r,
        "spapr-v2-edu-dma-recreated-default",
        edu.as_ref(),
        &m,
        0x6_0000,
        0,
        true,
    );
    r.eq(
        "spapr-v2-unmap-recreated",
        err(c.tce_unmap(0, 0x1000)),
        "ok".into(),
    );
    r.eq(
        "spapr-v2-register-size0-enomem",
        unit(c.register_memory(va + BUF as u64, 0)),
        "ENOMEM".into(),
    );
    // Registration granularity is the kernel page: 4 KiB registers only with 4 KiB
    // pages (tce_iommu_register_pages: EINVAL unless PAGE_SIZE-aligned).
    if page == 0x1000 {
        r.eq(
            "spapr-v2-register-4k-ok-on-4k-pages",
            (
                unit(c.register_memory(va + BUF as u64, 0x1000)),
                unit(c.unregister_memory(va + BUF as u64, 0x1000)),
            ),
            ("ok".into(), "ok".into()),
        );
    } else {
        r.eq(
            "spapr-v2-register-4k-einval-on-64k-pages",
            (
                unit(c.register_memory(va + BUF as u64, 0x1000)),
                unit(c.unregister_memory(va, 0x1000)),
            ),
            ("EINVAL".into(), "EINVAL".into()),
        );
    }
    r.eq(
        "spapr-v2-unregister-unknown-enoent",
        unit(c.unregister_memory(va, page)),
        "ENOENT".into(),
    );
    r.eq("spapr-v2-enable-enotty", unit(c.enable()), "ENOTTY".into());
    r.eq(
        "spapr-v2-unregister",
        unit(c.unregister_memory(va, BUF as u64)),
        "ok".into(),
    );
}

fn v1_checks(r: &mut Report, bdf: &str, group: u32, keep: &mut Keep) {
    let Some(mut c) = open(r, "spapr-v1-attach", group, SpaprVersion::V1) else {
        return;
    };
    match c.tce_info() {
        Ok(i) => r.eq(
            "spapr-v1-info-no-ddw",
            (i.dma32_window_start, i.dma32_window_size, i.ddw),
            (0, DMA32_SIZE, None),
        ),
        Err(e) => r.fail("spapr-v1-info-no-ddw", &e.name()),
    }
    let edu = c.device(bdf).ok().and_then(|d| Edu::open(r, d));
    let Some(m) = buffer(keep, &mut c) else {
        r.fail("spapr-v1-buffer", "cannot allocate");
        return;
    };
    let va = m.addr();
    r.eq(
        "spapr-v1-map-before-enable-eperm",
        err(c.tce_map(0, va, 0x1000, Access::RW)),
        "EPERM".into(),
    );
    r.eq("spapr-v1-enable", unit(c.enable()), "ok".into());
    r.eq(
        "spapr-v1-enable-again-ebusy",
        unit(c.enable()),
        "EBUSY".into(),
    );
    r.eq(
        "spapr-v1-map",
        err(c.tce_map(0x10_0000, va, 0x1_0000, Access::RW)),
        "ok".into(),
    );
    dma_check(r, "spapr-v1-edu-dma", edu.as_ref(), &m, 0, 0x10_0000, true);
    r.eq(
        "spapr-v1-register-enotty",
        unit(c.register_memory(va, 0x1000)),
        "ENOTTY".into(),
    );
    r.eq(
        "spapr-v1-create-enotty",
        unit(c.create_window(12, 1 << 32, 1).map(|_| ())),
        "ENOTTY".into(),
    );
    r.eq(
        "spapr-v1-crossing-map-refused-unsent",
        err(c.tce_map(u64::from(DMA32_SIZE) - 0x1000, va, 0x2000, Access::RW)),
        "refused: kernel-leaks-H_PARAMETER-as-errno-4".into(),
    );
    r.eq("spapr-v1-disable", unit(c.disable()), "ok".into());
    r.eq(
        "spapr-v1-map-after-disable-eperm",
        err(c.tce_map(0, va, 0x1000, Access::RW)),
        "EPERM".into(),
    );
    r.eq("spapr-v1-reenable", unit(c.enable()), "ok".into());
    dma_check(
        r,
        "spapr-v1-edu-dma-mapping-survives-disable",
        edu.as_ref(),
        &m,
        0,
        0x10_0000,
        true,
    );
    r.eq(
        "spapr-v1-unmap",
        err(c.tce_unmap(0x10_0000, 0x1_0000)),
        "ok".into(),
    );
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> Option<T> {
        let i = usize::try_from(self.below(xs.len() as u64)).ok()?;
        xs.get(i).copied()
    }
}

/// One random operation for the state `sim` is in, or `None` to draw again.
fn random_op(rng: &mut Rng, sim: &Sim, va: u64, removes: &mut u32) -> Option<SpaprOp> {
    let v2 = sim.config().version == SpaprVersion::V2;
    let wins = sim.windows();
    let mut bases: Vec<(u64, u64, u32)> = wins
        .iter()
        .map(|w| (w.start, w.pages << w.page_shift, w.page_shift))
        .collect();
    if sim.default_window_pending() {
        bases.push((0, u64::from(DMA32_SIZE), 12));
    }
    let (base, wsize, shift) = rng.pick(&bases).unwrap_or((0, u64::from(DMA32_SIZE), 12));
    let ps = 1u64 << shift;
    let near_end = wsize.saturating_sub(ps * (1 + rng.below(3)));
    let iova = match rng.below(8) {
        0 => base + near_end,
        1 => base + wsize,
        2 => base + rng.below(64) * ps + 0x800,
        3 => rng.pick(&[DMA64, 0x4000_0000, 0x1_0000_0000, DMA64 - 0x1000])?,
        _ => base + rng.below(64) * ps,
    };
    let vaddr = match rng.below(10) {
        0 => va + 0x800,
        1 => va + (BUF as u64) - ps,
        _ => va + rng.below(48) * ps.min(0x1_0000),
    };
    let size = match rng.below(8) {
        0 => 0,
        1 => 0x800,
        _ => ps * (1 + rng.below(8)),
    };
    if vaddr.saturating_add(size) > va + BUF as u64 && size > 0 {
        return None;
    }
    let access = match rng.below(10) {
        0 => Access::READ,
        1 => Access::NONE,
        _ => Access::RW,
    };
    let regs = [
        (0u64, 0x40_0000u64),
        (0, 0x1_0000),
        (0x40_0000, 0x40_0000),
        (0x80_0000, 0x80_0000),
        (0x10_0000, 0x1000),
        (0x41_0000, 0x2000),
    ];
    let pick = rng.below(20);
    // v1 has no windows to create or remove (ENOTTY): ask only now and then.
    if !v2 && pick >= 15 && rng.below(8) != 0 {
        return None;
    }
    Some(match pick {
        0..=7 => SpaprOp::Map {
            iova,
            size,
            vaddr,
            access,
        },
        8..=11 => SpaprOp::Unmap {
            iova,
            size: size.max(ps) * (1 + rng.below(4)),
        },
        12 | 13 => {
            let (o, s) = rng.pick(&regs)?;
            if v2 {
                SpaprOp::Register {
                    vaddr: va + o,
                    size: s,
                }
            } else {
                SpaprOp::Enable
            }
        }
        14 => {
            let (o, s) = rng.pick(&regs)?;
            if v2 {
                SpaprOp::Unregister {
                    vaddr: va + o,
                    size: s,
                }
            } else {
                SpaprOp::Disable
            }
        }
        15..=17 => {
            let page_shift = rng.pick(&[12u32, 12, 12, 16, 16, 21, 13])?;
            let size = 1u64 << rng.pick(&[20u32, 24, 26, 28, 28, 30, 50])?;
            let size = if rng.below(10) == 0 {
                size / 4 * 3
            } else {
                size
            };
            let levels = rng.pick(&[1u32, 1, 1, 1, 0, 2])?;
            // Never let the hypervisor fail a creation: that poisons the device.
            if sim.create_would_poison(page_shift, size, levels) {
                return None;
            }
            // Keep windows small: removal clears every TCE through the hypervisor.
            let mut probe = sim.clone();
            if let Ok(start) = probe.create_window(page_shift, size, levels)
                && start != 0
                && size > 1 << 28
            {
                return None;
            }
            SpaprOp::CreateWindow {
                page_shift,
                size,
                levels,
            }
        }
        _ => {
            if *removes >= 6 {
                return None;
            }
            *removes += 1;
            let addr = match rng.below(4) {
                0 => 0x4000_0000_0000_0000,
                _ => base + rng.below(16) * ps,
            };
            SpaprOp::RemoveWindow { addr }
        }
    })
}

/// Random traces on the real container and the simulation; every answer must agree.
fn differential(
    r: &mut Report,
    group: u32,
    v: SpaprVersion,
    seed: u64,
    keep: &mut Keep,
    page: u64,
) {
    let name = format!(
        "spapr-{}-differential",
        if v == SpaprVersion::V2 { "v2" } else { "v1" }
    );
    let Some(mut c) = open(r, &format!("{name}-attach"), group, v) else {
        return;
    };
    let Some(m) = buffer(keep, &mut c) else {
        r.fail(&name, "cannot allocate");
        return;
    };
    let info = match c.tce_info() {
        Ok(i) => i,
        Err(e) => {
            r.fail(&name, &e.name());
            return;
        }
    };
    // The live host's windows and page size (registration granularity, the largest TCE
    // anonymous memory backs).
    let (release, kernel) = crate::facts::kernel();
    let release = release.unwrap_or_else(|| "unknown".into());
    let mut config = SpaprConfig::from_info(v, &info).kernel(kernel);
    config.host_page_shift = page.trailing_zeros();
    let mut sim = Sim::new(config);
    let mut rng = Rng(seed
        ^ if v == SpaprVersion::V2 {
            0x5eed_0002
        } else {
            0x5eed_0001
        });
    let va = m.addr();
    // Start usable: v2 registers, v1 enables, then random operations.
    let mut ops: Vec<SpaprOp> = vec![if v == SpaprVersion::V2 {
        SpaprOp::Register {
            vaddr: va,
            size: 0x40_0000,
        }
    } else {
        SpaprOp::Enable
    }];
    let mut removes = 0u32;
    let (mut total, mut bad, mut refused) = (0u32, 0u32, 0u32);
    let mut first_bad: Option<String> = None;
    let t0 = Instant::now();
    let mut draws = 0u32;
    let mut kinds: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    while total < 320 && draws < 20_000 {
        draws += 1;
        let op = match ops.pop() {
            Some(op) => op,
            None => match random_op(&mut rng, &sim, va, &mut removes) {
                Some(op) => op,
                None => continue,
            },
        };
        let want = format_outcome(&apply(&mut sim, &op));
        // Keep windows around: after a removal, ask for a 256 MiB default-shaped one.
        if v == SpaprVersion::V2
            && matches!(op, SpaprOp::RemoveWindow { .. })
            && want == "ok"
            && !sim.create_would_poison(12, 1 << 28, 1)
        {
            ops.push(SpaprOp::CreateWindow {
                page_shift: 12,
                size: 1 << 28,
                levels: 1,
            });
        }
        let got = format_outcome(&apply(&mut c, &op));
        total += 1;
        let kind = op.to_string();
        let kind = kind.split_whitespace().next().unwrap_or("?").to_owned();
        let ok = got.starts_with("ok") || got.starts_with("ret");
        let e = kinds.entry(kind).or_insert((0u32, 0u32));
        e.0 += 1;
        if ok {
            e.1 += 1;
        }
        if got.starts_with("refused") {
            refused += 1;
        }
        if got != want {
            bad += 1;
            let d =
                format!("op {total} '{op}': kernel {release} {got}, simulation as {kernel} {want}");
            r.note(&format!("{name}: {d}"));
            if first_bad.is_none() {
                first_bad = Some(d);
            }
        }
    }
    let _ = sim.take_warnings();
    r.note(&format!(
        "{name}: {total} ops, {bad} disagreements, {refused} refused as kernel defects, {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let mix: Vec<String> = kinds
        .iter()
        .map(|(k, (n, ok))| format!("{k} {n} ({ok} ok)"))
        .collect();
    println!(
        "vmtest-guest: differential {} on kernel {release} (modelled as {kernel}) {total} ops {bad} disagreements: {}",
        v.as_str(),
        mix.join(", ")
    );
    if bad == 0 && total >= 300 {
        r.pass(&format!("{name}-{total}-ops-agree"));
    } else {
        r.fail(
            &format!("{name}-agree"),
            &format!(
                "{bad} of {total} ops disagree on kernel {release}{}",
                first_bad.map_or(String::new(), |d| format!(", first: {d}"))
            ),
        );
    }
}
