//! IBM Power `pseries` guests (`qemu-system-ppc64 -M pseries`): their DMA windows
//! against the host's sPAPR TCE container.
//!
//! A pseries guest always has a guest-visible IOMMU. Each PCI host bridge (PHB,
//! QEMU's `spapr-pci-host-bridge`) gives its devices DMA windows: the default 32-bit
//! window (`dma_win_addr`, `dma_win_size`, 4 KiB TCEs) that exists from reset, and,
//! with `ddw=on`, one 64-bit window the guest creates itself (RTAS
//! `ibm,create-pe-dma-window`) at `dma64_win_addr`, normally big enough to map all of
//! its RAM. Guest RAM is not mapped 1:1 as with type1: QEMU mirrors every guest window
//! into the host container as a host window of the same position and size
//! (`VFIO_IOMMU_SPAPR_TCE_CREATE`) and replays the guest's TCEs into it. So the
//! question before the VM starts is whether the host can create each window where
//! the guest has it. The host's answer is the `iova::spapr` model of the kernel
//! (window count, page sizes, table levels, sizes, placement); this module adds what
//! QEMU and the guest ask of it:
//!
//! - the PHB properties and their defaults (`hw/ppc/spapr_pci.c`): `dma_win_addr` 0,
//!   `dma_win_size` 1 GiB, `dma64_win_addr` `0x0800_0000_0000_0000`, `ddw` on,
//!   `pgsz` 4K|64K|2M|16M (since machine type 4.2);
//! - the guest's 64-bit window (`spapr_rtas_ddw.c`, and Linux's `enable_ddw` in
//!   `arch/powerpc/platforms/pseries/iommu.c`): the largest page size the PHB offers
//!   (as the LoPAPR query mask can express it), RAM's end rounded up to a power of
//!   two, or a smaller window when the hypervisor's largest block (2^37 TCEs in QEMU)
//!   cannot cover it;
//! - how QEMU creates the host window (`vfio_spapr_create_window`, `hw/vfio/spapr.c`):
//!   the host TCE page is the largest the host supports that is no larger than the
//!   guest's page and the RAM backing's page; the table levels are guessed from the
//!   host's page size and raised one by one until the kernel accepts; the window the
//!   host returns must start where the guest's does.
//!
//! The 32-bit window is created at machine reset, before the guest runs: a failure
//! stops QEMU at start. The 64-bit window is created when the guest's driver asks for
//! 64-bit DMA: a failure stops QEMU then ("vfio: DMA mapping failed, unable to
//! continue").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use iova::spapr::{SpaprConfig, SpaprContainer, SpaprInfo, SpaprSpace, SpaprVersion};

use crate::qemu_cmdline::{
    Accel, DeviceClass, IGNORED_FLAGS, IGNORED_OBJECTS, IGNORED_WITH_ARG, QemuError, QemuVersion,
    device_class, parse_qemu_size, split_opts,
};

/// QEMU's `dma_win_size` default: the 32-bit window is `[0, 1 GiB)`.
pub const DEFAULT_DMA_WIN_SIZE: u64 = 0x4000_0000;
/// QEMU's `dma64_win_addr` default (`SPAPR_PCI_DMA64_START`, 2^59).
pub const DEFAULT_DMA64_WIN_ADDR: u64 = 0x0800_0000_0000_0000;
/// QEMU's `pgsz` default since machine type 4.2: 4K | 64K | 2M | 16M.
pub const DEFAULT_PGSZ: u64 = 0x0121_1000;
/// The 32-bit window's TCE page shift (`SPAPR_TCE_PAGE_SHIFT`).
pub const DMA32_PAGE_SHIFT: u32 = 12;
/// The TCEs QEMU's `ibm,query-pe-dma-window` reports as the largest block (2^37).
pub const QEMU_LARGEST_BLOCK: u64 = 1 << 37;
/// QEMU's default guest RAM for pseries (`default_ram_size`, 512 MiB).
pub const DEFAULT_RAM: u64 = 512 << 20;
/// Page sizes the LoPAPR DDW query can tell a guest (4K, 64K, 2M, 16M, 32M, 64M,
/// 128M, 256M, 16G); the guest picks the largest of them its PHB offers.
const QUERY_SHIFTS: [u32; 9] = [12, 16, 21, 24, 25, 26, 27, 28, 34];

/// The DMA properties of one `spapr-pci-host-bridge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhbDma {
    /// `dma_win_addr`: where the 32-bit window starts.
    pub dma_win_addr: u64,
    /// `dma_win_size`: the 32-bit window's size.
    pub dma_win_size: u64,
    /// `dma64_win_addr`: where the guest's 64-bit window starts.
    pub dma64_win_addr: u64,
    /// `ddw`: whether the guest may create a 64-bit window.
    pub ddw: bool,
    /// `pgsz`: the TCE page sizes offered to the guest (bit n = 2^n bytes).
    pub pgsz: u64,
}

impl Default for PhbDma {
    fn default() -> Self {
        PhbDma {
            dma_win_addr: 0,
            dma_win_size: DEFAULT_DMA_WIN_SIZE,
            dma64_win_addr: DEFAULT_DMA64_WIN_ADDR,
            ddw: true,
            pgsz: DEFAULT_PGSZ,
        }
    }
}

