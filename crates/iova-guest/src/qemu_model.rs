//! The memory map QEMU builds for a [`QemuVm`], by QEMU release and machine-type
//! version, and the reasons QEMU refuses to start it.
//!
//! x86 (`q35`, `pc`; hw/i386/pc.c `pc_memory_init`, `pc_pci_hole64_start`,
//! `pc_max_used_gpa`, hw/i386/pc_sysfw.c):
//! - RAM below 4 GiB split as [`crate::presets::qemu_ram_split`]; with a VGA device
//!   0xa0000-0xbffff is the VGA window (not mapped), without one it is RAM;
//! - SeaBIOS (the default, or `-bios FILE`): `pc.rom` 0xc0000-0xdffff and the last
//!   128 KiB of the BIOS at 0xe0000-0xfffff (`isa-bios`), the BIOS image just below
//!   4 GiB, all ROM (mapped read-only by VFIO);
//! - OVMF in pflash: the flash below 4 GiB is a ROM *device* (romd), never DMA-mapped,
//!   and no BIOS ROM exists there; 0xe0000-0xfffff is a RAM copy of the flash's last
//!   128 KiB (mapped) before QEMU 9.1 and an alias of the flash (not mapped) from 9.1;
//! - above 4 GiB: RAM at 4 GiB, or at 1 TiB when the vCPU is AMD, QEMU and the machine
//!   type are 7.1 or newer, and the highest used address (end of the 64-bit PCI
//!   window) reaches the HyperTransport window at 0xfd00000000;
//! - `maxmem` > `-m`: the device-memory region at ROUND_UP(end of RAM, 1 GiB), of
//!   `maxmem - m + slots * 1 GiB` bytes; DIMMs land there (at `addr=` or first fit);
//!   the 64-bit PCI window starts after it, 1 GiB aligned;
//! - QEMU refuses to start when the vCPU's physical address width, as it settles it
//!   (`phys-bits`, or under KVM with `host-phys-bits` the host's width capped by
//!   `host-phys-bits-limit`; 0 is the default 40), is outside 32..=52 ("phys-bits should
//!   be between 32 and 52", target/i386/cpu.c), and when the highest used address needs
//!   more bits than it ("phys-bits too low").
//!
//! aarch64 `virt` (hw/arm/virt.c `virt_set_memmap`): flash at 0 (romd, not mapped), RAM
//! at 1 GiB, device memory after it, and the high IO regions (second redistributor,
//! high ECAM, 512 GiB PCIe window) from 256 GiB or above RAM, each aligned to its size;
//! a region that does not fit the vCPU's physical address size is dropped; RAM past it
//! is refused.

use serde::Serialize;

use super::presets::{AMD_ABOVE_1TB_START, AMD_HT_START, GuestConfig, Preset, qemu_ram_split};
use super::qemu_cmdline::{
    Accel, MachineFamily, MemDeviceKind, QemuArch, QemuError, QemuVersion, QemuVm, Viommu,
    x86_model_vendor,
};
use super::{CpuVendor, Layout, LayoutError, Section, SectionKind, align_up, human_bytes};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const FOUR_GIB: u64 = 1 << 32;

/// What is known about the host CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostCpu {
    /// Its vendor.
    pub vendor: Option<CpuVendor>,
    /// Its physical address width (`/proc/cpuinfo` "address sizes").
    pub phys_bits: Option<u8>,
}

/// A reason QEMU refuses to start the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The option to change.
    pub option: String,
    /// What QEMU says, in words.
    pub message: String,
}

/// The model of a QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QemuModel {
    /// The QEMU release modelled.
    pub version: QemuVersion,
    /// The guest's memory map.
    pub layout: Layout,
    /// The guest CPU vendor.
    pub cpu_vendor: CpuVendor,
    /// The vCPU's physical address bits, when known (`None` too when QEMU refuses the
    /// width itself: x86 outside 32..=52, see `refusals`).
    pub phys_bits: Option<u8>,
    /// The highest guest-physical address QEMU uses (what phys-bits must cover).
    pub max_used_gpa: u64,
    /// The device-memory region (`maxmem`), when there is one.
    pub device_memory: Option<(u64, u64)>,
    /// Why QEMU would refuse to start the VM (empty when it starts).
    pub refusals: Vec<Refusal>,
    /// The DMA mappings VFIO creates: one per mapped section, virtio-mem one per block.
    pub mappings: u64,
    /// The guest-visible IOMMUs.
    pub viommus: Vec<Viommu>,
    /// The machine type's version whose compat properties apply.
    pub machine_version: QemuVersion,
}

struct B {
    sections: Vec<Section>,
}

impl B {
    fn add(
        &mut self,
        name: &str,
        kind: SectionKind,
        first: u64,
        last: u64,
    ) -> Result<(), QemuError> {
        if last < first {
            return Ok(());
        }
        let r = iova::range::IovaRange::new(first, last).map_err(|e| QemuError::Bad {
            input: name.to_owned(),
            message: e.to_string(),
        })?;
        self.sections.push(Section::new(name, kind, r));
        Ok(())
    }

    fn add_sized(
        &mut self,
        name: &str,
        kind: SectionKind,
        start: u64,
        size: u64,
    ) -> Result<(), QemuError> {
        if size == 0 {
            return Ok(());
        }
        let last = start.checked_add(size - 1).ok_or_else(|| overflow(name))?;
        self.add(name, kind, start, last)
    }

    fn p2p_last(&mut self) {
        if let Some(s) = self.sections.last_mut() {
            s.p2p = true;
        }
    }
}

fn overflow(what: &str) -> QemuError {
    QemuError::Bad {
        input: what.to_owned(),
        message: "runs past the 64-bit address space".to_owned(),
    }
}

fn bad(input: impl Into<String>, message: impl Into<String>) -> QemuError {
    QemuError::bad(input, message)
}

fn unmodelled(input: impl Into<String>, message: impl Into<String>) -> QemuError {
    QemuError::unmodelled(input, message)
}

