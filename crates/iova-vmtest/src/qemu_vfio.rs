//! The verdict is the outcome: the real QEMU, with `-device vfio-pci` on the guest's
//! `edu` device, against what `iovactl check -- <the same argv>` predicted.
//!
//! `vmtest/qemu-vfio.sh` appends an archive with QEMU 7.2 (x86_64 and aarch64, the
//! test machine's own) and QEMU 10.0.2 (x86_64, bookworm-backports) to the initramfs
//! of some boots; this module runs only when it is there. Each case starts the inner
//! QEMU paused (`-S`, TCG, QMP on stdio): QEMU maps the guest's RAM through VFIO while
//! it starts, so a paused VM has already met the kernel. Once QMP answers, the VM
//! started; otherwise QEMU's exit and its error lines say why. The prediction is read
//! from `iovactl check --json` (fatal conflicts: `VFIO_IOMMU_MAP_DMA` of that section
//! fails with EINVAL; `dma-entry-limit`: ENOSPC; a problem `when: start`: QEMU refuses;
//! `when: first-dma`: QEMU starts, the guest's DMA fails later) and compared with what
//! QEMU did, errno and IOVA range included.
//!
//! Every case also states what must happen on this guest, from facts (the VT-d address
//! width in sysfs, the kernel's documented checks), so a case where tool and QEMU agree
//! on the wrong thing (say both "starts" because the DIMM landed elsewhere) fails too.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::facts;
use crate::report::Report;

const IOVACTL: &str = "/iovactl";
const QEMU72: &str = "/usr/bin/qemu-system-x86_64";
const QEMU72_ARM: &str = "/usr/bin/qemu-system-aarch64";
const QEMU10: &str = "/opt/qemu-10.0/usr/bin/qemu-system-x86_64";
/// Keeps QEMU 10.0 from loading 7.2's modules (none are needed with `-nodefaults`).
const QEMU10_MODULES: &str = "/opt/qemu-10.0/usr/lib/x86_64-linux-gnu/qemu";
const DMA_ENTRY_LIMIT: &str = "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit";
/// Start-up under TCG inside a TCG guest takes seconds; a hung QEMU is killed.
const START_TIMEOUT: Duration = Duration::from_secs(150);

const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;
const ENOMEM: i32 = 12;
/// The unprivileged user the memlock cases run QEMU as (no CAP_IPC_LOCK).
const VM_USER: &str = facts::VM_USER;

/// What QEMU did, or what `check` says it will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// QEMU started (QMP answered; the VM is paused).
    Starts,
    /// QEMU starts; the guest's first DMA into `first..=last` fails (check only).
    StartsFailsAtFirstDma {
        /// The first IOVA the host cannot map.
        first: u64,
        /// The last.
        last: u64,
    },
    /// A `VFIO_IOMMU_MAP_DMA` (or `IOMMU_IOAS_MAP`) failed with `errno` and QEMU quit;
    /// the range is the section QEMU tried to map (`None`: check names no range).
    MapFails {
        /// The positive errno.
        errno: i32,
        /// The section's first and last IOVA.
        range: Option<(u64, u64)>,
    },
    /// QEMU refused to start for another reason (its message).
    Refused(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Starts => write!(f, "starts"),
            Outcome::StartsFailsAtFirstDma { first, last } => {
                write!(f, "starts; the first DMA into {first:#x}-{last:#x} fails")
            }
            Outcome::MapFails {
                errno,
                range: Some((a, b)),
            } => write!(f, "the map of {a:#x}-{b:#x} fails with errno {errno}"),
            Outcome::MapFails { errno, range: None } => {
                write!(f, "a map fails with errno {errno}")
            }
            Outcome::Refused(m) => write!(f, "refused: {m}"),
        }
    }
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Starts | Outcome::StartsFailsAtFirstDma { .. } => "starts",
            Outcome::MapFails { .. } => "map-fails",
            Outcome::Refused(_) => "refused",
        }
    }
}

/// Compares a prediction with what QEMU did. `Ok` says what agreed, `Err` how they
/// differ.
pub fn compare(predicted: &Outcome, real: &Outcome) -> Result<String, String> {
    match (predicted, real) {
        (Outcome::Starts, Outcome::Starts) => Ok("both: starts".to_owned()),
        (Outcome::StartsFailsAtFirstDma { first, last }, Outcome::Starts) => Ok(format!(
            "both: starts (check: the first DMA into {first:#x}-{last:#x} fails later)"
        )),
        (
            Outcome::MapFails {
                errno: pe,
                range: pr,
            },
            Outcome::MapFails {
                errno: re,
                range: Some((f, l)),
            },
        ) => {
            if pe != re {
                return Err(format!("check predicts errno {pe}, QEMU got {re}"));
            }
            match pr {
                Some(r) if *r != (*f, *l) => Err(format!(
                    "check predicts the map of {:#x}-{:#x} fails, QEMU's failed map is {f:#x}-{l:#x}",
                    r.0, r.1
                )),
                _ => Ok(format!(
                    "both: the map of {f:#x}-{l:#x} fails with errno {re}"
                )),
            }
        }
        (Outcome::Refused(p), Outcome::Refused(q)) => {
            Ok(format!("both refuse: check {p:?}; QEMU {q:?}"))
        }
        (p, q) => Err(format!("check predicts: {p}; QEMU: {q}")),
    }
}

fn hex(v: &Value) -> Option<u64> {
    iova::range::parse_u64(v.as_str()?).ok()
}

