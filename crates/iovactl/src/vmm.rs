//! VMM command lines for `check`, `plan` and `render`: where the argv comes from
//! (after `--`, `--cmdline FILE`, `--pid PID`), which QEMU release to model, and the
//! command-line-only findings (QEMU refusals, vIOMMU address widths, mapping count).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iova::range::{IovaRange, IovaSet};
use iova_guest::qemu_cmdline::{QemuError, QemuVersion, QemuVm, parse_qemu_argv};
use iova_guest::qemu_model::{HostCpu, QemuModel, model};
use iova_guest::{Container, CpuVendor};
use serde::Serialize;

use crate::error::CliError;

/// The kernel's default `vfio_iommu_type1.dma_entry_limit`.
const DEFAULT_DMA_ENTRY_LIMIT: u64 = 65535;

/// Reads a command-line file: NUL-separated (as `/proc/PID/cmdline`), or text. Text is
/// one argument per line (a line wrapped in matching quotes has them removed); a file
/// whose lines end in `\` continuations, or a single line, is split as shell words.
pub fn parse_cmdline_text(name: &str, bytes: &[u8]) -> Result<Vec<String>, CliError> {
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|e| CliError::input(format!("{name} is not UTF-8 text: {e}")))?;
    if text.contains('\0') {
        return Ok(text
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect());
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        return Err(CliError::input(format!("{name}: no command line in it")));
    }
    if lines.len() == 1 || lines.iter().any(|l| l.ends_with('\\')) {
        let mut words = shell_words(&text).map_err(|e| CliError::input(format!("{name}: {e}")))?;
        // Leading NAME=VALUE words set the command's environment, as in a shell (libvirt's
        // `.args` files and logs start with `LC_ALL=C PATH=... HOME=...`).
        let env = words.iter().take_while(|w| is_assignment(w)).count();
        words.drain(..env);
        return Ok(words);
    }
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let first = l.chars().next().unwrap_or(' ');
        if first == '\'' || first == '"' {
            if l.len() < 2 || !l.ends_with(first) {
                return Err(CliError::input(format!(
                    "{name}: unbalanced quote on line {}: {l}",
                    i.saturating_add(1)
                )));
            }
            out.push(l[1..l.len() - 1].to_owned());
        } else {
            out.push((*l).to_owned());
        }
    }
    Ok(out)
}

/// Whether a shell word is a variable assignment (`NAME=VALUE`, NAME a shell name).
fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(n, _)| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Splits text as a POSIX shell would split words (quotes, backslashes, line
/// continuations); no expansions.
fn shell_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unbalanced single quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some('\n') => {}
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unbalanced double quote".to_owned()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unbalanced double quote".to_owned()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(x) => {
                    in_word = true;
                    cur.push(x);
                }
                None => return Err("a backslash ends the text".to_owned()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Where the argv came from, for messages.
pub fn argv_from(
    after_dashes: &[String],
    file: Option<&Path>,
    pid: Option<u32>,
) -> Result<Option<(Vec<String>, String)>, CliError> {
    let sources = usize::from(!after_dashes.is_empty())
        + usize::from(file.is_some())
        + usize::from(pid.is_some());
    if sources > 1 {
        return Err(CliError::input(
            "give the VMM command line once: after --, with --cmdline FILE or with --pid PID",
        ));
    }
    if !after_dashes.is_empty() {
        return Ok(Some((
            after_dashes.to_vec(),
            "the command line after --".to_owned(),
        )));
    }
    if let Some(f) = file {
        let bytes = crate::input::read_file(f, "--cmdline file")?;
        let argv = parse_cmdline_text(&format!("--cmdline file {}", f.display()), &bytes)?;
        return Ok(Some((argv, format!("--cmdline {}", f.display()))));
    }
    if let Some(p) = pid {
        let path = PathBuf::from(format!("/proc/{p}/cmdline"));
        let bytes = std::fs::read(&path).map_err(|e| {
            CliError::input(format!("--pid {p}: cannot read {}: {e}", path.display()))
        })?;
        if bytes.is_empty() {
            return Err(CliError::input(format!(
                "--pid {p}: the process has no command line"
            )));
        }
        let argv = parse_cmdline_text(&format!("--pid {p}"), &bytes)?;
        return Ok(Some((argv, format!("process {p}"))));
    }
    Ok(None)
}

/// The QEMU argv of a libvirt domain XML file (`-` for standard input).
pub fn libvirt_argv(
    path: &Path,
) -> Result<(Vec<String>, String, iova_guest::libvirt::DomainPolicy), CliError> {
    let (bytes, name) = if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), 16 << 20), &mut b)
            .map_err(|e| CliError::Os(format!("--libvirt -: cannot read standard input: {e}")))?;
        (b, "--libvirt - (standard input)".to_owned())
    } else {
        (
            crate::input::read_file(path, "--libvirt file")?,
            format!("--libvirt {}", path.display()),
        )
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| CliError::input(format!("{name} is not UTF-8 text: {e}")))?;
    let err = |e: iova_guest::qemu_cmdline::QemuError| {
        if e.is_unmodelled() {
            CliError::CannotAnswer(format!("libvirt domain: {e}"))
        } else {
            CliError::input(format!("libvirt domain: {e}"))
        }
    };
    let (argv, policy) = iova_guest::libvirt::read_domain(&name, &text).map_err(err)?;
    Ok((argv, name, policy))
}

