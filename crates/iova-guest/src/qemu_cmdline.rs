//! QEMU command lines: QEMU's own option grammar, read into a [`QemuVm`] that
//! [`crate::qemu_model`] turns into the guest's memory map.
//!
//! The grammar is QEMU's (util/qemu-option.c, util/cutils.c), not the project's number
//! grammar: options are `-name` or `--name`; a parameter list is comma-separated
//! `key=value` items where `,,` is a literal comma, the first item of `-machine`, `-m`,
//! `-cpu`, `-device`, `-object`'s `qom-type`... may omit its key (the *implied* key), a
//! bare `flag` means `flag=on`; sizes are QEMU sizes (`qemu_strtosz`: a decimal or `0x`
//! number, an optional fraction, an optional `B`/`K`/`M`/`G`/`T`/`P`/`E` suffix in any
//! case; for `-m` a number without suffix is MiB).
//!
//! Every option QEMU accepts is in one of three lists here: modelled (it changes the
//! memory map and the model follows it), ignored (it cannot change what VFIO maps:
//! display, chardevs, block devices, networking, ...), or known-but-unmodelled (it can
//! change the map and the model does not follow it: [`QemuError::Unmodelled`], "cannot
//! answer"). An option in none of the lists is unknown to this parser and treated as
//! unmodelled too, so nothing is ever silently ignored. The same holds for `-cpu`
//! properties: modelled (`vendor`, x86 `phys-bits`, `host-phys-bits`,
//! `host-phys-bits-limit`), ignored (on/off feature flags, the value properties listed in
//! `X86_CPU_VALUE_PROPS` and `ARM_CPU_VALUE_PROPS`), or refused (a 32-bit vCPU,
//! `guest-phys-bits` and unknown properties: "cannot answer"; an address-size property
//! on aarch64, which QEMU does not have: bad input).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::CpuVendor;

const MIB: u64 = 1 << 20;

/// A command line this parser refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QemuError {
    /// The command line is malformed or QEMU itself would refuse it (exit 2).
    #[error("{input}: {message}")]
    Bad {
        /// The argument or token at fault, as given.
        input: String,
        /// What is wrong.
        message: String,
    },
    /// The command line uses something that can change the DMA layout and is not
    /// modelled (exit 4, "cannot answer").
    #[error("{input}: cannot answer: {message}")]
    Unmodelled {
        /// The option at fault, as given.
        input: String,
        /// Why it matters.
        message: String,
    },
}

impl QemuError {
    /// A bad input: `input` names it, `message` says what is wrong.
    pub(crate) fn bad(input: impl Into<String>, message: impl Into<String>) -> Self {
        QemuError::Bad {
            input: input.into(),
            message: message.into(),
        }
    }

    /// An input the model does not understand and that could change the answer.
    pub(crate) fn unmodelled(input: impl Into<String>, message: impl Into<String>) -> Self {
        QemuError::Unmodelled {
            input: input.into(),
            message: message.into(),
        }
    }

    /// Whether this is a "cannot answer" rather than bad input.
    pub fn is_unmodelled(&self) -> bool {
        matches!(self, QemuError::Unmodelled { .. })
    }
}

/// A QEMU release, `major.minor` (the micro number does not change layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct QemuVersion {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl QemuVersion {
    /// The oldest release modelled.
    pub const OLDEST: QemuVersion = QemuVersion::new(7, 0);
    /// The newest release modelled (the default when the version is not known).
    pub const NEWEST: QemuVersion = QemuVersion::new(10, 0);

    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        QemuVersion { major, minor }
    }

    /// Parses `7.2`, `7.2.22`, `10.0.2`, or the first line of `qemu-system-* --version`
    /// ("QEMU emulator version 7.2.22 (Debian ...)").
    pub fn parse(text: &str) -> Option<QemuVersion> {
        let t = text.trim();
        let t = t
            .find("version ")
            .map_or(t, |i| &t[i.saturating_add("version ".len())..]);
        let word = t.split_whitespace().next()?;
        let mut parts = word.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_text: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let minor = minor_text.parse().ok()?;
        Some(QemuVersion { major, minor })
    }

    /// Whether the model covers this release.
    pub fn is_modelled(self) -> bool {
        self >= Self::OLDEST && self.major <= Self::NEWEST.major
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The emulator binary's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QemuArch {
    /// `qemu-system-x86_64`.
    X86_64,
    /// `qemu-system-aarch64`.
    Aarch64,
}

/// The machine family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineFamily {
    /// `q35`, `pc-q35-X.Y`.
    Q35,
    /// `pc`, `pc-i440fx-X.Y`.
    Pc,
    /// `virt`, `virt-X.Y` (aarch64).
    Virt,
}

/// A machine type: its family and, for versioned types, the version it pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MachineType {
    /// The family.
    pub family: MachineFamily,
    /// `Some` for a versioned type (`pc-q35-7.0`); `None` for the alias of the newest.
    pub version: Option<QemuVersion>,
}

impl MachineType {
    /// Parses a machine type name for `arch`; `None` when not modelled.
    pub fn parse(arch: QemuArch, name: &str) -> Option<MachineType> {
        let plain = |family| {
            Some(MachineType {
                family,
                version: None,
            })
        };
        let versioned = |family, v: &str| {
            let mut it = v.split('.');
            let major = it.next()?.parse().ok()?;
            let minor = it.next()?.parse().ok()?;
            if it.next().is_some() {
                return None;
            }
            Some(MachineType {
                family,
                version: Some(QemuVersion::new(major, minor)),
            })
        };
        match arch {
            QemuArch::X86_64 => match name {
                "q35" => plain(MachineFamily::Q35),
                "pc" => plain(MachineFamily::Pc),
                _ => {
                    if let Some(v) = name.strip_prefix("pc-q35-") {
                        versioned(MachineFamily::Q35, v)
                    } else if let Some(v) = name.strip_prefix("pc-i440fx-") {
                        versioned(MachineFamily::Pc, v)
                    } else {
                        None
                    }
                }
            },
            QemuArch::Aarch64 => match name {
                "virt" => plain(MachineFamily::Virt),
                _ => versioned(MachineFamily::Virt, name.strip_prefix("virt-")?),
            },
        }
    }

    /// The version whose compat properties apply with QEMU `qemu`: the pinned one, or
    /// the release itself for the unversioned alias.
    pub fn effective_version(&self, qemu: QemuVersion) -> QemuVersion {
        self.version.unwrap_or(qemu)
    }
}

/// The accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// TCG (QEMU's default when no accelerator is named).
    Tcg,
    /// KVM.
    Kvm,
}

/// The vCPU: model, vendor and address-width properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuSpec {
    /// The model name (`qemu64`, `host`, `EPYC-v4`, `max`, `cortex-a57`).
    pub model: String,
    /// `vendor=` given on `-cpu`.
    pub vendor_override: Option<String>,
    /// `phys-bits=N` as given (x86; QEMU's `uint32` property, so any value up to
    /// 2^32-1 reads; 0 means "the default"; QEMU refuses to start outside 32..=52).
    pub phys_bits: Option<u32>,
    /// `host-phys-bits=on|off`; `None` when not given.
    pub host_phys_bits: Option<bool>,
    /// `host-phys-bits-limit=N` (x86; QEMU's `uint8` property; 0 means no limit).
    pub host_phys_bits_limit: Option<u8>,
}

/// A memory backend (`-object memory-backend-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// Its id.
    pub id: String,
    /// Its QOM type.
    pub kind: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a memory device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemDeviceKind {
    /// `pc-dimm`.
    PcDimm,
    /// `nvdimm`.
    Nvdimm,
    /// `virtio-mem-pci`: only plugged blocks are DMA-mapped.
    VirtioMem {
        /// `requested-size`.
        requested: u64,
        /// `block-size` (default 2 MiB).
        block: u64,
    },
}

/// A hot-pluggable memory device in the device-memory region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemDevice {
    /// The device id (or `dimmN` when it has none).
    pub id: String,
    /// What it is.
    pub kind: MemDeviceKind,
    /// Its size (the backend's).
    pub size: u64,
    /// `addr=`, when given.
    pub addr: Option<u64>,
}

/// A guest-visible IOMMU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum Viommu {
    /// `-device intel-iommu`.
    IntelIommu {
        /// `aw-bits=`; `None` for the version's default.
        aw_bits: Option<u8>,
    },
    /// `-device amd-iommu`.
    AmdIommu,
    /// `-device virtio-iommu-pci`.
    VirtioIommu {
        /// `aw-bits=` (QEMU >= 9.0); `None` for the default.
        aw_bits: Option<u8>,
        /// `granule=` (QEMU >= 9.0): `4k`, `8k`, `16k`, `64k` or `host`.
        granule: Option<String>,
    },
    /// `-machine virt,iommu=smmuv3`.
    SmmuV3,
}

impl Viommu {
    /// The name a user writes.
    pub fn name(&self) -> &'static str {
        match self {
            Viommu::IntelIommu { .. } => "intel-iommu",
            Viommu::AmdIommu => "amd-iommu",
            Viommu::VirtioIommu { .. } => "virtio-iommu-pci",
            Viommu::SmmuV3 => "smmuv3",
        }
    }
}

/// A firmware flash drive (`-drive if=pflash` or `-machine pflash0=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pflash {
    /// The unit (0 code, 1 variables).
    pub unit: u32,
    /// Its size when the file could be read, else `None`.
    pub size: Option<u64>,
    /// The file or node, for messages.
    pub source: String,
}

/// A QEMU command line, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QemuVm {
    /// The binary's target.
    pub arch: QemuArch,
    /// argv\[0\].
    pub binary: String,
    /// The machine type.
    pub machine: MachineType,
    /// The machine type as written (`pc-q35-7.0`; the default when not given).
    pub machine_name: String,
    /// Guest RAM (`-m` or the memory backend).
    pub ram: u64,
    /// `-m slots=`.
    pub slots: u32,
    /// `-m maxmem=` (equal to `ram` when not given).
    pub maxmem: u64,
    /// `-machine max-ram-below-4g=`.
    pub max_ram_below_4g: Option<u64>,
    /// `-global q35-pcihost.pci-hole64-size=` / `i440FX-pcihost.`.
    pub pci_hole64_size: Option<u64>,
    /// `-machine highmem=` (virt).
    pub highmem: bool,
    /// The vCPU.
    pub cpu: CpuSpec,
    /// The accelerator.
    pub accel: Accel,
    /// Whether a VGA-compatible device claims 0xa0000-0xbffff.
    pub vga: bool,
    /// `-bios FILE`.
    pub bios: Option<String>,
    /// The size of the `-bios` file, when it could be read.
    pub bios_size: Option<u64>,
    /// pflash drives.
    pub pflash: Vec<Pflash>,
    /// Memory devices, in command-line order.
    pub mem_devices: Vec<MemDevice>,
    /// Guest-visible IOMMUs.
    pub viommus: Vec<Viommu>,
    /// The assigned devices: `vfio-pci` `host=` / `sysfsdev=`.
    pub vfio: Vec<String>,
    /// The guest bus of each assigned device (`bus=`), in the order of `vfio`.
    pub vfio_buses: Vec<Option<String>>,
    /// The ids of the conventional PCI buses (`pci-bridge`, `pcie-pci-bridge`): behind
    /// a vIOMMU, the devices on one share its address space (their requester IDs alias
    /// to the bridge).
    pub conventional_buses: Vec<String>,
    /// Every assigned device uses an iommufd backend (`-object iommufd,id=X` and
    /// `vfio-pci,iommufd=X`): its IOAS has no `vfio_iommu_type1.dma_entry_limit`.
    pub vfio_iommufd: bool,
    /// `-L` directories.
    pub data_dirs: Vec<String>,
    /// Memory backends by id.
    pub backends: BTreeMap<String, Backend>,
    /// What was ignored or assumed, for the report.
    pub notes: Vec<String>,
}