fn layout_err(e: LayoutError) -> QemuError {
    bad("layout", e.to_string())
}

/// Models `vm` as QEMU `version` builds it on a host with this CPU.
pub fn model(vm: &QemuVm, version: QemuVersion, host: &HostCpu) -> Result<QemuModel, QemuError> {
    if !version.is_modelled() {
        return Err(unmodelled(
            format!("QEMU {version}"),
            format!(
                "releases {} to {} are modelled",
                QemuVersion::OLDEST,
                QemuVersion::NEWEST
            ),
        ));
    }
    if let Some(mv) = vm.machine.version {
        if mv > version {
            return Err(bad(
                format!("-machine {}", vm.machine_name),
                format!("QEMU {version} has no such machine type (newer than the release)"),
            ));
        }
        old_machine_type(vm, mv, version)?;
    }
    match vm.arch {
        QemuArch::X86_64 => model_x86(vm, version, host),
        QemuArch::Aarch64 => model_virt(vm, version, host),
    }
}

/// Machine types older than 5.0. Measured on QEMU 7.2 (`info mtree -f` and the host
/// bridge's `pci-hole64-start`/`-end`, against the 5.0 type, with 512 MiB to 8 GiB of RAM
/// and two DIMMs): every `pc-q35-X.Y` it has (from 2.4) and `pc-i440fx-X.Y` from 2.0 map
/// RAM and ROM exactly as 5.0 does; before 2.11 QEMU leaves the 64-bit PCI window to
/// the firmware (`x-pci-hole64-fix` off: a note); before 2.1 `maxmem` is refused.
/// `pc-i440fx-1.x` (a 128 KiB BIOS, the RAM split not aligned to 1 GiB) and `virt`
/// before 3.0 (the PCIe ECAM below 4 GiB) differ and are not modelled. The oldest
/// types each release has: QEMU 7.2 `pc-i440fx-1.4`, `pc-q35-2.4`, `virt-2.6`; QEMU
/// 10.0 `pc-i440fx-2.4`, `pc-q35-2.4`, `virt-2.6` (their `-machine help`).
fn old_machine_type(vm: &QemuVm, mv: QemuVersion, version: QemuVersion) -> Result<(), QemuError> {
    let v = QemuVersion::new;
    let machine = format!("-machine {}", vm.machine_name);
    let oldest = match vm.machine.family {
        MachineFamily::Q35 => v(2, 4),
        MachineFamily::Virt => v(2, 6),
        MachineFamily::Pc if version >= v(10, 0) => v(2, 4),
        MachineFamily::Pc if version <= v(7, 2) => v(1, 4),
        MachineFamily::Pc => {
            if mv < v(2, 4) {
                return Err(unmodelled(
                    machine,
                    format!("whether QEMU {version} still has this machine type is not known"),
                ));
            }
            v(2, 4)
        }
    };
    if mv < oldest {
        return Err(bad(
            machine,
            format!("QEMU {version} has no such machine type (its oldest is {oldest})"),
        ));
    }
    match vm.machine.family {
        MachineFamily::Pc if mv < v(2, 0) => Err(unmodelled(
            machine,
            "pc-i440fx types before 2.0 (a 128 KiB BIOS, the RAM split not aligned to 1 GiB) \
             are not modelled",
        )),
        MachineFamily::Pc if mv < v(2, 1) && (vm.slots > 0 || vm.maxmem > vm.ram) => Err(bad(
            machine,
            "QEMU refuses maxmem/slots with this machine type (memory hot-plug came with 2.1)",
        )),
        MachineFamily::Virt if mv < v(3, 0) => Err(unmodelled(
            machine,
            "virt types before 3.0 put the PCIe ECAM below 4 GiB (highmem-ecam off), not modelled",
        )),
        _ => Ok(()),
    }
}

/// The device-memory region's size: `maxmem - m` plus 1 GiB per slot for alignment.
fn device_memory_size(vm: &QemuVm) -> Result<u64, QemuError> {
    let extra = vm
        .maxmem
        .checked_sub(vm.ram)
        .ok_or_else(|| bad("-m", "maxmem below size"))?;
    if extra == 0 {
        return Ok(0);
    }
    u64::from(vm.slots)
        .checked_mul(GIB)
        .and_then(|s| s.checked_add(extra))
        .ok_or_else(|| overflow("-m maxmem"))
}

/// Places the memory devices in `[base, base+size)`: at `addr=` or first fit.
fn place_mem_devices(
    vm: &QemuVm,
    base: u64,
    size: u64,
    b: &mut B,
    mappings: &mut u64,
) -> Result<(), QemuError> {
    if vm.mem_devices.is_empty() {
        return Ok(());
    }
    if size == 0 {
        return Err(bad(
            format!("-device {}", vm.mem_devices[0].id),
            "memory devices need -m ...,maxmem= larger than the RAM size",
        ));
    }
    let dimms = vm
        .mem_devices
        .iter()
        .filter(|d| !matches!(d.kind, MemDeviceKind::VirtioMem { .. }))
        .count();
    if dimms > 0 && u64::try_from(dimms).unwrap_or(u64::MAX) > u64::from(vm.slots) {
        return Err(bad(
            "-m slots",
            format!("{dimms} DIMM(s) but {} slot(s)", vm.slots),
        ));
    }
    let end = base
        .checked_add(size)
        .ok_or_else(|| overflow("device memory"))?;
    let mut used: Vec<(u64, u64)> = Vec::new();
    let mut total: u64 = 0;
    for d in &vm.mem_devices {
        total = total
            .checked_add(d.size)
            .ok_or_else(|| overflow("memory devices"))?;
        if total > vm.maxmem - vm.ram {
            return Err(bad(
                format!("-device {}", d.id),
                "the memory devices exceed maxmem minus the RAM size",
            ));
        }
        let align = match d.kind {
            MemDeviceKind::VirtioMem { block, .. } => block.max(2 * MIB),
            _ => 2 * MIB,
        };
        let start = match d.addr {
            Some(a) => a,
            None => {
                let mut cand = base;
                loop {
                    cand = align_up(cand, align).ok_or_else(|| overflow("device memory"))?;
                    let cend = cand
                        .checked_add(d.size)
                        .ok_or_else(|| overflow("device memory"))?;
                    match used.iter().find(|(s, e)| cand < *e && *s < cend) {
                        Some((_, e)) => cand = *e,
                        None => break cand,
                    }
                }
            }
        };
        let dend = start.checked_add(d.size).ok_or_else(|| overflow(&d.id))?;
        if start < base || dend > end {
            return Err(bad(
                format!("-device {}", d.id),
                format!(
                    "does not fit the device-memory region {base:#x}-{:#x}",
                    end.saturating_sub(1)
                ),
            ));
        }
        if used.iter().any(|(s, e)| start < *e && *s < dend) {
            return Err(bad(
                format!("-device {}", d.id),
                "overlaps another memory device",
            ));
        }
        used.push((start, dend));
        b.add_sized(&d.id, SectionKind::Ram, start, d.size)?;
        *mappings = mappings.saturating_add(match d.kind {
            MemDeviceKind::VirtioMem { requested, block } => {
                requested.checked_div(block).unwrap_or(0)
            }
            _ => 1,
        });
    }
    Ok(())
}

