//! The guest memory maps real VMMs build, as a function of the memory size (and, for
//! QEMU on x86, of the guest CPU vendor and a few machine options).
//!
//! Each builder cites the source it follows. The layouts model the current releases
//! (QEMU >= 7.1, cloud-hypervisor and crosvm main, firecracker main with PCI support);
//! firmware-chosen details (where exactly the BIOS places 64-bit BARs) follow the
//! VMM's advertised windows.

use std::fmt;

use serde::Serialize;

use super::{CpuVendor, Layout, LayoutError, Section, SectionKind, human_bytes};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const FOUR_GIB: u64 = 1 << 32;

/// First address of the AMD HyperTransport window the AMD IOMMU reserves
/// (`AMD_HT_START` in QEMU hw/i386/pc.c; AMD IOMMU spec 2.1.2, table 3).
pub const AMD_HT_START: u64 = 0xfd_0000_0000;
/// Last address of the HyperTransport window (`AMD_HT_END`).
pub const AMD_HT_END: u64 = 0xff_ffff_ffff;
/// Where QEMU puts RAM above 4 GiB when it must avoid the window
/// (`AMD_ABOVE_1TB_START` = `AMD_HT_END + 1`).
pub const AMD_ABOVE_1TB_START: u64 = 0x100_0000_0000;

/// A VMM whose guest layout this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// QEMU `-machine q35` (x86_64).
    QemuQ35,
    /// QEMU `-machine pc` (i440fx + PIIX, x86_64).
    QemuPc,
    /// QEMU `-machine virt` (aarch64).
    QemuVirt,
    /// cloud-hypervisor (x86_64).
    CloudHypervisor,
    /// firecracker (x86_64).
    Firecracker,
    /// crosvm (x86_64).
    Crosvm,
}

/// The inputs of a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GuestConfig {
    /// Guest RAM in bytes (`-m`, `--memory size=`, `mem_size_mib`).
    pub memory: u64,
    /// The CPU vendor the guest sees (QEMU x86 relocates RAM for AMD guests).
    pub cpu_vendor: CpuVendor,
    /// QEMU x86 `-machine ...,max-ram-below-4g=`; `None` for the machine's default.
    pub max_ram_below_4g: Option<u64>,
    /// QEMU x86 `pci-hole64-size` of the host bridge; `None` for the default (32 GiB
    /// on q35, 2 GiB on pc).
    pub pci_hole64_size: Option<u64>,
}

impl GuestConfig {
    /// `memory` bytes for a guest with this CPU vendor, every option at its default.
    pub fn new(memory: u64, cpu_vendor: CpuVendor) -> Self {
        GuestConfig {
            memory,
            cpu_vendor,
            max_ram_below_4g: None,
            pci_hole64_size: None,
        }
    }

    /// The same inputs with QEMU's `max-ram-below-4g`.
    pub fn max_ram_below_4g(mut self, bytes: Option<u64>) -> Self {
        self.max_ram_below_4g = bytes;
        self
    }

