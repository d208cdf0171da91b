//! `iovactl replay` end to end.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn iovactl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run iovactl");
    if let Some(text) = stdin {
        // Replay streams: when it refuses before reading (a group it cannot attach),
        // it exits without draining standard input, and this write meets EPIPE.
        let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

const INTEL39: [&str; 3] = ["replay", "--sysfs-root", "examples/hosts/intel-vtd-39"];

fn replay(extra: &[&str], stdin: Option<&str>) -> Output {
    let args: Vec<&str> = INTEL39.iter().chain(extra.iter()).copied().collect();
    iovactl(&args, stdin)
}

#[test]
fn answers_the_vm_spike_sequence_as_the_real_kernel_did() {
    let out = replay(
        &[
            "--device",
            "0000:03:00.0",
            "--kernel",
            "6.1",
            "crates/iova/tests/data/vm-spike-39.trace",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The expected answers were read by hand from the real 6.1 kernel's log
    // (the vm-spike run on a 6.1 guest, aw-bits=39).
    let expected =
        std::fs::read_to_string(repo().join("crates/iova/tests/data/vm-spike-39.expected"))
            .unwrap();
    let expected: Vec<&str> = expected
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    let got = String::from_utf8(out.stdout).unwrap();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "operation {}", i + 1);
    }
}

#[test]
fn flavours_differ_where_the_kernel_does() {
    let trace = "map 0x100000 0x200000\nunmap 0x101000 0x1000\nunmap 0x10000000 0x1000\nmap 0xfffffffffffff000 0x2000\n";
    let t1 = replay(
        &["--device", "03:00.0", "--kernel", "6.12", "-"],
        Some(trace),
    );
    assert_eq!(
        String::from_utf8_lossy(&t1.stdout),
        "ok\nEINVAL\nok 0x0\nEINVAL\n"
    );
    let fd = replay(
        &["--device", "03:00.0", "--flavour", "iommufd", "-"],
        Some(trace),
    );
    assert_eq!(
        String::from_utf8_lossy(&fd.stdout),
        "ok\nENOENT\nENOENT\nEOVERFLOW\n"
    );
}

#[test]
fn unsafe_groups_are_refused_unless_the_user_opts_in() {
    let trace = "map 0x1000 0x1000\n";
    // USB controller with a direct RMRR.
    let out = replay(&["--device", "0000:00:14.0", "-"], Some(trace));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EPERM"));
    let out = replay(
        &["--device", "0000:00:14.0", "--allow-unsafe-direct", "-"],
        Some(trace),
    );
    assert!(out.status.success());
    // Identity-domain group (iommu=pt): VFIO claims it and attaches its own domain.
    let out = replay(&["--device", "0000:00:00.0", "-"], Some(trace));
    assert!(out.status.success());
    // The opt-in for it is gone, not silently accepted.
    let out = replay(
        &["--device", "0000:00:00.0", "--allow-unsafe-bypass", "-"],
        Some(trace),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_traces_name_the_line() {
    let out = replay(
        &["--device", "03:00.0", "-"],
        Some("map 0x1000 0x1000\n\n# fine\nmap 0x1000 12ab\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("12ab"), "{err}");
    // Standard input streams (it cannot be read twice): the answers before the bad
    // line are out, then the error.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");

    // A file is checked whole first: nothing runs when it is malformed.
    let file = std::env::temp_dir().join(format!("iovactl-bad-{}.trace", std::process::id()));
    std::fs::write(&file, "map 0x1000 0x1000\n\n# fine\nmap 0x1000 12ab\n").unwrap();
    let out = replay(&["--device", "03:00.0", file.to_str().unwrap()], None);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 4"));
    assert!(
        out.stdout.is_empty(),
        "nothing runs when the trace file is malformed"
    );

    let out = replay(&["--device", "03:00.0", "no/such.trace"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such.trace"));

    let out = replay(&["--device", "0000:99:00.0", "-"], Some("unmap-all\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0000:99:00.0"));
}

/// Issue 15 acceptance: the compatibility container answers ENOENT where type1 v2
/// answers EINVAL (an unmap that would split a mapping).
#[test]
fn compat_type1v2_answers_enoent_where_type1v2_answers_einval() {
    let trace = "map 0x100000 0x200000\nunmap 0x101000 0x1000\n";
    let run = |flavour: &str| {
        let out = replay(
            &[
                "--device",
                "0000:03:00.0",
                "--flavour",
                flavour,
                "--kernel",
                "6.12",
                "-",
            ],
            Some(trace),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run("type1v2"), "ok\nEINVAL\n");
    assert_eq!(run("compat-type1v2"), "ok\nENOENT\n");
    assert_eq!(run("compat-type1v1"), "ok\nok 0x1000\n");
}

/// Issue 15 acceptance: a map whose end wraps past 2^64-1 is EOVERFLOW from 6.18,
/// EINVAL on 6.12; with no --kernel and no known host kernel the newest is used and
/// a note says so.
#[test]
fn kernel_version_decides_the_wrap_errno() {
    let trace = "map 0xfffffffffffff000 0x2000\n";
    let run = |extra: &[&str]| {
        let mut args = vec!["--device", "0000:03:00.0"];
        args.extend_from_slice(extra);
        args.push("-");
        let out = replay(&args, Some(trace));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    assert_eq!(run(&["--kernel", "6.18"]).0, "EOVERFLOW\n");
    assert_eq!(run(&["--kernel", "7.2.13-1"]).0, "EOVERFLOW\n");
    assert_eq!(run(&["--kernel", "6.12"]).0, "EINVAL\n");
    assert_eq!(run(&["--kernel", "6.1.0-37-amd64"]).0, "EINVAL\n");
    let (out, err) = run(&[]);
    assert_eq!(out, "EOVERFLOW\n");
    assert!(err.contains("newest modelled"), "{err}");
    let bad = replay(
        &["--device", "0000:03:00.0", "--kernel", "six", "-"],
        Some(trace),
    );
    assert_eq!(bad.status.code(), Some(2));
}

/// Issue 15: the trace operations that need a container (attach, detach, iova-ranges,
/// map-auto) on an IOAS started with no group, and --cpu-page-size.
#[test]
fn container_operations_from_the_trace() {
    let out = replay(
        &["--flavour", "iommufd", "--kernel", "6.12", "-"],
        Some("iova-ranges\nattach 1\niova-ranges\nmap-auto 0x2000\ndetach 1\niova-ranges\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ok 0x0-0xffffffffffffffff align 0x1");
    assert_eq!(lines[1], "ok");
    assert!(lines[2].ends_with("align 0x1000"), "{}", lines[2]);
    assert!(lines[3].starts_with("ok 0x"), "{}", lines[3]);
    assert_eq!(lines[5], "ok 0x0-0xffffffffffffffff align 0x1");
    let out = replay(
        &[
            "--device",
            "0000:03:00.0",
            "--cpu-page-size",
            "64K",
            "--kernel",
            "6.12",
            "-",
        ],
        Some("map 0x101000 0x1000\nmap 0x100000 0x10000\n"),
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "EINVAL\nok\n");
    let bad = replay(&["--cpu-page-size", "3000", "-"], Some("unmap-all\n"));
    assert_eq!(bad.status.code(), Some(2));
}

/// `replay -` answers each operation as soon as it has read it: a program that writes
/// one line and waits for its answer gets it while standard input is still open (for
/// the type1/iommufd traces and the sPAPR ones). The wait for an answer is bounded, so
/// a replay that holds its answers back fails here instead of hanging.
#[test]
fn replay_from_a_pipe_answers_each_operation_at_once() {
    use std::io::BufRead as _;
    use std::sync::mpsc;
    use std::time::Duration;
    /// The arguments, then (operation, answer) pairs.
    type Session<'a> = (&'a [&'a str], [(&'a str, &'a str); 3]);
    let sessions: [Session; 2] = [
        (
            &[
                "replay",
                "--sysfs-root",
                "examples/hosts/intel-vtd-39",
                "--device",
                "0000:03:00.0",
                "--kernel",
                "6.12",
                "-",
            ],
            [
                ("map 0x100000 0x200000\n", "ok"),
                ("map 0xfee00000 0x1000\n", "EINVAL"),
                ("unmap 0x100000 0x200000\n", "ok 0x200000"),
            ],
        ),
        (
            &[
                "replay",
                "--sysfs-root",
                "examples/hosts/pseries-qemu",
                "--device",
                "0000:00:00.0",
                "--flavour",
                "spapr-v2",
                "--kernel",
                "6.12.118",
                "-",
            ],
            [
                ("register 0x10000000 1M\n", "ok"),
                ("map 0 64K 0x10000000\n", "ok"),
                ("map 0x800 4K 0x10000000\n", "ret 1"),
            ],
        ),
    ];
    for (args, steps) in sessions {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run iovactl");
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        for (op, want) in steps {
            stdin.write_all(op.as_bytes()).unwrap();
            stdin.flush().unwrap();
            let got = rx.recv_timeout(Duration::from_secs(30));
            if got.is_err() {
                let _ = child.kill();
            }
            assert_eq!(
                got.as_deref(),
                Ok(want),
                "{args:?}: no answer to '{}' while the input stays open",
                op.trim()
            );
        }
        drop(stdin);
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}");
        reader.join().unwrap();
    }
}