/// The size of a firmware file QEMU would load: the path as given, else in the `-L`
/// directories and QEMU's data directories.
pub fn firmware_size(name: &str, dirs: &[String]) -> Option<u64> {
    let direct = Path::new(name);
    let mut candidates: Vec<PathBuf> = vec![direct.to_path_buf()];
    if !name.contains('/') {
        for d in dirs.iter().map(String::as_str).chain([
            "/usr/share/qemu",
            "/usr/share/seabios",
            "/usr/local/share/qemu",
        ]) {
            candidates.push(Path::new(d).join(name));
        }
    }
    candidates.iter().find_map(|p| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    })
}

/// Asks the binary its version (`--version`), within a few seconds.
fn ask_version(bin: &str) -> Option<QemuVersion> {
    QemuVersion::parse(&version_line(std::ffi::OsStr::new(bin)).ok()?)
}

/// The first line `BIN --version` prints, waiting at most five seconds (a binary that
/// hangs is killed). `Err(Some(e))`: it could not be started; `Err(None)`: it failed,
/// hung or printed nothing.
pub(crate) fn version_line(bin: &std::ffi::OsStr) -> Result<String, Option<std::io::Error>> {
    let mut child = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(Some)?;
    let deadline = Instant::now()
        .checked_add(Duration::from_secs(5))
        .ok_or(None)?;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(None);
            }
        }
    }
    let out = child.wait_with_output().map_err(|_| None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(str::to_owned).ok_or(None)
}

/// A VMM command line, read and modelled.
pub struct Vmm {
    /// The parsed command line.
    pub vm: QemuVm,
    /// The model.
    pub model: QemuModel,
    /// Where the release came from.
    pub version_source: String,
    /// Where the argv came from.
    pub argv_source: String,
}

fn qemu_err(e: QemuError) -> CliError {
    if e.is_unmodelled() {
        CliError::CannotAnswer(format!("VMM command line: {e}"))
    } else {
        CliError::input(format!("VMM command line: {e}"))
    }
}

/// Parses a QEMU command line; no host fact is needed.
pub fn parse_vmm_argv(argv: &[String]) -> Result<QemuVm, CliError> {
    parse_qemu_argv(argv, firmware_size).map_err(qemu_err)
}

/// The QEMU release to model and, in words, where it came from: `--qemu-version`, else
/// what argv\[0\] `--version` says, else the newest modelled release, assumed.
pub fn resolve_version(
    argv0: &str,
    version_arg: Option<&str>,
) -> Result<(QemuVersion, String), CliError> {
    Ok(match version_arg {
        Some(t) => {
            let v = QemuVersion::parse(t).ok_or_else(|| {
                CliError::input(format!("--qemu-version {t}: expected MAJOR.MINOR[.MICRO]"))
            })?;
            (v, "--qemu-version".to_owned())
        }
        None => match ask_version(argv0) {
            Some(v) => (v, format!("{argv0} --version")),
            None => (
                QemuVersion::NEWEST,
                format!(
                    "assumed: {argv0} cannot be run here to ask its version; the newest \
                     modelled release (give --qemu-version)"
                ),
            ),
        },
    })
}