/// The prediction of `iovactl check --json`: (outcome, QEMU's DMA mappings).
pub fn prediction(v: &Value) -> Result<(Outcome, u64), String> {
    let vmm = &v["vmm"];
    let mappings = vmm["dma_mappings"].as_u64().unwrap_or(0);
    let problems = vmm["problems"].as_array().cloned().unwrap_or_default();
    let at_start = |p: &&Value| p["when"] == "start";
    if let Some(p) = problems
        .iter()
        .find(|p| at_start(p) && p["kind"] != "dma-entry-limit" && p["kind"] != "memlock")
    {
        return Ok((
            Outcome::Refused(p["message"].as_str().unwrap_or("").to_owned()),
            mappings,
        ));
    }
    // The first fatal conflict in address order is the first map QEMU's listener
    // sends that the kernel refuses: the whole section it lies in.
    let fatal = v["conflicts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["fatal"] == true)
        .min_by_key(|c| hex(&c["first"]).unwrap_or(u64::MAX));
    if let Some(c) = fatal {
        let name = c["section"].as_str().unwrap_or("");
        let s = v["layout"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .ok_or_else(|| format!("conflict names section {name:?}, not in the layout"))?;
        let range = hex(&s["first"]).zip(hex(&s["last"]));
        return Ok((
            Outcome::MapFails {
                errno: EINVAL,
                range,
            },
            mappings,
        ));
    }
    // Past the mapping limit (ENOSPC) or RLIMIT_MEMLOCK (ENOMEM): the map that
    // crosses it fails (which section that is depends on QEMU's order; check names none).
    for (kind, errno) in [("dma-entry-limit", ENOSPC), ("memlock", ENOMEM)] {
        if problems.iter().any(|p| at_start(&p) && p["kind"] == kind) {
            return Ok((Outcome::MapFails { errno, range: None }, mappings));
        }
    }
    if let Some(p) = problems.iter().find(|p| p["when"] == "first-dma") {
        return Ok((
            Outcome::StartsFailsAtFirstDma {
                first: hex(&p["first"]).unwrap_or(0),
                last: hex(&p["last"]).unwrap_or(0),
            },
            mappings,
        ));
    }
    if v["ok"] != true {
        return Err(format!(
            "check says not ok without a fatal conflict or a problem: {v}"
        ));
    }
    Ok((Outcome::Starts, mappings))
}

/// The first failed DMA map in QEMU's error output: 7.2 prints
/// `vfio_dma_map(0xCONTAINER, 0xIOVA, 0xSIZE, 0xVADDR) = -22 (Invalid argument)`,
/// 10.0 `vfio_container_dma_map(...)` with the same arguments.
pub fn failed_map(stderr: &str) -> Option<(i32, u64, u64)> {
    for line in stderr.lines() {
        let Some(at) = line.find("dma_map(") else {
            continue;
        };
        let rest = &line[at + "dma_map(".len()..];
        let Some(close) = rest.find(')') else {
            continue;
        };
        let args: Vec<&str> = rest[..close].split(", ").collect();
        let [_, iova, size, _] = args.as_slice() else {
            continue;
        };
        let ret = rest[close..].strip_prefix(") = ")?;
        let ret: i32 = ret.split_whitespace().next()?.parse().ok()?;
        let iova = iova::range::parse_u64(iova).ok()?;
        let size = iova::range::parse_u64(size).ok()?;
        let last = iova.checked_add(size.checked_sub(1)?)?;
        return Some((-ret, iova, last));
    }
    None
}

/// QEMU's outcome from its exit and error output (after QMP never answered).
fn outcome_of_exit(stderr: &str) -> Outcome {
    match failed_map(stderr) {
        Some((errno, first, last)) => Outcome::MapFails {
            errno,
            range: Some((first, last)),
        },
        None => Outcome::Refused(
            stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("(no message)")
                .to_owned(),
        ),
    }
}

/// One QEMU run: the outcome, its stderr, and what `while_up` returned (when it
/// started).
struct Run<T> {
    outcome: Outcome,
    stderr: String,
    while_up: Option<T>,
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts QEMU (argv\[0\] is the binary); when QMP answers, queries the status, calls
/// `while_up(pid)` and quits it.
fn run_qemu<T>(argv: &[String], while_up: impl FnOnce(u32) -> T) -> Result<Run<T>, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if argv.iter().any(|a| a == QEMU10) {
        cmd.env("QEMU_MODULE_DIR", QEMU10_MODULES);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Events are not answers.
            if line.contains("\"event\"") {
                continue;
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ask = |cmd: &str| -> Result<Option<String>, String> {
        if !cmd.is_empty() {
            if writeln!(stdin, "{{\"execute\": \"{cmd}\"}}").is_err() {
                return Ok(None);
            }
            let _ = stdin.flush();
        }
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(l) => Ok(Some(l)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "QEMU gave no QMP answer within {}s",
                START_TIMEOUT.as_secs()
            )),
        }
    };
    let greeting = match ask("") {
        Ok(g) => g,
        Err(e) => {
            kill(&mut child);
            return Err(e);
        }
    };
    // QMP greets as soon as its character device opens, before the devices are
    // realized: a QEMU that then fails closes its output without an answer.
    let status = match greeting {
        None => Ok(None),
        Some(_) => ask("qmp_capabilities").and_then(|a| match a {
            Some(_) => ask("query-status"),
            None => Ok(None),
        }),
    };
    let while_up_result = match status {
        Ok(None) => {
            let _ = child.wait();
            let stderr = err_thread.join().unwrap_or_default();
            return Ok(Run {
                outcome: outcome_of_exit(&stderr),
                stderr,
                while_up: None,
            });
        }
        Ok(Some(s)) if s.contains("\"prelaunch\"") || s.contains("\"paused\"") => {
            let got = while_up(pid);
            let _ = ask("quit");
            got
        }
        other => {
            kill(&mut child);
            return Err(format!("QMP query-status answered {other:?}"));
        }
    };
    // QEMU exits after `quit`; one that does not is killed after a while.
    let mut waited = 0;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if waited < 300 => {
                std::thread::sleep(Duration::from_millis(100));
                waited += 1;
            }
            _ => {
                kill(&mut child);
                break;
            }
        }
    }
    Ok(Run {
        outcome: Outcome::Starts,
        stderr: err_thread.join().unwrap_or_default(),
        while_up: Some(while_up_result),
    })
}

