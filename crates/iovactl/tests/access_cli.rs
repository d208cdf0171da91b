//! Device bindings and device nodes: where the host's launch state is known (a `sys`
//! with its `dev` beside it, as on the running host), `check` refuses an assigned
//! device still on a host driver and a node the VMM cannot open, naming the fix; a
//! bare sysfs tree only notes the binding.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{host, json, run, stderr};

/// A copy of the intel-vtd-39 fixture as `DIR/sys`, with `DIR/dev/vfio/vfio`.
fn tree(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iova-access-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("dev/vfio")).expect("temp dir");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(host("intel-vtd-39"))
        .arg(dir.join("sys"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "copy the fixture");
    std::fs::write(dir.join("dev/vfio/vfio"), "").expect("node");
    dir
}

/// `check` of an 8 GiB q35 guest with the fixture's NIC on the host at `sys`.
fn check_at(sys: &str, json: bool) -> std::process::Output {
    let mut args = vec![
        "check",
        "--sysfs-root",
        sys,
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
        "--device",
        "03:00.0",
    ];
    if json {
        args.push("--json");
    }
    run(&args)
}

fn check(dir: &Path) -> std::process::Output {
    check_at(dir.join("sys").to_str().expect("UTF-8"), true)
}

fn problem_kinds(v: &serde_json::Value) -> Vec<String> {
    v["access"]["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["kind"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_bare_fixture_notes_the_binding() {
    let out = check_at(&host("intel-vtd-39"), true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert!(problem_kinds(&v).is_empty());
    let notes = v["access"]["notes"].to_string();
    assert!(notes.contains("igb"), "{notes}");
}

#[test]
fn the_launch_state_decides_where_it_is_known() {
    let dir = tree("state");
    // 03:00.0 is on igb: refused, with the rebind.
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(problem_kinds(&v), ["device-binding"]);
    assert!(
        v["access"]["problems"][0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("driverctl set-override 0000:03:00.0 vfio-pci"))
    );
    // Bound to vfio-pci, but its group's node is missing: refused.
    let link = dir.join("sys/devices/pci0000:00/0000:03:00.0/driver");
    std::fs::remove_file(&link).expect("driver link");
    std::os::unix::fs::symlink("../../../bus/pci/drivers/vfio-pci", &link).expect("relink");
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(problem_kinds(&json(&out)), ["device-node-missing"]);
    // With /dev/vfio/12 (owned by whoever runs the test, who may open it): fits.
    std::fs::write(dir.join("dev/vfio/12"), "").expect("node");
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let states: Vec<&str> = v["access"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["state"].as_str())
        .collect();
    assert_eq!(states, ["ok", "ok"], "{}", v["access"]);
    // The text report says it too.
    let text = check_at(dir.join("sys").to_str().expect("UTF-8"), false);
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains("/dev/vfio/12 ok"), "{t}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_dev_that_is_not_a_directory_is_an_error_naming_it() {
    let dir = tree("notdir");
    std::fs::remove_dir_all(dir.join("dev")).expect("rm");
    std::fs::write(dir.join("dev"), "").expect("file");
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("dev"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(dir);
}
