//! `iovactl fleet`: one VM against many saved host profiles.
//!
//! The profiles are saved from the bundled example hosts by `inspect --save-profile`.
//! Each fleet row must equal what `check --host PROFILE` answers for the same VM (the
//! exit code 0 / 1, or the missing device); the expectations of the fixture rows come
//! from examples/hosts/README.md (address widths, which host has which device).

mod common;

use std::path::{Path, PathBuf};

use common::{host, json, root, run, stderr};
use serde_json::Value;

const SYSFS_HOSTS: [&str; 4] = ["intel-vtd-39", "intel-vtd-48", "amd-epyc", "arm-smmuv3"];

/// Saves a profile of each example host into a fresh directory; returns it and the
/// profile paths (in name order, as `--hosts-dir` lists them).
fn profiles(tag: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = std::env::temp_dir().join(format!("iova-fleet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut out = Vec::new();
    for h in SYSFS_HOSTS {
        let p = dir.join(format!("{h}.json"));
        let o = run(&[
            "inspect",
            "--sysfs-root",
            &host(h),
            "--save-profile",
            p.to_str().expect("UTF-8 path"),
        ]);
        assert!(o.status.success(), "save {h}: {}", stderr(&o));
        out.push(p);
    }
    let pseries = dir.join("pseries-qemu-64k.json");
    std::fs::copy(
        root().join("examples/hosts/pseries-qemu-64k.json"),
        &pseries,
    )
    .expect("copy the pseries profile");
    out.push(pseries);
    out.sort();
    (dir, out)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The fleet's JSON rows by host path.
fn rows(v: &Value) -> Vec<(String, String, Vec<String>)> {
    v["hosts"]
        .as_array()
        .expect("hosts array")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().expect("host").to_owned(),
                h["verdict"].as_str().expect("verdict").to_owned(),
                h["reasons"]
                    .as_array()
                    .expect("reasons")
                    .iter()
                    .map(|r| r["kind"].as_str().expect("kind").to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn every_row_equals_check_on_that_profile() {
    let (dir, files) = profiles("agree");
    let vms: Vec<Vec<&str>> = vec![
        vec![
            "--guest",
            "qemu-q35",
            "--memory",
            "8G",
            "--device",
            "144d:a808",
        ],
        vec![
            "--guest",
            "qemu-q35",
            "--memory",
            "600G",
            "--device",
            "144d:a808",
        ],
        vec![
            "--guest",
            "qemu-q35",
            "--memory",
            "2T",
            "--device",
            "144d:a808",
        ],
        vec![
            "--guest",
            "qemu-q35",
            "--memory",
            "600G",
            "--device",
            "8086:1533",
        ],
        vec![
            "--guest",
            "qemu-pc",
            "--memory",
            "4G",
            "--device",
            "0000:00:14.0",
        ],
        vec![
            "--guest",
            "qemu-virt",
            "--memory",
            "8G",
            "--device",
            "0000:00:01.0",
        ],
        vec![
            "--guest",
            "qemu-pseries",
            "--memory",
            "8G",
            "--device",
            "0000:00:00.0",
        ],
        vec![
            "--",
            "qemu-system-x86_64",
            "-M",
            "q35",
            "-m",
            "700G",
            "-device",
            "vfio-pci,host=0000:01:00.0",
        ],
    ];
    for vm in &vms {
        let mut args = vec!["fleet", "--json", "--hosts-dir", s(&dir)];
        let (opts, argv) = match vm.iter().position(|a| *a == "--") {
            Some(i) => vm.split_at(i),
            None => (vm.as_slice(), &[][..]),
        };
        args.extend_from_slice(opts);
        if !argv.is_empty() {
            args.extend_from_slice(&["--qemu-version", "10.0"]);
            args.extend_from_slice(argv);
        }
        let out = run(&args);
        let v = json(&out);
        let got = rows(&v);
        assert_eq!(got.len(), files.len(), "{vm:?}");
        for ((path, verdict, kinds), file) in got.iter().zip(&files) {
            assert_eq!(path, s(file), "rows in name order");
            let mut c = vec!["check", "--host", s(file)];
            c.extend_from_slice(opts);
            if !argv.is_empty() {
                c.extend_from_slice(&["--qemu-version", "10.0"]);
                c.extend_from_slice(argv);
            }
            let co = run(&c);
            let want = match co.status.code() {
                Some(0) => "fits",
                Some(1) => "no",
                Some(2) if stderr(&co).contains("device") => {
                    assert_eq!(kinds, &["device-missing"], "{vm:?} on {path}");
                    "no"
                }
                Some(4) => "unknown",
                other => panic!("{vm:?} on {path}: check exit {other:?}: {}", stderr(&co)),
            };
            assert_eq!(verdict, want, "{vm:?} on {path}: {}", stderr(&co));
            assert_eq!(verdict == "fits", kinds.is_empty(), "{vm:?} on {path}");
        }
        let fits = got.iter().filter(|r| r.1 == "fits").count();
        assert_eq!(v["summary"]["fits"], fits, "{vm:?}");
        assert_eq!(
            out.status.code(),
            Some(if fits > 0 { 0 } else { 1 }),
            "{vm:?}: {}",
            stderr(&out)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_fixtures_widths_decide() {
    // examples/hosts/README.md: the I210 (8086:1533) is only on intel-vtd-39, whose
    // VT-d units are 39-bit (the last IOVA is 0x7f_ffff_ffff, 512 GiB); the NVMe
    // 144d:a808 is on intel-vtd-48 and amd-epyc (48-bit).
    let (dir, _) = profiles("widths");
    let by = |vm: &[&str]| -> Vec<(String, String, Vec<String>)> {
        let mut a = vec!["fleet", "--json", "--hosts-dir", s(&dir)];
        a.extend_from_slice(vm);
        rows(&json(&run(&a)))
    };
    let name = |p: &str| {
        Path::new(p)
            .file_stem()
            .and_then(|x| x.to_str())
            .unwrap_or("")
            .to_owned()
    };
    for (mem, want39) in [("256G", "fits"), ("600G", "no")] {
        let r = by(&[
            "--guest",
            "qemu-q35",
            "--memory",
            mem,
            "--device",
            "8086:1533",
        ]);
        for (p, verdict, kinds) in r {
            let n = name(&p);
            if n == "intel-vtd-39" {
                assert_eq!(verdict, want39, "{mem} on {n}");
                if want39 == "no" {
                    assert_eq!(kinds[0], "beyond-aperture", "{mem} on {n}");
                }
            } else {
                assert_eq!(
                    (verdict.as_str(), kinds.as_slice()),
                    ("no", &["device-missing".to_owned()][..]),
                    "{mem} on {n}"
                );
            }
        }
    }
    let r = by(&[
        "--guest",
        "qemu-q35",
        "--memory",
        "600G",
        "--device",
        "144d:a808",
    ]);
    let fitting: Vec<String> = r
        .iter()
        .filter(|x| x.1 == "fits")
        .map(|x| name(&x.0))
        .collect();
    assert_eq!(fitting, ["amd-epyc", "intel-vtd-48"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unreadable_profile_is_an_error_row_and_exit_2() {
    let (dir, files) = profiles("bad");
    let bad = dir.join("zz-broken.json");
    std::fs::write(&bad, "{ not json").expect("write");
    let out = run(&[
        "fleet",
        "--json",
        "--hosts-dir",
        s(&dir),
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
        "--device",
        "144d:a808",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let got = rows(&json(&out));
    assert_eq!(got.len(), files.len() + 1);
    let last = got.last().expect("a row");
    assert_eq!((last.0.as_str(), last.1.as_str()), (s(&bad), "error"));
    assert!(
        got.iter().any(|r| r.1 == "fits"),
        "the other hosts still answer"
    );
    // Text: the row names the profile and the summary counts it.
    let out = run(&[
        "fleet",
        "--hosts-dir",
        s(&dir),
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
        "--device",
        "144d:a808",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("zz-broken.json") && text.contains("1 profile not readable"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn only_fitting_lists_the_hosts_that_take_it() {
    let (dir, _) = profiles("only");
    let out = run(&[
        "fleet",
        "--json",
        "--only-fitting",
        "--hosts-dir",
        s(&dir),
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
        "--device",
        "144d:a808",
    ]);
    let v = json(&out);
    let got = rows(&v);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|r| r.1 == "fits"));
    assert_eq!(v["summary"]["total"], 5);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn no_host_fits_is_exit_1() {
    let (dir, _) = profiles("none");
    let out = run(&[
        "fleet",
        "--hosts-dir",
        s(&dir),
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
        "--device",
        "dead:beef",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Result: 0 of 5 hosts"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_usage_names_the_input() {
    let empty = std::env::temp_dir().join(format!("iova-fleet-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("dir");
    let vm = [
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
        "--device",
        "0000:01:00.0",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["fleet"], "no host to check"),
        (
            vec!["fleet", "--hosts-dir", s(&empty)],
            "no *.json host profile",
        ),
        (
            vec!["fleet", "--hosts-dir", "/nonexistent-iova"],
            "--hosts-dir /nonexistent-iova",
        ),
        (
            vec!["fleet", "--sysfs-root", "/sys"],
            "fleet compares saved host profiles",
        ),
    ];
    for (mut args, want) in cases {
        args.extend_from_slice(&vm);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // `check` looks at one host and says where the many-host form is.
    let p = root().join("examples/hosts/pseries-qemu-64k.json");
    let out = run(&[
        "check",
        "--host",
        s(&p),
        "--host",
        s(&p),
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
        "--device",
        "0000:00:00.0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("iovactl fleet"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(empty);
}
