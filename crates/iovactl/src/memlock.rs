//! The locked-memory verdict of `check` (docs/semantics.md §3.5): VFIO pins every page
//! the VMM maps, and the kernel charges it against `RLIMIT_MEMLOCK`. QEMU maps its RAM
//! and ROM at start (device BAR mmaps are not charged); with a vIOMMU each assigned
//! device has its own address space, so its own container, and the guest's DMA maps
//! are charged once per device.

use std::path::PathBuf;

use iova_guest::Layout;
use iova_guest::libvirt::LibvirtMemlock;
use serde_json::{Value, json};

use crate::error::CliError;
use crate::report::human_bytes;
use crate::vmm::VmmProblem;

/// libvirt's "unlimited" for a memory tunable: 2^53 - 1 KiB
/// (`VIR_DOMAIN_MEMORY_PARAM_UNLIMITED`).
const LIBVIRT_UNLIMITED_KIB: u64 = (1 << 53) - 1;

/// The `CAP_IPC_LOCK` bit of a capability set (`linux/capability.h`).
const CAP_IPC_LOCK_BIT: u32 = 14;

/// A locked-memory limit and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// `RLIMIT_MEMLOCK` (the soft limit, which the kernel checks) in bytes; `None`:
    /// unlimited.
    pub bytes: Option<u64>,
    /// Whether the process has `CAP_IPC_LOCK` (the kernel then does not check).
    pub cap_ipc_lock: bool,
    /// Bytes already charged to the same counter (the process's other containers, or
    /// for iommufd the user's other processes): `--memlock-used`.
    pub already: u64,
    /// In words, for the report.
    pub from: String,
}

/// A locked-memory limit: bytes with an optional binary unit (`64M`, `8G`), or
/// `unlimited` / `infinity` (`None`). A number without a unit is bytes, as RLIMIT_MEMLOCK
/// is (`ulimit -l` counts KiB: the message says so when it looks like that was meant).
fn parse_limit(text: &str) -> Result<Option<u64>, CliError> {
    let t = text.trim();
    if matches!(t, "unlimited" | "infinity") {
        return Ok(None);
    }
    let n = iova::units::parse_number(t).map_err(|e| {
        CliError::input(format!(
            "--memlock {text}: {e} (give bytes with an optional unit, 64M, 8G, or unlimited)"
        ))
    })?;
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && n > 0 && n < 4096 {
        return Err(CliError::input(format!(
            "--memlock {text}: less than one page; a number without a unit is bytes \
             (`ulimit -l` shows KiB: {text}K?)"
        )));
    }
    Ok(Some(n))
}

/// The limit `--memlock TEXT` gives, with `--memlock-used USED` (bytes already on the
/// same counter) and `--cap-ipc-lock`: `check` and `replay` read them alike.
pub fn from_options(text: &str, used: Option<&str>, cap_ipc_lock: bool) -> Result<Limit, CliError> {
    let bytes = parse_limit(text)?;
    let already = match used {
        Some(u) => iova::units::parse_number(u)
            .map_err(|e| CliError::input(format!("--memlock-used {u}: {e}")))?,
        None => 0,
    };
    Ok(Limit {
        bytes,
        cap_ipc_lock,
        already,
        from: "--memlock".to_owned(),
    })
}

/// `Max locked memory` of a `/proc/PID/limits` text: the soft limit in bytes, `None`
/// for unlimited; an error naming the file when the line is missing or malformed.
pub fn parse_limits(name: &str, text: &str) -> Result<Option<u64>, CliError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .ok_or_else(|| CliError::input(format!("{name}: no 'Max locked memory' line")))?;
    let soft = line
        .trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()
        .unwrap_or("");
    match soft {
        "unlimited" => Ok(None),
        t => t.parse::<u64>().map(Some).map_err(|_| {
            CliError::input(format!(
                "{name}: 'Max locked memory' soft limit '{t}' is not a number"
            ))
        }),
    }
}

/// The effective capability set (`CapEff`, hexadecimal) of a `/proc/PID/status` text;
/// a missing or malformed line is an error naming the file.
pub fn parse_cap_eff(name: &str, text: &str) -> Result<u64, CliError> {
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .ok_or_else(|| CliError::input(format!("{name}: no CapEff line")))?;
    u64::from_str_radix(hex, 16)
        .map_err(|_| CliError::input(format!("{name}: CapEff '{hex}' is not hexadecimal")))
}

/// Whether a `/proc/PID/status` text's effective capabilities (`CapEff`) hold
/// `CAP_IPC_LOCK`.
pub fn parse_cap_ipc_lock(name: &str, text: &str) -> Result<bool, CliError> {
    Ok(parse_cap_eff(name, text)? >> CAP_IPC_LOCK_BIT & 1 == 1)
}