/// Models a parsed QEMU command line of release `version` on `host` (whose CPU vendor
/// and physical address width are the defaults of the guest's).
pub fn model_vmm(
    vm: QemuVm,
    (version, version_source): (QemuVersion, String),
    argv_source: String,
    host: &iova::Host,
    cpu_vendor_arg: Option<&str>,
) -> Result<Vmm, CliError> {
    let vendor = match cpu_vendor_arg {
        Some(v) => Some(
            CpuVendor::parse(v)
                .ok_or_else(|| CliError::input(format!("--cpu-vendor {v}: use intel or amd")))?,
        ),
        None => CpuVendor::of_host(host),
    };
    let hc = HostCpu {
        vendor,
        phys_bits: host.settings.cpu_phys_bits,
    };
    let model = model(&vm, version, &hc).map_err(qemu_err)?;
    Ok(Vmm {
        vm,
        model,
        version_source,
        argv_source,
    })
}

/// A problem only a VMM definition shows: QEMU refuses to start, a vIOMMU lets the
/// guest use IOVAs the host cannot map, too many DMA mappings.
#[derive(Debug, Clone, Serialize)]
pub struct VmmProblem {
    /// `refused-at-start`, `viommu-iova-range`, `dma-entry-limit`.
    pub kind: &'static str,
    /// The range concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<IovaRange>,
    /// When it fails: `start` or `first-dma`.
    pub when: &'static str,
    /// What happens.
    pub message: String,
    /// The option that fixes it.
    pub fix: String,
}

/// Two assigned devices of one IOMMU group in two guest address spaces: behind a vIOMMU
/// each PCI device has its own (`pci_device_iommu_address_space`), unless it sits on a
/// conventional PCI bus (`pci-bridge`, `pcie-pci-bridge`), whose devices alias to the
/// bridge and share one; QEMU opens a group in one address space only
/// (`vfio_get_group`: "group N used in multiple address spaces") and refuses to start.
fn address_space_split(vmm: &Vmm, host: &iova::Host) -> Option<VmmProblem> {
    let viommu = vmm.model.viommus.first()?;
    let mut seen: Vec<(u32, String, &str)> = Vec::new();
    for (i, dev) in vmm.vm.vfio.iter().enumerate() {
        let Ok(g) = host.group_of_device(dev) else {
            continue;
        };
        let key = address_space_key(vmm, i);
        if let Some((_, _, other)) = seen.iter().find(|(id, k, _)| *id == g.id && *k != key) {
            return Some(VmmProblem {
                kind: "address-space-split",
                range: None,
                when: "start",
                message: format!(
                    "{other} and {dev} are in IOMMU group {}, and behind {} each has its own \
                     address space: QEMU refuses (\"group {} used in multiple address \
                     spaces\")",
                    g.id,
                    viommu.name(),
                    g.id
                ),
                fix: "assign one device of the group; or put them on one conventional PCI \
                      bus (-device pci-bridge,id=br0,chassis_nr=1 and bus=br0 on each \
                      vfio-pci), whose devices share an address space; or drop the vIOMMU"
                    .to_owned(),
            });
        }
        seen.push((g.id, key, dev));
    }
    None
}

/// Which guest address space assigned device `i` is in behind a vIOMMU: its
/// conventional PCI bus's (shared), else its own.
fn address_space_key(vmm: &Vmm, i: usize) -> String {
    match vmm.vm.vfio_buses.get(i).cloned().flatten() {
        Some(b) if vmm.vm.conventional_buses.contains(&b) => format!("bus {b}"),
        _ => format!("device {i}"),
    }
}