/// One `key=value` item of a parameter list; `key` is `None` for an implied key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptItem {
    /// The key, when written.
    pub key: Option<String>,
    /// The value (`on` for a bare flag that is not the first item).
    pub value: String,
}

/// Splits a QEMU parameter list (`q35,accel=kvm,,x`) into items: `,,` is a literal
/// comma; `key=value`, or a bare word. A bare word in first position is returned with
/// `key: None` (the implied key); elsewhere it means `word=on`.
pub fn split_opts(text: &str) -> Vec<OptItem> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    let mut raw: Vec<String> = Vec::new();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                raw.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    raw.push(cur);
    for (i, r) in raw.into_iter().enumerate() {
        match r.split_once('=') {
            Some((k, v)) => items.push(OptItem {
                key: Some(k.to_owned()),
                value: v.to_owned(),
            }),
            None if i == 0 => items.push(OptItem {
                key: None,
                value: r,
            }),
            None => items.push(OptItem {
                key: Some(r),
                value: "on".to_owned(),
            }),
        }
    }
    items
}

/// A parameter list with the implied key resolved.
#[derive(Debug, Clone, Default)]
struct Opts {
    items: Vec<(String, String)>,
}

impl Opts {
    fn parse(text: &str, implied: &str) -> Opts {
        let items = split_opts(text)
            .into_iter()
            .filter(|i| !(i.key.is_none() && i.value.is_empty()))
            .map(|i| (i.key.unwrap_or_else(|| implied.to_owned()), i.value))
            .collect();
        Opts { items }
    }

    /// The argument of an option QEMU also takes as JSON (`-device`, `-object`: QEMU
    /// reads a `{` argument as a JSON object, which libvirt writes for every device and
    /// object): the same properties as the `key=value` form. Strings stay as they are,
    /// booleans become `on`/`off`, numbers their decimal text; nested objects and
    /// arrays are flattened with dots (`a.b`, `a.0`), as QEMU's `qdict_flatten` does.
    fn parse_or_json(text: &str, implied: &str, input: &str) -> Result<Opts, QemuError> {
        if !text.trim_start().starts_with('{') {
            return Ok(Opts::parse(text, implied));
        }
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| QemuError::bad(input, format!("not a valid JSON object: {e}")))?;
        let mut items = Vec::new();
        flatten_json(input, "", &v, &mut items)?;
        Ok(Opts { items })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn flatten_json(
    input: &str,
    prefix: &str,
    v: &serde_json::Value,
    out: &mut Vec<(String, String)>,
) -> Result<(), QemuError> {
    use serde_json::Value as V;
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        V::Object(m) => {
            for (k, x) in m {
                flatten_json(input, &key(k), x, out)?;
            }
        }
        V::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten_json(input, &key(&i.to_string()), x, out)?;
            }
        }
        _ if prefix.is_empty() => {
            return Err(QemuError::bad(input, "the JSON argument must be an object"));
        }
        V::String(t) => out.push((prefix.to_owned(), t.clone())),
        V::Bool(b) => out.push((prefix.to_owned(), if *b { "on" } else { "off" }.to_owned())),
        V::Number(n) => out.push((prefix.to_owned(), n.to_string())),
        V::Null => {
            return Err(QemuError::bad(
                input,
                format!("property '{prefix}' is null, which QEMU does not accept"),
            ));
        }
    }
    Ok(())
}

/// `-numa`: the guest's RAM split into nodes. The map stays the same (RAM is still
/// one range below and above 4 GiB); QEMU only requires the nodes' memory (`memdev=`
/// backends or legacy `mem=`) to add up to `-m` (`numa_complete_configuration`).
/// `dist`, `cpu` and `hmat-*` entries describe the topology only.
/// Legacy `mem=` is accepted only by machine types up to 5.0 (`numa_mem_supported`),
/// and never mixed with `memdev=` across nodes.
fn numa_fits(
    numa: &[(String, Opts)],
    backends: &BTreeMap<String, Backend>,
    ram: u64,
    machine: &MachineType,
    notes: &mut Vec<String>,
) -> Result<(), QemuError> {
    let legacy = numa.iter().find(|(_, o)| o.get("mem").is_some());
    if let Some((input, _)) = legacy {
        if machine.version.is_none_or(|v| v > QemuVersion::new(5, 0)) {
            return Err(QemuError::bad(
                input.as_str(),
                "QEMU refuses -numa node,mem= with machine types after 5.0: use memdev=",
            ));
        }
        if numa.iter().any(|(_, o)| o.get("memdev").is_some()) {
            return Err(QemuError::bad(
                input.as_str(),
                "QEMU refuses mem= on some nodes and memdev= on others",
            ));
        }
    }
    let mut sum: u64 = 0;
    let mut sized = false;
    for (input, o) in numa {
        match o.get("type").unwrap_or("") {
            "node" => {
                let size = match (o.get("memdev"), o.get("mem")) {
                    (Some(_), Some(_)) => {
                        return Err(QemuError::bad(input.as_str(), "memdev= and mem= together"));
                    }
                    (Some(id), None) => Some(
                        backends
                            .get(id)
                            .ok_or_else(|| {
                                QemuError::bad(
                                    input.as_str(),
                                    format!(
                                        "memdev '{id}': no -object memory-backend-* has this id"
                                    ),
                                )
                            })?
                            .size,
                    ),
                    (None, Some(m)) => Some(size_of(input, m, MIB)?),
                    (None, None) => None,
                };
                if let Some(sz) = size {
                    sized = true;
                    sum = sum.checked_add(sz).ok_or_else(|| {
                        QemuError::bad(input.as_str(), "the nodes' memory passes 2^64 bytes")
                    })?;
                }
            }
            "dist" | "cpu" | "hmat-lb" | "hmat-cache" => {}
            other => {
                return Err(QemuError::bad(
                    input.as_str(),
                    format!("'{other}' is not a -numa type (node, dist, cpu, hmat-lb, hmat-cache)"),
                ));
            }
        }
    }
    if sized && sum != ram {
        return Err(QemuError::bad(
            "-numa",
            format!(
                "the nodes' memory ({sum:#x}) must equal the RAM size ({ram:#x}); QEMU refuses"
            ),
        ));
    }
    if !numa.is_empty() {
        notes.push(
            "-numa: the nodes split the RAM, whose place in the map does not change".to_owned(),
        );
    }
    Ok(())
}

/// QEMU's size grammar (`qemu_strtosz`): `1024`, `0x1000`, `8G`, `1.5g`, `512k`,
/// `2T`. A number without suffix is multiplied by `default_unit` (1 for most sizes,
/// 1 MiB for `-m`). Fractions need a suffix and are truncated to whole bytes, as QEMU
/// does.
pub fn parse_qemu_size(text: &str, default_unit: u64) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        let (digits, unit) = split_suffix(hex, default_unit, true)?;
        let v = u64::from_str_radix(digits, 16).ok()?;
        return v.checked_mul(unit);
    }
    let (num, unit) = split_suffix(t, default_unit, false)?;
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 18 {
        return None;
    }
    if num.contains('.') && (frac.is_empty() || unit == 1) {
        return None;
    }
    let whole = int.parse::<u64>().ok()?.checked_mul(unit)?;
    if frac.is_empty() {
        return Some(whole);
    }
    let f: u128 = frac.parse().ok()?;
    let den = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let part = f.checked_mul(u128::from(unit))? / den;
    whole.checked_add(u64::try_from(part).ok()?)
}

fn split_suffix(t: &str, default_unit: u64, hex: bool) -> Option<(&str, u64)> {
    let last = t.chars().last()?;
    let shift = match last.to_ascii_lowercase() {
        'b' if !hex => Some(0),
        'k' => Some(10),
        'm' => Some(20),
        'g' => Some(30),
        't' => Some(40),
        'p' => Some(50),
        'e' if !hex => Some(60),
        _ => None,
    };
    match shift {
        Some(s) => Some((&t[..t.len().saturating_sub(1)], 1u64 << s)),
        None => Some((t, default_unit)),
    }
}

fn size_of(input: &str, text: &str, default_unit: u64) -> Result<u64, QemuError> {
    parse_qemu_size(text, default_unit).ok_or_else(|| {
        QemuError::bad(
            input,
            format!("'{text}' is not a QEMU size (a number with an optional K/M/G/T suffix)"),
        )
    })
}

fn bool_of(input: &str, text: &str) -> Result<bool, QemuError> {
    match text {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(QemuError::bad(input, format!("'{text}' is not on or off"))),
    }
}

fn bits_of(input: &str, text: &str) -> Result<u8, QemuError> {
    text.parse::<u8>()
        .ok()
        .filter(|b| (1..=64).contains(b))
        .ok_or_else(|| QemuError::bad(input, format!("'{text}' is not a number of bits")))
}

