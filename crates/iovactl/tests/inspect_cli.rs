//! `iovactl inspect` end to end, on the bundled example hosts and fixture trees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

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

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn ranges(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("array of ranges")
        .iter()
        .map(|r| {
            (
                r["first"].as_str().unwrap().to_owned(),
                r["last"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[test]
fn intel_39_bit_json_has_the_documented_shape_and_values() {
    let v = json_of(&iovactl(&[
        "inspect",
        "--sysfs-root",
        "examples/hosts/intel-vtd-39",
        "--json",
    ]));
    let groups = v["groups"].as_array().unwrap();
    let g12 = groups.iter().find(|g| g["id"] == 12).expect("group 12");
    assert_eq!(g12["type"], "DMA");
    assert_eq!(g12["devices"], serde_json::json!(["0000:03:00.0"]));
    assert_eq!(g12["iommu"], "dmar1");
    assert_eq!(
        ranges(&serde_json::json!([g12["aperture"].clone()])),
        vec![pair("0x0", "0x7fffffffff")]
    );
    let rr = &g12["reserved_regions"][0];
    assert_eq!(
        (&rr["first"], &rr["last"], &rr["kind"]),
        (
            &Value::from("0xfee00000"),
            &Value::from("0xfeefffff"),
            &Value::from("msi")
        )
    );
    // docs/semantics.md / vm-spike: 39-bit VT-d minus the MSI window.
    assert_eq!(
        ranges(&g12["valid_iova_ranges"]),
        vec![
            pair("0x0", "0xfedfffff"),
            pair("0xfef00000", "0x7fffffffff")
        ]
    );
    let dmar1 = v["iommus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "dmar1")
        .expect("dmar1");
    assert_eq!(dmar1["vendor"], "intel");
    assert_eq!(dmar1["address_width"], 39);
    assert_eq!(dmar1["page_sizes"], "0x40201000");
    // Group 8's direct-relaxable region is reported but not excluded.
    let g8 = groups.iter().find(|g| g["id"] == 8).unwrap();
    assert!(
        g8["reserved_regions"]
            .to_string()
            .contains("direct-relaxable")
    );
    assert_eq!(
        ranges(&g8["valid_iova_ranges"])[0],
        pair("0x0", "0xfedfffff")
    );
}

#[test]
fn device_filter_selects_its_group_and_unknown_devices_are_input_errors() {
    let v = json_of(&iovactl(&[
        "inspect",
        "--sysfs-root",
        "examples/hosts/intel-vtd-39",
        "--device",
        "03:00.0",
        "--json",
    ]));
    let ids: Vec<i64> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![12]);

    let out = iovactl(&[
        "inspect",
        "--sysfs-root",
        "examples/hosts/intel-vtd-39",
        "--device",
        "0000:99:00.0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0000:99:00.0"));
}

#[test]
fn table_flags_blockers() {
    let out = iovactl(&["inspect", "--sysfs-root", "examples/hosts/intel-vtd-39"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // Group 0 is identity: a note, not a blocker (VFIO installs its own domain).
    assert!(
        text.contains("note      default domain identity (iommu=pt)"),
        "{text}"
    );
    // The fixture's kernel/irq/0/chip_name is the remapped IO-APIC chip.
    assert!(
        text.contains("Interrupt remapping: on (")
            && text.contains("kernel/irq/0/chip_name: IR-IO-APIC"),
        "{text}"
    );
    assert!(
        text.contains("direct RMRR [0xbd800000, 0xbd9fffff]"),
        "{text}"
    );
    assert!(
        text.contains("valid     [0xfef00000, 0x7fffffffff]"),
        "{text}"
    );
}

#[test]
fn other_vendors() {
    let v = json_of(&iovactl(&[
        "inspect",
        "--sysfs-root",
        "examples/hosts/amd-epyc",
        "--json",
    ]));
    let text = v.to_string();
    // The AMD HyperTransport hole is reserved and cut out.
    assert!(text.contains(r#""first":"0xfd00000000","last":"0xffffffffff","kind":"reserved""#));
    let g = &v["groups"][0];
    let valid = ranges(&g["valid_iova_ranges"]);
    assert!(
        valid.contains(&pair("0x10000000000", "0xffffffffffff")),
        "{valid:?}"
    );

    let v = json_of(&iovactl(&[
        "inspect",
        "--sysfs-root",
        "examples/hosts/arm-smmuv3",
        "--json",
    ]));
    let g = &v["groups"][0];
    assert!(g["aperture"].is_null(), "SMMUv3 sysfs shows no aperture");
    assert!(g["warnings"].to_string().contains("aperture unknown"));
    assert_eq!(
        ranges(&g["valid_iova_ranges"]),
        vec![
            pair("0x0", "0x7ffffff"),
            pair("0x8100000", "0xffffffffffffffff")
        ]
    );
}

#[test]
fn a_host_without_groups_says_so_and_succeeds() {
    let dir = std::env::temp_dir().join(format!("iovactl-empty-{}", std::process::id()));
    // sysfs without any IOMMU group still has kernel/.
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    let out = iovactl(&["inspect", "--sysfs-root", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("No IOMMU groups found"));
    let v = json_of(&iovactl(&[
        "inspect",
        "--sysfs-root",
        dir.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["groups"], serde_json::json!([]));
    assert!(v["no_groups"]["message"].is_string());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_trees_are_input_errors_naming_file_and_line() {
    let out = iovactl(&["inspect", "--sysfs-root", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/dir"));

    let out = iovactl(&[
        "inspect",
        "--sysfs-root",
        "crates/iova-linux/tests/fixtures/bad-rr-kind",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reserved_regions:"), "{err}");
}

#[test]
fn saved_profile_reloads_to_the_same_answer() {
    let file = std::env::temp_dir().join(format!("iovactl-profile-{}.json", std::process::id()));
    let a = json_of(&iovactl(&[
        "inspect",
        "--sysfs-root",
        "examples/hosts/intel-vtd-39",
        "--json",
        "--save-profile",
        file.to_str().unwrap(),
    ]));
    let b = json_of(&iovactl(&[
        "inspect",
        "--host",
        file.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(a, b);
    std::fs::write(&file, "{ not json").unwrap();
    let out = iovactl(&["inspect", "--host", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(file.to_str().unwrap()));
    let _ = std::fs::remove_file(&file);
}
