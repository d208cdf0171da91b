//! End-to-end DMA through the IOMMU with QEMU's `edu` device.
//!
//! edu (QEMU docs/specs/edu.rst): BAR0 registers 0x80 source, 0x88 destination, 0x90
//! count, 0x98 command (bit 0 start, reads back 0 when done; bit 1 direction: 0 copies
//! RAM to the device buffer, 1 copies the device buffer to RAM). The device buffer is
//! at device address 0x40000. Counts stay below 4096 and IOVAs below 256 MiB (the
//! device masks DMA addresses to 28 bits). Each transfer takes ~100 ms of virtual time.
//!
//! Each test checks the data that arrived (or did not), never the fault log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iova::dma::{Access, DmaSpace};
use iova_linux::device::{Device, MappedRegion, PCI_BAR0_REGION_INDEX};
use iova_linux::memory::{AnonMemory, HoldMemory};

use crate::report::Report;

const EDU_BUF: u64 = 0x4_0000;
const CNT: usize = 0x800;
const CMD_TO_DEVICE: u64 = 1;
const CMD_TO_RAM: u64 = 3;

/// A ready edu device: bus master on, BAR0 mapped.
pub struct Edu {
    _dev: Device,
    bar: MappedRegion,
}

impl Edu {
    /// Enables bus mastering and maps BAR0; checks the id and liveness registers.
    pub fn open(r: &mut Report, dev: Device) -> Option<Edu> {
        match dev.enable_bus_master() {
            Ok((_, after)) if after & 0x6 == 0x6 => r.pass("edu-bus-master-enabled"),
            Ok((_, after)) => r.fail("edu-bus-master-enabled", &format!("command {after:#x}")),
            Err(e) => r.fail("edu-bus-master-enabled", &e.name()),
        }
        let bar = match dev
            .region_info(PCI_BAR0_REGION_INDEX)
            .and_then(|ri| dev.map_region(&ri))
        {
            Ok(b) => b,
            Err(e) => {
                r.fail("edu-bar0-mmap", &e.name());
                return None;
            }
        };
        let id = bar.read32(0).unwrap_or(0);
        let _ = bar.write32(4, 0x1234_5678);
        let live = bar.read32(4).unwrap_or(0);
        if id & 0xff == 0xed && live == !0x1234_5678u32 {
            r.pass("edu-bar0-mmap-id-and-liveness");
        } else {
            r.fail(
                "edu-bar0-mmap-id-and-liveness",
                &format!("id {id:#x} liveness {live:#x}"),
            );
        }
        Some(Edu { _dev: dev, bar })
    }