impl PhbDma {
    /// The guest's 64-bit window page shift: the largest page of `pgsz` the LoPAPR
    /// query can express, or `None` when there is none (the guest cannot create one).
    pub fn ddw_page_shift(&self) -> Option<u32> {
        QUERY_SHIFTS
            .iter()
            .copied()
            .filter(|s| self.pgsz & (1u64 << s) != 0)
            .max()
    }

    fn set(&mut self, input: &str, key: &str, value: &str) -> Result<(), QemuError> {
        match key {
            "dma_win_addr" => self.dma_win_addr = uint_prop(input, value)?,
            "dma_win_size" => self.dma_win_size = uint_prop(input, value)?,
            "dma64_win_addr" => self.dma64_win_addr = uint_prop(input, value)?,
            "pgsz" => self.pgsz = uint_prop(input, value)?,
            "ddw" => self.ddw = bool_prop(input, value)?,
            "numa_node" => {}
            _ => {
                return Err(unmodelled(
                    input,
                    format!("spapr-pci-host-bridge property '{key}' is not modelled"),
                ));
            }
        }
        Ok(())
    }

    /// The properties whose value differs from `d`, as QEMU spells them.
    fn diff(&self, d: &PhbDma) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if self.dma_win_addr != d.dma_win_addr {
            v.push(("dma_win_addr", format!("{:#x}", self.dma_win_addr)));
        }
        if self.dma_win_size != d.dma_win_size {
            v.push(("dma_win_size", format!("{:#x}", self.dma_win_size)));
        }
        if self.dma64_win_addr != d.dma64_win_addr {
            v.push(("dma64_win_addr", format!("{:#x}", self.dma64_win_addr)));
        }
        if self.ddw != d.ddw {
            v.push(("ddw", if self.ddw { "on" } else { "off" }.to_owned()));
        }
        if self.pgsz != d.pgsz {
            v.push(("pgsz", format!("{:#x}", self.pgsz)));
        }
        v
    }
}

/// One PHB of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phb {
    /// `index` (0 is the machine's own PHB, bus `pci.0`).
    pub index: u32,
    /// `id=` of a PHB given with `-device` (its bus is `ID.0`).
    pub id: Option<String>,
    /// Its DMA properties.
    pub dma: PhbDma,
}

/// An assigned device and the PHB it sits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assigned {
    /// The host device (`host=` or the last part of `sysfsdev=`).
    pub device: String,
    /// The PHB's index.
    pub phb: u32,
}

/// A pseries VM definition, read from a QEMU command line or a preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PseriesVm {
    /// argv\[0\] (or the preset's name).
    pub binary: String,
    /// The machine type as written (`pseries`, `pseries-9.2`).
    pub machine_name: String,
    /// The accelerator.
    pub accel: Accel,
    /// Guest RAM in bytes, at guest-physical 0.
    pub ram: u64,
    /// The PHBs, index 0 first.
    pub phbs: Vec<Phb>,
    /// The assigned devices.
    pub assigned: Vec<Assigned>,
    /// What was ignored or assumed.
    pub notes: Vec<String>,
}

fn bad(input: impl Into<String>, message: impl Into<String>) -> QemuError {
    QemuError::bad(input, message)
}

fn unmodelled(input: impl Into<String>, message: impl Into<String>) -> QemuError {
    QemuError::unmodelled(input, message)
}

/// A qdev integer property: decimal, `0x` hex or `0` octal (`qemu_strtou64`, base 0);
/// no size suffixes.
fn uint_prop(input: &str, text: &str) -> Result<u64, QemuError> {
    let t = text.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse::<u64>().ok()
    };
    r.ok_or_else(|| {
        bad(
            input,
            format!("'{text}' is not an integer (decimal or 0x hex)"),
        )
    })
}

fn bool_prop(input: &str, text: &str) -> Result<bool, QemuError> {
    match text {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(bad(input, format!("'{text}' is not on or off"))),
    }
}

/// Whether argv\[0\] names QEMU's 64-bit Power emulator.
pub fn is_ppc64_binary(argv0: &str) -> bool {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    base.starts_with("qemu-system-ppc64")
}

/// `-machine` properties that cannot change the DMA windows.
const IGNORED_MACHINE_PROPS: &[&str] = &[
    "accel",
    "x-vof",
    "ic-mode",
    "kernel-irqchip",
    "max-cpu-compat",
    "resize-hpt",
    "vsmt",
    "usb",
    "graphics",
    "dump-guest-core",
    "mem-merge",
    "kvm-type",
    "dt-compatible",
    "suppress-vmdesc",
    "firmware",
];

/// pseries devices that cannot change the DMA windows of a PHB (VIO devices have their
/// own TCE tables, which are not VFIO's).
const IGNORED_PSERIES_DEVICES: &[&str] = &[
    "spapr-vscsi",
    "spapr-vlan",
    "spapr-vty",
    "spapr-nvram",
    "spapr-rng",
    "spapr-tpm-proxy",
];