/// The VFIO containers QEMU opens for the assigned devices: one per guest address
/// space (all in one without a vIOMMU; behind one, one per device or per conventional
/// PCI bus). Each pins and charges the memory the guest maps into it.
pub fn containers(vmm: &Vmm) -> u64 {
    if vmm.model.viommus.is_empty() {
        return 1;
    }
    let mut keys: Vec<String> = (0..vmm.vm.vfio.len())
        .map(|i| address_space_key(vmm, i))
        .collect();
    keys.sort();
    keys.dedup();
    u64::try_from(keys.len()).unwrap_or(u64::MAX).max(1)
}

fn bits_range(bits: u8) -> Option<IovaRange> {
    let last = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits).checked_sub(1)?
    };
    IovaRange::new(0, last).ok()
}

/// The IOVA space a vIOMMU lets the guest use, and how its mismatch with the host
/// fails, by QEMU release (facts read from QEMU 7.2 and 10.0 over QMP: intel-iommu
/// `aw-bits` is 39 up to machine type 9.1 and 48 from 9.2; virtio-iommu has
/// `aw-bits`/`granule` from 9.0, 39 and `host` by default from machine type 9.0, 64
/// and `4k` before; QEMU 7.2's virtio-iommu has a 64-bit input range).
fn viommu_space(
    v: &iova_guest::qemu_cmdline::Viommu,
    m: &QemuModel,
) -> (Option<u8>, &'static str, String) {
    use iova_guest::qemu_cmdline::Viommu as V;
    let new = m.version >= QemuVersion::new(9, 1);
    match v {
        V::IntelIommu { aw_bits } => {
            let bits = aw_bits.unwrap_or(if m.machine_version >= QemuVersion::new(9, 2) {
                48
            } else {
                39
            });
            (
                Some(bits),
                if new { "start" } else { "first-dma" },
                "-device intel-iommu,aw-bits=39".to_owned(),
            )
        }
        V::VirtioIommu { .. } => {
            if m.version < QemuVersion::new(9, 0) {
                (
                    Some(64),
                    "first-dma",
                    "QEMU >= 9.0 (virtio-iommu reports the host's unusable IOVAs to the guest)"
                        .to_owned(),
                )
            } else {
                // From 9.0 QEMU gives the guest the host's unusable IOVAs as reserved
                // regions (PROBE), whatever aw-bits says: nothing to flag.
                (None, "", String::new())
            }
        }
        V::AmdIommu => (
            Some(48),
            "first-dma",
            "-device intel-iommu,aw-bits=39 (QEMU's amd-iommu has no address-width option)"
                .to_owned(),
        ),
        V::SmmuV3 => (
            None,
            "start",
            "drop iommu=smmuv3 (use virtio-iommu-pci)".to_owned(),
        ),
    }
}

