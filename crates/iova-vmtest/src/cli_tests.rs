//! The `iovactl` tool itself on the real kernel: `inspect` must read the valid ranges
//! through VFIO and agree with the guest's sysfs facts, and `replay --vfio` must print,
//! line for line, what `replay` (the simulation) prints for the same trace. On the
//! 39-bit guest, the real replay of the vm-spike sequence must also equal the answers a
//! real 6.1 kernel gave in the spike's log (crates/iova/tests/data/vm-spike-39.expected).
//!
//! The harness puts a static `iovactl` at `/iovactl`. Run after the other type1 checks,
//! when no container holds the group any more (a group node opens once).

use std::process::Command;

use iova::range::IovaSet;

use crate::facts;
use crate::report::Report;

const IOVACTL: &str = "/iovactl";
const SPIKE_TRACE: &str = include_str!("../../iova/tests/data/vm-spike-39.trace");
const SPIKE_EXPECTED: &str = include_str!("../../iova/tests/data/vm-spike-39.expected");

/// Runs iovactl; returns (exit code, stdout, stderr).
fn iovactl(args: &[&str]) -> Result<(i32, String, String), String> {
    let out = Command::new(IOVACTL)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {IOVACTL}: {e}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Pulls the `"first"`/`"last"` pairs of one JSON array member out of iovactl's JSON
/// (a small scan, so the test binary needs no JSON parser).
fn ranges_after(json: &str, key: &str) -> Option<IovaSet> {
    let start = json.find(&format!("\"{key}\""))?;
    let rest = &json[start..];
    let open = rest.find('[')?;
    let close = rest.find(']')?;
    let body = &rest[open..close];
    let mut set = IovaSet::new();
    let mut it = body.split('"').filter(|t| t.starts_with("0x"));
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        let r = iova::range::IovaRange::new(
            iova::range::parse_u64(a).ok()?,
            iova::range::parse_u64(b).ok()?,
        )
        .ok()?;
        set.insert(r);
    }
    Some(set)
}

/// A trace that crosses a 64 KiB locked-memory limit (16 pages): maps of writable
/// memory (pinned as real pages), an unmap that frees some, and a map of host memory
/// another mapping already pins (each `vfio_dma` charges its own).
const MEMLOCK_TRACE: &str = "\
map 0x100000 0x8000 0x10000 rw
map 0x200000 0x8000 0x20000 rw
map 0x300000 0x1000 0x30000 rw
unmap 0x100000 0x8000
map 0x300000 0x2000 0x30000 rw
map 0x400000 0x8000 0x20000 rw
map 0x400000 0x6000 0x20000 rw
unmap-all
map 0x500000 0x10000 0x40000 rw
";

/// `replay --vfio` run by an unprivileged user under `ulimit -l 64` (KiB) against
/// `replay --memlock 64K`: the kernel's ENOMEMs and the model's, line for line.
fn memlock_replay(r: &mut Report, bdf: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let name = "cli-replay-memlock-equals-kernel";
    if let Err(e) = facts::unprivileged_user(facts::VM_USER) {
        return r.fail(name, &e);
    }
    let trace = "/tmp/memlock.trace";
    let script = "/tmp/replay-as-user.sh";
    let body = format!("#!/bin/sh\nexec {IOVACTL} replay --vfio --device {bdf} {trace}\n");
    let written = std::fs::write(trace, MEMLOCK_TRACE)
        .and_then(|()| std::fs::set_permissions(trace, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::write(script, body))
        .and_then(|()| std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = written {
        return r.fail(name, &e.to_string());
    }
    let real = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "ulimit -l 64 && exec /bin/su -s /bin/sh {} -c {script}",
                facts::VM_USER
            ),
        ])
        .output();
    let sim = iovactl(&["replay", "--memlock", "64K", "--device", bdf, trace]);
    match (real, sim) {
        (Ok(real), Ok((0, sim, _))) if real.status.success() => {
            let real = String::from_utf8_lossy(&real.stdout).into_owned();
            r.note(&format!("{name}: kernel {real:?}"));
            r.eq(
                &format!("{name}-has-enomem"),
                real.lines().filter(|l| *l == "ENOMEM").count(),
                2,
            );
            r.eq(name, real.as_str(), sim.as_str());
        }
        (real, sim) => r.fail(name, &format!("real {real:?}, simulated {sim:?}")),
    }
}

/// The CLI checks on a type1 guest.
pub fn run(r: &mut Report, bdf: &str, tag: &str) {
    let group = match facts::group_of(bdf) {
        Ok(g) => g,
        Err(e) => return r.fail("cli-setup", &e),
    };
    let Ok((want, _)) = facts::expected_valid(group) else {
        return r.fail(
            "cli-setup",
            "cannot compute the expected valid ranges from sysfs",
        );
    };

    match iovactl(&["inspect", "--device", bdf, "--json"]) {
        Ok((0, out, _)) => {
            r.eq(
                "cli-inspect-source-is-vfio",
                out.contains("\"valid_iova_ranges_source\": \"vfio\""),
                true,
            );
            r.eq(
                "cli-inspect-kernel-ranges-equal-sysfs-facts",
                ranges_after(&out, "valid_iova_ranges"),
                Some(want.clone()),
            );
            r.eq(
                "cli-inspect-sysfs-prediction-equals-facts",
                ranges_after(&out, "sysfs_valid_iova_ranges"),
                Some(want),
            );
        }
        Ok((code, _, err)) => r.fail("cli-inspect", &format!("exit {code}: {err}")),
        Err(e) => r.fail("cli-inspect", &e),
    }

    let trace = "/tmp/spike.trace";
    if let Err(e) = std::fs::write(trace, SPIKE_TRACE) {
        return r.fail("cli-replay-setup", &e.to_string());
    }
    let real = iovactl(&["replay", "--vfio", "--device", bdf, trace]);
    let sim = iovactl(&["replay", "--device", bdf, trace]);
    match (real, sim) {
        (Ok((0, real, _)), Ok((0, sim, _))) => {
            let ops = SPIKE_TRACE
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .count();
            r.eq("cli-replay-vfio-one-line-per-op", real.lines().count(), ops);
            if real != sim {
                for (i, (a, b)) in real.lines().zip(sim.lines()).enumerate() {
                    if a != b {
                        r.note(&format!(
                            "DISAGREE op {}: kernel {a}, simulation {b}",
                            i + 1
                        ));
                    }
                }
            }
            r.eq(
                "cli-replay-vfio-equals-simulation",
                real.as_str(),
                sim.as_str(),
            );
            if tag.contains("aw39") {
                let expected: Vec<&str> = SPIKE_EXPECTED
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|l| !l.is_empty())
                    .collect();
                r.eq(
                    "cli-replay-vfio-equals-6.1-spike-log",
                    real.lines().collect::<Vec<_>>(),
                    expected,
                );
            }
        }
        (real, sim) => r.fail(
            "cli-replay",
            &format!("real replay {real:?}, simulated replay {sim:?}"),
        ),
    }
    memlock_replay(r, bdf);
}