impl PseriesVm {
    /// The `qemu-pseries` preset: a default pseries machine with `ram` bytes and the
    /// given devices on its own PHB.
    pub fn preset(ram: u64, devices: &[String]) -> PseriesVm {
        PseriesVm {
            binary: "qemu-pseries".to_owned(),
            machine_name: "pseries".to_owned(),
            accel: Accel::Tcg,
            ram,
            phbs: vec![Phb {
                index: 0,
                id: None,
                dma: PhbDma::default(),
            }],
            assigned: devices
                .iter()
                .map(|d| Assigned {
                    device: d.clone(),
                    phb: 0,
                })
                .collect(),
            notes: Vec::new(),
        }
    }

    /// The PHB with this index.
    pub fn phb(&self, index: u32) -> Option<&Phb> {
        self.phbs.iter().find(|p| p.index == index)
    }

    /// Reads a `qemu-system-ppc64 -M pseries` command line. `qemu` is the release
    /// when known (a versioned machine type newer than it is refused).
    pub fn parse(argv: &[String], qemu: Option<QemuVersion>) -> Result<PseriesVm, QemuError> {
        let Some(bin) = argv.first() else {
            return Err(bad(
                "command line",
                "empty: give the QEMU command line after --",
            ));
        };
        if !is_ppc64_binary(bin) {
            return Err(bad(bin, "not qemu-system-ppc64"));
        }
        let mut opts: Vec<(String, Option<String>)> = Vec::new();
        let mut i = 1usize;
        while let Some(tok) = argv.get(i) {
            i = i.saturating_add(1);
            let Some(name) = tok
                .strip_prefix("--")
                .or_else(|| tok.strip_prefix('-'))
                .filter(|n| !n.is_empty())
            else {
                opts.push(("hda".to_owned(), Some(tok.clone())));
                continue;
            };
            if IGNORED_FLAGS.contains(&name) || name == "mem-prealloc" {
                opts.push((name.to_owned(), None));
                continue;
            }
            if IGNORED_WITH_ARG.contains(&name) || name == "prom-env" {
                let Some(arg) = argv.get(i) else {
                    return Err(bad(tok, "needs an argument"));
                };
                i = i.saturating_add(1);
                opts.push((name.to_owned(), Some(arg.clone())));
                continue;
            }
            return Err(match name {
                "version" | "help" | "h" => bad(tok, "not a VM command line"),
                _ => bad(tok, "unknown QEMU option"),
            });
        }

        let mut machine: Vec<(String, String)> = Vec::new();
        let mut mem: Option<(String, Vec<(String, String)>)> = None;
        let mut accel = Accel::Tcg;
        let mut backends: BTreeMap<String, u64> = BTreeMap::new();
        let mut globals = PhbDma::default();
        let mut global_inputs: Vec<(String, String, String)> = Vec::new();
        let mut phb_devices: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut vfio: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut notes = Vec::new();

        let kv = |text: &str, implied: &str| -> Vec<(String, String)> {
            split_opts(text)
                .into_iter()
                .filter(|o| !(o.key.is_none() && o.value.is_empty()))
                .map(|o| (o.key.unwrap_or_else(|| implied.to_owned()), o.value))
                .collect()
        };
        let get = |items: &[(String, String)], key: &str| -> Option<String> {
            items
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };

        for (name, arg) in &opts {
            let a = arg.as_deref().unwrap_or("");
            let input = format!("-{name} {a}").trim_end().to_owned();
            match name.as_str() {
                "enable-kvm" => accel = Accel::Kvm,
                "accel" => accel = accel_of(&input, get(&kv(a, "accel"), "accel").as_deref())?,
                "machine" | "M" => machine.extend(kv(a, "type")),
                "m" => mem = Some((input.clone(), kv(a, "size"))),
                "object" => {
                    let o = kv(a, "qom-type");
                    let ty = get(&o, "qom-type").unwrap_or_default();
                    let anonymous = ty == "memory-backend-ram"
                        || (ty == "memory-backend-memfd"
                            && get(&o, "hugetlb").is_none_or(|v| v == "off"));
                    if anonymous {
                        let id = get(&o, "id")
                            .ok_or_else(|| bad(&input, "a memory backend needs id="))?;
                        let size = get(&o, "size")
                            .ok_or_else(|| bad(&input, "a memory backend needs size="))?;
                        let size = parse_qemu_size(&size, 1)
                            .ok_or_else(|| bad(&input, format!("'{size}' is not a QEMU size")))?;
                        backends.insert(id, size);
                    } else if ty.starts_with("memory-backend-") {
                        return Err(unmodelled(
                            &input,
                            "a file or huge-page memory backend: its page size decides the \
                             host TCE page size QEMU uses, and it is not modelled",
                        ));
                    } else if !IGNORED_OBJECTS.contains(&ty.as_str()) {
                        return Err(unmodelled(
                            &input,
                            format!("object type '{ty}' is not modelled"),
                        ));
                    }
                }
                "device" => {
                    let o = kv(a, "driver");
                    let drv = get(&o, "driver").unwrap_or_default();
                    match drv.as_str() {
                        "spapr-pci-host-bridge" => phb_devices.push((input.clone(), o)),
                        "vfio-pci" => vfio.push((input.clone(), o)),
                        d if matches!(
                            device_class(d),
                            Some(DeviceClass::NoEffect | DeviceClass::Vga)
                        ) || IGNORED_PSERIES_DEVICES.contains(&d) =>
                        {
                            notes.push(format!("ignored {input}: cannot change the DMA windows"));
                        }
                        _ => {
                            return Err(unmodelled(
                                &input,
                                format!("device '{drv}' is not modelled for pseries"),
                            ));
                        }
                    }
                }
                "global" => {
                    let Some((lhs, value)) = a.split_once('=') else {
                        return Err(bad(&input, "expected DRIVER.PROPERTY=VALUE"));
                    };
                    let lhs = lhs.strip_prefix("driver=").unwrap_or(lhs);
                    match lhs.split_once('.') {
                        Some(("spapr-pci-host-bridge", prop)) => {
                            globals.set(&input, prop, value)?;
                            global_inputs.push((input.clone(), prop.to_owned(), value.to_owned()));
                        }
                        _ => {
                            return Err(unmodelled(
                                &input,
                                "this global property is not modelled for pseries",
                            ));
                        }
                    }
                }
                "numa" | "readconfig" | "set" | "mem-path" | "plugin" | "compat"
                | "device-tree" | "machine-opts" | "option-rom" | "acpitable" | "sgx-epc"
                | "xen-domid" => {
                    return Err(unmodelled(
                        &input,
                        "this option is not modelled for pseries",
                    ));
                }
                _ => {}
            }
        }

        // The machine.
        let machine_name = match get(&machine, "type") {
            Some(t) if !t.is_empty() => t,
            _ => {
                notes.push("no -M: qemu-system-ppc64's default machine is pseries".to_owned());
                "pseries".to_owned()
            }
        };
        if machine_name != "pseries" {
            let Some(v) = machine_name
                .strip_prefix("pseries-")
                .and_then(QemuVersion::parse)
            else {
                return Err(unmodelled(
                    format!("-machine {machine_name}"),
                    "only the pseries machine (pseries, pseries-X.Y) is modelled for ppc64",
                ));
            };
            if v < QemuVersion::new(5, 0) {
                return Err(unmodelled(
                    format!("-machine {machine_name}"),
                    "pseries machine types before 5.0 are not modelled",
                ));
            }
            if let Some(q) = qemu
                && v > q
            {
                return Err(bad(
                    format!("-machine {machine_name}"),
                    format!("QEMU {q} has no machine type {machine_name}"),
                ));
            }
        }
        let mut memory_backend = None;
        for (k, v) in &machine {
            let input = format!("-machine {k}={v}");
            match k.as_str() {
                "type" => {}
                "accel" => accel = accel_of(&input, Some(v))?,
                "memory-backend" => memory_backend = Some(v.clone()),
                k if IGNORED_MACHINE_PROPS.contains(&k) || k.starts_with("cap-") => {}
                _ => {
                    return Err(unmodelled(
                        &input,
                        "this pseries machine property is not modelled",
                    ));
                }
            }
        }

        // RAM.
        let mut ram = None;
        if let Some((input, m)) = &mem {
            for (k, v) in m {
                match k.as_str() {
                    "size" => {
                        ram = Some(
                            parse_qemu_size(v, 1 << 20)
                                .ok_or_else(|| bad(input, format!("'{v}' is not a QEMU size")))?,
                        );
                    }
                    "slots" => {}
                    "maxmem" => {
                        let max = parse_qemu_size(v, 1)
                            .ok_or_else(|| bad(input, format!("'{v}' is not a QEMU size")))?;
                        let size = match get(m, "size") {
                            Some(s) => parse_qemu_size(&s, 1 << 20),
                            None => Some(DEFAULT_RAM),
                        };
                        if size.is_none_or(|s| max > s) {
                            return Err(unmodelled(
                                input,
                                "maxmem on pseries: the guest's 64-bit window must cover the \
                                 memory hot-plug area, whose end is not modelled",
                            ));
                        }
                    }
                    _ => return Err(bad(input, format!("unknown -m parameter '{k}'"))),
                }
            }
        }
        if let Some(id) = &memory_backend {
            let size = *backends.get(id).ok_or_else(|| {
                bad(
                    format!("-machine memory-backend={id}"),
                    "no anonymous memory backend with this id",
                )
            })?;
            if ram.is_some_and(|r| r != size) {
                return Err(bad(
                    format!("-machine memory-backend={id}"),
                    "-m and the memory backend's size differ",
                ));
            }
            ram = Some(size);
        }
        let ram = match ram {
            Some(r) => r,
            None => {
                notes.push("no -m: QEMU's pseries default of 512 MiB of RAM".to_owned());
                DEFAULT_RAM
            }
        };
        if ram == 0 {
            return Err(bad("-m", "no RAM"));
        }

        // PHBs: the machine's own (index 0) and the -device ones; -global applies to
        // all, a -device's own properties win.
        let mut phbs = vec![Phb {
            index: 0,
            id: None,
            dma: globals,
        }];
        for (input, o) in &phb_devices {
            let index =
                get(o, "index").ok_or_else(|| bad(input, "spapr-pci-host-bridge needs index="))?;
            let index = u32::try_from(uint_prop(input, &index)?)
                .map_err(|_| bad(input, "index out of range"))?;
            if phbs.iter().any(|p| p.index == index) {
                return Err(bad(
                    input,
                    format!("a PHB with index {index} exists already"),
                ));
            }
            let mut dma = globals;
            for (k, v) in o {
                if matches!(k.as_str(), "driver" | "index" | "id") {
                    continue;
                }
                dma.set(input, k, v)?;
            }
            phbs.push(Phb {
                index,
                id: get(o, "id"),
                dma,
            });
        }
        for p in &phbs {
            if p.dma.dma_win_size == 0 {
                return Err(unmodelled(
                    "spapr-pci-host-bridge.dma_win_size=0",
                    "a PHB without a 32-bit window is not modelled",
                ));
            }
        }

        // Assigned devices.
        let mut assigned = Vec::new();
        for (input, o) in &vfio {
            let dev = match (get(o, "host"), get(o, "sysfsdev")) {
                (Some(h), None) => h,
                (None, Some(s)) => s
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                _ => return Err(bad(input, "vfio-pci needs host= or sysfsdev=")),
            };
            let phb = match get(o, "bus") {
                None => 0,
                Some(b) if b == "pci.0" => 0,
                Some(b) => {
                    let id = b.strip_suffix(".0").unwrap_or("");
                    phbs.iter()
                        .find(|p| p.id.as_deref() == Some(id) && !id.is_empty())
                        .map(|p| p.index)
                        .ok_or_else(|| {
                            unmodelled(
                                input,
                                format!(
                                    "bus '{b}' is not the root bus of a PHB (pci.0 or ID.0 of a \
                                     -device spapr-pci-host-bridge,id=ID): bridges are not modelled"
                                ),
                            )
                        })?
                }
            };
            assigned.push(Assigned { device: dev, phb });
        }
        if accel == Accel::Kvm {
            notes.push(
                "KVM: QEMU also hands each window to KVM (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE); \
                 that step is not modelled"
                    .to_owned(),
            );
        }
        Ok(PseriesVm {
            binary: bin.clone(),
            machine_name,
            accel,
            ram,
            phbs,
            assigned,
            notes,
        })
    }
}