/// `iovactl check --json` with `args` (e.g. `--` and an argv, or `--pid N`).
fn check_json(args: &[String]) -> Result<Value, String> {
    let out = Command::new(IOVACTL)
        .arg("check")
        .arg("--json")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {IOVACTL}: {e}"))?;
    let code = out.status.code().unwrap_or(-1);
    if code != 0 && code != 1 {
        return Err(format!(
            "iovactl check exit {code}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("check JSON: {e}"))?;
    if (code == 0) != (v["ok"] == true) {
        return Err(format!("exit {code} disagrees with \"ok\": {}", v["ok"]));
    }
    Ok(v)
}

fn predict(argv: &[String]) -> Result<(Outcome, u64, Value), String> {
    let mut a = vec!["--".to_owned()];
    a.extend(argv.iter().cloned());
    let v = check_json(&a)?;
    let (o, n) = prediction(&v)?;
    Ok((o, n, v))
}

/// One inner VM's command line.
fn argv(binary: &str, tail: &[&str], bdf: &str, iommufd: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        binary,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-S",
        "-accel",
        "tcg",
    ]
    .iter()
    .chain(tail)
    .map(|s| (*s).to_owned())
    .collect();
    if iommufd {
        a.extend(["-object".to_owned(), "iommufd,id=ifd0".to_owned()]);
        a.extend([
            "-device".to_owned(),
            format!("vfio-pci,host={bdf},iommufd=ifd0"),
        ]);
    } else {
        a.extend(["-device".to_owned(), format!("vfio-pci,host={bdf}")]);
    }
    a.extend(["-qmp".to_owned(), "stdio".to_owned()]);
    a
}

/// What must happen, from facts about this guest.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// Starts, and nothing fails later either.
    Starts,
    /// Starts; the guest's first DMA from this IOVA on fails (a vIOMMU wider than the
    /// host, where QEMU does not check at start).
    StartsDmaFailsFrom(u64),
    /// A map fails with this errno; of a section starting here, when given.
    MapFails(i32, Option<u64>),
    /// Refused, with QEMU's error saying this (the intended reason, not any failure).
    Refused(&'static str),
}

impl Want {
    /// QEMU's outcome is this; for the "starts" kinds, so is the prediction's kind of
    /// start (a late failure or none), which QEMU cannot show while paused.
    fn matches(self, pred: &Outcome, o: &Outcome) -> bool {
        match (self, o) {
            (Want::Starts, Outcome::Starts) => *pred == Outcome::Starts,
            (Want::StartsDmaFailsFrom(x), Outcome::Starts) => {
                matches!(pred, Outcome::StartsFailsAtFirstDma { first, .. } if *first == x)
            }
            (Want::MapFails(e, at), Outcome::MapFails { errno, range }) => {
                e == *errno && at.is_none_or(|a| range.is_some_and(|(f, _)| f == a))
            }
            (Want::Refused(why), Outcome::Refused(msg)) => msg.contains(why),
            _ => false,
        }
    }
}

/// Runs one case: predicts, runs QEMU, compares; returns QEMU's outcome.
fn case(r: &mut Report, name: &str, argv: &[String], want: Want) -> Option<Outcome> {
    // A launch-readiness case is named `readiness/...` (issue "Launch readiness").
    let check = if name.starts_with("readiness/") {
        name.to_owned()
    } else {
        format!("qemu-vfio/{name}")
    };
    let (mut pred, _, v) = match predict(argv) {
        Ok(p) => p,
        Err(e) => {
            r.fail(&check, &format!("check: {e}"));
            return None;
        }
    };
    if name.contains("dimm-at-") && std::env::var_os(MUTATE_ENV).is_some() {
        r.note(&format!(
            "{check}: {MUTATE_ENV} set: the prediction {pred:?} is replaced by Starts"
        ));
        pred = Outcome::Starts;
    }
    let t0 = std::time::Instant::now();
    let run = run_qemu(argv, |_| ());
    r.note(&format!(
        "{check}: QEMU ran {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            r.fail(&check, &format!("QEMU: {e}"));
            return None;
        }
    };
    report(r, &check, &pred, &run.outcome, want, &run.stderr, &v);
    Some(run.outcome)
}

fn report(
    r: &mut Report,
    check: &str,
    pred: &Outcome,
    real: &Outcome,
    want: Want,
    stderr: &str,
    v: &Value,
) {
    // The failed map's line when there is one (a map failing after start-up makes QEMU
    // abort with a register dump after it), else the last line.
    let last_err = stderr
        .lines()
        .find(|l| l.contains("dma_map("))
        .or_else(|| stderr.lines().rfind(|l| !l.trim().is_empty()))
        .unwrap_or("");
    match compare(pred, real) {
        Ok(_) if !want.matches(pred, real) => r.fail(
            check,
            &format!(
                "check ({pred}) and QEMU ({}) agree, but this guest must give {want:?}: {last_err}",
                real.kind()
            ),
        ),
        Ok(what) => {
            r.note(&format!("{check}: {what}"));
            if !last_err.is_empty() {
                r.note(&format!("{check}: QEMU said: {last_err}"));
            }
            r.pass(check);
        }
        Err(e) => {
            r.note(&format!("{check}: QEMU stderr: {}", stderr.trim()));
            r.note(&format!(
                "{check}: check problems {} conflicts {}",
                v["vmm"]["problems"], v["conflicts"]
            ));
            r.fail(check, &e);
        }
    }
}

fn x86_tail<'a>(mem: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut t = vec!["-machine", "q35", "-m", mem];
    t.extend_from_slice(extra);
    t
}

/// A DIMM at 2^39: beyond a 39-bit aperture, inside a 48-bit one.
const DIMM: &[&str] = &[
    "-object",
    "memory-backend-ram,id=d0,size=32M",
    "-device",
    "pc-dimm,id=dimm0,memdev=d0,addr=0x8000000000",
];
/// The DIMM's `addr=`.
const DIMM_ADDR: u64 = 0x80_0000_0000;
/// Where `virt` puts RAM (hw/arm/virt.c: VIRT_MEM at 1 GiB).
const VIRT_RAM_BASE: u64 = 0x4000_0000;
const DIMM_MEM: &str = "64M,slots=1,maxmem=600G";
const VIOMMU48: &[&str] = &["-device", "intel-iommu,caching-mode=on,aw-bits=48"];
/// QEMU 10.0's host-IOMMU compatibility check (hw/i386/intel_iommu.c, vtd_check_hiod):
/// `aw-bits 48 > host aw-bits 39`.
const VIOMMU_REFUSAL: &str = "> host aw-bits";
/// Set (through the guest's kernel command line, vmtest/run's VMTEST_QEMU_VFIO_MUTATE=1)
/// to replace check's prediction of the DIMM case with "starts": that case must then
/// FAIL, showing that the comparison can fail.
const MUTATE_ENV: &str = "qemu_vfio_mutate";

/// The qemu-vfio cases of this boot (nothing when the guest has no QEMU).
pub fn run(r: &mut Report, mode: &str, bdf: &str) {
    if !std::path::Path::new(QEMU72).exists() {
        return;
    }
    let t0 = std::time::Instant::now();
    cases(r, mode, bdf);
    r.note(&format!(
        "qemu-vfio: all cases took {:.0} s",
        t0.elapsed().as_secs_f64()
    ));
}

fn cases(r: &mut Report, mode: &str, bdf: &str) {
    let aw = match facts::vtd_address_width() {
        Ok(a) => a,
        Err(e) => return r.fail("qemu-vfio/setup", &e),
    };
    let up = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    r.note(&format!(
        "qemu-vfio: {mode} guest, VT-d {aw} bits, up {} s",
        up.split_whitespace().next().unwrap_or("?")
    ));
    let beyond_39 = if aw <= 39 {
        Want::MapFails(EINVAL, Some(DIMM_ADDR))
    } else {
        Want::Starts
    };
    if mode == "iommufd" {
        // QEMU 10.0 on the iommufd backend: the same predictions hold.
        let fits = argv(QEMU10, &x86_tail("64M", &[]), bdf, true);
        case(r, "iommufd/fits-starts", &fits, Want::Starts);
        let dimm = argv(QEMU10, &x86_tail(DIMM_MEM, DIMM), bdf, true);
        case(r, &format!("iommufd/dimm-at-2^39-aw{aw}"), &dimm, beyond_39);
        let vi = argv(QEMU10, &x86_tail("64M", VIOMMU48), bdf, true);
        let want = if aw < 48 {
            Want::Refused(VIOMMU_REFUSAL)
        } else {
            Want::Starts
        };
        case(
            r,
            &format!("iommufd/intel-iommu-48-qemu10-aw{aw}"),
            &vi,
            want,
        );
        // type1's mapping limit does not bind an iommufd IOAS: at 1 the VM still starts
        // (and check, reading the limit from sysfs, must not predict ENOSPC).
        with_entry_limit(r, "iommufd/dma-entry-limit-1-starts", 1, |r| {
            case(r, "iommufd/dma-entry-limit-1-starts", &fits, Want::Starts);
        });
        memlock(r, "readiness/iommufd/memlock", &fits, 1, false);
        memlock_viommu(r, "iommufd/", bdf, aw, true);
        match facts::vfio_cdev(bdf) {
            Ok(c) => node_access(
                r,
                "iommufd/",
                &fits,
                &format!("/dev/vfio/devices/{c}"),
                // QEMU 10 names the node, not the errno.
                "Failed to open /dev/vfio/devices/",
            ),
            Err(e) => r.fail("readiness/iommufd/device-node-setup", &e),
        }
        if let Some(fits_b) = second_vm(r, bdf, QEMU10, true) {
            memlock_two_vms(r, "iommufd/", &fits, &fits_b, true);
        }
        return;
    }

    // 1 and 7: a VM that fits starts, and checked live by its pid says the same.
    let fits = argv(QEMU72, &x86_tail("64M", &[]), bdf, false);
    live(r, &fits);
    memlock(r, "readiness/memlock", &fits, 1, true);
    memlock_viommu(r, "", bdf, aw, false);
    match facts::group_of(bdf) {
        Ok(g) => node_access(r, "", &fits, &format!("/dev/vfio/{g}"), "Permission denied"),
        Err(e) => r.fail("readiness/device-node-setup", &e),
    }
    if let Some(fits_b) = second_vm(r, bdf, QEMU72, false) {
        memlock_two_vms(r, "", &fits, &fits_b, false);
    }
    address_spaces(r, aw);
    // 2: a DIMM at 2^39.
    let dimm = argv(QEMU72, &x86_tail(DIMM_MEM, DIMM), bdf, false);
    let dimm_out = case(r, &format!("dimm-at-2^39-aw{aw}"), &dimm, beyond_39);
    // 5: intel-iommu with 48-bit IOVAs: 7.2 starts (late failure on a 39-bit host), 10.0
    // refuses at start on a 39-bit host.
    let vi72 = argv(QEMU72, &x86_tail("64M", VIOMMU48), bdf, false);
    let want = if aw < 48 {
        Want::StartsDmaFailsFrom(1u64 << aw)
    } else {
        Want::Starts
    };
    case(r, &format!("intel-iommu-48-qemu7.2-aw{aw}"), &vi72, want);
    let vi10 = argv(QEMU10, &x86_tail("64M", VIOMMU48), bdf, false);
    let want = if aw < 48 {
        Want::Refused(VIOMMU_REFUSAL)
    } else {
        Want::Starts
    };
    case(r, &format!("intel-iommu-48-qemu10-aw{aw}"), &vi10, want);
    if aw > 39 {
        return;
    }
    // 3: aarch64 virt, RAM from 1 GiB over the x86 MSI window: type1 checks the range
    // against the reserved regions before it pins anything, so 3 GiB of unpinned,
    // unreserved RAM is enough.
    let arm = argv(
        QEMU72_ARM,
        &[
            "-machine",
            "virt,memory-backend=m0",
            "-cpu",
            "max",
            "-object",
            "memory-backend-ram,id=m0,size=3G,reserve=off",
            "-m",
            "3G",
        ],
        bdf,
        false,
    );
    case(
        r,
        "aarch64-virt-3G-ram-over-msi-window",
        &arm,
        Want::MapFails(EINVAL, Some(VIRT_RAM_BASE)),
    );
    // 4: the mapping limit.
    entry_limit(r, &fits);
    // The comparison itself: wrong predictions of case 2 must be caught.
    if let Some(real @ Outcome::MapFails { .. }) = dimm_out {
        wrong_predictions(r, &real);
    } else {
        r.fail(
            "qemu-vfio/comparison-detects-wrong-prediction",
            "case dimm-at-2^39 gave no map failure to compare with",
        );
    }
}

/// Case 1 and 7: the fitting VM starts; `check --pid` of the running QEMU agrees.
fn live(r: &mut Report, fits: &[String]) {
    let (pred, _, v) = match predict(fits) {
        Ok(p) => p,
        Err(e) => return r.fail("qemu-vfio/fits-starts", &format!("check: {e}")),
    };
    let run = run_qemu(fits, |pid| {
        check_json(&["--pid".to_owned(), pid.to_string()])
    });
    match run {
        Ok(run) => {
            report(
                r,
                "qemu-vfio/fits-starts",
                &pred,
                &run.outcome,
                Want::Starts,
                &run.stderr,
                &v,
            );
            match run.while_up {
                Some(Ok(live)) => match prediction(&live) {
                    Ok((p, _)) => {
                        let same_layout = live["layout"] == v["layout"];
                        match compare(&p, &run.outcome) {
                            Ok(_) if same_layout => r.pass("qemu-vfio/running-vm-by-pid"),
                            Ok(_) => r.fail(
                                "qemu-vfio/running-vm-by-pid",
                                "--pid read a different layout than the argv",
                            ),
                            Err(e) => r.fail("qemu-vfio/running-vm-by-pid", &e),
                        }
                    }
                    Err(e) => r.fail("qemu-vfio/running-vm-by-pid", &e),
                },
                Some(Err(e)) => r.fail("qemu-vfio/running-vm-by-pid", &e),
                None => r.fail("qemu-vfio/running-vm-by-pid", "QEMU did not start"),
            }
        }
        Err(e) => r.fail("qemu-vfio/fits-starts", &format!("QEMU: {e}")),
    }
}

/// `argv` run as the unprivileged user with `ulimit -l kib`: root's shell sets the
/// limit (raising it past the default needs CAP_SYS_RESOURCE), busybox su keeps it and
/// drops to the user, whose QEMU has no CAP_IPC_LOCK. The command goes through a script
/// file, so su parses none of QEMU's options as its own.
fn as_user_with_memlock(argv: &[String], kib: u64, tag: &str) -> Result<Vec<String>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    // One script per VM (`tag`): a second VM may start while the first runs.
    let script = format!("/tmp/qemu-as-user-{tag}.sh");
    let script = script.as_str();
    let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
    std::fs::write(script, format!("#!/bin/sh\nexec {}\n", quoted.join(" ")))
        .and_then(|()| std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("{script}: {e}"))?;
    Ok(vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        format!("ulimit -l {kib} && exec /bin/su -s /bin/sh {VM_USER} -c {script}"),
        // run_qemu sets QEMU 10.0's module directory when its path is in the argv.
        argv.first().cloned().unwrap_or_default(),
    ])
}

