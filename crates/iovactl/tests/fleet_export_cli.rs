//! `iovactl export prometheus | ansible | nfd` end to end on the bundled example hosts.
//!
//! The expected values come from the fixtures (examples/hosts/README.md and the
//! `reserved_regions` files themselves), never from the tool's own output; the
//! Prometheus text is checked by a small validator written here from the exposition
//! format's rules, and the NFD file by the feature-file and Kubernetes label rules.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{host, json, run, stderr};
use serde_json::Value;

const HOSTS: [&str; 5] = [
    "intel-vtd-39",
    "intel-vtd-48",
    "amd-epyc",
    "arm-smmuv3",
    "pseries-qemu",
];

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn export(format: &str, host_name: &str, extra: &[&str]) -> String {
    let root = host(host_name);
    let mut args = vec!["export", format, "--sysfs-root", root.as_str()];
    args.extend_from_slice(extra);
    ok(&run(&args))
}

/// A fresh temporary directory for one test.
fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "iova-fleet-{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---- an independent validator of the Prometheus text exposition format -------------

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !s.starts_with("__")
}

/// Parses `{a="x",b="y"}` (the part after the name); returns the labels and the rest.
fn parse_labels(s: &str, line: &str) -> (BTreeMap<String, String>, String) {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    assert_eq!(chars.next(), Some('{'), "{line}");
    loop {
        if chars.peek() == Some(&'}') {
            chars.next();
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        assert!(is_label_name(&name), "bad label name {name:?} in {line}");
        assert_eq!(chars.next(), Some('='), "{line}");
        assert_eq!(chars.next(), Some('"'), "label value not quoted in {line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {line}"),
                },
                Some('"') => break,
                Some('\n') | None => panic!("unterminated label value in {line}"),
                Some(c) => value.push(c),
            }
        }
        assert!(
            labels.insert(name.clone(), value).is_none(),
            "label {name} repeated in {line}"
        );
        match chars.next() {
            Some(',') => {}
            Some('}') => break,
            other => panic!("expected , or }} after a label, got {other:?} in {line}"),
        }
    }
    (labels, chars.collect())
}

/// Validates the whole text and returns its samples and the HELP text of each family.
fn validate_prometheus(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "no final line feed"
    );
    let mut samples = Vec::new();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    let mut label_sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap_or_default();
            if kw == "HELP" || kw == "TYPE" {
                let name = parts.next().expect("name after HELP/TYPE").to_owned();
                let arg = parts.next().unwrap_or_default().to_owned();
                assert!(is_metric_name(&name), "{line}");
                assert!(
                    !finished.contains(&name),
                    "family {name} continued later: {line}"
                );
                if current.as_deref() != Some(name.as_str()) {
                    if let Some(c) = current.take() {
                        finished.insert(c);
                    }
                    current = Some(name.clone());
                }
                assert!(
                    !samples.iter().any(|s: &Sample| s.name == name),
                    "{kw} after samples of {name}"
                );
                if kw == "HELP" {
                    assert!(help.insert(name.clone(), arg).is_none(), "two HELP: {name}");
                } else {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&arg.as_str()),
                        "{line}"
                    );
                    assert!(
                        typed.insert(name.clone(), arg).is_none(),
                        "two TYPE: {name}"
                    );
                }
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).expect("a value after the name");
        let name = &line[..end];
        assert!(is_metric_name(name), "bad metric name in {line}");
        let (labels, rest) = if line[end..].starts_with('{') {
            parse_labels(&line[end..], line)
        } else {
            (BTreeMap::new(), line[end..].to_owned())
        };
        let rest = rest.strip_prefix(' ').expect("a space before the value");
        let mut fields = rest.split(' ');
        let value: f64 = fields
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad value in {line}"));
        assert!(
            fields.next().is_none(),
            "no timestamp in a textfile: {line}"
        );
        assert!(help.contains_key(name), "no HELP before {line}");
        assert!(typed.contains_key(name), "no TYPE before {line}");
        assert!(!finished.contains(name), "samples of {name} not together");
        if current.as_deref() != Some(name) {
            if let Some(c) = current.take() {
                finished.insert(c);
            }
            current = Some(name.to_owned());
        }
        let key = format!("{name}{labels:?}");
        assert!(series.insert(key), "duplicate series: {line}");
        let names: String = labels.keys().cloned().collect::<Vec<_>>().join(",");
        label_sets.entry(name.to_owned()).or_default().insert(names);
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (name, sets) in &label_sets {
        assert_eq!(
            sets.len(),
            1,
            "{name}: label names differ between samples: {sets:?}"
        );
    }
    for name in help.keys() {
        assert!(name.starts_with("iova_"), "{name} lacks the iova_ prefix");
    }
    (samples, help)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels)
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        .value
}

