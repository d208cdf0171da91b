//! `iovactl fleet`: one VM definition against many saved host profiles — which hosts
//! can take it, and why not the others.
//!
//! The VM definition (a command line, a libvirt domain, a preset or a layout file) is
//! read and parsed once; each profile is then read and the VM evaluated on it exactly as
//! `iovactl check --host PROFILE` would, so the two can never disagree. The work is
//! linear in the number of hosts and spread over the machine's cores.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::error::CliError;
use crate::guest_cmds::{
    GuestArgs, PseriesDef, VmDef, load_on, problems, pseries_def, pseries_on, run_check,
};
use crate::report::hex;

/// Options of `iovactl fleet`.
#[derive(Debug, Args)]
#[command(mut_arg("sysfs_root", |a| a.hide(true)))]
pub struct FleetArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// A directory of host profiles: every `*.json` file directly in it, in name order
    /// (after the `--host` files). Repeat for several directories.
    #[arg(long = "hosts-dir", value_name = "DIR")]
    hosts_dirs: Vec<PathBuf>,
    /// List only the hosts that can take the VM (the summary still counts all).
    #[arg(long)]
    only_fitting: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The answer for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The VM starts there with its devices.
    Fits,
    /// It does not: the reasons say why.
    No,
    /// The model cannot answer for this host (exit 4 of `check`).
    Unknown,
    /// The profile could not be read or is not valid.
    Error,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Fits => "fits",
            Verdict::No => "no",
            Verdict::Unknown => "unknown",
            Verdict::Error => "error",
        }
    }
}