/// The kernel's last `RLIMIT_MEMLOCK (N) exceeded` line, if any.
fn kernel_memlock_line() -> Option<String> {
    let out = Command::new("/bin/dmesg").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rfind(|l| l.contains("RLIMIT_MEMLOCK"))
        .map(str::to_owned)
}

/// Locked memory: the VM run by an unprivileged user with `ulimit -l` exactly what
/// `check` says it pins, and one page less. At the limit QEMU starts; one page below,
/// the map that crosses it fails with ENOMEM (type1: the kernel logs the limit).
/// `copies`: the containers the VM's 64 MiB of RAM is pinned in (one per address space).
fn memlock(r: &mut Report, base: &str, fits: &[String], copies: u64, kernel_logs: bool) {
    let base = base.to_owned();
    if let Err(e) = facts::unprivileged_user(VM_USER) {
        return r.fail(&format!("{base}-setup"), &e);
    }
    let mut a = vec![
        "--memlock".to_owned(),
        "unlimited".to_owned(),
        "--".to_owned(),
    ];
    a.extend(fits.iter().cloned());
    let needed = match check_json(&a) {
        Ok(v) => v["memlock"]["needed_bytes"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok()),
        Err(e) => return r.fail(&format!("{base}-setup"), &e),
    };
    // 64 MiB of RAM less the holes below 1 MiB, at most the RAM plus 1 MiB of ROM, in
    // each container.
    let Some(needed) = needed.filter(|n| {
        *n >= copies * (63 << 20) && *n <= copies * (65 << 20) && n % (copies * 4096) == 0
    }) else {
        return r.fail(
            &format!("{base}-setup"),
            &format!("check pins {needed:?} bytes for a 64 MiB guest in {copies} container(s)"),
        );
    };
    r.note(&format!("{base}: check says the VM pins {needed} bytes"));
    let kib = needed / 1024;
    for (limit_kib, name, want) in [
        (
            kib - 4,
            "one-page-below-enomem",
            Want::MapFails(ENOMEM, None),
        ),
        (kib, "exact-starts", Want::Starts),
    ] {
        let check = format!("{base}-{name}");
        let mut a = vec![
            "--memlock".to_owned(),
            format!("{limit_kib}K"),
            "--".to_owned(),
        ];
        a.extend(fits.iter().cloned());
        let (pred, v) = match check_json(&a).and_then(|v| prediction(&v).map(|p| (p.0, v))) {
            Ok(p) => p,
            Err(e) => {
                r.fail(&check, &format!("check: {e}"));
                continue;
            }
        };
        let run =
            match as_user_with_memlock(fits, limit_kib, "vm").and_then(|a| run_qemu(&a, |_| ())) {
                Ok(run) => run,
                Err(e) => {
                    r.fail(&check, &format!("QEMU: {e}"));
                    continue;
                }
            };
        report(r, &check, &pred, &run.outcome, want, &run.stderr, &v);
        if kernel_logs && want != Want::Starts {
            // vfio_pin_pages_remote: RLIMIT_MEMLOCK (limit, in bytes) exceeded.
            let line = kernel_memlock_line();
            r.note(&format!("{check}: kernel: {line:?}"));
            r.eq(
                &format!("{check}-kernel-log"),
                line.is_some_and(|l| {
                    l.contains(&format!("RLIMIT_MEMLOCK ({}) exceeded", limit_kib * 1024))
                }),
                true,
            );
        }
    }
}