/// QEMU's number grammar for integer properties (`qemu_strtou64` with base 0): decimal,
/// `0x` hexadecimal, or octal with a leading `0`.
fn qemu_uint(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if t.len() > 1 && t.starts_with('0') {
        return u64::from_str_radix(&t[1..], 8).ok();
    }
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// x86 `-cpu` properties that take a value other than on/off and cannot change the
/// memory map (CPUID identification and leaves, timing, Hyper-V ids, topology ids).
pub(crate) const X86_CPU_VALUE_PROPS: &[&str] = &[
    "family",
    "model",
    "stepping",
    "model-id",
    "level",
    "xlevel",
    "xlevel2",
    "min-level",
    "min-xlevel",
    "min-xlevel2",
    "tsc-frequency",
    "tsc-freq",
    "tsc_freq",
    "ucode-rev",
    "lbr-fmt",
    "lbr_fmt",
    "hv-spinlocks",
    "hv-vendor-id",
    "hv-version-id-build",
    "hv-version-id-major",
    "hv-version-id-minor",
    "hv-version-id-spack",
    "hv-version-id-sbranch",
    "hv-version-id-snumber",
    "avx10-version",
    "apic-id",
    "node-id",
    "socket-id",
    "die-id",
    "module-id",
    "core-id",
    "thread-id",
];

/// aarch64 `-cpu` properties that take a value other than on/off and cannot change the
/// memory map (vector lengths, identification, topology ids, reset values).
pub(crate) const ARM_CPU_VALUE_PROPS: &[&str] = &[
    "sve-max-vq",
    "sve-default-vector-length",
    "sme-default-vector-length",
    "midr",
    "mp-affinity",
    "core-count",
    "node-id",
    "socket-id",
    "cluster-id",
    "core-id",
    "thread-id",
    "rvbar",
    "reset-cbar",
    "cntfrq",
];

/// Names a user may write for an aarch64 CPU's address size. QEMU 7.0 to 10.x have no
/// such property on any ARM CPU (target/arm/cpu.c, cpu64.c): QEMU refuses to start.
const ARM_NO_SUCH_ADDRESS_PROPS: &[&str] = &[
    "phys-bits",
    "host-phys-bits",
    "host-phys-bits-limit",
    "pa-bits",
    "pa-size",
    "ipa-bits",
];

/// Reads `-cpu MODEL,prop=value,...`. The model is the first item. Every property is
/// modelled (`vendor`, x86 `phys-bits`, `host-phys-bits`, `host-phys-bits-limit`),
/// known not to change the memory map (feature flags and the value properties listed
/// above), or refused: a 32-bit vCPU (`lm=off`, `aarch64=off`), x86 `guest-phys-bits`
/// and any unknown property are "cannot answer", an address-size property on aarch64 is
/// a property QEMU does not have (bad input, QEMU refuses to start).
fn read_cpu(arch: QemuArch, text: &str) -> Result<CpuSpec, QemuError> {
    let input = format!("-cpu {text}");
    let mut items = split_opts(text).into_iter();
    let model = match items.next() {
        Some(OptItem { key: None, value }) => value,
        Some(OptItem { key: Some(k), .. }) => {
            return Err(QemuError::bad(
                input,
                format!("no CPU model: the first item '{k}=...' must name it"),
            ));
        }
        None => String::new(),
    };
    let mut c = CpuSpec {
        model,
        vendor_override: None,
        phys_bits: None,
        host_phys_bits: None,
        host_phys_bits_limit: None,
    };
    for item in items {
        let Some(raw_key) = item.key else { continue };
        // QEMU's legacy `+feature` / `-feature` spellings.
        let (key, value) = match (raw_key.strip_prefix('+'), raw_key.strip_prefix('-')) {
            (Some(k), _) => (k.to_owned(), "on".to_owned()),
            (_, Some(k)) => (k.to_owned(), "off".to_owned()),
            _ => (raw_key, item.value),
        };
        let is_bool = bool_of("", &value).is_ok();
        let at = format!("-cpu {},{key}={value}", c.model);
        match (arch, key.as_str()) {
            (QemuArch::X86_64, "vendor") => c.vendor_override = Some(value),
            (QemuArch::X86_64, "phys-bits") => {
                let v = qemu_uint(&value)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        QemuError::bad(
                            input.as_str(),
                            format!("phys-bits '{value}' is not a number (QEMU: a uint32)"),
                        )
                    })?;
                c.phys_bits = Some(v);
            }
            (QemuArch::X86_64, "host-phys-bits") => {
                c.host_phys_bits = Some(bool_of(&input, &value)?);
            }
            (QemuArch::X86_64, "host-phys-bits-limit") => {
                let v = qemu_uint(&value)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        QemuError::bad(
                            input.as_str(),
                            format!(
                                "host-phys-bits-limit '{value}' is not a number from 0 to 255 \
                                 (QEMU: a uint8)"
                            ),
                        )
                    })?;
                c.host_phys_bits_limit = Some(v);
            }
            (QemuArch::X86_64, "lm" | "i64") | (QemuArch::Aarch64, "aarch64") => {
                if !bool_of(&input, &value)? {
                    return Err(QemuError::unmodelled(
                        at,
                        "a 32-bit vCPU is not modelled (its physical address width differs)",
                    ));
                }
            }
            (QemuArch::X86_64, "guest-phys-bits") => {
                return Err(QemuError::unmodelled(
                    at,
                    "guest-phys-bits is not modelled (QEMU >= 9.1 refuses to start when it is \
                     outside 32..=phys-bits; older releases have no such property)",
                ));
            }
            (QemuArch::Aarch64, k) if ARM_NO_SUCH_ADDRESS_PROPS.contains(&k) => {
                return Err(QemuError::bad(
                    at,
                    "aarch64 CPUs have no such property in QEMU 7.0 to 10.x, so QEMU refuses \
                     to start; the physical address size is the CPU model's (TCG) or the \
                     host's IPA size (KVM): choose the -cpu model",
                ));
            }
            (QemuArch::X86_64, k) if X86_CPU_VALUE_PROPS.contains(&k) => {}
            (QemuArch::Aarch64, k) if ARM_CPU_VALUE_PROPS.contains(&k) => {}
            // A CPU feature or another on/off property: it cannot move guest memory.
            _ if is_bool => {}
            _ => {
                return Err(QemuError::unmodelled(
                    at,
                    "this CPU property is not modelled (it may change the vCPU's address \
                     width or QEMU may refuse it)",
                ));
            }
        }
    }
    Ok(c)
}

/// Options that take no argument and cannot change what VFIO maps.
pub(crate) const IGNORED_FLAGS: &[&str] = &[
    "S",
    "nographic",
    "no-reboot",
    "no-shutdown",
    "daemonize",
    "snapshot",
    "no-user-config",
    "no-hpet",
    "enable-kvm",
    "full-screen",
    "no-acpi",
    "no-fd-bootchk",
    "win2k-hack",
    "no-quit",
    "only-migratable",
    "preconfig",
    "nodefaults",
    "no-graphic",
];

/// Options that take an argument and cannot change what VFIO maps.
pub(crate) const IGNORED_WITH_ARG: &[&str] = &[
    // A shim for UEFI direct kernel boot (QEMU 10.0 has it), handed over through fw_cfg.
    "shim",
    "name",
    "uuid",
    "smp",
    "display",
    "vnc",
    "spice",
    "serial",
    "parallel",
    "monitor",
    "qmp",
    "qmp-pretty",
    "mon",
    "chardev",
    "netdev",
    "nic",
    "net",
    "blockdev",
    "boot",
    "k",
    "rtc",
    "pidfile",
    "sandbox",
    "msg",
    "trace",
    "d",
    "D",
    "kernel",
    "initrd",
    "append",
    "dtb",
    "smbios",
    "fw_cfg",
    "overcommit",
    "cdrom",
    "hda",
    "hdb",
    "hdc",
    "hdd",
    "fda",
    "fdb",
    "mtdblock",
    "sd",
    "usbdevice",
    "audiodev",
    "audio",
    "runas",
    "chroot",
    "run-with",
    "action",
    "watchdog-action",
    "incoming",
    "loadvm",
    "fsdev",
    "virtfs",
    "iscsi",
    "add-fd",
    "mem-path",
    "mem-prealloc",
    "icount",
    "seed",
    "semihosting-config",
    "g",
    "vga",
    "L",
    "bios",
    "accel",
    "machine",
    "M",
    "m",
    "cpu",
    "object",
    "device",
    "global",
    "drive",
    "readconfig",
    "numa",
    "pflash",
    "set",
    "option-rom",
    "plugin",
    "xen-domid",
    "compat",
    "acpitable",
    "device-tree",
    "sgx-epc",
    "tpmdev",
    "machine-opts",
];

/// What a `-device` type does to the memory map VFIO sees: the one table of device
/// classes (docs/guest-layouts.md). A type not in it cannot be answered (exit 4, named).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceClass {
    /// An assigned device (`vfio-pci`): its group joins the container.
    Assigned,
    /// Adds DMA-mapped guest memory (DIMMs, NVDIMMs, virtio-mem).
    Memory,
    /// A vIOMMU: each device behind it gets its own address space.
    Viommu,
    /// A PCI expander bus (`pxb`, `pxb-pcie`): its windows come from the host bridge's.
    ExpanderBus,
    /// A VGA-compatible device: it takes the legacy window 0xa0000-0xbffff (x86).
    Vga,
    /// No guest memory of its own at start and no legacy window: its BARs (in the PCI
    /// windows, placed by the firmware) are peer-to-peer at most.
    NoEffect,
}

