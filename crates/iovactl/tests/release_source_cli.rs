//! Which QEMU release a VM definition is modelled as, and that no input document makes
//! `iovactl` run a program: a libvirt domain's `<emulator>`, a `--cmdline` file's
//! argv[0] and the argv[0] a `--pid` process claims are never run (the release comes
//! from `--qemu-version`, the running binary, the versioned machine type, or is
//! assumed, and the output says which). Also QEMU's x86 `phys-bits` range (32..=52).

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{host, json, run};

/// A fresh directory for one test, holding a fake `qemu-system-x86_64` that, if ever
/// run, creates `ran` beside itself and answers as QEMU 9.0.
fn trap(test: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("release-source-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("ran");
    let bin = dir.join("qemu-system-x86_64");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\ntouch '{}'\necho 'QEMU emulator version 9.0.0'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin, marker)
}

/// A domain of `mem` GiB on `machine` with the intel-vtd-39 fixture's device.
fn domain(emulator: &Path, machine: &str, mem: u32) -> String {
    format!(
        "<domain type='kvm'><name>d</name><memory unit='GiB'>{mem}</memory>\
         <os><type arch='x86_64' machine='{machine}'>hvm</type></os>\
         <cpu mode='custom'><model>Skylake-Client</model></cpu>\
         <devices><emulator>{}</emulator>\
         <hostdev mode='subsystem' type='pci' managed='yes'><source>\
         <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source></hostdev>\
         </devices></domain>",
        emulator.display()
    )
}