/// The smallest `phys-bits` QEMU accepts for a 64-bit x86 vCPU (target/i386/cpu.c,
/// `x86_cpu_realizefn`; under KVM some releases also check in host-cpu.c
/// `host_cpu_realizefn`, with the same words).
pub const X86_MIN_PHYS_BITS: u32 = 32;
/// The largest: `TARGET_PHYS_ADDR_SPACE_BITS` of qemu-system-x86_64.
pub const X86_MAX_PHYS_BITS: u32 = 52;
/// QEMU's default when nothing sets the width (`TCG_PHYS_ADDR_BITS`, KVM too).
const X86_DEFAULT_PHYS_BITS: u32 = 40;

/// The vCPU's physical address width as QEMU settles it before its range check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum X86PhysBits {
    /// `phys-bits=N`, or the default (`phys-bits` absent or 0).
    Given(u32),
    /// KVM with `host-phys-bits` on: the host's width, capped by the limit when given.
    Host {
        /// The width QEMU takes.
        bits: u32,
        /// The host's width.
        host: u8,
        /// `host-phys-bits-limit`, when it capped the host's width.
        limit: Option<u8>,
    },
    /// The host's width is not known.
    Unknown,
}

/// `phys-bits` as QEMU 7.0 to 10.x settle it for a 64-bit vCPU: under KVM with
/// `host-phys-bits` on (explicitly, or as the default `-cpu host` and `max` set when
/// they are created, before the user's properties) the host's width capped by a
/// non-zero `host-phys-bits-limit`, whatever `phys-bits` says (target/i386/host-cpu.c
/// `host_cpu_max_instance_init`, `host_cpu_adjust_phys_bits`); else the `phys-bits`
/// given; 0 or nothing is the default 40. TCG ignores `host-phys-bits`.
fn x86_phys_bits(vm: &QemuVm, host: &HostCpu, notes: &mut Vec<String>) -> X86PhysBits {
    let c = &vm.cpu;
    let given = c.phys_bits.filter(|p| *p != 0);
    let host_bits = vm.accel == Accel::Kvm
        && (c.host_phys_bits == Some(true)
            || (matches!(c.model.as_str(), "host" | "max") && c.host_phys_bits != Some(false)));
    if host_bits {
        if let Some(p) = given {
            notes.push(format!(
                "phys-bits={p} is ignored: with host-phys-bits on (the default of -cpu host \
                 and max under KVM) QEMU takes the host's width"
            ));
        }
        let Some(h) = host.phys_bits else {
            notes.push(
                "the vCPU takes the host's physical address width, which is not known: \
                 give --host-phys-bits or a profile with it"
                    .to_owned(),
            );
            return X86PhysBits::Unknown;
        };
        let limit = c.host_phys_bits_limit.filter(|l| *l != 0 && *l < h);
        return X86PhysBits::Host {
            bits: u32::from(limit.unwrap_or(h)),
            host: h,
            limit,
        };
    }
    let Some(p) = given else {
        return X86PhysBits::Given(X86_DEFAULT_PHYS_BITS);
    };
    if vm.accel == Accel::Kvm {
        if let Some(h) = host.phys_bits {
            if p > u32::from(h) && (X86_MIN_PHYS_BITS..=X86_MAX_PHYS_BITS).contains(&p) {
                notes.push(format!(
                    "phys-bits={p} exceeds the host's {h} address bits: the guest may \
                     place BARs where the host cannot reach"
                ));
            }
        }
    }
    X86PhysBits::Given(p)
}

/// QEMU's refusal of a vCPU width outside 32..=52, with the option that fixes it:
/// `needed` is the width the highest used address takes.
fn x86_phys_bits_range_refusal(vm: &QemuVm, pb: X86PhysBits, needed: u32) -> Option<Refusal> {
    let (bits, why, option) = match pb {
        X86PhysBits::Unknown => return None,
        X86PhysBits::Given(b) => (
            b,
            String::new(),
            format!(
                "-cpu {},phys-bits={}",
                vm.cpu.model,
                needed.clamp(X86_MIN_PHYS_BITS, X86_MAX_PHYS_BITS)
            ),
        ),
        X86PhysBits::Host { bits, host, limit } => (
            bits,
            match limit {
                Some(l) => format!(
                    " (host-phys-bits: the host's {host} bits, capped by host-phys-bits-limit={l})"
                ),
                None => format!(" (host-phys-bits: the host's {host} bits)"),
            },
            format!(
                "-cpu {},host-phys-bits-limit={}",
                vm.cpu.model,
                needed.clamp(X86_MIN_PHYS_BITS, X86_MAX_PHYS_BITS)
            ),
        ),
    };
    if (X86_MIN_PHYS_BITS..=X86_MAX_PHYS_BITS).contains(&bits) {
        return None;
    }
    Some(Refusal {
        option,
        // QEMU's words, its double space included.
        message: format!(
            "QEMU refuses to start: \"phys-bits should be between {X86_MIN_PHYS_BITS} and \
             {X86_MAX_PHYS_BITS}  (but is {bits})\"{why}"
        ),
    })
}