/// The class of every `-device` type the model knows ([`device_class`]).
pub(crate) const DEVICE_CLASSES: &[(&str, DeviceClass)] = &[
    ("vfio-pci", DeviceClass::Assigned),
    // vfio-pci that the guest cannot unplug.
    ("vfio-pci-nohotplug", DeviceClass::Assigned),
    ("pc-dimm", DeviceClass::Memory),
    ("nvdimm", DeviceClass::Memory),
    ("virtio-mem-pci", DeviceClass::Memory),
    ("intel-iommu", DeviceClass::Viommu),
    ("amd-iommu", DeviceClass::Viommu),
    ("virtio-iommu-pci", DeviceClass::Viommu),
    ("virtio-iommu", DeviceClass::Viommu),
    ("pxb", DeviceClass::ExpanderBus),
    ("pxb-pcie", DeviceClass::ExpanderBus),
    // VGA-compatible (they claim 0xa0000-0xbffff). `virtio-vga-gl` and `vhost-user-vga`
    // are `virtio-vga` variants (QEMU's `TYPE_VIRTIO_VGA_BASE`), VGA-compatible like it.
    ("VGA", DeviceClass::Vga),
    ("cirrus-vga", DeviceClass::Vga),
    ("qxl-vga", DeviceClass::Vga),
    ("virtio-vga", DeviceClass::Vga),
    ("virtio-vga-gl", DeviceClass::Vga),
    ("vhost-user-vga", DeviceClass::Vga),
    ("vmware-svga", DeviceClass::Vga),
    // Cannot change what VFIO maps (their BARs are MMIO, placed by the firmware inside
    // the PCI windows, and never DMA-mapped without a p2p request).
    ("virtio-net-pci", DeviceClass::NoEffect),
    ("virtio-net-pci-non-transitional", DeviceClass::NoEffect),
    ("virtio-blk-pci", DeviceClass::NoEffect),
    ("virtio-blk-pci-non-transitional", DeviceClass::NoEffect),
    ("virtio-scsi-pci", DeviceClass::NoEffect),
    ("virtio-serial-pci", DeviceClass::NoEffect),
    ("virtio-rng-pci", DeviceClass::NoEffect),
    ("virtio-balloon-pci", DeviceClass::NoEffect),
    ("virtio-keyboard-pci", DeviceClass::NoEffect),
    ("virtio-mouse-pci", DeviceClass::NoEffect),
    ("virtio-tablet-pci", DeviceClass::NoEffect),
    ("virtio-input-host-pci", DeviceClass::NoEffect),
    ("virtio-9p-pci", DeviceClass::NoEffect),
    ("vhost-user-fs-pci", DeviceClass::NoEffect),
    ("vhost-vsock-pci", DeviceClass::NoEffect),
    ("vhost-user-blk-pci", DeviceClass::NoEffect),
    ("virtio-gpu-pci", DeviceClass::NoEffect),
    ("virtserialport", DeviceClass::NoEffect),
    ("virtconsole", DeviceClass::NoEffect),
    ("scsi-hd", DeviceClass::NoEffect),
    ("scsi-cd", DeviceClass::NoEffect),
    ("scsi-generic", DeviceClass::NoEffect),
    ("scsi-block", DeviceClass::NoEffect),
    ("ide-hd", DeviceClass::NoEffect),
    ("ide-cd", DeviceClass::NoEffect),
    ("nvme", DeviceClass::NoEffect),
    ("nvme-ns", DeviceClass::NoEffect),
    ("e1000", DeviceClass::NoEffect),
    ("e1000e", DeviceClass::NoEffect),
    ("igb", DeviceClass::NoEffect),
    ("rtl8139", DeviceClass::NoEffect),
    ("vmxnet3", DeviceClass::NoEffect),
    ("pcnet", DeviceClass::NoEffect),
    ("qemu-xhci", DeviceClass::NoEffect),
    ("nec-usb-xhci", DeviceClass::NoEffect),
    ("usb-ehci", DeviceClass::NoEffect),
    ("ich9-usb-ehci1", DeviceClass::NoEffect),
    ("ich9-usb-uhci1", DeviceClass::NoEffect),
    ("piix3-usb-uhci", DeviceClass::NoEffect),
    ("usb-tablet", DeviceClass::NoEffect),
    ("usb-kbd", DeviceClass::NoEffect),
    ("usb-mouse", DeviceClass::NoEffect),
    ("usb-storage", DeviceClass::NoEffect),
    ("usb-host", DeviceClass::NoEffect),
    ("usb-hub", DeviceClass::NoEffect),
    ("pcie-root-port", DeviceClass::NoEffect),
    ("pci-bridge", DeviceClass::NoEffect),
    ("pcie-pci-bridge", DeviceClass::NoEffect),
    ("ioh3420", DeviceClass::NoEffect),
    ("x3130-upstream", DeviceClass::NoEffect),
    ("xio3130-downstream", DeviceClass::NoEffect),
    ("ich9-ahci", DeviceClass::NoEffect),
    ("ahci", DeviceClass::NoEffect),
    ("isa-serial", DeviceClass::NoEffect),
    ("pci-serial", DeviceClass::NoEffect),
    ("i6300esb", DeviceClass::NoEffect),
    ("ib700", DeviceClass::NoEffect),
    ("ich9-intel-hda", DeviceClass::NoEffect),
    ("intel-hda", DeviceClass::NoEffect),
    ("hda-duplex", DeviceClass::NoEffect),
    ("hda-output", DeviceClass::NoEffect),
    ("hda-micro", DeviceClass::NoEffect),
    ("AC97", DeviceClass::NoEffect),
    ("tpm-tis", DeviceClass::NoEffect),
    ("tpm-crb", DeviceClass::NoEffect),
    ("pvpanic", DeviceClass::NoEffect),
    ("pvpanic-pci", DeviceClass::NoEffect),
    ("isa-debugcon", DeviceClass::NoEffect),
    ("isa-debug-exit", DeviceClass::NoEffect),
    ("sga", DeviceClass::NoEffect),
    ("edu", DeviceClass::NoEffect),
    ("pci-testdev", DeviceClass::NoEffect),
    ("ramfb", DeviceClass::NoEffect),
    ("bochs-display", DeviceClass::NoEffect),
    ("secondary-vga", DeviceClass::NoEffect),
    // Display devices without the legacy VGA window: their memory is a BAR, mapped
    // (in the PCI hole) only once the guest's firmware assigns it.
    ("qxl", DeviceClass::NoEffect),
    ("virtio-gpu-gl-pci", DeviceClass::NoEffect),
    ("vhost-user-gpu-pci", DeviceClass::NoEffect),
    // Storage, USB, smart-card, sound and other controllers: no guest memory of
    // their own at start, no legacy window.
    ("lsi", DeviceClass::NoEffect),
    ("lsi53c895a", DeviceClass::NoEffect),
    ("lsi53c810", DeviceClass::NoEffect),
    ("megasas", DeviceClass::NoEffect),
    ("megasas-gen2", DeviceClass::NoEffect),
    ("mptsas1068", DeviceClass::NoEffect),
    ("pvscsi", DeviceClass::NoEffect),
    ("am53c974", DeviceClass::NoEffect),
    ("dc390", DeviceClass::NoEffect),
    ("vhost-scsi-pci", DeviceClass::NoEffect),
    ("vhost-user-scsi-pci", DeviceClass::NoEffect),
    ("usb-ccid", DeviceClass::NoEffect),
    ("ccid-card-emulated", DeviceClass::NoEffect),
    ("ccid-card-passthru", DeviceClass::NoEffect),
    ("usb-redir", DeviceClass::NoEffect),
    ("usb-uas", DeviceClass::NoEffect),
    ("usb-bot", DeviceClass::NoEffect),
    ("usb-audio", DeviceClass::NoEffect),
    ("usb-serial", DeviceClass::NoEffect),
    ("usb-braille", DeviceClass::NoEffect),
    ("usb-net", DeviceClass::NoEffect),
    ("usb-wacom-tablet", DeviceClass::NoEffect),
    ("ich9-usb-ehci2", DeviceClass::NoEffect),
    ("ich9-usb-uhci2", DeviceClass::NoEffect),
    ("ich9-usb-uhci3", DeviceClass::NoEffect),
    ("ich9-usb-uhci4", DeviceClass::NoEffect),
    ("ich9-usb-uhci5", DeviceClass::NoEffect),
    ("ich9-usb-uhci6", DeviceClass::NoEffect),
    ("piix4-usb-uhci", DeviceClass::NoEffect),
    ("vt82c686b-usb-uhci", DeviceClass::NoEffect),
    ("pci-ohci", DeviceClass::NoEffect),
    ("floppy", DeviceClass::NoEffect),
    ("isa-fdc", DeviceClass::NoEffect),
    ("ES1370", DeviceClass::NoEffect),
    ("sb16", DeviceClass::NoEffect),
    ("virtio-sound-pci", DeviceClass::NoEffect),
    ("virtio-crypto-pci", DeviceClass::NoEffect),
    ("virtio-net-pci-transitional", DeviceClass::NoEffect),
    ("virtio-blk-pci-transitional", DeviceClass::NoEffect),
    ("virtio-scsi-pci-transitional", DeviceClass::NoEffect),
    ("virtio-scsi-pci-non-transitional", DeviceClass::NoEffect),
    ("virtio-serial-pci-transitional", DeviceClass::NoEffect),
    ("virtio-serial-pci-non-transitional", DeviceClass::NoEffect),
    ("virtio-rng-pci-transitional", DeviceClass::NoEffect),
    ("virtio-rng-pci-non-transitional", DeviceClass::NoEffect),
    ("virtio-balloon-pci-transitional", DeviceClass::NoEffect),
    ("virtio-balloon-pci-non-transitional", DeviceClass::NoEffect),
    ("virtio-9p-pci-transitional", DeviceClass::NoEffect),
    ("virtio-9p-pci-non-transitional", DeviceClass::NoEffect),
    ("vhost-vsock-pci-non-transitional", DeviceClass::NoEffect),
    ("vhost-user-blk-pci-non-transitional", DeviceClass::NoEffect),
    ("vhost-user-fs-pci-non-transitional", DeviceClass::NoEffect),
    (
        "virtio-input-host-pci-non-transitional",
        DeviceClass::NoEffect,
    ),
    ("isa-parallel", DeviceClass::NoEffect),
    // virtio-mmio devices (on virt's virtio-mmio transports): no guest memory.
    ("virtio-serial-device", DeviceClass::NoEffect),
    ("virtio-blk-device", DeviceClass::NoEffect),
    ("virtio-net-device", DeviceClass::NoEffect),
    ("virtio-rng-device", DeviceClass::NoEffect),
    ("virtio-sound-device", DeviceClass::NoEffect),
    ("virtio-gpu-device", DeviceClass::NoEffect),
    ("virtio-keyboard-device", DeviceClass::NoEffect),
    ("virtio-mouse-device", DeviceClass::NoEffect),
    ("virtio-tablet-device", DeviceClass::NoEffect),
    ("virtio-scsi-device", DeviceClass::NoEffect),
    ("usb-mtp", DeviceClass::NoEffect),
    ("vhost-vsock-pci-transitional", DeviceClass::NoEffect),
    ("virtio-balloon-device", DeviceClass::NoEffect),
    ("tpm-tis-device", DeviceClass::NoEffect),
    ("vhost-scsi-pci-transitional", DeviceClass::NoEffect),
    ("vhost-scsi-pci-non-transitional", DeviceClass::NoEffect),
    // The generation ID lives in guest RAM that the firmware reserves.
    ("vmgenid", DeviceClass::NoEffect),
    // Their shared memory (ivshmem) and storage (acpi-erst) is a BAR, mapped in the PCI
    // window once the guest's firmware assigns it, like any emulated BAR.
    ("ivshmem-plain", DeviceClass::NoEffect),
    ("ivshmem-doorbell", DeviceClass::NoEffect),
    ("acpi-erst", DeviceClass::NoEffect),
    // The DMI-to-PCI bridge: a conventional PCI bus (see `conventional_buses`).
    ("i82801b11-bridge", DeviceClass::NoEffect),
    ("ne2k_pci", DeviceClass::NoEffect),
    ("i82550", DeviceClass::NoEffect),
    ("i82551", DeviceClass::NoEffect),
    ("i82557b", DeviceClass::NoEffect),
    ("i82559er", DeviceClass::NoEffect),
    ("smbus-ipmi", DeviceClass::NoEffect),
    ("ipmi-bmc-sim", DeviceClass::NoEffect),
    ("isa-ipmi-kcs", DeviceClass::NoEffect),
    ("isa-ipmi-bt", DeviceClass::NoEffect),
    ("vmcoreinfo", DeviceClass::NoEffect),
];

/// The class of a `-device` type, `None` when the model does not know it.
pub fn device_class(driver: &str) -> Option<DeviceClass> {
    DEVICE_CLASSES
        .iter()
        .find(|(d, _)| *d == driver)
        .map(|(_, c)| *c)
}

/// `-object` types that cannot change the memory map.
pub(crate) const IGNORED_OBJECTS: &[&str] = &[
    "iothread",
    "pr-manager-helper",
    "rng-random",
    "rng-builtin",
    "rng-egd",
    "secret",
    "tls-creds-x509",
    "tls-creds-psk",
    "tls-creds-anon",
    "throttle-group",
    "filter-buffer",
    "filter-dump",
    "filter-mirror",
    "filter-redirector",
    "colo-compare",
    "authz-simple",
    "main-loop",
    "thread-context",
    "cryptodev-backend-builtin",
    "input-linux",
    "can-bus",
];

/// The defaults of a command line: the values QEMU uses when an option is absent.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    nodefaults: bool,
    vga_option: Option<bool>,
}