/// The path and text of `/proc/PID/FILE` (`None`: this process). A process that
/// vanished is bad input (exit 2), an unreadable file an operating-system error, each
/// naming the file.
pub fn read_proc(pid: Option<u32>, file: &str) -> Result<(String, String), CliError> {
    let path = PathBuf::from(match pid {
        Some(p) => format!("/proc/{p}/{file}"),
        None => format!("/proc/self/{file}"),
    });
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let msg = format!("cannot read {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            CliError::input(msg)
        } else {
            CliError::Os(msg)
        }
    })?;
    Ok((path.display().to_string(), text))
}

/// The limit of process `pid` (`None`: this process), from `/proc/PID/limits` and
/// `/proc/PID/status`. A process that vanished or cannot be read is an error naming
/// the file.
pub fn of_process(pid: Option<u32>) -> Result<Limit, CliError> {
    let (limits_name, limits) = read_proc(pid, "limits")?;
    let bytes = parse_limits(&limits_name, &limits)?;
    let (status_name, status) = read_proc(pid, "status")?;
    let cap_ipc_lock = parse_cap_ipc_lock(&status_name, &status)?;
    Ok(Limit {
        bytes,
        cap_ipc_lock,
        already: 0,
        from: match pid {
            Some(p) => format!("process {p} (/proc/{p}/limits, /proc/{p}/status)"),
            None => "this shell's own limit (ulimit -l), which a QEMU started from it \
                     inherits; give --memlock for another"
                .to_owned(),
        },
    })
}

/// The limit libvirt gives the QEMU process of a domain with `devices` assigned
/// devices and `guest_memory` bytes of memory (`qemuDomainGetMemLockLimitBytes`): the
/// domain's `<hard_limit>`; unlimited with `<memoryBacking><locked/>`; else, for VFIO
/// host devices, the guest memory once (times the number of devices with a vIOMMU,
/// since libvirt 8.7) plus 1 GiB. libvirt runs QEMU without `CAP_IPC_LOCK`.
pub fn of_libvirt(policy: LibvirtMemlock, guest_memory: u64, devices: u64, viommu: bool) -> Limit {
    let (bytes, from) = match policy {
        LibvirtMemlock::HardLimit { bytes } if bytes / 1024 >= LIBVIRT_UNLIMITED_KIB => (
            None,
            "the domain's <memtune><hard_limit> (unlimited)".to_owned(),
        ),
        LibvirtMemlock::HardLimit { bytes } => {
            (Some(bytes), "the domain's <memtune><hard_limit>".to_owned())
        }
        LibvirtMemlock::Locked => (
            None,
            "the domain's <memoryBacking><locked/> (libvirt sets no limit)".to_owned(),
        ),
        LibvirtMemlock::Formula => {
            let factor = if viommu { devices.max(1) } else { 1 };
            let bytes = guest_memory.saturating_mul(factor).saturating_add(1 << 30);
            (
                Some(bytes),
                format!(
                    "libvirt's rule for VFIO devices: guest memory{} + 1 GiB \
                     (qemuDomainGetMemLockLimitBytes)",
                    if viommu && factor > 1 {
                        format!(" x {factor} devices behind the vIOMMU")
                    } else {
                        String::new()
                    }
                ),
            )
        }
    };
    Limit {
        bytes,
        cap_ipc_lock: false,
        already: 0,
        from,
    }
}

/// The most bytes QEMU has pinned at once while it starts, in whole pages of `page`
/// bytes (BARs mapped for peer-to-peer are device memory, not charged).
///
/// QEMU's listener maps guest memory when the vfio-pci device is realized, before the
/// system reset copies the firmware into its ROM regions and before x86's low ROM
/// overlays (`pc.rom`, the ISA BIOS alias at 0xc0000-0xfffff) hide RAM: the RAM block is
/// then mapped whole, and a ROM is memory nobody has written, mapped read-only, whose
/// pins are the shared zero page. type1 does not charge the zero page
/// (`is_invalid_reserved_pfn`: it is reserved), so it charges the RAM sections plus the
/// RAM under the low ROMs (`type1`); iommufd charges every page it pins: the RAM
/// sections and every ROM section (the low ROMs replace the RAM under them one for
/// one). Measured by vmtest's `readiness/memlock-*` (QEMU 7.2 on type1, 10.0 on
/// iommufd), which find the boundary exactly there.
pub fn pinned_at_start(layout: &Layout, page: u64, type1: bool) -> u128 {
    let page = u128::from(page.max(1));
    layout
        .sections()
        .iter()
        .filter(|s| s.is_dma_mapped() && !s.p2p)
        .filter(|s| !type1 || s.kind == iova_guest::SectionKind::Ram || s.range.last() < 0x10_0000)
        .map(|s| {
            let first = u128::from(s.range.first()) / page;
            let last = u128::from(s.range.last()) / page;
            (last - first + 1) * page
        })
        .sum()
}

