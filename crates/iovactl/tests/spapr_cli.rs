//! `iovactl replay --flavour spapr-v2|spapr-v1` on the pseries example host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn iovactl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run iovactl")
}

const TRACE: &str = "crates/iova/tests/data/spapr-v2-6.12-reference.trace";

/// The 82-step run recorded on a real 6.12.95 pseries guest: every MAP, UNMAP,
/// REGISTER, CREATE and REMOVE answer is reproduced from the example host, answering
/// as that kernel release.
#[test]
fn replay_reproduces_the_real_kernel_run() {
    let out = iovactl(&[
        "replay",
        "--sysfs-root",
        "examples/hosts/pseries-qemu",
        "--device",
        "0000:00:00.0",
        "--flavour",
        "spapr-v2",
        "--kernel",
        "6.12.95+deb12-powerpc64le",
        TRACE,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8(out.stdout).unwrap();
    let want = std::fs::read_to_string(
        repo().join("crates/iova/tests/data/spapr-v2-6.12-reference.expected"),
    )
    .unwrap();
    let trace = std::fs::read_to_string(repo().join(TRACE)).unwrap();
    let ops: Vec<&str> = trace
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    for ((g, w), op) in got.lines().zip(want.lines()).zip(&ops) {
        assert_eq!(g, w, "{op}");
    }
    assert_eq!(got.lines().count(), want.lines().count());
}

#[test]
fn crossing_map_is_refused_with_a_warning() {
    let dir = std::env::temp_dir().join(format!("iova-spapr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = dir.join("cross.trace");
    std::fs::write(
        &t,
        "register 0x10000000 1M\nmap 0x3ffff000 0x2000 0x10000000\nmap 0x800 4K 0x10000000\n",
    )
    .unwrap();
    let out = iovactl(&[
        "replay",
        "--sysfs-root",
        "examples/hosts/pseries-qemu",
        "--device",
        "0000:00:00.0",
        "--flavour",
        "spapr-v2",
        t.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ok\nrefused: kernel-oops-tce_iommu_unuse_page_v2\nret 1\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("tce_iommu_unuse_page_v2"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn v1_and_hosts_without_windows() {
    let dir = std::env::temp_dir().join(format!("iova-spapr-cli1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = dir.join("v1.trace");
    std::fs::write(
        &t,
        "map 0 4K\nenable\nmap 0 4K\nregister 0 4K\ncreate-window 12 4G 1\n",
    )
    .unwrap();
    let out = iovactl(&[
        "replay",
        "--sysfs-root",
        "examples/hosts/pseries-qemu",
        "--device",
        "0000:00:00.0",
        "--flavour",
        "spapr-v1",
        t.to_str().unwrap(),
    ]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "EPERM\nok\nok\nENOTTY\nENOTTY\n"
    );
    // An x86 host has no sPAPR windows: a clear input error.
    let out = iovactl(&[
        "replay",
        "--sysfs-root",
        "examples/hosts/intel-vtd-39",
        "--device",
        "0000:03:00.0",
        "--flavour",
        "spapr-v2",
        t.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sPAPR TCE windows"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_shows_the_windows_and_the_default_window_as_valid() {
    let out = iovactl(&["inspect", "--sysfs-root", "examples/hosts/pseries-qemu"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("sPAPR     TCE: 32-bit window 0x0+0x40000000"),
        "{text}"
    );
    assert!(text.contains("TCE page sizes 0x1211000"), "{text}");
    assert!(
        text.contains("valid     [0x0, 0x3fffffff]  1 GiB"),
        "{text}"
    );
    let out = iovactl(&[
        "inspect",
        "--json",
        "--sysfs-root",
        "examples/hosts/pseries-qemu",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\"max_dynamic_windows_supported\": 2"),
        "{text}"
    );
}

/// The unmap that crosses the end of the 32-bit window: answered per point release
/// (6.12.112 made it refuse with 1), and a release newer than every modelled one is
/// answered as the newest, with a note naming the assumption.
#[test]
fn crossing_unmap_follows_the_point_release() {
    let dir = std::env::temp_dir().join(format!("iova-spapr-unmap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = dir.join("unmap.trace");
    std::fs::write(
        &t,
        "register 0x10000000 1M\nmap 0x3ffff000 4K 0x10000000\nunmap 0x3ffff000 0x2000\n",
    )
    .unwrap();
    for (kernel, answer, note) in [
        ("6.12.95", "ok", None),
        ("6.12.111+deb12-powerpc64le", "ok", None),
        ("6.12.118+deb12-powerpc64le", "ret 1", None),
        ("6.1.189", "ret 1", None),
        (
            "99.1.0",
            "ret 1",
            Some("newer than the newest release modelled"),
        ),
    ] {
        let out = iovactl(&[
            "replay",
            "--sysfs-root",
            "examples/hosts/pseries-qemu",
            "--device",
            "0000:00:00.0",
            "--flavour",
            "spapr-v2",
            "--kernel",
            kernel,
            t.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{kernel}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout, format!("ok\nok\n{answer}\n"), "{kernel}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        match note {
            Some(n) => assert!(stderr.contains(n) && stderr.contains("7.2.13"), "{stderr}"),
            None => assert!(!stderr.contains("newest"), "{kernel}: {stderr}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