fn model_x86(vm: &QemuVm, version: QemuVersion, host: &HostCpu) -> Result<QemuModel, QemuError> {
    let q35 = vm.machine.family == MachineFamily::Q35;
    let mversion = vm.machine.effective_version(version);
    let mut notes = vm.notes.clone();
    if mversion < QemuVersion::new(2, 11) {
        notes.push(format!(
            "{}: before 2.11 QEMU leaves the 64-bit PCI window to the firmware \
             (x-pci-hole64-fix off); pci-hole64 is shown where newer types put it",
            vm.machine_name
        ));
    }
    let vendor = match &vm.cpu.vendor_override {
        Some(v) => CpuVendor::parse(v).filter(|v| *v != CpuVendor::Arm).ok_or_else(|| {
            unmodelled(format!("-cpu ...,vendor={v}"), "only GenuineIntel and AuthenticAMD are modelled")
        })?,
        None => x86_model_vendor(&vm.cpu.model, vm.accel, host.vendor).ok_or_else(|| {
            if matches!(
                vm.cpu.model.as_str(),
                "host" | "max" | crate::qemu_cmdline::LIBVIRT_HOST_MODEL
            ) {
                unmodelled(
                    format!("-cpu {}", vm.cpu.model),
                    "the vCPU takes the host's vendor, which is not known: give --cpu-vendor",
                )
            } else {
                unmodelled(
                    format!("-cpu {}", vm.cpu.model),
                    "CPU model not modelled (64-bit Intel and AMD models, qemu64, kvm64, host, max)",
                )
            }
        })?,
    };
    if vm.accel == Accel::Tcg && vm.cpu.model == "host" {
        return Err(bad(
            "-cpu host",
            "the host CPU model needs KVM (-accel kvm)",
        ));
    }
    let settled = x86_phys_bits(vm, host, &mut notes);
    // A width outside 32..=52 is refused before the memory map is built; the map is
    // still modelled, without a width.
    let phys_bits = match settled {
        X86PhysBits::Given(b) | X86PhysBits::Host { bits: b, .. }
            if (X86_MIN_PHYS_BITS..=X86_MAX_PHYS_BITS).contains(&b) =>
        {
            u8::try_from(b).ok()
        }
        _ => None,
    };

    let preset = if q35 { Preset::QemuQ35 } else { Preset::QemuPc };
    let cfg = GuestConfig::new(vm.ram, vendor).max_ram_below_4g(vm.max_ram_below_4g);
    let (below, above) = qemu_ram_split(preset, &cfg);
    if !(2 * MIB..=0xfec0_0000).contains(&below) {
        return Err(bad(
            "-machine max-ram-below-4g",
            format!(
                "leaves {} of RAM below 4 GiB",
                human_bytes(u128::from(below))
            ),
        ));
    }

    // Firmware.
    let pflash = !vm.pflash.is_empty();
    if pflash && vm.bios.is_some() {
        return Err(bad("-bios", "cannot be combined with pflash firmware"));
    }
    let bios_size = match &vm.bios {
        None => 256 * KIB,
        Some(f) => match vm.bios_size {
            Some(s) if s > 0 && s % (64 * KIB) == 0 && s <= 16 * MIB => s,
            Some(s) => {
                return Err(bad(
                    format!("-bios {f}"),
                    format!(
                        "{s} bytes: a BIOS image must be a non-zero multiple of 64 KiB up to 16 MiB"
                    ),
                ));
            }
            None => {
                return Err(unmodelled(
                    format!("-bios {f}"),
                    "the file cannot be read here: its size decides the ROM below 4 GiB",
                ));
            }
        },
    };
    let flash_total: u64 = vm
        .pflash
        .iter()
        .map(|p| p.size.unwrap_or(4 * MIB))
        .fold(0u64, u64::saturating_add);
    if pflash && flash_total > 8 * MIB {
        return Err(bad(
            "-drive if=pflash",
            "the combined size of the firmware flash exceeds 8 MiB",
        ));
    }
    if vm.pflash.iter().any(|p| p.size.is_none()) {
        notes.push(
            "a pflash file could not be read: 4 MiB assumed (it is not DMA-mapped)".to_owned(),
        );
    }

    let mut b = B {
        sections: Vec::new(),
    };
    let mut mappings: u64 = 0;
    let top_low = below - 1;
    // Below 1 MiB.
    if vm.vga {
        b.add("ram-below-640k", SectionKind::Ram, 0, 0x9_ffff.min(top_low))?;
        b.add("vga-window", SectionKind::Mmio, 0xa_0000, 0xb_ffff)?;
    } else {
        b.add("ram-below-768k", SectionKind::Ram, 0, 0xb_ffff.min(top_low))?;
    }
    b.add("pc.rom", SectionKind::Rom, 0xc_0000, 0xd_ffff)?;
    let isa_copy = !pflash || version < QemuVersion::new(9, 1);
    b.add(
        "isa-bios",
        if isa_copy {
            SectionKind::Rom
        } else {
            SectionKind::Mmio
        },
        0xe_0000,
        0xf_ffff,
    )?;
    b.add("ram-below-4g", SectionKind::Ram, 0x10_0000, top_low)?;
    if q35 {
        b.add("pci-hole32", SectionKind::Mmio, below, 0xafff_ffff)?;
        b.p2p_last();
        b.add(
            "pcie-mmconfig",
            SectionKind::Mmio,
            0xb000_0000.max(below),
            0xbfff_ffff,
        )?;
        b.add(
            "pci-hole32-high",
            SectionKind::Mmio,
            0xc000_0000.max(below),
            0xfebf_ffff,
        )?;
        b.p2p_last();
    } else {
        b.add("pci-hole32", SectionKind::Mmio, below, 0xfebf_ffff)?;
        b.p2p_last();
    }
    b.add_sized("ioapic", SectionKind::Mmio, 0xfec0_0000, 4 * KIB)?;
    b.add_sized("lapic", SectionKind::Mmio, 0xfee0_0000, MIB)?;
    if pflash {
        b.add_sized(
            "pflash",
            SectionKind::Mmio,
            FOUR_GIB - flash_total,
            flash_total,
        )?;
    } else {
        b.add_sized("bios", SectionKind::Rom, FOUR_GIB - bios_size, bios_size)?;
    }

    // Above 4 GiB.
    let hole64 = vm
        .pci_hole64_size
        .unwrap_or(if q35 { 32 * GIB } else { 2 * GIB });
    let devmem_size = device_memory_size(vm)?;
    let hole64_start = |start: u64| -> Result<u64, QemuError> {
        let ram_end = start
            .checked_add(above)
            .ok_or_else(|| overflow("RAM above 4 GiB"))?;
        let after = if devmem_size > 0 {
            align_up(ram_end, GIB)
                .and_then(|b| b.checked_add(devmem_size))
                .ok_or_else(|| overflow("device memory"))?
        } else {
            ram_end
        };
        align_up(after, GIB).ok_or_else(|| overflow("the 64-bit PCI window"))
    };
    let max_used = |start: u64| -> Result<u64, QemuError> {
        hole64_start(start)?
            .checked_add(hole64)
            .map(|e| e.saturating_sub(1))
            .ok_or_else(|| overflow("the 64-bit PCI window"))
    };
    let mut start = FOUR_GIB;
    let amd_move_modelled = version >= QemuVersion::new(7, 1) && mversion >= QemuVersion::new(7, 1);
    if vendor == CpuVendor::Amd {
        let used = max_used(start)?;
        if used >= AMD_HT_START {
            if amd_move_modelled {
                start = AMD_ABOVE_1TB_START;
                notes.push(format!(
                    "AMD vCPU: the highest used address {used:#x} reaches the HyperTransport \
                     window at {AMD_HT_START:#x}, so RAM above 4 GiB starts at 1 TiB"
                ));
            } else {
                notes.push(format!(
                    "AMD vCPU, but machine type {} (QEMU {version}) predates 7.1: RAM stays \
                     at 4 GiB across the HyperTransport window at {AMD_HT_START:#x}",
                    vm.machine_name
                ));
            }
        }
    }
    b.add_sized("ram-above-4g", SectionKind::Ram, start, above)?;
    let mut device_memory = None;
    if devmem_size > 0 {
        let base = start
            .checked_add(above)
            .and_then(|e| align_up(e, GIB))
            .ok_or_else(|| overflow("device memory"))?;
        device_memory = Some((base, devmem_size));
        place_mem_devices(vm, base, devmem_size, &mut b, &mut mappings)?;
        notes.push(format!(
            "device memory (hot-plug) at {base:#x}, {}",
            human_bytes(u128::from(devmem_size))
        ));
    } else if let Some(d) = vm.mem_devices.first() {
        return Err(bad(
            format!("-device {}", d.id),
            "memory devices need -m ...,slots=N,maxmem=SIZE",
        ));
    }
    let h64 = hole64_start(start)?;
    b.add_sized("pci-hole64", SectionKind::Mmio, h64, hole64)?;
    b.p2p_last();
    let used = max_used(start)?;

    let mut refusals = Vec::new();
    let needed = 64u32.saturating_sub(used.leading_zeros());
    refusals.extend(x86_phys_bits_range_refusal(vm, settled, needed));
    if let Some(pb) = phys_bits {
        let limit = if pb >= 64 { u64::MAX } else { (1u64 << pb) - 1 };
        if used > limit {
            refusals.push(Refusal {
                option: format!("-cpu {},phys-bits={needed}", vm.cpu.model),
                message: format!(
                    "QEMU refuses to start: address space limit {limit:#x} < {used:#x}, \
                     phys-bits too low ({pb})"
                ),
            });
        }
    }

    let mut layout = Layout::new(vm.machine_name.clone(), b.sections).map_err(layout_err)?;
    mappings = mappings.saturating_add(
        layout
            .sections()
            .iter()
            .filter(|s| s.is_dma_mapped() && !s.p2p)
            .filter(|s| !vm.mem_devices.iter().any(|d| d.id == s.name))
            .count() as u64,
    );
    notes.push(format!(
        "{}: {} below 4 GiB, {} above at {start:#x}",
        vm.machine_name,
        human_bytes(u128::from(below)),
        human_bytes(u128::from(above))
    ));
    layout.notes = notes;
    Ok(QemuModel {
        version,
        layout,
        cpu_vendor: vendor,
        phys_bits,
        max_used_gpa: used,
        device_memory,
        refusals,
        mappings,
        viommus: vm.viommus.clone(),
        machine_version: mversion,
    })
}