/// The problems of a VMM definition with this container.
pub fn vmm_problems(
    vmm: &Vmm,
    c: &Container,
    host: &iova::Host,
    dma_entry_limit: Option<u32>,
) -> Vec<VmmProblem> {
    let mut out = Vec::new();
    out.extend(address_space_split(vmm, host));
    for r in &vmm.model.refusals {
        out.push(VmmProblem {
            kind: "refused-at-start",
            range: None,
            when: "start",
            message: r.message.clone(),
            fix: format!("change {}", r.option),
        });
    }
    for v in &vmm.model.viommus {
        let (bits, when, fix) = viommu_space(v, &vmm.model);
        let Some(bits) = bits else {
            if !matches!(v, iova_guest::qemu_cmdline::Viommu::SmmuV3) {
                continue;
            }
            out.push(VmmProblem {
                kind: "viommu-unsupported",
                range: None,
                when,
                message: "QEMU's emulated SMMUv3 cannot sit in front of an assigned device \
                          (it does not send MAP notifications): vfio-pci fails to realize"
                    .to_owned(),
                fix,
            });
            continue;
        };
        let Some(space) = bits_range(bits) else {
            continue;
        };
        // Apertures only: the guest's vIOMMU reserves the MSI window itself.
        let mut reachable = IovaSet::from(space);
        for a in c.apertures.iter().filter_map(|a| a.aperture) {
            reachable = reachable.intersection(&IovaSet::from(a));
        }
        let beyond = IovaSet::from(space).difference(&reachable);
        if let Some(first) = beyond.iter().next() {
            let last = beyond.iter().last().map_or(first.last(), |r| r.last());
            let range = IovaRange::new(first.first(), last).ok();
            out.push(VmmProblem {
                kind: "viommu-iova-range",
                range,
                when,
                message: format!(
                    "{} gives the guest {bits}-bit IOVAs, but the host IOMMU cannot map \
                     {:#x}-{last:#x}: {}",
                    v.name(),
                    first.first(),
                    if when == "start" {
                        format!(
                            "QEMU {} refuses to start (host IOMMU compatibility check)",
                            vmm.model.version
                        )
                    } else {
                        format!(
                            "QEMU {} starts, and the guest's first DMA with such an IOVA fails",
                            vmm.model.version
                        )
                    }
                ),
                fix,
            });
        }
    }
    // iommufd's IOAS has no mapping limit (the limit is vfio_iommu_type1's).
    if vmm.model.viommus.is_empty() && !vmm.vm.vfio_iommufd {
        let limit = dma_entry_limit.map_or(DEFAULT_DMA_ENTRY_LIMIT, u64::from);
        if vmm.model.mappings > limit {
            out.push(VmmProblem {
                kind: "dma-entry-limit",
                range: None,
                when: "start",
                message: format!(
                    "the VM needs {} DMA mappings; vfio_iommu_type1.dma_entry_limit is {limit} \
                     (VFIO_IOMMU_MAP_DMA fails with ENOSPC)",
                    vmm.model.mappings
                ),
                fix: "a larger virtio-mem block-size, fewer memory devices, or raise \
                      vfio_iommu_type1.dma_entry_limit"
                    .to_owned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_args_files_drop_their_environment() {
        // The shape of libvirt's `.args` files and per-domain logs: environment
        // assignments, then the binary, one option per continued line, JSON quoted.
        let text = "LC_ALL=C \\\nPATH=/bin \\\nHOME=/var/lib/libvirt/qemu/domain-7-vm \\\n\
                    /usr/bin/qemu-system-x86_64 \\\n-name guest=vm,debug-threads=on \\\n\
                    -device '{\"driver\":\"vfio-pci\",\"host\":\"0000:03:00.0\"}' \\\n\
                    -msg timestamp=on\n";
        let argv = parse_cmdline_text("t", text.as_bytes()).unwrap();
        assert_eq!(
            argv,
            [
                "/usr/bin/qemu-system-x86_64",
                "-name",
                "guest=vm,debug-threads=on",
                "-device",
                r#"{"driver":"vfio-pci","host":"0000:03:00.0"}"#,
                "-msg",
                "timestamp=on"
            ]
        );
        // Only leading assignments are environment; a later NAME=VALUE is an argument.
        let argv = parse_cmdline_text("t", b"A=1 qemu-system-x86_64 -m 1G B=2").unwrap();
        assert_eq!(argv, ["qemu-system-x86_64", "-m", "1G", "B=2"]);
        assert!(is_assignment("_X1=") && !is_assignment("1X=2") && !is_assignment("-m=1"));
    }

    #[test]
    fn cmdline_files() {
        let nul = b"qemu-system-x86_64\0-m\08G\0";
        assert_eq!(
            parse_cmdline_text("f", nul).unwrap(),
            ["qemu-system-x86_64", "-m", "8G"]
        );
        let lines = b"qemu-system-x86_64\n-append\n'console=ttyS0 quiet'\n";
        assert_eq!(
            parse_cmdline_text("f", lines).unwrap(),
            ["qemu-system-x86_64", "-append", "console=ttyS0 quiet"]
        );
        let shell = b"qemu-system-x86_64 -m 8G \\\n  -append \"a b\"\n";
        assert_eq!(
            parse_cmdline_text("f", shell).unwrap(),
            ["qemu-system-x86_64", "-m", "8G", "-append", "a b"]
        );
        let e = parse_cmdline_text("f", b"qemu-system-x86_64 -append 'x\n").unwrap_err();
        assert!(e.to_string().contains("unbalanced"), "{e}");
        let e = parse_cmdline_text("f", b"qemu\n-m\n'8G\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