fn accel_of(input: &str, v: Option<&str>) -> Result<Accel, QemuError> {
    match v.unwrap_or("").split(':').next().unwrap_or("") {
        "tcg" => Ok(Accel::Tcg),
        "kvm" => Ok(Accel::Kvm),
        other => Err(unmodelled(
            input,
            format!("accelerator '{other}' is not modelled (tcg, kvm)"),
        )),
    }
}

/// The host's side: what `VFIO_IOMMU_SPAPR_TCE_GET_INFO` says for a group, and the
/// host kernel's page size (QEMU's `qemu_real_host_page_size()`, which is also the
/// RAM backing's page size for anonymous memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSpapr {
    /// The GET_INFO answer.
    pub info: SpaprInfo,
    /// The host's page size in bytes (4 KiB or 64 KiB on Power).
    pub page_size: u64,
}

/// Which guest window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// The default 32-bit window (exists from reset).
    Dma32,
    /// The 64-bit window the guest creates.
    Dma64,
}

impl WindowKind {
    /// `dma32` or `dma64`.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Dma32 => "dma32",
            WindowKind::Dma64 => "dma64",
        }
    }

    /// When a failure shows: `start` (machine reset) or `guest-boot` (when the
    /// guest creates the window).
    pub fn when(self) -> &'static str {
        match self {
            WindowKind::Dma32 => "start",
            WindowKind::Dma64 => "guest-boot",
        }
    }
}