fn hook(stdin: &str) -> Output {
    let hp = host("intel-vtd-39");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args([
            "libvirt-hook",
            "--sysfs-root",
            &hp,
            "d",
            "prepare",
            "begin",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn a_libvirt_domain_never_runs_its_emulator() {
    let (dir, bin, marker) = trap("libvirt");
    let xml = dir.join("d.xml");
    let hp = host("intel-vtd-39");
    std::fs::write(&xml, domain(&bin, "pc-q35-7.2", 8)).unwrap();
    let out = run(&[
        "check",
        "--sysfs-root",
        &hp,
        "--json",
        "--libvirt",
        xml.to_str().unwrap(),
    ]);
    assert!(
        !marker.exists(),
        "check --libvirt ran the domain's <emulator>"
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let v = json(&out);
    assert_eq!(v["vmm"]["qemu_version"], "7.2", "{v}");
    assert_eq!(v["vmm"]["qemu_version_from"], "machine-type", "{v}");
    let src = v["vmm"]["qemu_version_source"].as_str().unwrap();
    assert!(src.contains("machine type pc-q35-7.2"), "{src}");

    // The text report says it too.
    let out = run(&[
        "check",
        "--sysfs-root",
        &hp,
        "--libvirt",
        xml.to_str().unwrap(),
    ]);
    assert!(!marker.exists());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("QEMU 7.2, the machine type pc-q35-7.2 names it"),
        "{text}"
    );

    // An unversioned machine type: the newest modelled release, assumed, said so.
    std::fs::write(&xml, domain(&bin, "q35", 8)).unwrap();
    let out = run(&[
        "check",
        "--sysfs-root",
        &hp,
        "--json",
        "--libvirt",
        xml.to_str().unwrap(),
    ]);
    assert!(
        !marker.exists(),
        "check --libvirt ran the domain's <emulator>"
    );
    let v = json(&out);
    assert_eq!(v["vmm"]["qemu_version"], "10.0", "{v}");
    assert_eq!(v["vmm"]["qemu_version_from"], "assumed", "{v}");
    let src = v["vmm"]["qemu_version_source"].as_str().unwrap();
    assert!(
        src.starts_with("assumed") && src.contains("<emulator> is never run"),
        "{src}"
    );

    // --qemu-version wins over the machine type.
    std::fs::write(&xml, domain(&bin, "pc-q35-7.2", 8)).unwrap();
    let out = run(&[
        "check",
        "--sysfs-root",
        &hp,
        "--json",
        "--qemu-version",
        "10.0",
        "--libvirt",
        xml.to_str().unwrap(),
    ]);
    let v = json(&out);
    assert_eq!(v["vmm"]["qemu_version"], "10.0", "{v}");
    assert_eq!(v["vmm"]["qemu_version_from"], "--qemu-version", "{v}");
    assert_eq!(v["vmm"]["machine_version"], "7.2", "{v}");

    // A machine type newer than every modelled release cannot be answered.
    std::fs::write(&xml, domain(&bin, "pc-q35-11.0", 8)).unwrap();
    let out = run(&[
        "check",
        "--sysfs-root",
        &hp,
        "--libvirt",
        xml.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("pc-q35-11.0"));
    assert!(!marker.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_libvirt_hook_never_runs_the_emulator() {
    let (dir, bin, marker) = trap("hook");
    // 600 GiB behind a 39-bit VT-d unit: refused, and the refusal names the release.
    let refused = hook(&domain(&bin, "pc-q35-7.2", 600));
    assert!(!marker.exists(), "libvirt-hook ran the domain's <emulator>");
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        common::stderr(&refused)
    );
    let e = common::stderr(&refused);
    assert!(
        e.contains("domain d (QEMU 7.2: the machine type pc-q35-7.2 names it"),
        "{e}"
    );
    let fits = hook(&domain(&bin, "q35", 8));
    assert!(!marker.exists(), "libvirt-hook ran the domain's <emulator>");
    assert_eq!(fits.status.code(), Some(0), "{}", common::stderr(&fits));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cmdline_file_never_runs_its_argv0() {
    let (dir, bin, marker) = trap("cmdline");
    let file = dir.join("cmd.txt");
    std::fs::write(
        &file,
        format!(
            "{} -machine pc-i440fx-8.2 -m 8G -cpu Skylake-Client \
             -device vfio-pci,host=0000:03:00.0\n",
            bin.display()
        ),
    )
    .unwrap();
    let out = run(&[
        "check",
        "--sysfs-root",
        &host("intel-vtd-39"),
        "--json",
        "--cmdline",
        file.to_str().unwrap(),
    ]);
    assert!(!marker.exists(), "check --cmdline ran the file's argv[0]");
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let v = json(&out);
    assert_eq!(v["vmm"]["qemu_version"], "8.2", "{v}");
    assert_eq!(v["vmm"]["qemu_version_from"], "machine-type", "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_running_vm_is_asked_through_its_own_binary_never_its_claimed_argv0() {
    let (dir, bin, marker) = trap("pid");
    // A process that claims to be the trap (argv[0]) but runs sleep.
    let mut child = Command::new("bash")
        .args(["-c", &format!("exec -a '{}' sleep 30", bin.display())])
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut ok = false;
    for _ in 0..100 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(bin.to_str().unwrap().as_bytes()) {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = run(&[
        "check",
        "--sysfs-root",
        &host("amd-epyc"),
        "--json",
        "--device",
        "0000:41:00.0",
        "--pid",
        &pid,
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "the stand-in process did not exec");
    assert!(
        !marker.exists(),
        "check --pid ran the argv[0] the process claims"
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let v = json(&out);
    // sleep --version is not QEMU's answer; the machine type (pc) names no release.
    assert_eq!(v["vmm"]["qemu_version_from"], "assumed", "{v}");
    let src = v["vmm"]["qemu_version_source"].as_str().unwrap();
    assert!(src.contains(&format!("/proc/{pid}/exe")), "{src}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn phys_bits_past_52_is_a_refusal() {
    // QEMU 7.2 and 10.0: "phys-bits should be between 32 and 52  (but is 53)".
    let hp = host("intel-vtd-39");
    for version in ["7.2", "10.0"] {
        let check = |cpu: &str| {
            run(&[
                "check",
                "--sysfs-root",
                &hp,
                "--qemu-version",
                version,
                "--json",
                "--",
                "qemu-system-x86_64",
                "-machine",
                "q35",
                "-m",
                "8G",
                "-cpu",
                cpu,
                "-device",
                "vfio-pci,host=0000:03:00.0",
            ])
        };
        let fits = check("qemu64,phys-bits=52");
        assert_eq!(
            fits.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&fits.stdout)
        );
        let out = check("qemu64,phys-bits=53");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v = json(&out);
        let p = &v["vmm"]["problems"][0];
        assert_eq!(p["kind"], "refused-at-start", "{v}");
        assert!(
            p["message"]
                .as_str()
                .unwrap()
                .contains("phys-bits should be between 32 and 52  (but is 53)"),
            "{v}"
        );
        assert_eq!(p["fix"], "change -cpu qemu64,phys-bits=36", "{v}");
    }
}