fn absent(samples: &[Sample], name: &str, labels: &[(&str, &str)]) {
    assert!(
        find(samples, name, labels).is_none(),
        "{name} {labels:?} should be left out (unknown)"
    );
}

/// The reserved regions of a fixture, read from its sysfs files:
/// (group, kind, first, last).
fn fixture_regions(host_name: &str) -> BTreeSet<(String, String, u64, u64)> {
    let dir = Path::new(&host(host_name)).join("kernel/iommu_groups");
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let group = e.file_name().into_string().unwrap();
        let text = std::fs::read_to_string(e.path().join("reserved_regions")).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |t: &str| u64::from_str_radix(t.trim_start_matches("0x"), 16).unwrap();
            out.insert((group.clone(), f[2].to_owned(), num(f[0]), num(f[1])));
        }
    }
    out
}

#[test]
fn prometheus_output_is_valid_on_every_fixture_and_lists_its_reserved_regions() {
    for h in HOSTS {
        let text = export("prometheus", h, &[]);
        let (samples, help) = validate_prometheus(&text);
        assert!(!samples.is_empty(), "{h}");
        for needed in ["iova_groups", "iova_group_reserved_regions"] {
            assert!(help.contains_key(needed), "{h}: {needed}");
        }
        // Every reserved region of the fixture, and nothing else.
        let got: BTreeSet<(String, String, u64, u64)> = samples
            .iter()
            .filter(|s| s.name == "iova_group_reserved_region_bytes")
            .map(|s| {
                let num = |k: &str| {
                    u64::from_str_radix(s.labels[k].trim_start_matches("0x"), 16).unwrap()
                };
                let (first, last) = (num("first"), num("last"));
                assert_eq!(s.value, (last - first + 1) as f64, "{h}: size of {s:?}");
                (
                    s.labels["group"].clone(),
                    s.labels["kind"].clone(),
                    first,
                    last,
                )
            })
            .collect();
        assert_eq!(got, fixture_regions(h), "{h}");
        // Per-group counts agree with the files.
        let groups: BTreeSet<String> = fixture_regions(h).into_iter().map(|r| r.0).collect();
        for g in groups {
            let n = fixture_regions(h).iter().filter(|r| r.0 == g).count();
            assert_eq!(
                value(&samples, "iova_group_reserved_regions", &[("group", &g)]),
                n as f64,
                "{h} group {g}"
            );
        }
        // Unknown facts are said to be left out.
        for (name, text) in &help {
            if ["iova_host_ready", "iova_group_ready", "iova_group_blocker"]
                .contains(&name.as_str())
            {
                assert!(text.contains("left out when"), "{name}: {text}");
            }
        }
    }
}