/// One `VFIO_IOMMU_SPAPR_TCE_CREATE` QEMU sends for a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateAttempt {
    /// Table levels asked for.
    pub levels: u32,
    /// The host's answer: `ok 0xSTART` or the errno name.
    pub answer: String,
}

/// One guest window against one group's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowCheck {
    /// The PHB index.
    pub phb: u32,
    /// The host IOMMU group.
    pub group: u32,
    /// Which window.
    pub window: WindowKind,
    /// Where the guest has it.
    pub start: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The guest's TCE page shift.
    pub guest_page_shift: u32,
    /// The host TCE page shift QEMU asks for (`None` when the host has none that fits).
    pub host_page_shift: Option<u32>,
    /// The creates QEMU sends, in order.
    pub attempts: Vec<CreateAttempt>,
    /// Whether the host window is created where the guest's is.
    pub ok: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// The verdict for a pseries VM on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PseriesReport {
    /// True when every window of every assigned device's PHB can be created.
    pub ok: bool,
    /// Per PHB, group and window.
    pub windows: Vec<WindowCheck>,
    /// Notes (the guest's choices, assumptions).
    pub notes: Vec<String>,
}

/// The guest's 64-bit window for a PHB and RAM size: `(page_shift, size)`, or `None`
/// (with the reason) when the guest creates none.
pub fn guest_ddw(dma: &PhbDma, ram: u64) -> Result<(u32, u64), String> {
    if !dma.ddw {
        return Err("ddw=off: the guest has only the 32-bit window".to_owned());
    }
    let Some(shift) = dma.ddw_page_shift() else {
        return Err(format!(
            "pgsz {:#x} offers no page size the DDW query can express: the guest keeps the \
             32-bit window",
            dma.pgsz
        ));
    };
    // order_base_2 of the end of RAM (RAM starts at 0).
    let mut len = 64 - (ram.saturating_sub(1)).leading_zeros();
    if ram <= 1 {
        len = 0;
    }
    if len < shift {
        return Err(format!(
            "RAM ({ram:#x} bytes) is smaller than one {}-byte page: not modelled",
            1u64 << shift
        ));
    }
    // Linux enable_ddw: a window the largest block cannot cover is cut to it.
    let tces = len - shift;
    if tces >= 64 || (1u64 << tces) > QEMU_LARGEST_BLOCK {
        len = QEMU_LARGEST_BLOCK.trailing_zeros() + shift;
    }
    let size = 1u64
        .checked_shl(len)
        .filter(|_| len < 64)
        .ok_or_else(|| "the 64-bit window would not fit in 64 bits".to_owned())?;
    Ok((shift, size))
}