/// One host's row.
#[derive(Debug)]
struct Row {
    host: PathBuf,
    verdict: Verdict,
    /// `(kind, message)`: why not, or why unknown / unreadable.
    reasons: Vec<(&'static str, String)>,
}

/// The VM definition, read once.
enum Def {
    /// Checked against the type1 / iommufd container of its devices.
    Container(VmDef),
    /// A pseries guest: its DMA windows against the host's sPAPR windows.
    Pseries(PseriesDef),
}

/// Runs `iovactl fleet`.
pub fn run(args: &FleetArgs) -> Result<ExitCode, CliError> {
    if args.guest.host.sysfs_root.is_some() {
        return Err(CliError::input(
            "fleet compares saved host profiles: save each host with `iovactl inspect \
             --save-profile FILE` and give them with --host FILE or --hosts-dir DIR",
        ));
    }
    let hosts = host_files(&args.guest.host.host, &args.hosts_dirs)?;
    let def = match pseries_def(&args.guest)? {
        Some(p) => Def::Pseries(p),
        None => {
            let mut d = crate::guest_cmds::vm_def(&args.guest)?;
            // This shell's own limit says nothing about the hosts' VMMs: only --memlock
            // (or a libvirt domain's rule) gives the fleet a locked-memory limit.
            if let VmDef::Argv { memlock, .. } = &mut d
                && args.guest.memlock.is_none()
                && matches!(memlock, Some(crate::guest_cmds::MemlockInput::Limit(_)))
            {
                *memlock = None;
            }
            Def::Container(d)
        }
    };
    let rows = evaluate_all(&args.guest, &def, &hosts);
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    let (fits, no, unknown, error) = (
        count(Verdict::Fits),
        count(Verdict::No),
        count(Verdict::Unknown),
        count(Verdict::Error),
    );
    let shown = rows
        .iter()
        .filter(|r| !args.only_fitting || r.verdict == Verdict::Fits);
    let vm = vm_words(&args.guest, &def);
    if args.json {
        let v = json!({
            "vm": vm,
            "devices": args.guest.devices,
            "hosts": shown.map(|r| json!({
                "host": r.host.display().to_string(),
                "verdict": r.verdict.as_str(),
                "reasons": r.reasons.iter().map(|(k, m)| json!({"kind": k, "message": m}))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "summary": {"total": rows.len(), "fits": fits, "no": no, "unknown": unknown,
                        "error": error},
        });
        crate::out::println(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    } else {
        let mut s = String::new();
        let _ = writeln!(s, "VM: {vm}");
        let width = rows
            .iter()
            .map(|r| r.host.display().to_string().chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(s, "\n{:<width$}  VERDICT  WHY", "HOST");
        for r in shown {
            let why = match r.reasons.as_slice() {
                [] => String::new(),
                [(k, m)] => format!("{k}: {m}"),
                [(k, m), rest @ ..] => format!("{k}: {m} (and {} more)", rest.len()),
            };
            let _ = writeln!(
                s,
                "{:<width$}  {:<7}  {why}",
                r.host.display().to_string(),
                r.verdict.as_str()
            );
        }
        let _ = writeln!(
            s,
            "\nResult: {fits} of {} host{} can take this VM ({no} cannot{}{})",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            if unknown > 0 {
                format!(", {unknown} cannot be answered")
            } else {
                String::new()
            },
            if error > 0 {
                format!(
                    ", {error} profile{} not readable",
                    if error == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            },
        );
        crate::out::print(&iova_guest::text::clean_lines(&s))?;
    }
    // An unreadable profile is bad input (2), or the system's refusal (3), even when
    // other hosts answered: a script must not take a partial answer for a whole one.
    let os_error = rows
        .iter()
        .any(|r| r.verdict == Verdict::Error && r.reasons.iter().any(|(k, _)| *k == "os"));
    Ok(ExitCode::from(if os_error {
        CliError::Os(String::new()).exit_code()
    } else if error > 0 {
        CliError::input("").exit_code()
    } else if fits > 0 {
        0
    } else if unknown > 0 {
        CliError::CannotAnswer(String::new()).exit_code()
    } else {
        1
    }))
}

/// The VM in words, for the report's first line.
fn vm_words(args: &GuestArgs, def: &Def) -> String {
    let vm = match def {
        Def::Pseries(p) => p.desc().to_owned(),
        Def::Container(VmDef::Argv { source, .. }) => source.clone(),
        Def::Container(VmDef::Preset { name, mem_text, .. }) => {
            format!("--guest {name} --memory {mem_text}")
        }
        Def::Container(VmDef::LayoutFile { desc, .. }) => desc.clone(),
    };
    if args.devices.is_empty() {
        vm
    } else {
        format!("{vm}; devices {}", args.devices.join(", "))
    }
}

/// The profiles: the `--host` files in order, then each directory's `*.json` files in
/// name order. No profile at all, or a directory that cannot be listed, is bad input.
fn host_files(files: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = files.to_vec();
    for d in dirs {
        let entries = std::fs::read_dir(d).map_err(|e| {
            CliError::input(format!("--hosts-dir {}: cannot list it: {e}", d.display()))
        })?;
        let mut found = Vec::new();
        for e in entries {
            let e = e.map_err(|e| {
                CliError::input(format!("--hosts-dir {}: cannot list it: {e}", d.display()))
            })?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                found.push(p);
            }
        }
        if found.is_empty() {
            return Err(CliError::input(format!(
                "--hosts-dir {}: no *.json host profile in it",
                d.display()
            )));
        }
        found.sort();
        out.extend(found);
    }
    if out.is_empty() {
        return Err(CliError::input(
            "no host to check: give saved profiles with --host FILE (repeat) or --hosts-dir DIR \
             (save one with `iovactl inspect --save-profile FILE`)",
        ));
    }
    Ok(out)
}

/// Every host's row, in the order of `hosts`, computed on the machine's cores.
fn evaluate_all(args: &GuestArgs, def: &Def, hosts: &[PathBuf]) -> Vec<Row> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 16);
    // Below a few hundred hosts, threads cost more than they save.
    if threads == 1 || hosts.len() < 256 {
        return hosts.iter().map(|h| evaluate(args, def, h)).collect();
    }
    let chunk = hosts.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|h| evaluate(args, def, h)).collect()))
            .collect();
        handles
            .into_iter()
            .zip(hosts.chunks(chunk))
            .flat_map(|(h, part)| {
                h.join().unwrap_or_else(|_| {
                    part.iter()
                        .map(|p| Row {
                            host: p.clone(),
                            verdict: Verdict::Error,
                            reasons: vec![("internal", "the evaluation failed".to_owned())],
                        })
                        .collect::<Vec<Row>>()
                })
            })
            .collect()
    })
}