#[test]
fn prometheus_intel_39_values_match_the_fixture() {
    let (s, _) = validate_prometheus(&export("prometheus", "intel-vtd-39", &[]));
    // README: two 39-bit VT-d units with interrupt remapping; dma_entry_limit=65535.
    for u in ["dmar0", "dmar1"] {
        assert_eq!(
            value(&s, "iova_iommu_address_width_bits", &[("iommu", u)]),
            39.0
        );
        assert_eq!(
            value(&s, "iova_iommu_interrupt_remapping", &[("iommu", u)]),
            1.0
        );
        assert_eq!(
            value(&s, "iova_iommu_info", &[("iommu", u), ("kind", "intel")]),
            1.0
        );
    }
    assert_eq!(value(&s, "iova_dma_entry_limit", &[]), 65535.0);
    assert_eq!(value(&s, "iova_groups", &[]), 5.0);
    // Group 12: valid [0x0, 0xfedfffff] [0xfef00000, 0x7fffffffff].
    let g12 = [("group", "12")];
    assert_eq!(
        value(&s, "iova_group_highest_mappable_iova", &g12),
        0x7f_ffff_ffff_u64 as f64
    );
    assert_eq!(
        value(&s, "iova_group_highest_mappable_iova_bits", &g12),
        39.0
    );
    let valid = 0xfee0_0000_u64 + (0x7f_ffff_ffff_u64 - 0xfef0_0000 + 1);
    assert_eq!(value(&s, "iova_group_valid_iova_bytes", &g12), valid as f64);
    assert_eq!(
        value(
            &s,
            "iova_group_reserved_region_bytes",
            &[
                ("group", "12"),
                ("kind", "msi"),
                ("first", "0xfee00000"),
                ("last", "0xfeefffff")
            ]
        ),
        1048576.0
    );
    assert_eq!(value(&s, "iova_group_ready", &g12), 1.0);
    assert_eq!(
        value(
            &s,
            "iova_group_info",
            &[("group", "12"), ("type", "DMA"), ("iommu", "dmar1")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "iova_device_info",
            &[
                ("device", "0000:03:00.0"),
                ("group", "12"),
                ("vendor_id", "0x8086"),
                ("device_id", "0x1533")
            ]
        ),
        1.0
    );
    // Group 0 is identity (iommu=pt): no blocker, VFIO installs its own domain; it is
    // ready (the fixture's kernel/irq shows remapped interrupt chips). Group 5 has a
    // direct RMRR: blocked, not ready.
    absent(
        &s,
        "iova_group_blocker",
        &[("group", "0"), ("kind", "bypass")],
    );
    assert_eq!(value(&s, "iova_group_ready", &[("group", "0")]), 1.0);
    assert_eq!(
        value(
            &s,
            "iova_group_blocker",
            &[("group", "5"), ("kind", "direct-region")]
        ),
        1.0
    );
    assert_eq!(value(&s, "iova_group_ready", &[("group", "5")]), 0.0);
    // Group 5 loses the 2 MiB RMRR as well as the MSI window.
    assert_eq!(
        value(&s, "iova_group_valid_iova_bytes", &[("group", "5")]),
        (valid - 0x20_0000) as f64
    );
    // Group 8's direct-relaxable region is not a blocker and VFIO does not exclude it.
    assert_eq!(value(&s, "iova_group_ready", &[("group", "8")]), 1.0);
    assert_eq!(
        value(&s, "iova_group_valid_iova_bytes", &[("group", "8")]),
        valid as f64
    );
    assert_eq!(value(&s, "iova_host_ready", &[]), 1.0);
}

#[test]
fn prometheus_amd_48_and_unknowns_left_out() {
    let (s, _) = validate_prometheus(&export("prometheus", "amd-epyc", &[]));
    let g = [("group", "14")];
    assert_eq!(
        value(&s, "iova_iommu_address_width_bits", &[("iommu", "ivhd0")]),
        48.0
    );
    assert_eq!(
        value(&s, "iova_group_highest_mappable_iova", &g),
        0xffff_ffff_ffff_u64 as f64
    );
    // 2^48 minus the MSI window (1 MiB) and the HyperTransport hole (12 GiB).
    let valid = (1u64 << 48) - 0x10_0000 - (0xff_ffff_ffff_u64 - 0xfd_0000_0000 + 1);
    assert_eq!(value(&s, "iova_group_valid_iova_bytes", &g), valid as f64);
    assert_eq!(
        value(
            &s,
            "iova_group_reserved_region_bytes",
            &[
                ("group", "14"),
                ("kind", "reserved"),
                ("first", "0xfd00000000"),
                ("last", "0xffffffffff")
            ]
        ),
        12.0 * (1u64 << 30) as f64
    );
    assert_eq!(value(&s, "iova_host_ready", &[]), 1.0);

    // intel-vtd-48 has no vfio_iommu_type1 parameters: dma_entry_limit is unknown.
    let (s, _) = validate_prometheus(&export("prometheus", "intel-vtd-48", &[]));
    absent(&s, "iova_dma_entry_limit", &[]);
    assert_eq!(
        value(
            &s,
            "iova_group_highest_mappable_iova_bits",
            &[("group", "3")]
        ),
        48.0
    );

    // SMMUv3: width, aperture and interrupt remapping unknown.
    let (s, _) = validate_prometheus(&export("prometheus", "arm-smmuv3", &[]));
    for g in ["0", "1"] {
        let gl = [("group", g)];
        absent(&s, "iova_group_valid_iova_bytes", &gl);
        absent(&s, "iova_group_highest_mappable_iova", &gl);
        absent(&s, "iova_group_ready", &gl);
        absent(
            &s,
            "iova_group_blocker",
            &[("group", g), ("kind", "no-interrupt-remapping")],
        );
    }
    absent(&s, "iova_iommu_address_width_bits", &[]);
    absent(&s, "iova_iommu_interrupt_remapping", &[]);
    absent(&s, "iova_host_ready", &[]);
    absent(&s, "iova_dma_entry_limit", &[]);

    // pseries: the 1 GiB 32-bit window is what a container maps.
    let (s, _) = validate_prometheus(&export("prometheus", "pseries-qemu", &[]));
    assert_eq!(
        value(&s, "iova_group_highest_mappable_iova", &[("group", "0")]),
        0x3fff_ffff_u64 as f64
    );
    assert_eq!(
        value(&s, "iova_group_reserved_regions", &[("group", "0")]),
        0.0
    );
    absent(&s, "iova_group_ready", &[("group", "0")]);
}

// ---- NFD ----------------------------------------------------------------------------

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Days from 1970-01-01 to a date (proleptic Gregorian), by counting, independent of
/// the tool's conversion.
fn days_from_date(y: u64, m: u64, d: u64) -> u64 {
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for year in 1970..y {
        days += if leap(year) { 366 } else { 365 };
    }
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += month_days[..(m as usize - 1)].iter().sum::<u64>();
    days + d - 1
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into seconds since the epoch.
fn parse_rfc3339_utc(t: &str) -> u64 {
    let b = t.as_bytes();
    assert_eq!(b.len(), 20, "{t}");
    assert!(
        b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z',
        "{t}"
    );
    let n = |r: std::ops::Range<usize>| t[r].parse::<u64>().unwrap();
    let (mo, d, h, mi, s) = (n(5..7), n(8..10), n(11..13), n(14..16), n(17..19));
    assert!(
        (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 60,
        "{t}"
    );
    days_from_date(n(0..4), mo, d) * 86_400 + h * 3600 + mi * 60 + s
}

/// Validates a feature file; returns its labels (full name to value) and the expiry.
fn validate_nfd(text: &str) -> (BTreeMap<String, String>, Option<u64>) {
    assert!(text.len() < 65536, "NFD ignores feature files above 64 KiB");
    let mut labels = BTreeMap::new();
    let mut expiry = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(directive) = line.strip_prefix("# +") {
            let t = directive
                .strip_prefix("expiry-time=")
                .unwrap_or_else(|| panic!("unknown directive: {line}"));
            assert!(labels.is_empty(), "the expiry must come before the labels");
            expiry = Some(parse_rfc3339_utc(t));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let (ns, name) = key
            .split_once('/')
            .unwrap_or_else(|| panic!("no namespace: {line}"));
        assert!(is_dns_subdomain(ns), "namespace {ns}");
        assert!(
            !(ns == "kubernetes.io" || ns.ends_with(".kubernetes.io"))
                || ns == "feature.node.kubernetes.io"
                || ns.ends_with(".feature.node.kubernetes.io"),
            "nfd-master denies {ns}"
        );
        assert!(is_label_token(name), "label name {name:?}");
        assert!(is_label_token(value), "label value {value:?}");
        assert!(
            labels.insert(key.to_owned(), value.to_owned()).is_none(),
            "twice: {key}"
        );
    }
    (labels, expiry)
}

fn nfd(host_name: &str) -> BTreeMap<String, String> {
    validate_nfd(&export("nfd", host_name, &[])).0
}

fn lbl(name: &str) -> String {
    format!("feature.node.kubernetes.io/{name}")
}

#[test]
fn nfd_labels_match_the_fixtures() {
    let l = nfd("intel-vtd-39");
    assert_eq!(l[&lbl("iova-ready")], "true");
    assert_eq!(l[&lbl("iova-iommu-address-width-min")], "39");
    assert_eq!(l[&lbl("iova-highest-iova-bits")], "39");
    assert_eq!(l[&lbl("iova-dma-entry-limit")], "65535");
    assert_eq!(l[&lbl("iova-iommu.intel")], "true");
    assert_eq!(l.len(), 5, "{l:?}");

    let l = nfd("amd-epyc");
    assert_eq!(l[&lbl("iova-iommu-address-width-min")], "48");
    assert_eq!(l[&lbl("iova-highest-iova-bits")], "48");
    assert_eq!(l[&lbl("iova-iommu.amd")], "true");
    assert!(!l.contains_key(&lbl("iova-iommu.intel")));

    let l = nfd("intel-vtd-48");
    assert_eq!(l[&lbl("iova-highest-iova-bits")], "48");
    assert!(
        !l.contains_key(&lbl("iova-dma-entry-limit")),
        "unknown: left out"
    );

    // SMMUv3: readiness unknown (interrupt remapping unknown), never "true" or absent
    // as if fine; the unknown numbers are left out.
    let l = nfd("arm-smmuv3");
    assert_eq!(l[&lbl("iova-ready")], "unknown");
    assert_eq!(l[&lbl("iova-iommu.arm-smmu-v3")], "true");
    for name in [
        "iova-iommu-address-width-min",
        "iova-highest-iova-bits",
        "iova-dma-entry-limit",
    ] {
        assert!(!l.contains_key(&lbl(name)), "{name}");
    }
    let text = export("nfd", "arm-smmuv3", &[]);
    assert!(
        text.contains("# unknown, so left out: iova-iommu-address-width-min"),
        "{text}"
    );

    let l = nfd("pseries-qemu");
    assert_eq!(l[&lbl("iova-highest-iova-bits")], "30");
    assert_eq!(l[&lbl("iova-ready")], "unknown");
}

#[test]
fn nfd_prefix_and_expiry() {
    let text = export(
        "nfd",
        "intel-vtd-39",
        &["--prefix", "iova.example", "--expires-in", "2h"],
    );
    let (l, expiry) = validate_nfd(&text);
    assert_eq!(l["iova.example/iova-ready"], "true");
    assert!(l.keys().all(|k| k.starts_with("iova.example/")), "{l:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let e = expiry.expect("an expiry directive");
    assert!(e >= now + 7200 - 120 && e <= now + 7200 + 120, "{text}");
    for (flag, bad) in [
        ("--prefix", "Iova.Example"),
        ("--prefix", "kubernetes.io"),
        ("--prefix", "x.k8s.io/y"),
        ("--expires-in", "0"),
        ("--expires-in", "2 weeks"),
        ("--expires-in", "99999999999999999999d"),
    ] {
        let root = host("intel-vtd-39");
        let out = run(&["export", "nfd", "--sysfs-root", &root, flag, bad]);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

// ---- Ansible ------------------------------------------------------------------------

fn assert_snake_case_keys(v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let good = k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                assert!(good, "key {at}.{k} is not snake_case");
                assert_snake_case_keys(x, &format!("{at}.{k}"));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| assert_snake_case_keys(x, at)),
        _ => {}
    }
}

fn ansible(host_name: &str) -> Value {
    let root = host(host_name);
    let out = run(&["export", "ansible", "--sysfs-root", &root]);
    let v = json(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_snake_case_keys(&v, "iova");
    v
}

#[test]
fn ansible_facts_match_the_fixtures() {
    let v = ansible("intel-vtd-39");
    assert_eq!(v["ready"], true);
    assert_eq!(v["min_address_width"], 39);
    assert_eq!(v["highest_mappable_iova"], "0x7fffffffff");
    assert_eq!(v["highest_mappable_iova_bits"], 39);
    assert_eq!(v["dma_entry_limit"], 65535);
    assert_eq!(v["allow_unsafe_interrupts"], false);
    assert_eq!(v["iommu_kinds"], serde_json::json!(["intel"]));
    assert_eq!(v["ready_groups"], serde_json::json!([0, 1, 8, 12]));
    assert_eq!(v["group_count"], 5);
    assert_eq!(v["unknown"], serde_json::json!([]));
    let groups = v["groups"].as_array().unwrap();
    let g = |id: u64| groups.iter().find(|g| g["id"] == id).unwrap();
    assert_eq!(g(12)["ready"], true);
    assert_eq!(g(12)["highest_mappable_iova"], "0x7fffffffff");
    assert_eq!(g(12)["devices"], serde_json::json!(["0000:03:00.0"]));
    assert_eq!(
        g(12)["reserved_regions"],
        serde_json::json!([{"first": "0xfee00000", "last": "0xfeefffff", "kind": "msi",
                            "bytes": 1048576, "excluded": true}])
    );
    assert_eq!(
        g(12)["valid_iova_ranges"],
        serde_json::json!([{"first": "0x0", "last": "0xfedfffff"},
                           {"first": "0xfef00000", "last": "0x7fffffffff"}])
    );
    assert_eq!(g(0)["ready"], true, "identity (iommu=pt) is no blocker");
    assert_eq!(g(5)["blocked"], true);
    assert_eq!(g(5)["blockers"][0]["kind"], "direct-region");
    assert_eq!(g(8)["reserved_regions"][0]["excluded"], false);

    // Unknown facts are null and named, never false or 0.
    let v = ansible("arm-smmuv3");
    assert_eq!(v["ready"], Value::Null);
    assert_eq!(v["min_address_width"], Value::Null);
    assert_eq!(v["dma_entry_limit"], Value::Null);
    let unknown: Vec<&str> = v["unknown"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for k in [
        "ready",
        "min_address_width",
        "highest_mappable_iova",
        "dma_entry_limit",
    ] {
        assert!(unknown.contains(&k), "{k} in {unknown:?}");
    }
    let g0 = &v["groups"][0];
    assert_eq!(g0["ready"], Value::Null);
    assert_eq!(g0["blocked"], Value::Null);
    assert_eq!(g0["valid_iova_bytes"], Value::Null);
    assert!(
        g0["unknown"]
            .as_array()
            .unwrap()
            .contains(&"interrupt_remapping".into())
    );

    let v = ansible("amd-epyc");
    assert_eq!(v["highest_mappable_iova"], "0xffffffffffff");
    assert_eq!(v["iommu_kinds"], serde_json::json!(["amd"]));
}

// ---- files, hostile names, empty hosts ----------------------------------------------

#[test]
fn output_files_are_written_whole_and_replace_the_old_one() {
    let dir = tempdir("out");
    let root = host("intel-vtd-39");
    for (format, name) in [
        ("prometheus", "iova.prom"),
        ("ansible", "iova.fact"),
        ("nfd", "iova"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, "old content\n").unwrap();
        let out = run(&[
            "export",
            format,
            "--sysfs-root",
            &root,
            "--output",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        assert!(
            out.stdout.is_empty(),
            "{format}: nothing on standard output"
        );
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written, export(format, "intel-vtd-39", &[]), "{format}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o111,
            0,
            "{format}: Ansible would run an executable .fact"
        );
    }
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 3, "no temporary file left behind: {left:?}");
    // A directory that does not exist: an OS error naming the file, exit 3.
    let missing = dir.join("no/such/iova.prom");
    let out = run(&[
        "export",
        "prometheus",
        "--sysfs-root",
        &root,
        "--output",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no/such/iova.prom"),
        "{}",
        stderr(&out)
    );
    // A host that does not exist: bad input, exit 2, nothing written.
    let out = run(&[
        "export",
        "ansible",
        "--sysfs-root",
        "/nonexistent-iova-root",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent-iova-root"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_names_are_escaped_and_an_empty_host_is_not_ready() {
    let dir = tempdir("names");
    let profile = dir.join("host.json");
    let root = host("intel-vtd-48");
    let out = run(&[
        "inspect",
        "--sysfs-root",
        &root,
        "--save-profile",
        profile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&profile).unwrap();
    let weird_dev = "0000:01:00.0 \"x\\y\nz";
    let weird_unit = "dmar\"0\\";
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let renamed = serde_json::to_string(&v)
        .unwrap()
        .replace(
            "\"0000:01:00.0\"",
            &serde_json::to_string(weird_dev).unwrap(),
        )
        .replace("\"dmar0\"", &serde_json::to_string(weird_unit).unwrap());
    v = serde_json::from_str(&renamed).unwrap();
    std::fs::write(&profile, serde_json::to_string(&v).unwrap()).unwrap();
    let p = profile.to_str().unwrap();
    let prom = ok(&run(&["export", "prometheus", "--host", p]));
    let (s, _) = validate_prometheus(&prom);
    assert_eq!(
        value(
            &s,
            "iova_device_info",
            &[("device", weird_dev), ("group", "3")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "iova_iommu_address_width_bits",
            &[("iommu", weird_unit)]
        ),
        48.0
    );
    let (l, _) = validate_nfd(&ok(&run(&["export", "nfd", "--host", p])));
    assert_eq!(l[&lbl("iova-ready")], "true");
    let a: Value = serde_json::from_str(&ok(&run(&["export", "ansible", "--host", p]))).unwrap();
    assert_eq!(a["groups"][0]["devices"][0], weird_dev);

    // A host without any IOMMU group cannot assign anything: a known "no".
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let e = empty.to_str().unwrap();
    let (s, _) = validate_prometheus(&ok(&run(&["export", "prometheus", "--host", e])));
    assert_eq!(value(&s, "iova_groups", &[]), 0.0);
    assert_eq!(value(&s, "iova_host_ready", &[]), 0.0);
    let (l, _) = validate_nfd(&ok(&run(&["export", "nfd", "--host", e])));
    assert_eq!(l[&lbl("iova-ready")], "false");
    let a: Value = serde_json::from_str(&ok(&run(&["export", "ansible", "--host", e]))).unwrap();
    assert_eq!(a["ready"], false);
    assert_eq!(a["group_count"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_validator_rejects_what_it_should() {
    let bad = [
        "iova_x 1\n",                                                 // no HELP/TYPE
        "# HELP iova_x h\n# TYPE iova_x gauge\niova_x 1\niova_x 1\n", // duplicate
        "# HELP iova_x h\n# TYPE iova_x gauge\niova_x{a=\"1\"} 1\n# HELP iova_y h\n# TYPE iova_y gauge\niova_y 1\niova_x{a=\"2\"} 1\n",
        "# HELP iova_x h\n# TYPE iova_x gauge\niova_x{a=\"\\q\"} 1\n", // bad escape
        "# HELP iova_x h\n# TYPE iova_x gauge\niova_x{1a=\"b\"} 1\n",  // bad label name
        "# HELP 1x h\n# TYPE 1x gauge\n1x 1\n",                        // bad metric name
        "# HELP iova_x h\n# TYPE iova_x gauge\niova_x 1 1700000000\n", // timestamp
    ];
    for text in bad {
        let r = std::panic::catch_unwind(|| validate_prometheus(text));
        assert!(r.is_err(), "accepted: {text}");
    }
    for text in [
        "a_b/c=d\n",
        "feature.node.kubernetes.io/x=-v\n",
        "x.kubernetes.io/y=2\n",
        "noprefix=1\n",
        "# +bogus\n",
    ] {
        let r = std::panic::catch_unwind(|| validate_nfd(text));
        assert!(r.is_err(), "accepted: {text}");
    }
}