    /// The same inputs with QEMU's `pci-hole64-size`.
    pub fn pci_hole64_size(mut self, bytes: Option<u64>) -> Self {
        self.pci_hole64_size = bytes;
        self
    }
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 6] = [
        Preset::QemuQ35,
        Preset::QemuPc,
        Preset::QemuVirt,
        Preset::CloudHypervisor,
        Preset::Firecracker,
        Preset::Crosvm,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::QemuQ35 => "qemu-q35",
            Preset::QemuPc => "qemu-pc",
            Preset::QemuVirt => "qemu-virt",
            Preset::CloudHypervisor => "cloud-hypervisor",
            Preset::Firecracker => "firecracker",
            Preset::Crosvm => "crosvm",
        }
    }

    /// The preset with this name (`qemu-q35`, …; `q35`, `pc`, `i440fx`, `virt`, `ch`
    /// are accepted too).
    pub fn from_name(name: &str) -> Option<Preset> {
        let n = name.trim().to_ascii_lowercase();
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == n)
            .or(match n.as_str() {
                "q35" => Some(Preset::QemuQ35),
                "pc" | "i440fx" | "qemu-i440fx" => Some(Preset::QemuPc),
                "virt" => Some(Preset::QemuVirt),
                "ch" | "cloud-hv" => Some(Preset::CloudHypervisor),
                _ => None,
            })
    }

    /// The names of all presets, comma-separated, for error messages.
    pub fn known_names() -> String {
        Preset::ALL.map(Preset::name).join(", ")
    }

    /// The source files the preset follows.
    pub fn source(self) -> &'static str {
        match self {
            Preset::QemuQ35 => "QEMU hw/i386/pc_q35.c, hw/i386/pc.c, hw/pci-host/q35.c",
            Preset::QemuPc => "QEMU hw/i386/pc_piix.c, hw/i386/pc.c, hw/pci-host/i440fx.c",
            Preset::QemuVirt => "QEMU hw/arm/virt.c (base_memmap, extended_memmap)",
            Preset::CloudHypervisor => {
                "cloud-hypervisor arch/src/x86_64/layout.rs, arch/src/x86_64/mod.rs"
            }
            Preset::Firecracker => {
                "firecracker src/vmm/src/arch/x86_64/layout.rs, src/vmm/src/arch/x86_64/mod.rs"
            }
            Preset::Crosvm => "crosvm x86_64/src/lib.rs (docs/book/src/appendix/memory_layout.md)",
        }
    }

    /// Whether the guest is aarch64.
    pub fn is_arm(self) -> bool {
        matches!(self, Preset::QemuVirt)
    }

    /// Whether the guest layout depends on the guest CPU vendor.
    pub fn depends_on_cpu_vendor(self) -> bool {
        matches!(self, Preset::QemuQ35 | Preset::QemuPc)
    }

    /// The layout this VMM builds for `cfg`.
    pub fn layout(self, cfg: &GuestConfig) -> Result<Layout, LayoutError> {
        if cfg.memory < 2 * MIB || cfg.memory % (4 * KIB) != 0 {
            return Err(LayoutError::Invalid(format!(
                "{}: memory size {} must be at least 2 MiB and a multiple of 4 KiB",
                self.name(),
                cfg.memory
            )));
        }
        if !self.depends_on_cpu_vendor()
            && (cfg.max_ram_below_4g.is_some() || cfg.pci_hole64_size.is_some())
        {
            return Err(LayoutError::Invalid(format!(
                "{}: max-ram-below-4g and pci-hole64-size are QEMU x86 options",
                self.name()
            )));
        }
        let layout = match self {
            Preset::QemuQ35 | Preset::QemuPc | Preset::QemuVirt => {
                qemu_by_model(self, &self.canonical_argv(cfg).unwrap_or_default(), cfg)
            }
            Preset::CloudHypervisor => cloud_hypervisor(cfg),
            Preset::Firecracker => firecracker(cfg),
            Preset::Crosvm => crosvm(cfg),
        }?;
        Ok(Layout {
            name: self.name().to_owned(),
            ..layout
        })
    }

    /// A QEMU preset as the command line it stands for (the newest QEMU modelled, its
    /// newest machine type, KVM with the host's CPU of `cfg`'s vendor): its layout is
    /// that command line's, from the one model of QEMU ([`crate::qemu_model`]), so a
    /// preset and the command line can never disagree. `None` for other VMMs.
    pub fn canonical_argv(self, cfg: &GuestConfig) -> Option<Vec<String>> {
        let (binary, machine) = match self {
            Preset::QemuQ35 => ("qemu-system-x86_64", "q35"),
            Preset::QemuPc => ("qemu-system-x86_64", "pc"),
            Preset::QemuVirt => ("qemu-system-aarch64", "virt"),
            _ => return None,
        };
        let mut machine = machine.to_owned();
        if let Some(m) = cfg.max_ram_below_4g {
            machine.push_str(&format!(",max-ram-below-4g={m}"));
        }
        let mut argv: Vec<String> = [binary, "-accel", "kvm", "-machine", &machine, "-m"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        argv.push(format!("{}b", cfg.memory));
        if let Some(h) = cfg.pci_hole64_size {
            let dev = if self == Preset::QemuQ35 {
                "q35-pcihost"
            } else {
                "i440FX-pcihost"
            };
            argv.extend(["-global".to_owned(), format!("{dev}.pci-hole64-size={h}")]);
        }
        argv.extend(["-cpu".to_owned(), "host".to_owned()]);
        Some(argv)
    }

    /// The command line (or configuration) that makes this VMM build the layout for
    /// `cfg`, one argument or setting per entry.
    pub fn options(self, cfg: &GuestConfig) -> Vec<String> {
        let mem = size_arg(cfg.memory);
        match self {
            Preset::QemuQ35 | Preset::QemuPc => {
                let mut machine = String::from(if self == Preset::QemuQ35 { "q35" } else { "pc" });
                if let Some(m) = cfg.max_ram_below_4g {
                    machine.push_str(&format!(",max-ram-below-4g={}", size_arg(m)));
                }
                let mut out = vec![format!("-machine {machine}"), format!("-m {mem}")];
                if let Some(h) = cfg.pci_hole64_size {
                    let dev = if self == Preset::QemuQ35 {
                        "q35-pcihost"
                    } else {
                        "i440FX-pcihost"
                    };
                    out.push(format!("-global {dev}.pci-hole64-size={}", size_arg(h)));
                }
                out.push("-cpu host,host-phys-bits=on".to_owned());
                out
            }
            Preset::QemuVirt => vec![
                "-machine virt,highmem=on".to_owned(),
                format!("-m {mem}"),
                "-cpu host".to_owned(),
            ],
            Preset::CloudHypervisor => vec![format!("--memory size={mem}")],
            Preset::Firecracker => vec![format!(
                "machine-config: {{\"mem_size_mib\": {}}}",
                cfg.memory / MIB
            )],
            Preset::Crosvm => vec![format!("--mem {}", cfg.memory / MIB)],
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A QEMU preset's layout: its canonical command line through the QEMU model, with the
/// host's CPU of the preset's vendor (its width unknown: KVM's `-cpu host` takes it, and
/// the layout does not depend on it).
fn qemu_by_model(p: Preset, argv: &[String], cfg: &GuestConfig) -> Result<Layout, LayoutError> {
    let err = |e: crate::qemu_cmdline::QemuError| {
        LayoutError::Invalid(format!(
            "{} --memory {}: {e}",
            p.name(),
            human_bytes(u128::from(cfg.memory))
        ))
    };
    let vm = crate::qemu_cmdline::parse_qemu_argv(argv, |_, _| None).map_err(err)?;
    let host = crate::qemu_model::HostCpu {
        vendor: Some(cfg.cpu_vendor),
        phys_bits: None,
    };
    let m = crate::qemu_model::model(&vm, crate::qemu_cmdline::QemuVersion::NEWEST, &host)
        .map_err(err)?;
    let mut layout = m.layout;
    layout.name = p.name().to_owned();
    Ok(layout)
}

/// `8G`, `1536M`, `4100K`: the largest unit that divides `n`.
pub fn size_arg(n: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if n != 0 && n % (1u64 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Collects sections with checked arithmetic.
struct Builder {
    sections: Vec<Section>,
    notes: Vec<String>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            sections: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds `[start, start+size)`; a size of 0 adds nothing.
    fn add(
        &mut self,
        name: &str,
        kind: SectionKind,
        start: u64,
        size: u64,
        p2p: bool,
    ) -> Result<(), LayoutError> {
        if size == 0 {
            return Ok(());
        }
        let mut s = Section::sized(name, kind, start, size).ok_or_else(|| {
            LayoutError::Invalid(format!(
                "section '{name}' at {start:#x} of {size:#x} bytes runs past 2^64"
            ))
        })?;
        s.p2p = p2p;
        self.sections.push(s);
        Ok(())
    }

    /// Adds `[first, last]` when not empty (`last < first` adds nothing).
    fn add_incl(
        &mut self,
        name: &str,
        kind: SectionKind,
        first: u64,
        last: u64,
        p2p: bool,
    ) -> Result<(), LayoutError> {
        if last < first {
            return Ok(());
        }
        match last.checked_sub(first).and_then(|d| d.checked_add(1)) {
            Some(size) => self.add(name, kind, first, size, p2p),
            None => Err(LayoutError::Invalid(format!(
                "section '{name}' covers the whole 64-bit space"
            ))),
        }
    }

    fn finish(self, name: &str) -> Result<Layout, LayoutError> {
        let mut l = Layout::new(name, self.sections)?;
        l.notes = self.notes;
        Ok(l)
    }
}

/// The RAM split of QEMU's PC machines: (below 4 GiB, above 4 GiB).
///
/// q35 (hw/i386/pc_q35.c `pc_q35_init`): RAM of 0xb0000000 (2.75 GiB) or more keeps
/// 2 GiB below 4 GiB (`lowmem = 0x80000000`), smaller guests keep up to 0xb0000000;
/// `max-ram-below-4g` (default 4 GiB) lowers `lowmem` further.
/// pc (hw/i386/pc_piix.c `pc_init1`): `lowmem = max-ram-below-4g` (default
/// 0xe0000000 = 3.5 GiB); when RAM reaches it, gigabyte alignment caps `lowmem` at
/// 0xc0000000 (3 GiB), so `-m 4G` gives 3 GiB low and 1 GiB high.
pub fn qemu_ram_split(preset: Preset, cfg: &GuestConfig) -> (u64, u64) {
    let ram = cfg.memory;
    let lowmem = match preset {
        Preset::QemuPc => {
            let max = cfg.max_ram_below_4g.unwrap_or(0xe000_0000);
            if ram >= max && max > 0xc000_0000 {
                0xc000_0000
            } else {
                max
            }
        }
        _ => {
            let default = if ram >= 0xb000_0000 {
                0x8000_0000
            } else {
                0xb000_0000
            };
            default.min(cfg.max_ram_below_4g.unwrap_or(FOUR_GIB))
        }
    };
    let below = ram.min(lowmem);
    (below, ram - below)
}

/// cloud-hypervisor x86_64, arch/src/x86_64/layout.rs: RAM from 0 up to
/// `MEM_32BIT_RESERVED_START` (3 GiB); the 32-bit reserved area holds the 32-bit PCI
/// device window (`MEM_32BIT_DEVICES_SIZE` 640 MiB), `PCI_MMCONFIG` (256 MiB), then the
/// TSS, identity map, IOAPIC and LAPIC up to 4 GiB; the rest of RAM from
/// `RAM_64BIT_START` (4 GiB), in one block: no HyperTransport hole in current releases
/// (a pull request adding one, #8902, is open).
fn cloud_hypervisor(cfg: &GuestConfig) -> Result<Layout, LayoutError> {
    let low = cfg.memory.min(3 * GIB);
    let mut b = Builder::new();
    b.add("ram-below-3g", SectionKind::Ram, 0, low, false)?;
    b.add(
        "pci-32bit-devices",
        SectionKind::Mmio,
        3 * GIB,
        640 * MIB,
        true,
    )?;
    b.add(
        "pci-mmconfig",
        SectionKind::Mmio,
        0xe800_0000,
        256 * MIB,
        false,
    )?;
    b.add(
        "tss-ioapic-lapic",
        SectionKind::Mmio,
        0xf800_0000,
        128 * MIB,
        false,
    )?;
    b.add(
        "ram-above-4g",
        SectionKind::Ram,
        FOUR_GIB,
        cfg.memory - low,
        false,
    )?;
    b.notes.push(
        "64-bit PCI BARs are allocated above RAM up to the guest's physical-address limit; not modelled"
            .to_owned(),
    );
    b.finish("cloud-hypervisor")
}

/// firecracker x86_64, src/vmm/src/arch/x86_64/layout.rs (with PCI support): RAM below
/// `MMIO32_MEM_START` = 4 GiB - `MMIO32_MEM_SIZE` (1 GiB) = 3 GiB; the 32-bit MMIO area
/// (boot timer, virtio-mmio, 32-bit BARs) up to `PCI_MMCONFIG_START` 0xeec00000
/// (256 MiB), IOAPIC, LAPIC; RAM from 4 GiB up to the 64-bit MMIO window
/// `MMIO64_MEM_START` (256 GiB, 256 GiB long), and the rest of RAM from
/// `FIRST_ADDR_PAST_64BITS_MMIO` (512 GiB).
fn firecracker(cfg: &GuestConfig) -> Result<Layout, LayoutError> {
    let low = cfg.memory.min(3 * GIB);
    let rest = cfg.memory - low;
    let mid = rest.min(256 * GIB - FOUR_GIB);
    let mut b = Builder::new();
    b.add("ram-below-3g", SectionKind::Ram, 0, low, false)?;
    b.add_incl("mmio32", SectionKind::Mmio, 3 * GIB, 0xeebf_ffff, true)?;
    b.add(
        "pci-mmconfig",
        SectionKind::Mmio,
        0xeec0_0000,
        256 * MIB,
        false,
    )?;
    b.add("ioapic", SectionKind::Mmio, 0xfec0_0000, 4 * KIB, false)?;
    b.add("lapic", SectionKind::Mmio, 0xfee0_0000, MIB, false)?;
    b.add("ram-above-4g", SectionKind::Ram, FOUR_GIB, mid, false)?;
    b.add("mmio64", SectionKind::Mmio, 256 * GIB, 256 * GIB, true)?;
    b.add(
        "ram-above-512g",
        SectionKind::Ram,
        512 * GIB,
        rest - mid,
        false,
    )?;
    b.finish("firecracker")
}

/// crosvm x86_64, x86_64/src/lib.rs: RAM below `END_ADDR_BEFORE_32BITS` = 4 GiB -
/// `MEM_32BIT_GAP_SIZE` (768 MiB) = 0xd0000000; the low MMIO area up to the PCIe ECAM
/// (`PCIE_CFG_MMIO_START` 0xf4000000, 64 MiB); `RESERVED_MEM_SIZE` (128 MiB) for LAPIC,
/// IOAPIC, HPET below 4 GiB; the rest of RAM from 4 GiB in one block (no HyperTransport
/// hole), the high MMIO area after it.
fn crosvm(cfg: &GuestConfig) -> Result<Layout, LayoutError> {
    let low = cfg.memory.min(0xd000_0000);
    let mut b = Builder::new();
    b.add("ram-below-4g", SectionKind::Ram, 0, low, false)?;
    b.add_incl(
        "low-mmio",
        SectionKind::Mmio,
        0xd000_0000,
        0xf3ff_ffff,
        true,
    )?;
    b.add("pcie-ecam", SectionKind::Mmio, 0xf400_0000, 64 * MIB, false)?;
    b.add(
        "lapic-ioapic-hpet",
        SectionKind::Mmio,
        0xf800_0000,
        128 * MIB,
        false,
    )?;
    b.add(
        "ram-above-4g",
        SectionKind::Ram,
        FOUR_GIB,
        cfg.memory - low,
        false,
    )?;
    b.notes
        .push("64-bit PCI BARs are allocated after RAM (high MMIO area); not modelled".to_owned());
    b.finish("crosvm")
}

/// The RAM sections of a layout as `(first, last)` pairs, for tests and messages.
pub fn ram_ranges(layout: &Layout) -> Vec<(u64, u64)> {
    layout
        .sections()
        .iter()
        .filter(|s| s.kind == SectionKind::Ram)
        .map(|s| (s.range.first(), s.range.last()))
        .collect()
}

/// `1 TiB` as a constant for callers.
pub const ONE_TIB: u64 = TIB;