/// One host's answer. A device of the VM the host does not have is a "no"; a profile
/// that cannot be read is an "error"; what `check` could not answer is "unknown".
fn evaluate(args: &GuestArgs, def: &Def, path: &Path) -> Row {
    let row = |verdict, reasons| Row {
        host: path.to_path_buf(),
        verdict,
        reasons,
    };
    let from_error = |e: CliError| match e {
        CliError::CannotAnswer(m) => row(Verdict::Unknown, vec![("cannot-answer", m)]),
        CliError::Os(m) => row(Verdict::Error, vec![("os", m)]),
        other => row(Verdict::Error, vec![("input", other.to_string())]),
    };
    let loaded = match args.host.load_profile_at(path) {
        Ok(l) => l,
        Err(e) => return from_error(e),
    };
    if let Some(missing) = missing_devices(args, def, &loaded.host) {
        return row(Verdict::No, vec![("device-missing", missing)]);
    }
    match def {
        Def::Container(vm) => {
            let l = match load_on(args, vm, loaded) {
                Ok(l) => l,
                Err(e) => return from_error(e),
            };
            let r = match run_check(&l) {
                Ok(r) => r,
                Err(e) => return from_error(e),
            };
            // Whether a host can take the VM, not whether it is prepared now: device
            // bindings change at every launch (libvirt makes them), and node access is
            // judged for the user running this command, not the VM's user on that host.
            // `check` on the host answers both.
            let probs: Vec<_> = problems(&l, &r)
                .into_iter()
                .filter(|p| !p.kind.starts_with("device-"))
                .collect();
            let mut reasons: Vec<(&'static str, String)> = Vec::new();
            for c in r.fatal() {
                reasons.push((
                    c.reason.kind(),
                    format!(
                        "{} {}-{} cannot be DMA-mapped: {}",
                        c.section,
                        hex(c.range.first()),
                        hex(c.range.last()),
                        c.reason
                    ),
                ));
            }
            for b in &r.blockers {
                reasons.push((
                    b.issue.kind(),
                    format!(
                        "group {} ({}): {}",
                        b.group,
                        b.devices.join(", "),
                        b.message
                    ),
                ));
            }
            for p in &probs {
                reasons.push((p.kind, format!("{} (fix: {})", p.message, p.fix)));
            }
            let fits = r.ok && probs.is_empty();
            row(if fits { Verdict::Fits } else { Verdict::No }, reasons)
        }
        Def::Pseries(p) => {
            let pl = match pseries_on(args, p, loaded) {
                Ok(pl) => pl,
                Err(e) => return from_error(e),
            };
            let r = iova_guest::pseries::check_pseries(&pl.vm, &pl.groups);
            let reasons = r
                .windows
                .iter()
                .filter(|w| !w.ok)
                .map(|w| {
                    (
                        "spapr-window",
                        format!(
                            "PHB {} group {} {} window: {}",
                            w.phb,
                            w.group,
                            w.window.as_str(),
                            w.reason.as_deref().unwrap_or("cannot be created")
                        ),
                    )
                })
                .collect();
            row(if r.ok { Verdict::Fits } else { Verdict::No }, reasons)
        }
    }
}

/// The VM's devices this host lacks, in words; `None` when it has them all.
fn missing_devices(args: &GuestArgs, def: &Def, host: &iova::Host) -> Option<String> {
    let mut named: Vec<String> = Vec::new();
    for sel in &args.devices {
        // An ID selector that matches nothing here (an ambiguous one says so below).
        if crate::hostsrc::devices_with_ids(host, sel).is_some_and(|m| m.is_empty()) {
            return Some(format!("the host has no device with the IDs {sel}"));
        }
        match crate::hostsrc::resolve_devices(host, std::slice::from_ref(sel)) {
            Ok(d) => named.extend(d),
            Err(e) => return Some(e.to_string()),
        }
    }
    match def {
        Def::Container(VmDef::Argv { vm, .. }) => named.extend(vm.vfio.iter().cloned()),
        Def::Pseries(p) => named.extend(p.devices()),
        Def::Container(_) => {}
    }
    let missing: Vec<String> = named
        .iter()
        .filter(|d| host.group_of_device(d).is_err())
        .cloned()
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the host has no device {} (or it is in no IOMMU group)",
            missing.join(", ")
        )
    })
}
