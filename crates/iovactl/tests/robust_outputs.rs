//! Round two of the robustness work (issue #11), end to end: hostile names never reach
//! the terminal raw and every SVG is valid XML; outputs never overwrite inputs; replay
//! explains its refusals; a host without groups explains itself, also in JSON, and
//! names a virtual IOMMU when it is a virtual machine.

mod common;

use common::{host as example, run};

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iovactl-robust-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A layout whose names carry an escape sequence, a NUL, a line break, a bidi override
/// and the XML specials; the RAM section overlaps the 39-bit host's MSI window so the
/// names also appear in conflicts.
const HOSTILE: &str = r#"name = "vm\u001b]0;pwned\u0007<&>"

[[section]]
name = "ram\u001b[31mRED\u0000\nfake row\u202e'\"<x>&"
kind = "ram"
first = "0x0"
last = "0xffffffff"

[[section]]
name = "bar\r\u0085\u009b"
kind = "bar"
start = "0x1000000000"
size = "1G"
"#;

/// No raw control character (but line breaks and tabs) and no bidi override.
fn assert_clean(what: &str, text: &str) {
    for (i, c) in text.chars().enumerate() {
        let bad = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!bad, "{what}: raw {c:?} at char {i}:\n{text}");
    }
}

#[test]
fn hostile_names_are_escaped_in_text_and_valid_in_svg_and_json() {
    let dir = scratch("names");
    let layout = dir.join("hostile.toml");
    std::fs::write(&layout, HOSTILE).unwrap();
    let layout = layout.to_str().unwrap();
    let h = example("intel-vtd-39");
    let base = [
        "--sysfs-root",
        h.as_str(),
        "--device",
        "03:00.0",
        "--layout",
        layout,
    ];

    for cmd in ["check", "plan"] {
        let mut args = vec![cmd];
        args.extend(base);
        let out = run(&args);
        // check: the RAM overlaps the MSI window (1); plan: a layout that fits (0).
        let want = if cmd == "check" { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{cmd}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_clean(cmd, &text);
        assert!(text.contains("\\u{1b}[31mRED"), "{cmd}: {text}");
        // The line break in the name is shown, not obeyed.
        assert!(!text.lines().any(|l| l.starts_with("fake row")), "{text}");
        if cmd == "plan" {
            // The layout file it proposes is valid TOML with the name escaped.
            let toml_part = text.split("As a layout file:\n").nth(1).unwrap();
            let v: toml::Value = toml::from_str(toml_part).unwrap();
            assert!(
                v["section"][0]["name"]
                    .as_str()
                    .unwrap()
                    .contains("\u{202e}")
            );
        }
        assert_clean(cmd, &String::from_utf8(out.stderr).unwrap());

        // JSON keeps the name exactly (JSON escapes it itself).
        let mut args = args.clone();
        args.push("--json");
        let out = run(&args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v.to_string().contains("\\u001b[31mRED"), "{v}");
    }

    // The SVG, to a file and to standard output, parses as XML.
    let svg = dir.join("out.svg");
    let mut args = vec!["render"];
    args.extend(base);
    args.extend(["--svg", svg.to_str().unwrap()]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_clean("render", &String::from_utf8(out.stdout).unwrap());
    let doc = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&doc).unwrap_or_else(|e| panic!("invalid XML: {e}\n{doc}"));
    assert!(doc.contains("RED"));

    let mut args = vec!["render"];
    args.extend(base);
    args.extend(["--svg", "-"]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc = String::from_utf8(out.stdout).unwrap();
    assert_eq!(doc, std::fs::read_to_string(&svg).unwrap());
    roxmltree::Document::parse(&doc).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote -"));
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn render_never_overwrites_its_own_layout() {
    let dir = scratch("overwrite");
    let layout = dir.join("mine.toml");
    let text = "[[section]]\nname = \"ram\"\nkind = \"ram\"\nstart = \"0\"\nsize = \"1G\"\n";
    std::fs::write(&layout, text).unwrap();
    let l = layout.to_str().unwrap();
    let h = example("intel-vtd-39");
    let out = run(&[
        "render",
        "--sysfs-root",
        &h,
        "--device",
        "03:00.0",
        "--layout",
        l,
        "--svg",
        l,
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read_to_string(&layout).unwrap(), text);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_verbose_says_why_each_refusal_happened() {
    let dir = scratch("why");
    let trace = dir.join("t.trace");
    std::fs::write(
        &trace,
        "map 0xfee00000 0x1000\nmap 0x100000 0x1000\nmap 0x100000 0x1000\n\
         map 0x8000000000 0x1000\nmap 0x1000 0x10\n",
    )
    .unwrap();
    let h = example("intel-vtd-39");
    let t = trace.to_str().unwrap();
    let out = run(&["replay", "--sysfs-root", &h, "--device", "03:00.0", "-v", t]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].ends_with("EINVAL: inside the MSI window [0xfee00000, 0xfeefffff] of group 12"),
        "{text}"
    );
    assert!(lines[1].ends_with("-> ok"));
    assert!(
        lines[2].contains("EEXIST: overlaps the existing mapping [0x100000, 0x100fff]"),
        "{text}"
    );
    assert!(
        lines[3].contains("EINVAL: beyond the aperture [0x0, 0x7fffffffff] of IOMMU dmar1"),
        "{text}"
    );
    assert!(
        lines[4].contains("EINVAL: iova, size or host address not aligned"),
        "{text}"
    );
    // Without -v, the plain answers; with --fail-on-refusal, exit 1.
    let out = run(&[
        "replay",
        "--sysfs-root",
        &h,
        "--device",
        "03:00.0",
        "--fail-on-refusal",
        t,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "EINVAL\nok\nEEXIST\nEINVAL\nEINVAL\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_streams_standard_input() {
    use std::io::{BufRead, BufReader, Write};
    let h = example("intel-vtd-39");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(["replay", "--sysfs-root", &h, "--device", "03:00.0", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    // The answer to the first operation comes before the trace ends: a writer sends
    // many operations and keeps standard input open until one answer has been read.
    // It writes from its own thread, because replay answers while it reads (a caller
    // that wrote everything before reading anything would wait on a full pipe).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut input = std::io::BufWriter::new(&mut input);
        for i in 0..30_000u64 {
            writeln!(input, "map {:#x} 0x1000", 0x100000 + i * 0x1000).unwrap();
        }
        input.flush().unwrap();
        drop(input);
        // Standard input closes when this thread ends, after one answer was read.
        let _ = done_rx.recv();
    });
    let mut first = String::new();
    output.read_line(&mut first).unwrap();
    assert_eq!(first, "ok\n");
    done_tx.send(()).unwrap();
    // Drain the answers before joining: the writer may still be sending.
    let rest = output.lines().count();
    writer.join().unwrap();
    assert_eq!(rest, 29_999);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_host_without_groups_explains_itself_and_names_a_virtual_iommu_in_a_vm() {
    let dir = scratch("nogroups");
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    let root = dir.to_str().unwrap();
    let out = run(&["inspect", "--sysfs-root", root]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("No IOMMU groups found"), "{text}");
    assert!(text.contains("turn on VT-d / AMD-Vi"), "{text}");
    let out = run(&["inspect", "--sysfs-root", root, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["no_groups"]["message"]
            .as_str()
            .unwrap()
            .contains("firmware")
    );
    assert!(v["no_groups"]["virtual_machine"].is_null());

    std::fs::create_dir_all(dir.join("class/dmi/id")).unwrap();
    std::fs::write(dir.join("class/dmi/id/sys_vendor"), "QEMU\n").unwrap();
    let out = run(&["inspect", "--sysfs-root", root]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("virtual machine (QEMU)"), "{text}");
    assert!(text.contains("-device intel-iommu"), "{text}");
    assert!(!text.contains("turn on VT-d"), "{text}");
    let out = run(&["inspect", "--sysfs-root", root, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["no_groups"]["virtual_machine"], "QEMU");
    assert!(
        v["no_groups"]["message"]
            .as_str()
            .unwrap()
            .contains("-device intel-iommu")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_profile_host_does_not_claim_sysfs() {
    let dir = scratch("profile");
    let p = dir.join("p.json");
    let h = example("intel-vtd-39");
    let out = run(&[
        "inspect",
        "--sysfs-root",
        &h,
        "--save-profile",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("computed from sysfs"));
    let out = run(&["inspect", "--host", p.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("computed from sysfs"), "{text}");
    assert!(text.contains("computed from the host profile"), "{text}");
    // --save-profile onto the profile being read is refused; the file is unchanged.
    let before = std::fs::read(&p).unwrap();
    let out = run(&[
        "inspect",
        "--host",
        p.to_str().unwrap(),
        "--save-profile",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let help = run(&["inspect", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--save-profile"));
    let _ = std::fs::remove_dir_all(&dir);
}