/// QEMU's table-level guess (`vfio_spapr_create_window`): the levels to start from
/// and the most it tries, for a window of `size` bytes of 2^`shift` TCEs on a host
/// with 2^`host_page_shift`-byte pages.
pub fn qemu_levels(size: u64, shift: u32, host_page_shift: u32) -> (u32, u32) {
    // `entries` is an `unsigned` (32 bits) in QEMU; ctz64(0) is 64.
    let entries = size.checked_shr(shift).unwrap_or(0) & 0xffff_ffff;
    let bits_total = entries.wrapping_mul(8).trailing_zeros();
    let per_level = host_page_shift.saturating_add(8).max(1);
    let mut levels = bits_total / per_level;
    if bits_total % per_level != 0 {
        levels = levels.saturating_add(1);
    }
    let max = (64u32.saturating_sub(shift)) / host_page_shift.max(1);
    (levels, max)
}

fn human(bytes: u64) -> String {
    iova::units::human_bytes(u128::from(bytes))
}

/// Creates one guest window in the host model as QEMU would; the verdict.
fn create_like_qemu(
    c: &mut SpaprContainer,
    host: &HostSpapr,
    kind: WindowKind,
    start: u64,
    size: u64,
    guest_shift: u32,
    ids: (u32, u32),
) -> WindowCheck {
    let mut w = WindowCheck {
        phb: ids.0,
        group: ids.1,
        window: kind,
        start,
        size,
        guest_page_shift: guest_shift,
        host_page_shift: None,
        attempts: Vec::new(),
        ok: false,
        reason: None,
    };
    let host_shift = host.page_size.trailing_zeros();
    // The guest page, capped by the RAM backing's page, then the largest host page
    // size at or below it (QEMU reads the host's sizes from GET_INFO's DDW part).
    let want = guest_shift.min(host_shift);
    let host_sizes = host.info.ddw.map_or(0, |d| d.pgsizes);
    let below = if want >= 63 {
        u64::MAX
    } else {
        (1u64 << (want + 1)) - 1
    };
    let fit = host_sizes & below;
    if fit == 0 {
        w.reason = Some(format!(
            "the host supports no TCE page size of {} or less (GET_INFO pgsizes {:#x}); QEMU \
             refuses: \"Host doesn't support page size\"",
            human(1u64 << want),
            host_sizes
        ));
        return w;
    }
    let shift = 63 - fit.leading_zeros();
    w.host_page_shift = Some(shift);
    let (first, max) = qemu_levels(size, shift, host_shift);
    let mut created = None;
    let mut levels = first;
    while levels <= max {
        match c.create_window(shift, size, levels) {
            Ok(s) => {
                w.attempts.push(CreateAttempt {
                    levels,
                    answer: format!("ok {s:#x}"),
                });
                created = Some(s);
                break;
            }
            Err(e) => w.attempts.push(CreateAttempt {
                levels,
                answer: e.name().to_owned(),
            }),
        }
        levels = levels.saturating_add(1);
    }
    let Some(got) = created else {
        w.reason = Some(create_failure_reason(c, host, &w, shift, size, first, max));
        return w;
    };
    if got != start {
        let _ = c.remove_window(got);
        w.reason = Some(format!(
            "the host creates this window at {got:#x}, the guest has it at {start:#x}; QEMU \
             refuses: \"Host doesn't support DMA window at {start:#x}, must be {got:#x}\""
        ));
        return w;
    }
    w.ok = true;
    w
}

fn create_failure_reason(
    c: &SpaprContainer,
    host: &HostSpapr,
    w: &WindowCheck,
    shift: u32,
    size: u64,
    first: u32,
    max: u32,
) -> String {
    let mut why = Vec::new();
    let host_levels = host.info.ddw.map_or(1, |d| d.levels);
    let windows = host.info.ddw.map_or(1, |d| d.max_dynamic_windows_supported);
    if first > max {
        why.push(format!(
            "QEMU computes {first} table levels but tries at most {max}, so it never asks"
        ));
    } else if first > host_levels {
        why.push(format!(
            "QEMU asks for a {first}-level TCE table ({} TCEs of {} with the host's {} pages; \
             hw/vfio/spapr.c) and the host allows {host_levels} level{}",
            size >> shift,
            human(1u64 << shift),
            human(host.page_size),
            if host_levels == 1 { "" } else { "s" }
        ));
    }
    if !size.is_power_of_two() {
        why.push(format!("the window size {size:#x} is not a power of two"));
    }
    if w.window == WindowKind::Dma64 && windows < 2 {
        why.push(format!(
            "the guest needs 2 windows (32-bit and 64-bit) and the host allows {windows}"
        ));
    }
    let tces = size >> shift;
    if tces > QEMU_LARGEST_BLOCK {
        why.push(format!(
            "{tces} TCEs are more than the host hypervisor's largest block ({QEMU_LARGEST_BLOCK})"
        ));
    }
    if c.poisoned() {
        why.push(
            "the failed create put the device on the host kernel's failed-DDW list: every \
             later window create for it fails until the host reboots"
                .to_owned(),
        );
    }
    let tried: Vec<String> = w
        .attempts
        .iter()
        .map(|a| format!("levels {}: {}", a.levels, a.answer))
        .collect();
    let mut s = format!(
        "the host cannot create a {} window of {}-byte TCEs (TCE_CREATE {})",
        human(size),
        1u64 << shift,
        if tried.is_empty() {
            "never sent".to_owned()
        } else {
            tried.join(", ")
        }
    );
    if !why.is_empty() {
        let _ = write!(s, ": {}", why.join("; "));
    }
    s
}