/// Reads a QEMU command line. `argv[0]` names the binary (`qemu-system-x86_64`,
/// `qemu-system-aarch64`, or a path ending so). `file_size` returns the size of a file
/// named by `-bios` or a pflash drive, when it can be read (the parser itself touches
/// no file system).
pub fn parse_qemu_argv<F>(argv: &[String], file_size: F) -> Result<QemuVm, QemuError>
where
    F: Fn(&str, &[String]) -> Option<u64>,
{
    let Some(bin) = argv.first() else {
        return Err(QemuError::bad(
            "command line",
            "empty: give the QEMU command line after --",
        ));
    };
    let base = bin.rsplit('/').next().unwrap_or(bin);
    let arch = if base.starts_with("qemu-system-x86_64") || base.starts_with("qemu-kvm") {
        QemuArch::X86_64
    } else if base.starts_with("qemu-system-aarch64") {
        QemuArch::Aarch64
    } else if base.starts_with("qemu-system-") {
        return Err(QemuError::unmodelled(
            bin,
            "only qemu-system-x86_64 and qemu-system-aarch64 are modelled",
        ));
    } else {
        return Err(QemuError::bad(
            bin,
            "argv[0] must name the VMM binary (qemu-system-x86_64, qemu-system-aarch64)",
        ));
    };

    // First pass: split argv into (option, argument) pairs, QEMU's way.
    let mut opts: Vec<(String, Option<String>)> = Vec::new();
    let mut i = 1usize;
    while let Some(tok) = argv.get(i) {
        i = i.saturating_add(1);
        let Some(name) = tok
            .strip_prefix("--")
            .or_else(|| tok.strip_prefix('-'))
            .filter(|n| !n.is_empty())
        else {
            // A bare argument is a disk image (`-hda`): it cannot change the map.
            opts.push(("hda".to_owned(), Some(tok.clone())));
            continue;
        };
        if IGNORED_FLAGS.contains(&name) {
            opts.push((name.to_owned(), None));
            continue;
        }
        if IGNORED_WITH_ARG.contains(&name) {
            let Some(arg) = argv.get(i) else {
                return Err(QemuError::bad(tok, "needs an argument"));
            };
            i = i.saturating_add(1);
            opts.push((name.to_owned(), Some(arg.clone())));
            continue;
        }
        return Err(match name {
            "mem-merge" | "no-kvm" | "enable-sgx" | "xen-attach" | "xen-domid-restrict" => {
                QemuError::unmodelled(tok, "this option is not modelled")
            }
            "version" | "help" | "h" => QemuError::bad(tok, "not a VM command line"),
            _ => QemuError::bad(tok, "unknown QEMU option"),
        });
    }

    let mut d = Defaults {
        nodefaults: false,
        vga_option: None,
    };
    let mut machine_opts = Opts::default();
    let mut mem_opts: Option<(String, Opts)> = None;
    let mut cpu_text: Option<String> = None;
    let mut accel = Accel::Tcg;
    let mut vm_notes = Vec::new();
    let mut backends: BTreeMap<String, Backend> = BTreeMap::new();
    let mut devices: Vec<(String, Opts)> = Vec::new();
    let mut hole64: Option<u64> = None;
    let mut hole64_arg: Option<String> = None;
    let mut bios = None;
    let mut data_dirs = Vec::new();
    let mut pflash_drives: Vec<(u32, String)> = Vec::new();
    let mut iommufd_ids: Vec<String> = Vec::new();
    let mut numa: Vec<(String, Opts)> = Vec::new();
    // -blockdev node-name -> (whether the target is a file name, the file or next node).
    let mut blockdevs: BTreeMap<String, (bool, String)> = BTreeMap::new();

    for (name, arg) in &opts {
        let arg_s = arg.as_deref().unwrap_or("");
        let input = format!("-{name} {arg_s}");
        let input = input.trim_end().to_owned();
        match name.as_str() {
            "nodefaults" => d.nodefaults = true,
            "enable-kvm" => accel = Accel::Kvm,
            "accel" => {
                let o = Opts::parse(arg_s, "accel");
                accel = accel_of(&input, o.get("accel").unwrap_or(""))?;
            }
            "machine" | "M" => {
                let o = Opts::parse(arg_s, "type");
                // QEMU sets machine properties by their QOM names, with `_` read as `-`
                // (`kernel_irqchip=split` is `kernel-irqchip`).
                machine_opts
                    .items
                    .extend(o.items.into_iter().map(|(k, v)| (k.replace('_', "-"), v)));
            }
            "m" => {
                let o = Opts::parse(arg_s, "size");
                mem_opts = Some((input.clone(), o));
            }
            "cpu" => cpu_text = Some(arg_s.to_owned()),
            "vga" => d.vga_option = Some(arg_s != "none"),
            "L" => data_dirs.push(arg_s.to_owned()),
            "bios" => bios = Some(arg_s.to_owned()),
            "object" => {
                let o = Opts::parse_or_json(arg_s, "qom-type", &input)?;
                let ty = o.get("qom-type").unwrap_or("");
                if ty == "iommufd" {
                    let id = o
                        .get("id")
                        .ok_or_else(|| QemuError::bad(&input, "an iommufd object needs id="))?;
                    iommufd_ids.push(id.to_owned());
                } else if ty.starts_with("memory-backend-") {
                    let id = o
                        .get("id")
                        .ok_or_else(|| QemuError::bad(&input, "a memory backend needs id="))?;
                    let size_text = o
                        .get("size")
                        .ok_or_else(|| QemuError::bad(&input, "a memory backend needs size="))?;
                    let size = size_of(&input, size_text, 1)?;
                    backends.insert(
                        id.to_owned(),
                        Backend {
                            id: id.to_owned(),
                            kind: ty.to_owned(),
                            size,
                        },
                    );
                } else if !IGNORED_OBJECTS.contains(&ty) {
                    return Err(QemuError::unmodelled(
                        &input,
                        format!("object type '{ty}' is not modelled"),
                    ));
                }
            }
            "device" => {
                let o = Opts::parse_or_json(arg_s, "driver", &input)?;
                devices.push((input.clone(), o));
            }
            "global" => {
                // `DRIVER.PROPERTY=VALUE`, or libvirt's `driver=D,property=P,value=V`.
                let long = Opts::parse(arg_s, "driver");
                let joined;
                let (lhs, value) =
                    match (long.get("driver"), long.get("property"), long.get("value")) {
                        (Some(d), Some(p), Some(v)) => {
                            joined = format!("{d}.{p}");
                            (joined.as_str(), v)
                        }
                        _ => arg_s.split_once('=').ok_or_else(|| {
                            QemuError::bad(
                                &input,
                                "expected DRIVER.PROPERTY=VALUE or driver=D,property=P,value=V",
                            )
                        })?,
                    };
                match lhs {
                    "q35-pcihost.pci-hole64-size" | "i440FX-pcihost.pci-hole64-size" => {
                        hole64 = Some(size_of(&input, value, 1)?);
                        hole64_arg = Some(lhs.to_owned());
                    }
                    l if l.ends_with(".pci-hole64-size") => {
                        return Err(QemuError::unmodelled(
                            &input,
                            "pci-hole64-size of a host bridge other than q35-pcihost or i440FX-pcihost",
                        ));
                    }
                    l if l.starts_with("ICH9-LPC.")
                        || l.starts_with("PIIX4_PM.")
                        || l.starts_with("isa-fdc.")
                        || l.starts_with("kvm-pit.")
                        || l.starts_with("virtio-")
                        || l.starts_with("cfi.pflash01.secure")
                        // TSEG is taken from the top of low RAM only once the firmware
                        // enables it (after start), whatever its size.
                        || l == "mch.extended-tseg-mbytes" =>
                    {
                        vm_notes.push(format!("ignored {input}: cannot change the memory map"));
                    }
                    _ => {
                        return Err(QemuError::unmodelled(
                            &input,
                            "this global property is not modelled",
                        ));
                    }
                }
            }
            "drive" => {
                let o = Opts::parse(arg_s, "file");
                if o.get("if") == Some("pflash") {
                    let unit = match o.get("unit") {
                        Some(u) => u.parse::<u32>().map_err(|_| {
                            QemuError::bad(&input, format!("unit '{u}' is not a number"))
                        })?,
                        None => u32::try_from(pflash_drives.len()).unwrap_or(u32::MAX),
                    };
                    pflash_drives.push((unit, o.get("file").unwrap_or("").to_owned()));
                }
            }
            "blockdev" => {
                // Only to find the file behind a flash device's node name
                // (`-machine pflash0=NODE`, as libvirt writes it).
                if let Ok(o) = Opts::parse_or_json(arg_s, "driver", &input) {
                    if let Some(node) = o.get("node-name") {
                        let next = o
                            .get("filename")
                            .map(|f| (true, f))
                            .or(o.get("file").map(|f| (false, f)));
                        if let Some((is_file, target)) = next {
                            blockdevs.insert(node.to_owned(), (is_file, target.to_owned()));
                        }
                    }
                }
            }
            "pflash" => {
                let unit = u32::try_from(pflash_drives.len()).unwrap_or(u32::MAX);
                pflash_drives.push((unit, arg_s.to_owned()));
            }
            "numa" => numa.push((input.clone(), Opts::parse(arg_s, "type"))),
            "readconfig" | "set" | "option-rom" | "plugin" | "xen-domid" | "compat"
            | "acpitable" | "device-tree" | "sgx-epc" | "machine-opts" | "mem-path"
            | "mem-prealloc" => {
                if matches!(name.as_str(), "mem-path" | "mem-prealloc") {
                    vm_notes.push(format!(
                        "ignored {input}: it changes the backing, not the map"
                    ));
                } else if name == "acpitable" {
                    vm_notes.push(format!("ignored {input}: ACPI tables are not DMA-mapped"));
                } else {
                    return Err(QemuError::unmodelled(&input, "this option is not modelled"));
                }
            }
            _ => {}
        }
    }

    // The machine.
    let default_machine = match arch {
        QemuArch::X86_64 => "pc",
        QemuArch::Aarch64 => "",
    };
    let machine_name = machine_opts
        .get("type")
        .unwrap_or(default_machine)
        .to_owned();
    if machine_name.is_empty() {
        return Err(QemuError::bad(
            bin.as_str(),
            "qemu-system-aarch64 has no default machine: give -machine virt",
        ));
    }
    let machine = MachineType::parse(arch, &machine_name).ok_or_else(|| {
        let real = match arch {
            QemuArch::X86_64 => crate::qemu_machines::X86_64_UNMODELLED,
            QemuArch::Aarch64 => crate::qemu_machines::AARCH64_UNMODELLED,
        };
        if real.contains(&machine_name.as_str()) {
            return QemuError::unmodelled(
                format!("-machine {machine_name}"),
                format!(
                    "QEMU has this machine type, but its memory map is not modelled \
                     (modelled: {})",
                    match arch {
                        QemuArch::X86_64 => "q35, pc, pc-q35-X.Y, pc-i440fx-X.Y",
                        QemuArch::Aarch64 => "virt, virt-X.Y",
                    }
                ),
            );
        }
        QemuError::bad(
            format!("-machine {machine_name}"),
            match arch {
                QemuArch::X86_64 => {
                    "unknown or unmodelled machine type (modelled: q35, pc, pc-q35-X.Y, pc-i440fx-X.Y)"
                }
                QemuArch::Aarch64 => "unknown or unmodelled machine type (modelled: virt, virt-X.Y)",
            },
        )
    })?;
    let mut max_ram_below_4g = None;
    let mut highmem = true;
    let mut viommus = Vec::new();
    let mut memory_backend: Option<String> = None;
    for (k, v) in &machine_opts.items {
        let input = format!("-machine {k}={v}");
        match (machine.family, k.as_str()) {
            (_, "type") => {}
            (_, "accel") => {
                accel = accel_of(&input, v)?;
            }
            (_, "memory-backend") => memory_backend = Some(v.clone()),
            (
                _,
                "usb"
                | "dump-guest-core"
                | "mem-merge"
                | "graphics"
                | "suppress-vmdesc"
                | "kernel-irqchip"
                | "kvm-shadow-mem"
                | "dt-compatible"
                | "firmware"
                | "vmport"
                | "smm"
                | "hpet"
                | "sata"
                | "pit"
                | "pic"
                | "i8042"
                | "smbios-entry-point-type"
                | "pcspk-audiodev"
                | "hmat"
                | "acpi"
                | "s3"
                | "s4",
            ) => {}
            (_, "default-bus-bypass-iommu") => {
                if bool_of(&input, v)? {
                    return Err(QemuError::unmodelled(
                        &input,
                        "devices that bypass the vIOMMU are not modelled",
                    ));
                }
            }
            (MachineFamily::Q35 | MachineFamily::Pc, "nvdimm") => {
                bool_of(&input, v)?;
            }
            (MachineFamily::Q35 | MachineFamily::Pc, "max-ram-below-4g") => {
                max_ram_below_4g = Some(size_of(&input, v, 1)?);
            }
            (MachineFamily::Q35 | MachineFamily::Pc, "pflash0" | "pflash1") => {
                let unit = if k == "pflash0" { 0 } else { 1 };
                pflash_drives.push((unit, v.clone()));
            }
            (MachineFamily::Virt, "highmem") => highmem = bool_of(&input, v)?,
            // The blockdevs behind virt's two 64 MiB flash devices, which are always
            // there (modelled as `flash`, not DMA-mapped).
            (MachineFamily::Virt, "pflash0" | "pflash1") => {}
            (MachineFamily::Virt, "highmem-redists" | "highmem-ecam" | "highmem-mmio") => {
                if !bool_of(&input, v)? {
                    return Err(QemuError::unmodelled(
                        &input,
                        "turning off one high IO region is not modelled",
                    ));
                }
            }
            (
                MachineFamily::Virt,
                "gic-version" | "secure" | "virtualization" | "its" | "ras" | "mte",
            ) => {}
            (MachineFamily::Virt, "iommu") => match v.as_str() {
                "smmuv3" => viommus.push(Viommu::SmmuV3),
                "none" => {}
                _ => return Err(QemuError::bad(&input, "iommu must be smmuv3 or none")),
            },
            _ => {
                return Err(QemuError::unmodelled(
                    &input,
                    "this machine property is not modelled",
                ));
            }
        }
    }
    if let Some(h) = &hole64_arg {
        let ok = match machine.family {
            MachineFamily::Q35 => h.starts_with("q35-"),
            MachineFamily::Pc => h.starts_with("i440FX-"),
            MachineFamily::Virt => false,
        };
        if !ok {
            vm_notes.push(format!(
                "-global {h}: the machine has no such host bridge; ignored as QEMU does"
            ));
            hole64 = None;
        }
    }

    // Memory.
    let backend = match &memory_backend {
        Some(id) => Some(backends.get(id).ok_or_else(|| {
            QemuError::bad(
                format!("-machine memory-backend={id}"),
                "no -object memory-backend-* has this id",
            )
        })?),
        None => None,
    };
    let (ram, slots, maxmem) = match &mem_opts {
        Some((input, o)) => {
            let size = match o.get("size") {
                Some(s) => Some(size_of(input, s, MIB)?),
                None => None,
            };
            let ram = match (size, backend) {
                (Some(s), Some(b)) if s != b.size => {
                    return Err(QemuError::bad(
                        input.as_str(),
                        format!(
                            "the size differs from memory backend '{}' ({} bytes)",
                            b.id, b.size
                        ),
                    ));
                }
                (Some(s), _) => s,
                (None, Some(b)) => b.size,
                (None, None) => 128 * MIB,
            };
            let slots = match o.get("slots") {
                Some(s) => s.parse::<u32>().map_err(|_| {
                    QemuError::bad(input.as_str(), format!("slots '{s}' is not a number"))
                })?,
                None => 0,
            };
            let maxmem = match o.get("maxmem") {
                Some(s) => size_of(input, s, 1)?,
                None => ram,
            };
            if maxmem < ram {
                return Err(QemuError::bad(
                    input.as_str(),
                    "maxmem is below the RAM size",
                ));
            }
            if maxmem % 4096 != 0 {
                return Err(QemuError::bad(
                    input.as_str(),
                    "QEMU refuses a maxmem that is not a multiple of 4 KiB",
                ));
            }
            (ram, slots, maxmem)
        }
        None => {
            let ram = backend.map_or(128 * MIB, |b| b.size);
            (ram, 0, ram)
        }
    };
    if ram == 0 {
        return Err(QemuError::bad("-m", "the RAM size is 0"));
    }
    numa_fits(&numa, &backends, ram, &machine, &mut vm_notes)?;

    // The CPU.
    let cpu = match &cpu_text {
        Some(t) => read_cpu(arch, t)?,
        None => CpuSpec {
            model: match arch {
                QemuArch::X86_64 => "qemu64".to_owned(),
                QemuArch::Aarch64 => "cortex-a15".to_owned(),
            },
            vendor_override: None,
            phys_bits: None,
            host_phys_bits: None,
            host_phys_bits_limit: None,
        },
    };

    // Devices.
    let mut vga = match (arch, d.vga_option) {
        (QemuArch::Aarch64, _) => false,
        (_, Some(v)) => v,
        (_, None) => !d.nodefaults,
    };
    let mut mem_devices = Vec::new();
    let mut vfio = Vec::new();
    let mut vfio_buses = Vec::new();
    let mut vfio_on_iommufd = 0usize;
    let conventional_buses: Vec<String> = devices
        .iter()
        .filter(|(_, o)| {
            matches!(
                o.get("driver"),
                Some("pci-bridge" | "pcie-pci-bridge" | "i82801b11-bridge")
            )
        })
        .filter_map(|(_, o)| o.get("id").map(str::to_owned))
        .collect();
    for (input, o) in &devices {
        let driver = o.get("driver").unwrap_or("");
        match driver {
            v if device_class(v) == Some(DeviceClass::Assigned) => {
                let dev = o.get("host").or(o.get("sysfsdev")).ok_or_else(|| {
                    QemuError::bad(input.as_str(), "vfio-pci needs host= or sysfsdev=")
                })?;
                if o.get("host").is_none() && dev.contains("/mdev/") {
                    return Err(QemuError::unmodelled(
                        input.as_str(),
                        "a mediated device (vfio-mdev) is not modelled",
                    ));
                }
                let dev = dev
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or(dev)
                    .to_owned();
                if let Some(id) = o.get("iommufd") {
                    if !iommufd_ids.iter().any(|i| i == id) {
                        return Err(QemuError::bad(
                            input.as_str(),
                            format!("iommufd '{id}': no -object iommufd has this id"),
                        ));
                    }
                    vfio_on_iommufd += 1;
                }
                vfio.push(dev);
                vfio_buses.push(o.get("bus").map(str::to_owned));
            }
            "pc-dimm" | "nvdimm" | "virtio-mem-pci" => {
                let memdev = o.get("memdev").ok_or_else(|| {
                    QemuError::bad(input.as_str(), format!("{driver} needs memdev="))
                })?;
                let b = backends.get(memdev).ok_or_else(|| {
                    QemuError::bad(
                        input.as_str(),
                        format!("memdev '{memdev}': no -object memory-backend-* has this id"),
                    )
                })?;
                // A DIMM's `addr=` is its memory address; a virtio-mem-pci's `addr=` is
                // its PCI slot, and `memaddr=` the memory address.
                let key = if driver == "virtio-mem-pci" {
                    "memaddr"
                } else {
                    "addr"
                };
                let addr = match o.get(key) {
                    Some(a) => Some(size_of(input, a, 1)?),
                    None => None,
                };
                let kind = match driver {
                    "pc-dimm" => MemDeviceKind::PcDimm,
                    "nvdimm" => {
                        if machine_opts.get("nvdimm") != Some("on") {
                            return Err(QemuError::bad(
                                input.as_str(),
                                "nvdimm needs -machine nvdimm=on",
                            ));
                        }
                        MemDeviceKind::Nvdimm
                    }
                    _ => MemDeviceKind::VirtioMem {
                        requested: match o.get("requested-size") {
                            Some(s) => size_of(input, s, 1)?,
                            None => 0,
                        },
                        block: match o.get("block-size") {
                            Some(s) => size_of(input, s, 1)?,
                            None => 2 * MIB,
                        },
                    },
                };
                let id = o
                    .get("id")
                    .map_or_else(|| format!("{driver}{}", mem_devices.len()), str::to_owned);
                mem_devices.push(MemDevice {
                    id,
                    kind,
                    size: b.size,
                    addr,
                });
            }
            "intel-iommu" => {
                let aw_bits = match o.get("aw-bits") {
                    Some(v) => Some(bits_of(input, v)?),
                    None => None,
                };
                viommus.push(Viommu::IntelIommu { aw_bits });
            }
            "amd-iommu" => viommus.push(Viommu::AmdIommu),
            "virtio-iommu-pci" | "virtio-iommu" => {
                let bypass = match o.get("boot-bypass") {
                    Some(v) => bool_of(input, v)?,
                    None => true,
                };
                if !bypass {
                    return Err(QemuError::unmodelled(
                        input.as_str(),
                        "virtio-iommu boot-bypass=off: QEMU maps no guest memory until the \
                         guest's driver attaches (not modelled)",
                    ));
                }
                let aw_bits = match o.get("aw-bits") {
                    Some(v) => Some(bits_of(input, v)?),
                    None => None,
                };
                viommus.push(Viommu::VirtioIommu {
                    aw_bits,
                    granule: o.get("granule").map(str::to_owned),
                });
            }
            // PCI expander buses: their windows are carved from the host bridge's and
            // RAM stays where it is; but devices behind one with `bypass_iommu=on` skip
            // the vIOMMU, which changes their address space.
            "pxb" | "pxb-pcie" => {
                let bypass = match o.get("bypass_iommu") {
                    Some(v) => bool_of(input, v)?,
                    None => false,
                };
                if bypass {
                    return Err(QemuError::unmodelled(
                        input.as_str(),
                        "an expander bus whose devices bypass the vIOMMU is not modelled",
                    ));
                }
            }
            v if device_class(v) == Some(DeviceClass::Vga) => vga = arch == QemuArch::X86_64,
            v if device_class(v) == Some(DeviceClass::NoEffect) => {}
            "" => return Err(QemuError::bad(input.as_str(), "no device type")),
            other => {
                return Err(QemuError::unmodelled(
                    input.as_str(),
                    format!("device type '{other}' is not modelled"),
                ));
            }
        }
    }
    if machine_opts.get("nvdimm") == Some("on") && arch == QemuArch::X86_64 {
        vm_notes.push("-machine nvdimm=on: NVDIMMs are modelled as DIMMs".to_owned());
    }

    pflash_drives.sort_by_key(|p| p.0);
    // A node name given to -machine pflashN= leads through -blockdev to a file.
    let resolve = |source: String| {
        let mut cur = source;
        for _ in 0..8 {
            match blockdevs.get(&cur) {
                Some((true, file)) => return file.clone(),
                Some((false, next)) => cur = next.clone(),
                None => break,
            }
        }
        cur
    };
    let pflash = pflash_drives
        .into_iter()
        .map(|(unit, source)| {
            let source = resolve(source);
            Pflash {
                unit,
                size: file_size(&source, &data_dirs),
                source,
            }
        })
        .collect();

    let bios_size = bios.as_deref().and_then(|b| file_size(b, &data_dirs));
    Ok(QemuVm {
        bios_size,
        arch,
        binary: bin.clone(),
        machine,
        machine_name,
        ram,
        slots,
        maxmem,
        max_ram_below_4g,
        pci_hole64_size: hole64,
        highmem,
        cpu,
        accel,
        vga,
        bios,
        pflash,
        mem_devices,
        viommus,
        vfio_iommufd: !vfio.is_empty() && vfio_on_iommufd == vfio.len(),
        vfio,
        vfio_buses,
        conventional_buses,
        data_dirs,
        backends,
        notes: vm_notes,
    })
}