/// The physical address bits of an aarch64 CPU model under TCG (ID_AA64MMFR0 PARange).
fn arm_pa_bits(model: &str) -> Option<u8> {
    match model {
        // cortex-a15 and cortex-a7 are 32-bit CPUs with LPAE (40-bit physical
        // addresses): QEMU 7.2 lays virt out for them exactly as for a 40-bit
        // cortex-a53 (`info mtree -f` of both, 1-4 GiB of RAM). cortex-a15 is QEMU's
        // default CPU for virt, and libvirt's for an aarch64 TCG domain without <cpu>.
        "cortex-a53" | "cortex-a35" | "cortex-a55" | "cortex-a15" | "cortex-a7" => Some(40),
        "cortex-a57" | "cortex-a72" | "cortex-a76" | "neoverse-n1" | "a64fx" => Some(44),
        "max" | "neoverse-v1" | "neoverse-n2" => Some(48),
        _ => None,
    }
}

fn model_virt(vm: &QemuVm, version: QemuVersion, host: &HostCpu) -> Result<QemuModel, QemuError> {
    let mversion = vm.machine.effective_version(version);
    let mut notes = vm.notes.clone();
    let pa_bits = match (vm.cpu.model.as_str(), vm.accel) {
        ("host", Accel::Tcg) => return Err(bad("-cpu host", "the host CPU model needs KVM")),
        ("host" | "max", Accel::Kvm) => None,
        (m, _) => Some(arm_pa_bits(m).ok_or_else(|| {
            unmodelled(
                format!("-cpu {m}"),
                "CPU model not modelled for virt (cortex-a7/a15/a53/a57/a72/a76, neoverse-*, max, host)",
            )
        })?),
    };
    if pa_bits.is_none() {
        notes.push(format!(
            "KVM: the IPA size is the host's{}",
            host.phys_bits
                .map_or(String::new(), |b| format!(" ({b} bits)"))
        ));
    }
    let pa_bits = pa_bits.or(host.phys_bits);
    let mut b = B {
        sections: Vec::new(),
    };
    let mut mappings: u64 = 0;
    b.add_sized("flash", SectionKind::Mmio, 0, 128 * MIB)?;
    b.add_sized(
        "gic-uart-virtio-platform",
        SectionKind::Mmio,
        0x0800_0000,
        128 * MIB,
    )?;
    b.add_sized("pcie-mmio", SectionKind::Mmio, 0x1000_0000, 0x2eff_0000)?;
    b.p2p_last();
    b.add_sized("pcie-pio", SectionKind::Mmio, 0x3eff_0000, 64 * KIB)?;
    b.add_sized("pcie-ecam", SectionKind::Mmio, 0x3f00_0000, 16 * MIB)?;
    if !vm.highmem && vm.ram > 3 * GIB {
        return Err(bad(
            "-machine highmem=off",
            format!(
                "{} of RAM: without highmem the virt machine takes at most 3 GiB",
                human_bytes(u128::from(vm.ram))
            ),
        ));
    }
    b.add_sized("ram", SectionKind::Ram, GIB, vm.ram)?;
    let ram_end = GIB.checked_add(vm.ram).ok_or_else(|| overflow("-m"))?;
    let devmem_size = device_memory_size(vm)?;
    let dm_base = align_up(ram_end, GIB).ok_or_else(|| overflow("-m"))?;
    let memtop = align_up(devmem_size, GIB)
        .and_then(|s| dm_base.checked_add(s))
        .ok_or_else(|| overflow("-m maxmem"))?;
    let mut refusals = Vec::new();
    if let Some(pb) = pa_bits {
        if pb < 64 && memtop > (1u64 << pb) {
            refusals.push(Refusal {
                option: "-m".to_owned(),
                message: format!(
                    "QEMU refuses to start: addressing limited to {pb} bits, but memory \
                     exceeds it by {} bytes",
                    memtop - (1u64 << pb)
                ),
            });
        }
    }
    let mut device_memory = None;
    if devmem_size > 0 {
        device_memory = Some((dm_base, devmem_size));
        place_mem_devices(vm, dm_base, devmem_size, &mut b, &mut mappings)?;
    } else if let Some(d) = vm.mem_devices.first() {
        return Err(bad(
            format!("-device {}", d.id),
            "memory devices need -m ...,slots=N,maxmem=SIZE",
        ));
    }
    let mut highest = memtop.saturating_sub(1);
    if vm.highmem {
        let mut base = memtop.max(256 * GIB);
        for (name, size, p2p) in [
            ("gic-redist2", 64 * MIB, false),
            ("pcie-ecam-high", 256 * MIB, false),
            ("pcie-mmio-high", 512 * GIB, true),
        ] {
            let rb = align_up(base, size).ok_or_else(|| overflow(name))?;
            let end = rb.checked_add(size).ok_or_else(|| overflow(name))?;
            let fits = pa_bits.is_none_or(|pb| pb >= 64 || end <= (1u64 << pb));
            if fits {
                b.add_sized(name, SectionKind::Mmio, rb, size)?;
                if p2p {
                    b.p2p_last();
                }
                highest = highest.max(end - 1);
            } else {
                notes.push(format!(
                    "{name} does not fit the vCPU's {} physical address bits: QEMU drops it",
                    pa_bits.unwrap_or(0)
                ));
            }
            // highmem-compact (machine types >= 7.2) skips a region that does not fit.
            if fits || mversion < QemuVersion::new(7, 2) {
                base = end;
            }
        }
    }
    let mut layout = Layout::new(vm.machine_name.clone(), b.sections).map_err(layout_err)?;
    mappings = mappings.saturating_add(
        layout
            .sections()
            .iter()
            .filter(|s| s.is_dma_mapped() && !s.p2p)
            .filter(|s| !vm.mem_devices.iter().any(|d| d.id == s.name))
            .count() as u64,
    );
    notes.push(
        "virt: the flash at 0-0x7ffffff is a ROM device (romd), which VFIO does not map".to_owned(),
    );
    layout.notes = notes;
    Ok(QemuModel {
        version,
        layout,
        cpu_vendor: CpuVendor::Arm,
        phys_bits: pa_bits,
        max_used_gpa: highest,
        device_memory,
        refusals,
        mappings,
        viommus: vm.viommus.clone(),
        machine_version: mversion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu_cmdline::parse_qemu_argv;

    fn m(cmd: &str, v: QemuVersion) -> QemuModel {
        let argv: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
        let vm = parse_qemu_argv(&argv, |_, _| None).unwrap();
        model(&vm, v, &HostCpu::default()).unwrap()
    }

    fn mapped(m: &QemuModel) -> Vec<(u64, u64, SectionKind)> {
        m.layout
            .sections()
            .iter()
            .filter(|s| s.is_dma_mapped() && !s.p2p)
            .map(|s| (s.range.first(), s.range.last(), s.kind))
            .collect()
    }

    const V72: QemuVersion = QemuVersion::new(7, 2);
    const V10: QemuVersion = QemuVersion::new(10, 0);

    #[test]
    fn machine_types_before_5_0_as_qemu_has_them() {
        let err = |cmd: &str, v: QemuVersion| {
            let argv: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
            let vm = parse_qemu_argv(&argv, |_, _| None).unwrap();
            model(&vm, v, &HostCpu::default()).unwrap_err()
        };
        // Mapped like 5.0 (measured on QEMU 7.2), with a note before 2.11.
        for t in ["pc-q35-2.4", "pc-q35-4.0", "pc-i440fx-2.0", "pc-i440fx-4.2"] {
            let old = m(&format!("qemu-system-x86_64 -M {t} -m 8G"), V72);
            let fam = if t.contains("q35") {
                "pc-q35-5.0"
            } else {
                "pc-i440fx-5.0"
            };
            let new = m(&format!("qemu-system-x86_64 -M {fam} -m 8G"), V72);
            assert_eq!(mapped(&old), mapped(&new), "{t}");
            assert_eq!(
                old.layout
                    .notes
                    .iter()
                    .any(|n| n.contains("x-pci-hole64-fix")),
                t.ends_with("2.4") || t.ends_with("2.0"),
                "{t}"
            );
        }
        let vm = m("qemu-system-aarch64 -M virt-3.0 -cpu max -m 4G", V72);
        assert_eq!(
            mapped(&vm),
            mapped(&m("qemu-system-aarch64 -M virt-5.0 -cpu max -m 4G", V72))
        );
        // What QEMU no longer has is bad input; what differs is not modelled.
        let e = err("qemu-system-x86_64 -M pc-i440fx-2.1 -m 1G", V10);
        assert!(
            !e.is_unmodelled() && e.to_string().contains("oldest is 2.4"),
            "{e}"
        );
        let e = err("qemu-system-x86_64 -M pc-q35-2.3 -m 1G", V72);
        assert!(!e.is_unmodelled(), "{e}");
        assert!(err("qemu-system-x86_64 -M pc-i440fx-1.7 -m 1G", V72).is_unmodelled());
        assert!(
            err(
                "qemu-system-x86_64 -M pc-i440fx-2.2 -m 1G",
                QemuVersion::new(9, 0)
            )
            .is_unmodelled()
        );
        assert!(err("qemu-system-aarch64 -M virt-2.12 -cpu max -m 1G", V72).is_unmodelled());
        for m in ["1G,slots=1,maxmem=2G", "1G,maxmem=2G"] {
            let e = err(&format!("qemu-system-x86_64 -M pc-i440fx-2.0 -m {m}"), V72);
            assert!(
                !e.is_unmodelled() && e.to_string().contains("maxmem"),
                "{e}"
            );
        }
    }

    #[test]
    fn old_machine_types_keep_ram_at_4g_on_amd() {
        let new = m("qemu-system-x86_64 -M q35 -m 1000G -cpu EPYC", V72);
        assert_eq!(
            new.layout.section("ram-above-4g").unwrap().range.first(),
            1 << 40
        );
        let old = m("qemu-system-x86_64 -M pc-q35-7.0 -m 1000G -cpu EPYC", V72);
        assert_eq!(
            old.layout.section("ram-above-4g").unwrap().range.first(),
            1 << 32
        );
    }

    #[test]
    fn maxmem_triggers_the_amd_move_and_pushes_the_window() {
        let x = m(
            "qemu-system-x86_64 -M q35 -m 8G,slots=2,maxmem=1T -cpu EPYC",
            V72,
        );
        assert_eq!(
            x.layout.section("ram-above-4g").unwrap().range.first(),
            1 << 40
        );
        let (base, size) = x.device_memory.unwrap();
        assert_eq!(base, (1 << 40) + 6 * GIB);
        assert_eq!(size, (1 << 40) - 8 * GIB + 2 * GIB);
        assert!(x.layout.section("pci-hole64").unwrap().range.first() >= base + size);
    }

    #[test]
    fn phys_bits_refusal_matches_qemu() {
        // Seen on QEMU 7.2 and 10.0 under TCG: 978G AMD starts, 979G AMD and 1T Intel do not.
        assert!(
            m("qemu-system-x86_64 -M q35 -m 978G -cpu EPYC", V72)
                .refusals
                .is_empty()
        );
        assert!(
            !m("qemu-system-x86_64 -M q35 -m 979G -cpu EPYC", V72)
                .refusals
                .is_empty()
        );
        assert!(
            !m("qemu-system-x86_64 -M q35 -m 1T -cpu Skylake-Client", V10)
                .refusals
                .is_empty()
        );
    }

    fn range_refusal(m: &QemuModel) -> Option<&Refusal> {
        m.refusals
            .iter()
            .find(|r| r.message.contains("phys-bits should be between"))
    }

    fn kvm(cmd: &str, v: QemuVersion, host_bits: u8) -> QemuModel {
        let argv: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
        let vm = parse_qemu_argv(&argv, |_, _| None).unwrap();
        let host = HostCpu {
            vendor: Some(CpuVendor::Intel),
            phys_bits: Some(host_bits),
        };
        model(&vm, v, &host).unwrap()
    }

    #[test]
    fn phys_bits_outside_32_to_52_is_refused_as_qemu_does() {
        // target/i386/cpu.c x86_cpu_realizefn (and host_cpu_realizefn before 9.1):
        // "phys-bits should be between 32 and 52  (but is N)"; 0 is the default (40).
        for v in [V72, V10] {
            for cpu in ["qemu64", "Skylake-Client", "EPYC"] {
                let base = format!("qemu-system-x86_64 -M q35 -m 8G -cpu {cpu}");
                let ok = m(&format!("{base},phys-bits=52"), v);
                assert!(ok.refusals.is_empty(), "{cpu} {v}: {:?}", ok.refusals);
                assert_eq!(ok.phys_bits, Some(52));
                let high = m(&format!("{base},phys-bits=53"), v);
                let r = range_refusal(&high).expect("phys-bits=53 refused");
                assert!(
                    r.message
                        .contains("phys-bits should be between 32 and 52  (but is 53)"),
                    "{}",
                    r.message
                );
                assert_eq!(r.option, format!("-cpu {cpu},phys-bits=36"));
                assert_eq!(high.refusals.len(), 1, "{:?}", high.refusals);
                assert_eq!(high.phys_bits, None);
                let low = m(&format!("{base},phys-bits=31"), v);
                assert!(range_refusal(&low).is_some_and(|r| r.message.contains("(but is 31)")));
                assert_eq!(
                    low.refusals.len(),
                    1,
                    "only the range check: {:?}",
                    low.refusals
                );
                // 32 passes the range check (and is then too low for the 64-bit window).
                let at32 = m(&format!("{base},phys-bits=32"), v);
                assert!(range_refusal(&at32).is_none() && !at32.refusals.is_empty());
                let dflt = m(&format!("{base},phys-bits=0"), v);
                assert!(dflt.refusals.is_empty() && dflt.phys_bits == Some(40));
                let huge = m(&format!("{base},phys-bits=4294967295"), v);
                assert!(range_refusal(&huge).is_some());
            }
        }
    }

    #[test]
    fn host_phys_bits_are_range_checked_after_the_limit() {
        // KVM, host-phys-bits on: the host's width capped by host-phys-bits-limit, then
        // the same 32..=52 check; a limit of 0 is no limit.
        let base =
            "qemu-system-x86_64 -M q35 -accel kvm -m 8G -cpu Skylake-Client,host-phys-bits=on";
        for v in [V72, V10] {
            let capped = kvm(&format!("{base},host-phys-bits-limit=20"), v, 46);
            let r = range_refusal(&capped).expect("a limit of 20 is refused");
            assert!(
                r.message.contains("(but is 20)") && r.message.contains("46"),
                "{}",
                r.message
            );
            assert!(r.option.contains("host-phys-bits-limit="), "{}", r.option);
            let none = kvm(&format!("{base},host-phys-bits-limit=0"), v, 46);
            assert!(none.refusals.is_empty() && none.phys_bits == Some(46));
            let limited = kvm(&format!("{base},host-phys-bits-limit=39"), v, 46);
            assert!(limited.refusals.is_empty() && limited.phys_bits == Some(39));
            // -cpu host sets host-phys-bits itself: its phys-bits=53 is overridden.
            let host = kvm(
                "qemu-system-x86_64 -M q35 -accel kvm -m 8G -cpu host,phys-bits=53",
                v,
                46,
            );
            assert!(host.refusals.is_empty(), "{:?}", host.refusals);
            assert_eq!(host.phys_bits, Some(46));
            // With host-phys-bits off it is the user's 53 again, refused.
            let off = kvm(
                "qemu-system-x86_64 -M q35 -accel kvm -m 8G -cpu host,host-phys-bits=off,phys-bits=53",
                v,
                46,
            );
            assert!(range_refusal(&off).is_some());
            // TCG ignores host-phys-bits: the default 40.
            let tcg = m(
                &format!("{base},host-phys-bits-limit=20").replace("-accel kvm ", ""),
                v,
            );
            assert!(tcg.refusals.is_empty() && tcg.phys_bits == Some(40));
        }
    }

    #[test]
    fn no_vga_and_ovmf() {
        let x = m("qemu-system-x86_64 -M q35 -m 2G -nodefaults", V72);
        assert_eq!(mapped(&x)[0], (0, 0xb_ffff, SectionKind::Ram));
        let o = "qemu-system-x86_64 -M q35 -m 2G -drive if=pflash,format=raw,file=code.fd";
        let old = m(o, V72);
        let new = m(o, V10);
        assert!(old.layout.section("isa-bios").unwrap().is_dma_mapped());
        assert!(!new.layout.section("isa-bios").unwrap().is_dma_mapped());
        assert!(new.layout.section("bios").is_none());
    }

    #[test]
    fn virt_above_255g_moves_the_high_window() {
        let x = m("qemu-system-aarch64 -M virt -cpu max -m 1T", V10);
        assert_eq!(
            x.layout.section("pcie-mmio-high").unwrap().range.first(),
            0x180_0000_0000
        );
        assert!(
            x.layout
                .section("flash")
                .is_some_and(|s| !s.is_dma_mapped())
        );
        let y = m("qemu-system-aarch64 -M virt -cpu cortex-a53 -m 1T", V10);
        assert!(!y.refusals.is_empty());
        let z = m("qemu-system-aarch64 -M virt -cpu cortex-a53 -m 600G", V10);
        assert!(z.refusals.is_empty() && z.layout.section("pcie-mmio-high").is_none());
    }

    #[test]
    fn the_preset_and_the_command_line_agree() {
        for (mem, cpu, vendor) in [
            (8u64 << 30, "Skylake-Client", CpuVendor::Intel),
            (600 << 30, "EPYC", CpuVendor::Amd),
            (1000 << 30, "EPYC", CpuVendor::Amd),
            (2 << 30, "Skylake-Client", CpuVendor::Intel),
        ] {
            for (machine, preset) in [("q35", Preset::QemuQ35), ("pc", Preset::QemuPc)] {
                let x = m(
                    &format!(
                        "qemu-system-x86_64 -M {machine} -m {}M -cpu {cpu}",
                        mem >> 20
                    ),
                    V10,
                );
                let p = preset.layout(&GuestConfig::new(mem, vendor)).unwrap();
                let ranges = |l: &Layout| {
                    let mut v: Vec<(u64, u64)> = Vec::new();
                    for s in l.sections().iter().filter(|s| s.is_dma_mapped()) {
                        match v.last_mut() {
                            Some(last) if last.1.checked_add(1) == Some(s.range.first()) => {
                                last.1 = s.range.last();
                            }
                            _ => v.push((s.range.first(), s.range.last())),
                        }
                    }
                    v
                };
                assert_eq!(ranges(&x.layout), ranges(&p), "{machine} {mem} {cpu}");
            }
        }
    }
}