/// The verdict: what the VM pins and what the limit allows.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Bytes pinned and charged to the one counter.
    pub needed: u128,
    /// The limit.
    pub limit: Limit,
    /// Containers charged (1; the number of devices behind a vIOMMU).
    pub containers: u64,
    /// iommufd charges the user, not the process.
    pub per_user: bool,
    /// The problem, when the limit is too low.
    pub problem: Option<VmmProblem>,
}

impl Verdict {
    /// JSON for `check --json` (`memlock`).
    pub fn json(&self) -> Value {
        json!({
            "needed_bytes": self.needed.to_string(),
            "limit_bytes": self.limit.bytes.map(|b| b.to_string()),
            "cap_ipc_lock": self.limit.cap_ipc_lock,
            "already_bytes": self.limit.already.to_string(),
            "limit_from": self.limit.from,
            "containers": self.containers,
            "charged_to": if self.per_user { "user" } else { "process" },
            "ok": self.problem.is_none(),
            "problem": self.problem.as_ref().map(|p| json!({
                "kind": p.kind,
                "when": p.when,
                "message": p.message,
                "fix": p.fix,
            })),
        })
    }

    /// One line for the text report.
    pub fn text(&self) -> String {
        format!(
            "Locked memory: the VM pins {}{}; the limit is {} ({}{}){}",
            human_bytes(self.needed),
            if self.containers > 1 {
                format!(" ({} containers)", self.containers)
            } else {
                String::new()
            },
            self.limit
                .bytes
                .map_or("unlimited".to_owned(), |b| human_bytes(u128::from(b))),
            self.limit.from,
            if self.limit.cap_ipc_lock {
                "; CAP_IPC_LOCK: not checked"
            } else {
                ""
            },
            if self.per_user {
                "; iommufd charges the user: other processes of the same user count too"
            } else {
                ""
            }
        )
    }
}

/// The locked-memory verdict for a VM pinning `per_container` bytes into each of
/// `containers` containers (type1: charged to the process; iommufd: to the user).
/// Behind a vIOMMU this is charged at start too: until the guest enables it (VT-d's
/// DMAR is off at reset; virtio-iommu bypasses until its driver attaches, `boot-bypass`
/// on by default) each device's address space is the guest's memory, and QEMU maps all
/// of it into each container (measured by vmtest's
/// `readiness/memlock-viommu-two-devices-*`, type1 and iommufd).
pub fn verdict(per_container: u128, containers: u64, per_user: bool, limit: Limit) -> Verdict {
    let needed = per_container.saturating_mul(u128::from(containers.max(1)));
    let total = needed.saturating_add(u128::from(limit.already));
    let over = !limit.cap_ipc_lock && limit.bytes.is_some_and(|b| total > u128::from(b));
    let problem = over.then(|| {
        let lim = limit.bytes.unwrap_or(0);
        let kib = total.div_ceil(1024);
        VmmProblem {
            kind: "memlock",
            range: None,
            when: "start",
            message: format!(
                "the VM pins {} of guest memory{}{}, past RLIMIT_MEMLOCK of {} ({}): \
                 VFIO_IOMMU_MAP_DMA fails with ENOMEM (the kernel logs \
                 \"vfio_pin_pages_remote: RLIMIT_MEMLOCK ({}) exceeded\"; QEMU \
                 \"vfio_dma_map(...) = -12 (Cannot allocate memory)\")",
                human_bytes(needed),
                if containers > 1 {
                    format!(", once per device behind the vIOMMU ({containers})")
                } else {
                    String::new()
                },
                if limit.already > 0 {
                    format!(
                        " on top of {} already charged to the {}",
                        human_bytes(u128::from(limit.already)),
                        if per_user { "user" } else { "process" }
                    )
                } else {
                    String::new()
                },
                human_bytes(u128::from(lim)),
                limit.from,
                lim / 4096 * 4096,
            ),
            fix: format!(
                "raise the limit to at least {kib} KiB: `ulimit -l {kib}` (or `prlimit \
                 --memlock={total}`) for the process that starts QEMU, or give it \
                 CAP_IPC_LOCK; libvirt: <memtune><hard_limit unit='KiB'>{kib}</hard_limit>\
                 </memtune> or <memoryBacking><locked/></memoryBacking>"
            ),
        }
    });
    Verdict {
        needed,
        limit,
        containers: containers.max(1),
        per_user,
        problem,
    }
}