/// Checks every PHB that has assigned devices: for each of the devices' groups, the
/// windows QEMU creates in that group's container, in QEMU's order (remove the
/// host's default window, the 32-bit window at reset, the 64-bit window when the
/// guest asks). `groups` are `(phb index, group, host facts)`.
pub fn check_pseries(vm: &PseriesVm, groups: &[(u32, u32, HostSpapr)]) -> PseriesReport {
    let mut windows = Vec::new();
    let mut notes = Vec::new();
    for &(phb_index, group, host) in groups {
        let Some(phb) = vm.phb(phb_index) else {
            continue;
        };
        let dma = phb.dma;
        let mut cfg = SpaprConfig::from_info(SpaprVersion::V2, &host.info);
        cfg.host_page_shift = host.page_size.trailing_zeros();
        let mut c = SpaprContainer::new(cfg);
        let ids = (phb_index, group);
        // vfio_spapr_container_init: the host's default window goes first.
        if let Err(e) = c.remove_window(u64::from(host.info.dma32_window_start)) {
            windows.push(WindowCheck {
                phb: phb_index,
                group,
                window: WindowKind::Dma32,
                start: dma.dma_win_addr,
                size: dma.dma_win_size,
                guest_page_shift: DMA32_PAGE_SHIFT,
                host_page_shift: None,
                attempts: Vec::new(),
                ok: false,
                reason: Some(format!(
                    "QEMU cannot remove the host's default window at {:#x} ({}): the \
                     container does not start",
                    host.info.dma32_window_start,
                    e.name()
                )),
            });
            continue;
        }
        let w32 = create_like_qemu(
            &mut c,
            &host,
            WindowKind::Dma32,
            dma.dma_win_addr,
            dma.dma_win_size,
            DMA32_PAGE_SHIFT,
            ids,
        );
        let ok32 = w32.ok;
        windows.push(w32);
        match guest_ddw(&dma, vm.ram) {
            Ok((shift, size)) => {
                let r64 = u128::from(dma.dma64_win_addr) + u128::from(size);
                let r32 = u128::from(dma.dma_win_addr) + u128::from(dma.dma_win_size);
                if u128::from(dma.dma64_win_addr) < r32 && u128::from(dma.dma_win_addr) < r64 {
                    notes.push(format!(
                        "PHB {phb_index}: the 64-bit window overlaps the 32-bit window; QEMU \
                         refuses overlapping windows"
                    ));
                    windows.push(WindowCheck {
                        phb: phb_index,
                        group,
                        window: WindowKind::Dma64,
                        start: dma.dma64_win_addr,
                        size,
                        guest_page_shift: shift,
                        host_page_shift: None,
                        attempts: Vec::new(),
                        ok: false,
                        reason: Some("overlaps the 32-bit window".to_owned()),
                    });
                    continue;
                }
                if !ok32 {
                    notes.push(format!(
                        "PHB {phb_index}, group {group}: the 64-bit window was not tried (the \
                         VM stops at start)"
                    ));
                    continue;
                }
                windows.push(create_like_qemu(
                    &mut c,
                    &host,
                    WindowKind::Dma64,
                    dma.dma64_win_addr,
                    size,
                    shift,
                    ids,
                ));
            }
            Err(why) => notes.push(format!("PHB {phb_index}: {why}")),
        }
    }
    let ok = !windows.is_empty() && windows.iter().all(|w| w.ok);
    PseriesReport { ok, windows, notes }
}

/// A plan for a pseries VM: PHB properties under which every window can be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PseriesPlan {
    /// Whether the proposed VM passes the check.
    pub fits: bool,
    /// What changed and why.
    pub changes: Vec<String>,
    /// The QEMU options that produce it.
    pub options: Vec<String>,
    /// The proposed VM.
    pub vm: PseriesVm,
    /// Its check.
    pub after: PseriesReport,
    /// Other ways out that the plan did not take.
    pub notes: Vec<String>,
}

fn phb_fails(r: &PseriesReport, phb: u32, kind: WindowKind) -> bool {
    r.windows
        .iter()
        .any(|w| w.phb == phb && w.window == kind && !w.ok)
}

