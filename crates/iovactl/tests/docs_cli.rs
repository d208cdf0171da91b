//! `iovactl completions` and `iovactl man`: generated from the CLI definitions, one
//! manual page per command.

use std::process::{Command, Output};

fn iovactl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(args)
        .output()
        .expect("run iovactl")
}

const COMMANDS: [&str; 14] = [
    "inspect",
    "check",
    "plan",
    "export",
    "export-virtio-iommu",
    "export-prometheus",
    "export-ansible",
    "export-nfd",
    "fleet",
    "render",
    "libvirt-hook",
    "replay",
    "completions",
    "man",
];

#[test]
fn every_command_has_a_manual_page_naming_its_options() {
    let top = iovactl(&["man"]);
    assert!(top.status.success());
    let text = String::from_utf8(top.stdout).unwrap();
    assert!(text.contains(".TH iovactl 1"), "{text}");
    for c in COMMANDS {
        // The overview lists the top-level commands (export-* are under export).
        if !c.starts_with("export-") {
            let listed = format!("iovactl\\-{}", c.replace('-', "\\-"));
            assert!(text.contains(&listed), "{c} not listed in iovactl(1)");
        }
        let out = iovactl(&["man", c]);
        assert!(out.status.success(), "{c}");
        let page = String::from_utf8(out.stdout).unwrap();
        assert!(page.contains(&format!(".TH iovactl-{c} 1")), "{c}: {page}");
        assert!(page.contains(".SH SYNOPSIS"), "{c}");
    }
    // Options of a command appear in its page: the page is generated, not written.
    let check = String::from_utf8(iovactl(&["man", "check"]).stdout).unwrap();
    for opt in ["\\-\\-libvirt", "\\-\\-qemu\\-version", "\\-\\-json"] {
        assert!(check.contains(opt), "{opt}");
    }
    let bad = iovactl(&["man", "nosuch"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(
        err.contains("no manual page for 'nosuch'") && err.contains("libvirt-hook"),
        "{err}"
    );
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = std::env::temp_dir().join(format!("iova-man-{}", std::process::id()));
    let out = iovactl(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = COMMANDS.iter().map(|c| format!("iovactl-{c}.1")).collect();
    want.push("iovactl.1".into());
    want.sort();
    assert_eq!(names, want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F _iovactl"),
        ("zsh", "#compdef iovactl"),
        ("fish", "complete -c iovactl"),
    ] {
        let out = iovactl(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {marker}");
        for c in ["inspect", "check", "libvirt-hook", "replay"] {
            assert!(text.contains(c), "{shell}: {c}");
        }
    }
    let bad = iovactl(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}