fn accel_of(input: &str, v: &str) -> Result<Accel, QemuError> {
    // `kvm:tcg` picks the first that works; on a host with KVM that is KVM.
    match v.split(':').next().unwrap_or("") {
        "tcg" => Ok(Accel::Tcg),
        "kvm" => Ok(Accel::Kvm),
        _ => Err(QemuError::unmodelled(
            input,
            format!("accelerator '{v}' is not modelled (tcg, kvm)"),
        )),
    }
}

/// The CPU a libvirt domain's `<cpu mode='host-model'>` becomes on x86: libvirt picks a
/// named model of the host's CPU (from its capabilities of the host, for KVM and for
/// TCG alike), with QEMU's default width for named models. The XML does not say which,
/// so the command line built from a domain names it this way. QEMU has no such model
/// (the colon): `iovactl` refuses it on a command line that did not come from a domain.
pub const LIBVIRT_HOST_MODEL: &str = "libvirt:host-model";

/// The CPU vendor of an x86 CPU model (`qemu64` and `max` under TCG are AMD; `host`
/// and `max` under KVM are the host's); `None` for a model this table does not know.
pub fn x86_model_vendor(model: &str, accel: Accel, host: Option<CpuVendor>) -> Option<CpuVendor> {
    let base = model.split("-v").next().unwrap_or(model);
    match base {
        "host" | LIBVIRT_HOST_MODEL => host,
        "max" => match accel {
            Accel::Tcg => Some(CpuVendor::Amd),
            Accel::Kvm => host,
        },
        "qemu64" | "phenom" => Some(CpuVendor::Amd),
        "kvm64" | "core2duo" | "Conroe" | "Penryn" | "Nehalem" | "Nehalem-IBRS" | "Westmere"
        | "Westmere-IBRS" | "SandyBridge" | "SandyBridge-IBRS" | "IvyBridge" | "IvyBridge-IBRS"
        | "Denverton" | "Snowridge" | "KnightsMill" => Some(CpuVendor::Intel),
        b if b.starts_with("EPYC") || b.starts_with("Opteron_G") => Some(CpuVendor::Amd),
        b if b.starts_with("Haswell")
            || b.starts_with("Broadwell")
            || b.starts_with("Skylake")
            || b.starts_with("Cascadelake")
            || b.starts_with("Cooperlake")
            || b.starts_with("Icelake")
            || b.starts_with("SapphireRapids")
            || b.starts_with("GraniteRapids")
            || b.starts_with("SierraForest")
            || b.starts_with("ClearwaterForest") =>
        {
            Some(CpuVendor::Intel)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn parse(s: &str) -> Result<QemuVm, QemuError> {
        parse_qemu_argv(&argv(s), |_, _| None)
    }

    #[test]
    fn json_arguments_read_as_their_key_value_form() {
        // libvirt 11 writes every -object and -device as JSON (tests/qemuxmlconfdata).
        let pair = |json: &[&str], kv: &[&str]| {
            let head = [
                "qemu-system-x86_64",
                "-machine",
                "pc-q35-7.0,memory-backend=pc.ram",
            ];
            let a: Vec<String> = head.iter().chain(json).map(|s| (*s).to_owned()).collect();
            let b: Vec<String> = head.iter().chain(kv).map(|s| (*s).to_owned()).collect();
            (
                parse_qemu_argv(&a, |_, _| None),
                parse_qemu_argv(&b, |_, _| None),
            )
        };
        let (j, k) = pair(
            &[
                "-m",
                "size=2097152k",
                "-object",
                r#"{"qom-type":"memory-backend-ram","id":"pc.ram","size":2147483648}"#,
                "-object",
                r#"{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/k"}"#,
                "-device",
                r#"{"driver":"intel-iommu","id":"iommu0","intremap":"on","caching-mode":true,"aw-bits":39}"#,
                "-device",
                r#"{"driver":"vfio-pci","host":"0000:03:00.0","id":"hostdev0","bus":"pcie.0","addr":"0x3"}"#,
                "-blockdev",
                r#"{"driver":"file","filename":"/d.img","node-name":"s1","read-only":false}"#,
            ],
            &[
                "-m",
                "size=2097152k",
                "-object",
                "memory-backend-ram,id=pc.ram,size=2147483648",
                "-object",
                "secret,id=masterKey0,format=raw,file=/k",
                "-device",
                "intel-iommu,id=iommu0,intremap=on,caching-mode=on,aw-bits=39",
                "-device",
                "vfio-pci,host=0000:03:00.0,id=hostdev0,bus=pcie.0,addr=0x3",
                "-blockdev",
                "driver=file,filename=/d.img,node-name=s1,read-only=off",
            ],
        );
        let j = j.unwrap();
        assert_eq!(Ok(&j), k.as_ref());
        assert_eq!(j.vfio, ["0000:03:00.0"]);
        assert_eq!(j.viommus, [Viommu::IntelIommu { aw_bits: Some(39) }]);
        // Nested objects flatten with dots, as QEMU's qdict_flatten.
        let mut items = Vec::new();
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a":{"b":1,"c":[true,"x"]},"d":"e"}"#).unwrap();
        flatten_json("t", "", &v, &mut items).unwrap();
        let want: Vec<(String, String)> =
            [("a.b", "1"), ("a.c.0", "on"), ("a.c.1", "x"), ("d", "e")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        assert_eq!(items, want);
        // Bad JSON and a null are errors naming the input.
        for bad in [r#"{"driver":"vfio-pci","#, r#"{"driver":null}"#, "{"] {
            let argv = vec![
                "qemu-system-x86_64".to_owned(),
                "-device".to_owned(),
                bad.to_owned(),
            ];
            let e = parse_qemu_argv(&argv, |_, _| None).unwrap_err();
            assert!(!e.is_unmodelled(), "{bad}: {e}");
            assert!(e.to_string().contains("-device"), "{e}");
        }
        // An unknown device in JSON is named like one in key=value form.
        let argv: Vec<String> = [
            "qemu-system-x86_64",
            "-device",
            r#"{"driver":"frobnicator"}"#,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let e = parse_qemu_argv(&argv, |_, _| None).unwrap_err();
        assert!(
            e.is_unmodelled() && e.to_string().contains("frobnicator"),
            "{e}"
        );
    }

    #[test]
    fn one_class_per_device_type() {
        let mut names: Vec<&str> = DEVICE_CLASSES.iter().map(|(d, _)| *d).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a device type is listed twice");
        // The types the parser reads for their properties have their class.
        for (d, c) in [
            ("vfio-pci", DeviceClass::Assigned),
            ("pc-dimm", DeviceClass::Memory),
            ("virtio-mem-pci", DeviceClass::Memory),
            ("intel-iommu", DeviceClass::Viommu),
            ("pxb-pcie", DeviceClass::ExpanderBus),
            ("cirrus-vga", DeviceClass::Vga),
            ("lsi", DeviceClass::NoEffect),
        ] {
            assert_eq!(device_class(d), Some(c), "{d}");
        }
        assert_eq!(device_class("frobnicator"), None);
    }

    #[test]
    fn numa_nodes_split_ram_without_moving_it() {
        let base = "qemu-system-x86_64 -machine q35 -m 6G -device vfio-pci,host=0000:03:00.0";
        let plain = parse(base).unwrap();
        let numa = parse(&format!(
            "{base} -object memory-backend-ram,id=a,size=2G -numa node,nodeid=0,memdev=a \
             -object memory-backend-ram,id=b,size=4G -numa node,nodeid=1,memdev=b \
             -numa dist,src=0,dst=1,val=20 -numa cpu,node-id=0,socket-id=0"
        ))
        .unwrap();
        assert_eq!((numa.ram, numa.maxmem), (plain.ram, plain.maxmem));
        // Legacy mem= (machine types up to 5.0) counts MiB without a suffix, as QEMU's
        // fix-up does; newer types refuse it, as does mixing it with memdev=.
        let old = base.replace("-machine q35", "-machine pc-q35-5.0");
        assert!(parse(&format!("{old} -numa node,mem=2048 -numa node,mem=4G")).is_ok());
        let mixed = format!(
            "{old} -numa node,mem=2G -object memory-backend-ram,id=b,size=4G -numa node,memdev=b"
        );
        assert!(parse(&mixed).unwrap_err().to_string().contains("others"));
        for (bad, says) in [
            ("-numa node,mem=6G", "after 5.0"),
            (
                "-object memory-backend-ram,id=a,size=2G -numa node,memdev=a",
                "must equal",
            ),
            ("-numa node,memdev=nope", "nope"),
            ("-numa node,mem=6G,memdev=x", "after 5.0"),
            ("-numa frob", "frob"),
        ] {
            let e = parse(&format!("{base} {bad}")).unwrap_err();
            assert!(
                !e.is_unmodelled() && e.to_string().contains(says),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn spellings_libvirt_writes_read_as_qemu_reads_them() {
        let base = "qemu-system-x86_64 -machine q35 -device vfio-pci,host=0000:03:00.0";
        let plain = parse(base).unwrap();
        // Machine properties with `_` (QEMU reads them as `-`).
        let irq = parse(&base.replace("q35", "q35,kernel_irqchip=split")).unwrap();
        assert_eq!(irq.ram, plain.ram);
        // -global in libvirt's long form, the same value as the short one.
        let long = parse(&format!(
            "{base} -global driver=q35-pcihost,property=pci-hole64-size,value=64G"
        ))
        .unwrap();
        let short = parse(&format!("{base} -global q35-pcihost.pci-hole64-size=64G")).unwrap();
        assert_eq!(long, short);
        assert_eq!(long.pci_hole64_size, Some(64 << 30));
        let any_order = parse(&format!(
            "{base} -global property=pci-hole64-size,value=64G,driver=q35-pcihost"
        ))
        .unwrap();
        assert_eq!(any_order, short);
        // boot-bypass takes QEMU's booleans; off is not modelled, bad values are refused.
        for (v, unmodelled) in [("n", true), ("off", true), ("on", false)] {
            let r = parse(&format!("{base} -device virtio-iommu-pci,boot-bypass={v}"));
            assert_eq!(
                r.err().is_some_and(|e| e.is_unmodelled()),
                unmodelled,
                "{v}"
            );
        }
        let e = parse(&format!(
            "{base} -device virtio-iommu-pci,boot-bypass=bogus"
        ))
        .unwrap_err();
        assert!(!e.is_unmodelled(), "{e}");
        // maxmem must be whole pages.
        let e = parse(&base.replace("-machine q35", "-machine q35 -m 1G,slots=1,maxmem=2098177k"))
            .unwrap_err();
        assert!(e.to_string().contains("4 KiB"), "{e}");
        let e = parse(&format!("{base} -global driver=foo,property=bar,value=1")).unwrap_err();
        assert!(
            e.is_unmodelled() && e.to_string().contains("driver=foo"),
            "{e}"
        );
        // vfio-pci-nohotplug assigns a device like vfio-pci.
        let nohp = parse(&base.replace("vfio-pci,", "vfio-pci-nohotplug,")).unwrap();
        assert_eq!(nohp.vfio, ["0000:03:00.0"]);
        // Devices with no DMA-mapped memory at start and no legacy window, and -shim.
        for extra in [
            "-device lsi",
            "-device usb-ccid",
            "-device qxl",
            "-device pxb-pcie,id=x",
            "-shim /s",
        ] {
            let vm = parse(&format!("{base} {extra}")).unwrap();
            assert_eq!(
                (vm.ram, vm.vga, &vm.vfio),
                (plain.ram, plain.vga, &plain.vfio),
                "{extra}"
            );
        }
    }

    #[test]
    fn opts_follow_qemu_grammar() {
        let items = split_opts("q35,accel=kvm,,tcg,usb");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].key, None);
        assert_eq!(items[1].value, "kvm,tcg");
        assert_eq!(items[2].key.as_deref(), Some("usb"));
        assert_eq!(items[2].value, "on");
    }

    #[test]
    fn sizes_follow_qemu_grammar() {
        assert_eq!(parse_qemu_size("1024", MIB), Some(1 << 30));
        assert_eq!(parse_qemu_size("8G", MIB), Some(8 << 30));
        assert_eq!(parse_qemu_size("8g", 1), Some(8 << 30));
        assert_eq!(parse_qemu_size("1.5G", 1), Some(3 << 29));
        assert_eq!(parse_qemu_size("0x1000", 1), Some(0x1000));
        assert_eq!(parse_qemu_size("512k", 1), Some(512 << 10));
        assert_eq!(parse_qemu_size("1.5", 1), None);
        assert_eq!(parse_qemu_size("8GiB", 1), None);
        assert_eq!(parse_qemu_size("-1", 1), None);
        assert_eq!(parse_qemu_size("99999999999E", 1), None);
        assert_eq!(parse_qemu_size("", 1), None);
    }

    #[test]
    fn a_full_command_line_reads() {
        let vm = parse(
            "qemu-system-x86_64 -machine pc-q35-7.0,accel=kvm -m 16G,slots=4,maxmem=64G \
             -cpu EPYC,phys-bits=42 -nodefaults -device vfio-pci,host=0000:41:00.0 \
             -object memory-backend-ram,id=d0,size=4G -device pc-dimm,memdev=d0,id=dimm0 \
             -global q35-pcihost.pci-hole64-size=64G -display none",
        )
        .unwrap();
        assert_eq!(vm.machine.family, MachineFamily::Q35);
        assert_eq!(vm.machine.version, Some(QemuVersion::new(7, 0)));
        assert_eq!(vm.accel, Accel::Kvm);
        assert_eq!(vm.ram, 16 << 30);
        assert_eq!(vm.maxmem, 64 << 30);
        assert_eq!(vm.slots, 4);
        assert_eq!(vm.cpu.phys_bits, Some(42));
        assert!(!vm.vga);
        assert_eq!(vm.vfio, vec!["0000:41:00.0".to_owned()]);
        assert_eq!(vm.mem_devices.len(), 1);
        assert_eq!(vm.pci_hole64_size, Some(64 << 30));
    }

    #[test]
    fn iommufd_backends_read() {
        let vm = parse(
            "qemu-system-x86_64 -m 1G -object iommufd,id=fd0 \
             -device vfio-pci,host=0000:03:00.0,iommufd=fd0",
        )
        .unwrap();
        assert!(vm.vfio_iommufd);
        let vm = parse(
            "qemu-system-x86_64 -m 1G -object iommufd,id=fd0 \
             -device vfio-pci,host=0000:03:00.0,iommufd=fd0 -device vfio-pci,host=0000:04:00.0",
        )
        .unwrap();
        assert!(!vm.vfio_iommufd, "one device on a type1 container");
        let vm = parse("qemu-system-x86_64 -m 1G -device vfio-pci,host=0000:03:00.0").unwrap();
        assert!(!vm.vfio_iommufd);
        let e = parse("qemu-system-x86_64 -m 1G -device vfio-pci,host=0000:03:00.0,iommufd=x")
            .unwrap_err();
        assert!(!e.is_unmodelled() && e.to_string().contains("'x'"), "{e}");
        let e = parse("qemu-system-x86_64 -m 1G -object iommufd").unwrap_err();
        assert!(e.to_string().contains("id="), "{e}");
    }

    #[test]
    fn unmodelled_and_bad_inputs_are_named() {
        let e = parse("qemu-system-x86_64 -device pxb-pcie,id=x,bypass_iommu=on").unwrap_err();
        assert!(
            e.is_unmodelled() && e.to_string().contains("pxb-pcie"),
            "{e}"
        );
        let e = parse("qemu-system-x86_64 -machine q35,default_bus_bypass_iommu=on").unwrap_err();
        assert!(e.is_unmodelled() && e.to_string().contains("bypass"), "{e}");
        let e = parse("qemu-system-x86_64 -frobnicate").unwrap_err();
        assert!(
            !e.is_unmodelled() && e.to_string().contains("-frobnicate"),
            "{e}"
        );
        let e = parse("qemu-system-x86_64 -m 8Q").unwrap_err();
        assert!(e.to_string().contains("8Q"), "{e}");
        let e = parse("qemu-system-x86_64 -machine pc-q35-x").unwrap_err();
        assert!(e.to_string().contains("pc-q35-x"), "{e}");
        let e = parse("qemu-system-x86_64 -m").unwrap_err();
        assert!(e.to_string().contains("-m"), "{e}");
        let e = parse("qemu-system-ppc64 -m 1G").unwrap_err();
        assert!(e.is_unmodelled());
    }

    #[test]
    fn cpu_properties_are_modelled_ignored_or_refused() {
        // phys-bits is QEMU's uint32 (base 0), host-phys-bits-limit its uint8; 0 reads.
        let pb = |t: &str| parse(&format!("qemu-system-x86_64 -cpu {t}")).map(|v| v.cpu);
        assert_eq!(pb("EPYC,phys-bits=53").unwrap().phys_bits, Some(53));
        assert_eq!(pb("EPYC,phys-bits=0").unwrap().phys_bits, Some(0));
        assert_eq!(pb("EPYC,phys-bits=0x34").unwrap().phys_bits, Some(52));
        assert_eq!(pb("EPYC,phys-bits=052").unwrap().phys_bits, Some(42));
        assert_eq!(
            pb("EPYC,phys-bits=4294967295").unwrap().phys_bits,
            Some(u32::MAX)
        );
        let e = pb("EPYC,phys-bits=4294967296").unwrap_err();
        assert!(
            !e.is_unmodelled() && e.to_string().contains("4294967296"),
            "{e}"
        );
        assert_eq!(
            pb("host,host-phys-bits-limit=0")
                .unwrap()
                .host_phys_bits_limit,
            Some(0)
        );
        assert!(pb("host,host-phys-bits-limit=256").is_err());
        // Feature flags and identification cannot move memory: read, ignored.
        let c = pb("EPYC,+x2apic,-svm,avx=off,pdpe1gb,model-id=x,level=13,model=1").unwrap();
        assert_eq!(c.model, "EPYC");
        // A 32-bit vCPU, guest-phys-bits and unknown properties: cannot answer.
        for t in [
            "EPYC,lm=off",
            "EPYC,-lm",
            "EPYC,i64=no",
            "EPYC,guest-phys-bits=40",
            "EPYC,frob=3",
        ] {
            let e = pb(t).unwrap_err();
            assert!(e.is_unmodelled(), "{t}: {e}");
        }
        let e = pb("EPYC,frob=3").unwrap_err();
        assert!(e.to_string().contains("frob=3"), "{e}");
        let e = pb("phys-bits=40").unwrap_err();
        assert!(
            !e.is_unmodelled() && e.to_string().contains("phys-bits"),
            "{e}"
        );
        // aarch64 CPUs have no address-size property: QEMU refuses, so bad input.
        let arm = |t: &str| parse(&format!("qemu-system-aarch64 -M virt -cpu {t}")).map(|v| v.cpu);
        for t in [
            "max,pa-bits=40",
            "max,phys-bits=40",
            "cortex-a57,host-phys-bits=on",
        ] {
            let e = arm(t).unwrap_err();
            assert!(!e.is_unmodelled(), "{t}: {e}");
            assert!(e.to_string().contains(t.split(',').nth(1).unwrap()), "{e}");
        }
        assert!(arm("max,sve=off,sve-max-vq=4,pauth-impdef=on,lpa2=off").is_ok());
        assert!(arm("host,aarch64=off").unwrap_err().is_unmodelled());
        assert!(arm("max,x-new-thing=7").unwrap_err().is_unmodelled());
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            QemuVersion::parse("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)"),
            Some(QemuVersion::new(7, 2))
        );
        assert_eq!(QemuVersion::parse("10.0.2"), Some(QemuVersion::new(10, 0)));
        assert_eq!(QemuVersion::parse("ten"), None);
    }

    #[test]
    fn cpu_vendors() {
        assert_eq!(
            x86_model_vendor("qemu64", Accel::Tcg, None),
            Some(CpuVendor::Amd)
        );
        assert_eq!(
            x86_model_vendor("EPYC-v4", Accel::Kvm, None),
            Some(CpuVendor::Amd)
        );
        assert_eq!(
            x86_model_vendor("Skylake-Client-IBRS", Accel::Kvm, None),
            Some(CpuVendor::Intel)
        );
        assert_eq!(
            x86_model_vendor("host", Accel::Kvm, Some(CpuVendor::Intel)),
            Some(CpuVendor::Intel)
        );
        assert_eq!(x86_model_vendor("pentium", Accel::Kvm, None), None);
    }
}