/// Two assigned devices in two groups behind a vIOMMU: each has its own address space,
/// so its own container (type1) or IOAS (iommufd), and the guest's RAM is pinned and
/// charged once per device (libvirt multiplies its limit by the devices for this
/// reason). `check` must say twice the RAM, and the real QEMU must start at exactly
/// that limit and fail one page below it.
fn memlock_viommu(r: &mut Report, prefix: &str, bdf: &str, aw: u32, iommufd: bool) {
    let base = format!("readiness/{prefix}memlock-viommu-two-devices");
    let Ok(group) = facts::group_of(bdf) else {
        return r.fail(&format!("{base}-setup"), &format!("no group for {bdf}"));
    };
    let Some(other) = facts::pci_devices_with("0x1234", "0x11e8")
        .into_iter()
        .find(|d| facts::group_of(d).is_ok_and(|g| g != group))
    else {
        return r.fail(
            &format!("{base}-setup"),
            "no edu device in a second IOMMU group",
        );
    };
    let (binary, tail) = if iommufd {
        (QEMU10, ",iommufd=ifd0")
    } else {
        (QEMU72, "")
    };
    let viommu = format!("intel-iommu,caching-mode=on,aw-bits={aw}");
    let mut a = argv(
        binary,
        &x86_tail("64M", &["-device", &viommu]),
        bdf,
        iommufd,
    );
    // argv ends with -qmp stdio: the second device goes before it.
    let qmp = a.split_off(a.len() - 2);
    a.extend(["-device".to_owned(), format!("vfio-pci,host={other}{tail}")]);
    a.extend(qmp);
    memlock(r, &base, &a, 2, !iommufd);
}