/// Proposes PHB properties that fit: the 32-bit window moved to where the host puts
/// it and shrunk (halving) until the host creates it; the 64-bit window moved to the
/// host's position, or, when the host cannot create it at all, `ddw=off` (the guest
/// then maps all DMA through the 32-bit window). Every step is re-checked.
pub fn plan_pseries(vm: &PseriesVm, groups: &[(u32, u32, HostSpapr)]) -> PseriesPlan {
    let mut cur = vm.clone();
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    let indices: Vec<u32> = cur.phbs.iter().map(|p| p.index).collect();
    for index in indices {
        let Some(pos) = cur.phbs.iter().position(|p| p.index == index) else {
            continue;
        };
        let host_of_phb: Vec<HostSpapr> = groups
            .iter()
            .filter(|g| g.0 == index)
            .map(|g| g.2)
            .collect();
        if host_of_phb.is_empty() {
            continue;
        }
        let report = check_pseries(&cur, groups);
        if phb_fails(&report, index, WindowKind::Dma32) {
            let host_start = host_of_phb
                .first()
                .map_or(0, |h| u64::from(h.info.dma32_window_start));
            let mut trial = cur.clone();
            if let Some(p) = trial.phbs.get_mut(pos) {
                p.dma.dma_win_addr = host_start;
            }
            let mut size = cur.phbs.get(pos).map_or(0, |p| p.dma.dma_win_size);
            if !size.is_power_of_two() {
                size = 1u64 << (63 - size.leading_zeros());
            }
            let mut found = None;
            while size >= 1 << 20 {
                if let Some(p) = trial.phbs.get_mut(pos) {
                    p.dma.dma_win_size = size;
                }
                if !phb_fails(&check_pseries(&trial, groups), index, WindowKind::Dma32) {
                    found = Some(size);
                    break;
                }
                size >>= 1;
            }
            if let Some(s) = found {
                let before = cur.phbs.get(pos).map(|p| p.dma).unwrap_or_default();
                if before.dma_win_addr != host_start {
                    changes.push(format!(
                        "PHB {index}: dma_win_addr {:#x} -> {host_start:#x}, where the host \
                         creates a 4 KiB-page window",
                        before.dma_win_addr
                    ));
                }
                if before.dma_win_size != s {
                    changes.push(format!(
                        "PHB {index}: dma_win_size {} -> {}, the largest 32-bit window the host \
                         creates",
                        human(before.dma_win_size),
                        human(s)
                    ));
                }
                cur = trial;
            }
        }
        let report = check_pseries(&cur, groups);
        if phb_fails(&report, index, WindowKind::Dma64) {
            // Placement first: the host's own start for a window it did create.
            let host_start = report
                .windows
                .iter()
                .filter(|w| w.phb == index && w.window == WindowKind::Dma64)
                .flat_map(|w| w.attempts.iter())
                .find_map(|a| a.answer.strip_prefix("ok ").map(str::to_owned))
                .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
            let mut done = false;
            if let Some(h) = host_start {
                let mut trial = cur.clone();
                if let Some(p) = trial.phbs.get_mut(pos) {
                    p.dma.dma64_win_addr = h;
                }
                if !phb_fails(&check_pseries(&trial, groups), index, WindowKind::Dma64) {
                    changes.push(format!(
                        "PHB {index}: dma64_win_addr -> {h:#x}, where the host creates its \
                         64-bit window"
                    ));
                    cur = trial;
                    done = true;
                }
            }
            if !done {
                let mut trial = cur.clone();
                if let Some(p) = trial.phbs.get_mut(pos) {
                    p.dma.ddw = false;
                }
                changes.push(format!(
                    "PHB {index}: ddw=off, the host cannot create the guest's 64-bit window; \
                     the guest maps all DMA through its 32-bit window instead (slower, works)"
                ));
                // The alternative: the most RAM (halving) whose 64-bit window fits.
                let mut ram = cur.ram;
                let mut fits_ram = None;
                while ram >= 256 << 20 {
                    ram >>= 1;
                    let mut t = cur.clone();
                    t.ram = ram;
                    if !phb_fails(&check_pseries(&t, groups), index, WindowKind::Dma64) {
                        fits_ram = Some(ram);
                        break;
                    }
                }
                if let Some(r) = fits_ram {
                    notes.push(format!(
                        "alternatively keep the 64-bit window with at most {} of RAM (-m {}M)",
                        human(r),
                        r >> 20
                    ));
                }
                cur = trial;
            }
        }
    }
    let after = check_pseries(&cur, groups);
    let mut options = Vec::new();
    for p in &cur.phbs {
        let before = vm.phb(p.index).map(|b| b.dma).unwrap_or_default();
        let changed = p.dma.diff(&before);
        for (k, v) in changed {
            if p.index == 0 {
                options.push(format!("-global spapr-pci-host-bridge.{k}={v}"));
            } else {
                options.push(format!(
                    "-device spapr-pci-host-bridge,index={},...,{k}={v}",
                    p.index
                ));
            }
        }
    }
    if cur.phbs.len() > 1 && options.iter().any(|o| o.starts_with("-global")) {
        notes.push(
            "-global applies to every spapr-pci-host-bridge that does not set the property \
             itself"
                .to_owned(),
        );
    }
    PseriesPlan {
        fits: after.ok,
        changes,
        options,
        vm: cur,
        after,
        notes,
    }
}

#[cfg(test)]
mod tests;