    /// One DMA transfer; waits for it to finish (up to 5 s).
    pub fn dma(&self, src: u64, dst: u64, cnt: usize, cmd: u64) -> Result<(), String> {
        let e = |x: iova::dma::Errno| x.name();
        self.bar.write64(0x80, src).map_err(e)?;
        self.bar.write64(0x88, dst).map_err(e)?;
        self.bar
            .write64(0x90, u64::try_from(cnt).map_err(|x| x.to_string())?)
            .map_err(e)?;
        self.bar.write64(0x98, cmd).map_err(e)?;
        let t0 = Instant::now();
        while self.bar.read64(0x98).map_err(e)? & 1 != 0 {
            if t0.elapsed() > Duration::from_secs(5) {
                return Err("edu DMA timed out".to_owned());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..CNT)
        .map(|i| {
            u8::try_from(i % 251)
                .unwrap_or(0)
                .wrapping_mul(7)
                .wrapping_add(seed)
        })
        .collect()
}

/// A real DMA space: maps IOVAs for the device, into memory it holds.
pub trait RealSpace: DmaSpace + HoldMemory {}
impl<T: DmaSpace + HoldMemory> RealSpace for T {}

/// Allocates `len` bytes and hands them to `space` (its safe map only sends memory it
/// holds).
fn held(space: &mut dyn RealSpace, len: usize) -> Option<Arc<AnonMemory>> {
    let m = Arc::new(AnonMemory::new(len).ok()?);
    space.add_memory(Arc::clone(&m));
    Some(m)
}

/// The edu DMA tests on any real DMA space (`space` maps IOVAs for the device). When
/// `sim` is given, every device access is also asked of the simulated page table and
/// the answer must match what the device saw.
pub fn dma_tests(
    r: &mut Report,
    space: &mut dyn RealSpace,
    edu: &Edu,
    sim: Option<&mut dyn SimSpace>,
) {
    let mut sim = sim;
    let (Some(src), Some(dst)) = (held(space, 0x20_0000), held(space, 0x20_0000)) else {
        return r.fail("edu-alloc", "mmap failed");
    };
    let (src_iova, dst_iova) = (0x10_0000u64, 0x40_0000u64);
    let sim_map =
        |sim: &mut Option<&mut dyn SimSpace>, iova: u64, host: u64, size: u64, a: Access| {
            if let Some(s) = sim.as_deref_mut() {
                s.map(iova, host, size, a);
            }
        };
    let sim_unmap = |sim: &mut Option<&mut dyn SimSpace>, iova: u64, size: u64| {
        if let Some(s) = sim.as_deref_mut() {
            s.unmap(iova, size);
        }
    };
    // The simulated page table must agree with what the device did at `iova`.
    let sim_agrees = |r: &mut Report,
                      sim: &Option<&mut dyn SimSpace>,
                      name: &str,
                      iova: u64,
                      need: Access,
                      want: Option<u64>| {
        if let Some(s) = sim.as_deref() {
            r.eq(
                &format!("{name}-sim-translate-agrees"),
                s.translate(iova, need),
                want,
            );
        }
    };

    let p1 = pattern(3);
    src.write(0x3000, &p1);
    dst.fill(0, 0x20_0000, 0xaa);
    let m1 = space.map(src_iova, src.addr(), 0x20_0000, Access::RW);
    let m2 = space.map(dst_iova, dst.addr(), 0x20_0000, Access::RW);
    sim_map(&mut sim, src_iova, src.addr(), 0x20_0000, Access::RW);
    sim_map(&mut sim, dst_iova, dst.addr(), 0x20_0000, Access::RW);
    if m1.is_err() || m2.is_err() {
        return r.fail("edu-map-buffers", &format!("{m1:?} {m2:?}"));
    }
    // 1. A copy through mapped IOVAs arrives intact, and only where it was sent.
    let res = edu
        .dma(src_iova + 0x3000, EDU_BUF, CNT, CMD_TO_DEVICE)
        .and_then(|()| edu.dma(EDU_BUF, dst_iova + 0x5000, CNT, CMD_TO_RAM));
    let got = dst.read(0x5000, CNT);
    let around = (dst.read(0x4fff, 1), dst.read(0x5000 + CNT, 1));
    match res {
        Err(e) => r.fail("edu-copy-through-mapped-iova", &e),
        Ok(()) if got == p1 && around == (vec![0xaa], vec![0xaa]) => {
            r.pass("edu-copy-through-mapped-iova")
        }
        Ok(()) => r.fail("edu-copy-through-mapped-iova", "data did not arrive intact"),
    }
    sim_agrees(
        r,
        &sim,
        "edu-copy-src",
        src_iova + 0x3000,
        Access::READ,
        Some(src.addr() + 0x3000),
    );
    sim_agrees(
        r,
        &sim,
        "edu-copy-dst",
        dst_iova + 0x5000,
        Access::WRITE,
        Some(dst.addr() + 0x5000),
    );

    // 2. A read from an unmapped IOVA does not fetch the memory once mapped there.
    let p2 = pattern(9);
    src.write(0x8000, &p2);
    let gone = 0x0600_0000u64;
    let res = space
        .map(gone, src.addr(), 0x20_0000, Access::RW)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            space
                .unmap(gone, 0x20_0000)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    dst.fill(0x1_0000, CNT, 0x55);
    let res = res
        .and_then(|()| edu.dma(gone + 0x8000, EDU_BUF, CNT, CMD_TO_DEVICE))
        .and_then(|()| edu.dma(EDU_BUF, dst_iova + 0x1_0000, CNT, CMD_TO_RAM));
    let got = dst.read(0x1_0000, CNT);
    match res {
        Err(e) => r.fail("edu-read-unmapped-iova-gets-nothing", &e),
        Ok(()) if got != p2 => r.pass("edu-read-unmapped-iova-gets-nothing"),
        Ok(()) => r.fail(
            "edu-read-unmapped-iova-gets-nothing",
            "the unmapped memory's data came through",
        ),
    }
    sim_agrees(
        r,
        &sim,
        "edu-read-unmapped",
        gone + 0x8000,
        Access::READ,
        None,
    );

    // 3. A write to a read-only mapping does not land.
    let Some(ro) = held(space, 0x4000) else {
        return r.fail("edu-alloc", "mmap failed");
    };
    ro.fill(0, 0x4000, 0x11);
    let ro_iova = 0x80_0000u64;
    let res = space
        .map(ro_iova, ro.addr(), 0x4000, Access::READ)
        .map_err(|e| e.to_string());
    sim_map(&mut sim, ro_iova, ro.addr(), 0x4000, Access::READ);
    let res = res.and_then(|()| edu.dma(EDU_BUF, ro_iova, CNT, CMD_TO_RAM));
    match res {
        Err(e) => r.fail("edu-write-to-read-only-mapping-does-not-land", &e),
        Ok(()) if ro.read(0, CNT).iter().all(|b| *b == 0x11) => {
            r.pass("edu-write-to-read-only-mapping-does-not-land")
        }
        Ok(()) => r.fail(
            "edu-write-to-read-only-mapping-does-not-land",
            "the device wrote through a read-only mapping",
        ),
    }
    sim_agrees(r, &sim, "edu-write-read-only", ro_iova, Access::WRITE, None);
    // ... while reading through it works (the mapping is there).
    let res = edu
        .dma(ro_iova, EDU_BUF, CNT, CMD_TO_DEVICE)
        .and_then(|()| edu.dma(EDU_BUF, dst_iova + 0x2_0000, CNT, CMD_TO_RAM));
    match res {
        Err(e) => r.fail("edu-read-from-read-only-mapping-works", &e),
        Ok(()) if dst.read(0x2_0000, CNT).iter().all(|b| *b == 0x11) => {
            r.pass("edu-read-from-read-only-mapping-works")
        }
        Ok(()) => r.fail(
            "edu-read-from-read-only-mapping-works",
            "data did not arrive",
        ),
    }
    sim_agrees(
        r,
        &sim,
        "edu-read-read-only",
        ro_iova,
        Access::READ,
        Some(ro.addr()),
    );

    // 4. Unmap first: a write to the just-unmapped buffer must not arrive.
    let res = space
        .unmap(dst_iova, 0x20_0000)
        .map(|_| ())
        .map_err(|e| e.to_string());
    sim_unmap(&mut sim, dst_iova, 0x20_0000);
    dst.fill(0x5000, CNT, 0x77);
    let res = res
        .and_then(|()| edu.dma(src_iova + 0x3000, EDU_BUF, CNT, CMD_TO_DEVICE))
        .and_then(|()| edu.dma(EDU_BUF, dst_iova + 0x5000, CNT, CMD_TO_RAM));
    match res {
        Err(e) => r.fail("edu-write-after-unmap-does-not-arrive", &e),
        Ok(()) if dst.read(0x5000, CNT).iter().all(|b| *b == 0x77) => {
            r.pass("edu-write-after-unmap-does-not-arrive")
        }
        Ok(()) => r.fail(
            "edu-write-after-unmap-does-not-arrive",
            "data arrived after unmap",
        ),
    }
    sim_agrees(
        r,
        &sim,
        "edu-write-after-unmap",
        dst_iova + 0x5000,
        Access::WRITE,
        None,
    );

    // 5. Map it again: the same transfer now arrives (the negative results above are
    //    the mapping's doing, not a broken device).
    let res = space
        .map(dst_iova, dst.addr(), 0x20_0000, Access::RW)
        .map_err(|e| e.to_string());
    sim_map(&mut sim, dst_iova, dst.addr(), 0x20_0000, Access::RW);
    let res = res.and_then(|()| edu.dma(EDU_BUF, dst_iova + 0x5000, CNT, CMD_TO_RAM));
    match res {
        Err(e) => r.fail("edu-write-after-remap-arrives", &e),
        Ok(()) if dst.read(0x5000, CNT) == p1 => r.pass("edu-write-after-remap-arrives"),
        Ok(()) => r.fail("edu-write-after-remap-arrives", "data did not arrive"),
    }
    let _ = space.unmap_all();
    drop((src, dst, ro));
}

/// A simulated DMA space the edu tests mirror their maps into, and ask for
/// translations.
pub trait SimSpace {
    /// Maps (errors are ignored: the real map succeeded and the differential tests
    /// check agreement of errors).
    fn map(&mut self, iova: u64, host: u64, size: u64, access: Access);
    /// Unmaps.
    fn unmap(&mut self, iova: u64, size: u64);
    /// Translates one device access.
    fn translate(&self, iova: u64, access: Access) -> Option<u64>;
}

/// The type1 variant: opens the device through the container.
pub fn type1_dma_tests(
    r: &mut Report,
    c: &mut iova_linux::type1::Container,
    bdf: &str,
    sim: Option<&mut dyn SimSpace>,
) {
    let dev = match c.device(bdf) {
        Ok(d) => d,
        Err(e) => return r.fail("edu-open-device", &e.to_string()),
    };
    let Some(edu) = Edu::open(r, dev) else { return };
    dma_tests(r, c, &edu, sim);
}