/// Device node access: the fitting VM's node (`/dev/vfio/N`, or the device's cdev for
/// iommufd) made root's alone (0600, udev's default for a new group), then open to all
/// (what libvirt arranges for its QEMU). `check` run as the unprivileged user must
/// predict QEMU's refusal (`refusal` is what QEMU says) in the first case and the
/// start in the second, and the real QEMU, run as that user, must do just that.
fn node_access(r: &mut Report, prefix: &str, fits: &[String], node: &str, refusal: &'static str) {
    use std::os::unix::fs::PermissionsExt as _;
    let base = format!("readiness/{prefix}device-node");
    if let Err(e) = facts::unprivileged_user(VM_USER) {
        return r.fail(&format!("{base}-setup"), &e);
    }
    // Plenty for a 64 MiB guest: only the node decides here.
    let kib = 1 << 20;
    for (mode, name, want) in [
        (0o600, "root-only-refused", Want::Refused(refusal)),
        (0o666, "open-starts", Want::Starts),
    ] {
        let check = format!("{base}-{name}");
        if let Err(e) = std::fs::set_permissions(node, std::fs::Permissions::from_mode(mode)) {
            r.fail(&check, &format!("chmod {node}: {e}"));
            continue;
        }
        let mut c: Vec<String> = [IOVACTL, "check", "--json", "--memlock", "unlimited", "--"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        c.extend(fits.iter().cloned());
        let v = as_user_with_memlock(&c, kib, "check").and_then(|a| {
            let out = Command::new(&a[0])
                .args(&a[1..])
                .output()
                .map_err(|e| format!("{}: {e}", a[0]))?;
            serde_json::from_slice::<Value>(&out.stdout).map_err(|e| {
                format!(
                    "check as {VM_USER}: {e}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        });
        let (pred, v) = match v.and_then(|v| prediction(&v).map(|p| (p.0, v))) {
            Ok(p) => p,
            Err(e) => {
                r.fail(&check, &format!("check: {e}"));
                continue;
            }
        };
        r.note(&format!("{check}: check's access: {}", v["access"]));
        let denied = v["access"]["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["kind"] == "device-node-access"));
        r.eq(&format!("{check}-predicted"), denied, want != Want::Starts);
        match as_user_with_memlock(fits, kib, "vm").and_then(|a| run_qemu(&a, |_| ())) {
            Ok(run) => report(r, &check, &pred, &run.outcome, want, &run.stderr, &v),
            Err(e) => r.fail(&check, &format!("QEMU: {e}")),
        }
    }
}

/// One IOMMU group of two edu devices (vmtest/run puts them behind a conventional PCI
/// bridge in the guest): behind a vIOMMU, assigned on the inner VM's root bus, each has
/// its own address space and QEMU refuses ("group N used in multiple address spaces");
/// both on one pci-bridge of the inner VM, they share one and it starts.
fn address_spaces(r: &mut Report, aw: u32) {
    let edus = facts::pci_devices_with("0x1234", "0x11e8");
    let pair = edus.iter().enumerate().find_map(|(i, a)| {
        let ga = facts::group_of(a).ok()?;
        edus[i + 1..]
            .iter()
            .find(|b| facts::group_of(b).ok() == Some(ga))
            .map(|b| (a.clone(), b.clone()))
    });
    let Some((a, b)) = pair else {
        return r.fail(
            "readiness/address-space-setup",
            "no IOMMU group with two edu devices",
        );
    };
    let viommu = format!("intel-iommu,caching-mode=on,aw-bits={aw}");
    let base = |devices: &[String]| -> Vec<String> {
        let mut v: Vec<String> = [
            QEMU72,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-S",
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-m",
            "64M",
            "-device",
            &viommu,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(devices.iter().cloned());
        v.extend(["-qmp".to_owned(), "stdio".to_owned()]);
        v
    };
    let split = base(&[
        "-device".to_owned(),
        format!("vfio-pci,host={a}"),
        "-device".to_owned(),
        format!("vfio-pci,host={b}"),
    ]);
    case(
        r,
        "readiness/one-group-two-address-spaces-refused",
        &split,
        Want::Refused("used in multiple address spaces"),
    );
    let bridged = base(&[
        "-device".to_owned(),
        "pci-bridge,id=br0,chassis_nr=1".to_owned(),
        "-device".to_owned(),
        format!("vfio-pci,host={a},bus=br0,addr=1"),
        "-device".to_owned(),
        format!("vfio-pci,host={b},bus=br0,addr=2"),
    ]);
    case(
        r,
        "readiness/one-group-on-one-pci-bridge-starts",
        &bridged,
        Want::Starts,
    );
}

/// The fitting VM's argv for another edu device of the guest (vmtest/run adds two
/// behind a PCI bridge to the qemu-vfio boots).
fn second_vm(r: &mut Report, bdf: &str, binary: &str, iommufd: bool) -> Option<Vec<String>> {
    let other = facts::pci_devices_with("0x1234", "0x11e8")
        .into_iter()
        .find(|d| d != bdf);
    if other.is_none() {
        r.fail("qemu-vfio/second-edu", "the guest has no second edu device");
    }
    other.map(|b| argv(binary, &x86_tail("64M", &[]), &b, iommufd))
}

/// Two VMs of one user, each with its own edu, under one `ulimit -l` that holds one VM
/// and not two: iommufd charges the user, so the second VM fails with ENOMEM while the
/// first runs (`check --memlock-used` with the first VM's pins predicts it); type1
/// charges each process, so the second starts as well.
fn memlock_two_vms(r: &mut Report, prefix: &str, a: &[String], b: &[String], per_user: bool) {
    let check = format!("readiness/{prefix}memlock-two-vms-one-user");
    let mut q = vec![
        "--memlock".to_owned(),
        "unlimited".to_owned(),
        "--".to_owned(),
    ];
    q.extend(a.iter().cloned());
    let needed = match check_json(&q) {
        Ok(v) => v["memlock"]["needed_bytes"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok()),
        Err(e) => return r.fail(&check, &e),
    };
    let Some(needed) = needed.filter(|n| *n > 0 && n % 4096 == 0) else {
        return r.fail(&check, &format!("check pins {needed:?}"));
    };
    // One page short of two VMs.
    let kib = 2 * needed / 1024 - 4;
    let mut q = vec!["--memlock".to_owned(), format!("{kib}K")];
    if per_user {
        q.extend(["--memlock-used".to_owned(), needed.to_string()]);
    }
    q.push("--".to_owned());
    q.extend(b.iter().cloned());
    let (pred, v) = match check_json(&q).and_then(|v| prediction(&v).map(|p| (p.0, v))) {
        Ok(p) => p,
        Err(e) => return r.fail(&check, &format!("check: {e}")),
    };
    let (want, whose) = if per_user {
        (Want::MapFails(ENOMEM, None), "user")
    } else {
        (Want::Starts, "process")
    };
    r.eq(
        &format!("{check}-charged-to"),
        v["memlock"]["charged_to"].as_str(),
        Some(whose),
    );
    let run_a = as_user_with_memlock(a, kib, "a").and_then(|argv_a| {
        run_qemu(&argv_a, |_| {
            as_user_with_memlock(b, kib, "b").and_then(|argv_b| run_qemu(&argv_b, |_| ()))
        })
    });
    match run_a {
        Ok(Run {
            outcome: Outcome::Starts,
            while_up: Some(Ok(run_b)),
            ..
        }) => report(r, &check, &pred, &run_b.outcome, want, &run_b.stderr, &v),
        Ok(run) => r.fail(
            &check,
            &format!(
                "the first VM did not start: {}: {}",
                run.outcome,
                run.stderr.trim()
            ),
        ),
        Err(e) => r.fail(&check, &format!("QEMU: {e}")),
    }
}

/// Case 4: with `dma_entry_limit` one below the mappings the VM needs, QEMU fails with
/// ENOSPC; at exactly that many it starts (so the count is exact, not only large).
fn entry_limit(r: &mut Report, fits: &[String]) {
    let n = match predict(fits) {
        Ok((_, n, _)) if n > 1 => n,
        Ok((_, n, _)) => {
            return r.fail(
                "qemu-vfio/dma-entry-limit",
                &format!("check counts {n} mappings"),
            );
        }
        Err(e) => return r.fail("qemu-vfio/dma-entry-limit", &e),
    };
    for (limit, name, want) in [
        (
            n - 1,
            "dma-entry-limit-one-below-enospc",
            Want::MapFails(ENOSPC, None),
        ),
        (n, "dma-entry-limit-exact-starts", Want::Starts),
    ] {
        with_entry_limit(r, name, limit, |r| {
            case(r, name, fits, want);
        });
    }
}

/// Runs `f` with `vfio_iommu_type1.dma_entry_limit` set to `limit` (the kernel reads it
/// when a container opens), then restores it.
fn with_entry_limit(r: &mut Report, name: &str, limit: u64, f: impl FnOnce(&mut Report)) {
    let check = format!("qemu-vfio/{name}");
    let old = match std::fs::read_to_string(DMA_ENTRY_LIMIT) {
        Ok(s) => s.trim().to_owned(),
        Err(e) => return r.fail(&check, &format!("{DMA_ENTRY_LIMIT}: {e}")),
    };
    if let Err(e) = std::fs::write(DMA_ENTRY_LIMIT, limit.to_string()) {
        return r.fail(&check, &format!("{DMA_ENTRY_LIMIT}: {e}"));
    }
    r.note(&format!("{check}: dma_entry_limit={limit}"));
    f(r);
    if let Err(e) = std::fs::write(DMA_ENTRY_LIMIT, &old) {
        r.fail(
            &format!("{check}-restore"),
            &format!("{DMA_ENTRY_LIMIT}: {e}"),
        );
    }
}

/// Mutated predictions for a real map failure: each must be reported as a mismatch.
fn wrong_predictions(r: &mut Report, real: &Outcome) {
    let Outcome::MapFails {
        errno,
        range: Some((f, l)),
    } = real.clone()
    else {
        return r.fail("qemu-vfio/comparison-detects-wrong-prediction", "no range");
    };
    let wrong = [
        Outcome::Starts,
        Outcome::StartsFailsAtFirstDma { first: f, last: l },
        Outcome::MapFails {
            errno: ENOSPC,
            range: Some((f, l)),
        },
        Outcome::MapFails {
            errno,
            range: Some((f.wrapping_add(0x1000), l)),
        },
        Outcome::Refused("wrong".to_owned()),
    ];
    let missed: Vec<&Outcome> = wrong.iter().filter(|w| compare(w, real).is_ok()).collect();
    if missed.is_empty() && compare(real, real).is_ok() {
        r.pass("qemu-vfio/comparison-detects-wrong-prediction");
    } else {
        r.fail(
            "qemu-vfio/comparison-detects-wrong-prediction",
            &format!(
                "accepted wrong predictions: {}",
                missed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_map_errors_parse() {
        let q72 = "qemu-system-x86_64: -device vfio-pci,host=0000:00:03.0: vfio 0000:00:03.0: \
                   failed to setup container for group 3: memory listener initialization failed: \
                   Region dimm0: vfio_dma_map(0x55d0c0a0e0f0, 0x8000000000, 0x2000000, \
                   0x7f0000000000) = -22 (Invalid argument)";
        assert_eq!(failed_map(q72), Some((22, 0x80_0000_0000, 0x80_01ff_ffff)));
        let q10 = "x: vfio_container_dma_map(0x1, 0xfffc0000, 0x40000, 0x7f00) = -28 (No space left on device)";
        assert_eq!(failed_map(q10), Some((28, 0xfffc_0000, 0xffff_ffff)));
        assert_eq!(failed_map("aw-bits 48 > host aw-bits 39"), None);
    }

    #[test]
    fn comparisons_fail_on_any_difference() {
        let real = Outcome::MapFails {
            errno: 22,
            range: Some((0x1000, 0x1fff)),
        };
        assert!(compare(&real, &real).is_ok());
        let no_range = Outcome::MapFails {
            errno: 22,
            range: None,
        };
        assert!(compare(&no_range, &real).is_ok());
        for wrong in [
            Outcome::Starts,
            Outcome::MapFails {
                errno: 28,
                range: Some((0x1000, 0x1fff)),
            },
            Outcome::MapFails {
                errno: 22,
                range: Some((0x1000, 0x2fff)),
            },
            Outcome::Refused(String::new()),
        ] {
            assert!(compare(&wrong, &real).is_err(), "{wrong:?}");
        }
        let late = Outcome::StartsFailsAtFirstDma { first: 1, last: 2 };
        assert!(compare(&late, &Outcome::Starts).is_ok());
        assert!(compare(&Outcome::Starts, &real).is_err());
        assert!(compare(&Outcome::Refused("a".into()), &Outcome::Starts).is_err());
    }

    #[test]
    fn predictions_read_checks_json() {
        let v: Value = serde_json::from_str(
            r#"{"ok": false, "layout": [{"name": "dimm0", "first": "0x8000000000", "last": "0x8001ffffff"}],
                "conflicts": [{"section": "pci-hole64", "first": "0x9000000000", "fatal": false},
                              {"section": "dimm0", "first": "0x8000000000", "fatal": true}],
                "vmm": {"dma_mappings": 6, "problems": []}}"#,
        )
        .unwrap();
        assert_eq!(
            prediction(&v).unwrap(),
            (
                Outcome::MapFails {
                    errno: 22,
                    range: Some((0x80_0000_0000, 0x80_01ff_ffff))
                },
                6
            )
        );
        let v: Value = serde_json::from_str(
            r#"{"ok": false, "layout": [], "conflicts": [],
                "vmm": {"dma_mappings": 5, "problems": [{"kind": "dma-entry-limit", "when": "start"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            prediction(&v).unwrap().0,
            Outcome::MapFails {
                errno: 28,
                range: None
            }
        );
        let v: Value = serde_json::from_str(
            r#"{"ok": false, "layout": [], "conflicts": [],
                "vmm": {"problems": [{"kind": "viommu-iova-range", "when": "first-dma",
                                      "first": "0x8000000000", "last": "0xffffffffffff"}]}}"#,
        )
        .unwrap();
        assert!(matches!(
            prediction(&v).unwrap().0,
            Outcome::StartsFailsAtFirstDma { .. }
        ));
        let v: Value =
            serde_json::from_str(r#"{"ok": true, "layout": [], "conflicts": [], "vmm": {}}"#)
                .unwrap();
        assert_eq!(prediction(&v).unwrap().0, Outcome::Starts);
    }
}
