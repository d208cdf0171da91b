//! `iovactl export prometheus | ansible | nfd`: a host's IOMMU facts for the engines a
//! fleet already runs: node_exporter's textfile collector (Prometheus text exposition
//! format), Ansible local facts (`/etc/ansible/facts.d/iova.fact`) and Kubernetes Node
//! Feature Discovery feature files (`features.d`). See docs/exports.md.
//!
//! One set of facts ([`HostFacts`]) feeds the three formats. A fact that is unknown is
//! never written as 0, "none" or "ok": Prometheus leaves the series out, Ansible writes
//! `null` and names the fact in an `unknown` list, NFD leaves the label out (and says
//! so in a comment), except `iova-ready`, which is `unknown`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use iova::host::{Group, Host, IommuUnit, ReservedKind};
use iova::range::IovaSet;
use serde_json::{Value, json};

use crate::error::CliError;
use crate::hostsrc::{HostArgs, LoadedHost};
use crate::report::{hex, range_json, set_json};

/// Options of `iovactl export prometheus`.
#[derive(Debug, Args)]
pub struct PrometheusArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Where to write the metrics (`-`: standard output). A file is written whole to a
    /// temporary file in the same directory and renamed into place, as node_exporter's
    /// textfile collector asks; name it `*.prom` (the collector reads nothing else).
    #[arg(long, value_name = "FILE", default_value = "-")]
    output: PathBuf,
}

/// Options of `iovactl export ansible`.
#[derive(Debug, Args)]
pub struct AnsibleArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Where to write the JSON document (`-`: standard output), such as
    /// /etc/ansible/facts.d/iova.fact (read by Ansible as `ansible_local.iova`). A file
    /// is written to a temporary file and renamed into place, never executable.
    #[arg(long, value_name = "FILE", default_value = "-")]
    output: PathBuf,
}

/// Options of `iovactl export nfd`.
#[derive(Debug, Args)]
pub struct NfdArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Where to write the feature file (`-`: standard output), such as
    /// /etc/kubernetes/node-feature-discovery/features.d/iova. A file is written to a
    /// hidden temporary file (NFD ignores dot files) and renamed into place.
    #[arg(long, value_name = "FILE", default_value = "-")]
    output: PathBuf,
    /// The label namespace (a DNS subdomain such as iova.example); nfd-master always
    /// refuses kubernetes.io and its subdomains other than feature.node.kubernetes.io
    /// and profile.node.kubernetes.io.
    #[arg(long, value_name = "NAMESPACE", default_value = NFD_DEFAULT_NAMESPACE)]
    prefix: String,
    /// Write an `# +expiry-time=` directive this long after now (seconds, or with a
    /// suffix s, m, h or d: 90m, 2h, 7d), so that NFD drops the labels when the file is
    /// no longer refreshed.
    #[arg(long, value_name = "DURATION")]
    expires_in: Option<String>,
}

/// The namespace of NFD's own labels, always allowed by nfd-master.
pub const NFD_DEFAULT_NAMESPACE: &str = "feature.node.kubernetes.io";

/// A reason a group cannot be assigned to a VM safely, as `check` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockerKind {
    /// The group has a `direct` reserved region (an RMRR).
    DirectRegion,
    /// The group's IOMMU does not remap interrupts.
    NoInterruptRemapping,
}

impl BlockerKind {
    /// The spelling in every export (a Prometheus label value, an Ansible value).
    pub fn as_str(self) -> &'static str {
        match self {
            BlockerKind::DirectRegion => "direct-region",
            BlockerKind::NoInterruptRemapping => "no-interrupt-remapping",
        }
    }
}

/// What is known about one IOMMU group.
#[derive(Debug)]
pub struct GroupFacts<'h> {
    /// The group.
    pub group: &'h Group,
    /// Its IOMMU unit, when known.
    pub unit: Option<&'h IommuUnit>,
    /// Its valid IOVAs, `None` when the aperture is unknown (the model then assumes the
    /// whole 64-bit space, which is not a fact to export).
    pub valid: Option<IovaSet>,
    /// Each blocker kind: `Some(true)` present, `Some(false)` known absent, `None`
    /// unknown (the fact that decides it is unknown).
    pub blockers: [(BlockerKind, Option<bool>); 2],
    /// The messages of the blockers present, as `inspect` prints them.
    pub blocker_messages: Vec<(BlockerKind, String)>,
    /// Whether the group can be assigned to a VM safely: no blocker, and every fact
    /// that decides it known; `None` when no blocker is known but a deciding fact is
    /// unknown.
    pub ready: Option<bool>,
    /// The facts of this group that are unknown (`domain_type`, `iommu`,
    /// `interrupt_remapping`, `aperture`).
    pub unknown: Vec<&'static str>,
}

impl GroupFacts<'_> {
    /// The highest IOVA the group can map: `Some(None)` when it can map nothing,
    /// `None` when unknown.
    pub fn highest(&self) -> Option<Option<u64>> {
        self.valid
            .as_ref()
            .map(|v| v.ranges().last().map(|r| r.last()))
    }
}

/// What is known about the host, for every export.
#[derive(Debug)]
pub struct HostFacts<'h> {
    /// The host.
    pub host: &'h Host,
    /// Where it came from ("sysfs at /sys").
    pub source: String,
    /// Each group, in the host's order.
    pub groups: Vec<GroupFacts<'h>>,
    /// Whether the host can assign a device to a VM safely: at least one group ready
    /// (`Some(true)`), none ready and none unknown, or no group at all (`Some(false)`),
    /// else `None`.
    pub ready: Option<bool>,
    /// The smallest address width of the host's IOMMU units; `None` when a unit's
    /// width is unknown or the host has no unit.
    pub min_address_width: Option<u8>,
    /// The highest IOVA every group of the host can map (the smallest of the groups'
    /// highest valid IOVAs); `None` when a group's is unknown, a group can map nothing,
    /// or the host has no group.
    pub highest_mappable_iova: Option<u64>,
    /// The IOMMU kinds (vendors) of the host's units, sorted, without repeats.
    pub iommu_kinds: Vec<&'static str>,
}

/// The number of bits needed to write `addr`: 39 for 0x7fffffffff, 64 for 2^64-1.
pub fn bits_of(addr: u64) -> u32 {
    u64::BITS - addr.leading_zeros()
}

impl<'h> HostFacts<'h> {
    /// The facts of a loaded host.
    pub fn of(loaded: &'h LoadedHost) -> Result<HostFacts<'h>, CliError> {
        let host = &loaded.host;
        let mut groups = Vec::with_capacity(host.groups.len());
        for g in &host.groups {
            groups.push(group_facts(host, g)?);
        }
        let ready = if groups.iter().any(|g| g.ready == Some(true)) {
            Some(true)
        } else if groups.iter().all(|g| g.ready == Some(false)) {
            Some(false)
        } else {
            None
        };
        let min_address_width = if host.iommus.is_empty() {
            None
        } else {
            host.iommus
                .iter()
                .map(|u| u.address_width)
                .collect::<Option<Vec<u8>>>()
                .and_then(|w| w.into_iter().min())
        };
        let highest_mappable_iova = if groups.is_empty() {
            None
        } else {
            groups
                .iter()
                .map(|g| g.highest().flatten())
                .collect::<Option<Vec<u64>>>()
                .and_then(|h| h.into_iter().min())
        };
        let kinds: BTreeSet<&'static str> = host.iommus.iter().map(|u| u.vendor.as_str()).collect();
        Ok(HostFacts {
            host,
            source: loaded.source.clone(),
            groups,
            ready,
            min_address_width,
            highest_mappable_iova,
            iommu_kinds: kinds.into_iter().collect(),
        })
    }
}

fn group_facts<'h>(host: &'h Host, g: &'h Group) -> Result<GroupFacts<'h>, CliError> {
    let valid = host
        .valid_iova_ranges(g.id)
        .map_err(|e| CliError::input(format!("group {}: {e}", g.id)))?;
    let issues = host
        .group_issues(g.id)
        .map_err(|e| CliError::input(format!("group {}: {e}", g.id)))?;
    let unit = host.iommu_of_group(g);
    let mut unknown = Vec::new();
    let direct = Some(
        g.reserved_regions
            .iter()
            .any(|r| r.kind == ReservedKind::Direct),
    );
    if unit.is_none() {
        unknown.push("iommu");
    }
    // What the running kernel does (the unit's capability and the interrupt chips it
    // enabled), not the capability bit alone.
    let remapping = host
        .member(g.id)
        .map_err(|e| CliError::input(format!("group {}: {e}", g.id)))?
        .interrupt_remapping;
    if remapping.is_none() {
        unknown.push("interrupt_remapping");
    }
    let no_remap = remapping.map(|on| !on);
    if valid.aperture.is_none() {
        unknown.push("aperture");
    }
    let blockers = [
        (BlockerKind::DirectRegion, direct),
        (BlockerKind::NoInterruptRemapping, no_remap),
    ];
    let blocker_messages = issues
        .iter()
        .filter(|i| i.is_blocker())
        .filter_map(|i| {
            let kind = match i {
                iova::host::GroupIssue::DirectRegion { .. } => BlockerKind::DirectRegion,
                iova::host::GroupIssue::NoInterruptRemapping => BlockerKind::NoInterruptRemapping,
                _ => return None,
            };
            Some((kind, i.to_string()))
        })
        .collect();
    let valid = valid.aperture.map(|_| valid.ranges);
    let nothing_mappable = valid.as_ref().is_some_and(IovaSet::is_empty);
    let ready = if blockers.iter().any(|(_, b)| *b == Some(true)) || nothing_mappable {
        Some(false)
    } else if blockers.iter().all(|(_, b)| b.is_some()) {
        Some(true)
    } else {
        None
    };
    Ok(GroupFacts {
        group: g,
        unit,
        valid,
        blockers,
        blocker_messages,
        ready,
        unknown,
    })
}

/// Loads the host of the options, with a clear error naming it.
fn load(host: &HostArgs) -> Result<LoadedHost, CliError> {
    host.load()
}

/// The files the command reads, which its output must not replace.
fn inputs(host: &HostArgs) -> Vec<&Path> {
    host.host.iter().map(PathBuf::as_path).collect()
}

/// Warns when a file name will not be picked up by the engine it is meant for.
fn note_suffix(output: &Path, suffix: &str, engine: &str) {
    let special = std::fs::metadata(output).is_ok_and(|m| !m.is_file());
    if output.as_os_str() != "-"
        && !special
        && !output
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
    {
        crate::out::eprintln(&format!(
            "iovactl: note: {} does not end in {suffix}: {engine} reads only *{suffix} files",
            output.display()
        ));
    }
}

// ---- Prometheus ---------------------------------------------------------------------

/// One metric family of the text exposition format.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, String)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: impl ToString) {
        self.samples.push((labels, value.to_string()));
    }
}

/// A label value escaped for the text format: `\` `"` and line feeds.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP text escaped for the text format: `\` and line feeds.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Renders the families: HELP and TYPE first, then the samples of each family
/// together; families without samples are left out, and a repeated series (same name
/// and labels) is written once.
fn render_families(families: &[Family]) -> String {
    let mut s = String::new();
    let mut seen = BTreeSet::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(s, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(s, "# TYPE {} gauge", f.name);
        for (labels, value) in &f.samples {
            let mut series = f.name.to_owned();
            if !labels.is_empty() {
                let inner: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                    .collect();
                let _ = write!(series, "{{{}}}", inner.join(","));
            }
            if seen.insert(series.clone()) {
                let _ = writeln!(s, "{series} {value}");
            }
        }
    }
    s
}

/// The metrics of a host, in the Prometheus text exposition format (version 0.0.4).
pub fn prometheus_text(f: &HostFacts) -> String {
    let host = f.host;
    let mut groups = Family::new(
        "iova_groups",
        "IOMMU groups on the host; 0 means no IOMMU is enabled or exposed and no device can be assigned.",
    );
    groups.add(vec![], f.groups.len());
    let mut host_ready = Family::new(
        "iova_host_ready",
        "1 when at least one IOMMU group can be assigned to a VM safely (iova_group_ready 1), 0 when none can; left out when unknown.",
    );
    if let Some(r) = f.ready {
        host_ready.add(vec![], u8::from(r));
    }
    let mut limit = Family::new(
        "iova_dma_entry_limit",
        "vfio_iommu_type1.dma_entry_limit: the most DMA mappings one type1 container may hold; left out when unknown (module not loaded).",
    );
    if let Some(l) = host.settings.dma_entry_limit {
        limit.add(vec![], l);
    }
    let mut iommu_info = Family::new(
        "iova_iommu_info",
        "An IOMMU unit of the host and its kind (intel, amd, arm-smmu-v3, arm-smmu, virtio, unknown); always 1.",
    );
    let mut width = Family::new(
        "iova_iommu_address_width_bits",
        "The input address width of an IOMMU unit in bits; left out when unknown.",
    );
    let mut remap = Family::new(
        "iova_iommu_interrupt_remapping",
        "1 when the IOMMU unit remaps (isolates) device interrupts, 0 when it does not; left out when unknown.",
    );
    for u in &host.iommus {
        iommu_info.add(
            vec![
                ("iommu", u.name.clone()),
                ("kind", u.vendor.as_str().to_owned()),
            ],
            1,
        );
        if let Some(w) = u.address_width {
            width.add(vec![("iommu", u.name.clone())], w);
        }
        if let Some(r) = u.interrupt_remapping {
            remap.add(vec![("iommu", u.name.clone())], u8::from(r));
        }
    }
    let mut device_info = Family::new(
        "iova_device_info",
        "A device of the host and its IOMMU group (group empty when it has none), PCI vendor and device ID (empty when unknown); always 1.",
    );
    for d in &host.devices {
        device_info.add(
            vec![
                ("device", d.name.clone()),
                ("group", d.group.map_or(String::new(), |g| g.to_string())),
                (
                    "vendor_id",
                    d.vendor_id.map_or(String::new(), |v| format!("{v:#06x}")),
                ),
                (
                    "device_id",
                    d.device_id.map_or(String::new(), |v| format!("{v:#06x}")),
                ),
            ],
            1,
        );
    }
    let mut group_info = Family::new(
        "iova_group_info",
        "An IOMMU group, its default domain type and its IOMMU unit (iommu empty when unknown); always 1.",
    );
    let mut valid = Family::new(
        "iova_group_valid_iova_bytes",
        "Bytes of IOVA space the group can map (its aperture minus its reserved regions); left out when the aperture is unknown.",
    );
    let mut highest = Family::new(
        "iova_group_highest_mappable_iova",
        "The highest IOVA (a byte address) the group can map, as a float64 (exact below 2^53); left out when the aperture is unknown or nothing can be mapped.",
    );
    let mut highest_bits = Family::new(
        "iova_group_highest_mappable_iova_bits",
        "Bits needed to address the highest IOVA the group can map (39 for 0x7fffffffff); left out when the aperture is unknown or nothing can be mapped.",
    );
    let mut reserved_count = Family::new(
        "iova_group_reserved_regions",
        "The number of reserved regions the kernel reports for the group.",
    );
    let mut reserved = Family::new(
        "iova_group_reserved_region_bytes",
        "The size of one reserved region of the group (kind: msi, reserved, direct, direct-relaxable; first and last inclusive, hexadecimal); VFIO excludes every kind but direct-relaxable.",
    );
    let mut blocker = Family::new(
        "iova_group_blocker",
        "1 when the blocker (direct-region, no-interrupt-remapping) stops the group from being assigned to a VM safely, 0 when it does not; left out when the fact deciding it is unknown.",
    );
    let mut ready = Family::new(
        "iova_group_ready",
        "1 when the group can be assigned to a VM safely (no blocker, every deciding fact known), 0 when it cannot; left out when unknown.",
    );
    for g in &f.groups {
        let id = g.group.id.to_string();
        let gl = || vec![("group", id.clone())];
        group_info.add(
            vec![
                ("group", id.clone()),
                ("type", g.group.domain_type.as_str().to_owned()),
                ("iommu", g.unit.map_or(String::new(), |u| u.name.clone())),
            ],
            1,
        );
        if let Some(v) = &g.valid {
            valid.add(gl(), v.len());
        }
        if let Some(Some(h)) = g.highest() {
            highest.add(gl(), h);
            highest_bits.add(gl(), bits_of(h));
        }
        let regions: BTreeSet<_> = g.group.reserved_regions.iter().collect();
        reserved_count.add(gl(), regions.len());
        for r in regions {
            reserved.add(
                vec![
                    ("group", id.clone()),
                    ("kind", r.kind.as_str().to_owned()),
                    ("first", hex(r.range.first())),
                    ("last", hex(r.range.last())),
                ],
                r.range.len(),
            );
        }
        for (kind, present) in g.blockers {
            if let Some(p) = present {
                blocker.add(
                    vec![("group", id.clone()), ("kind", kind.as_str().to_owned())],
                    u8::from(p),
                );
            }
        }
        if let Some(r) = g.ready {
            ready.add(gl(), u8::from(r));
        }
    }
    render_families(&[
        groups,
        host_ready,
        limit,
        iommu_info,
        width,
        remap,
        device_info,
        group_info,
        valid,
        highest,
        highest_bits,
        reserved_count,
        reserved,
        blocker,
        ready,
    ])
}

/// Runs `iovactl export prometheus`.
pub fn run_prometheus(args: &PrometheusArgs) -> Result<ExitCode, CliError> {
    let loaded = load(&args.host)?;
    let facts = HostFacts::of(&loaded)?;
    let text = prometheus_text(&facts);
    note_suffix(&args.output, ".prom", "node_exporter's textfile collector");
    crate::out::write_output(
        &args.output,
        "--output",
        text.as_bytes(),
        &inputs(&args.host),
    )?;
    Ok(ExitCode::SUCCESS)
}

// ---- Ansible ------------------------------------------------------------------------

/// A byte count as a JSON number: an integer up to 2^64-1, 2^64 itself as a float
/// (exact).
fn bytes_json(n: u128) -> Value {
    match u64::try_from(n) {
        Ok(v) => Value::from(v),
        Err(_) => serde_json::Number::from_f64(n as f64).map_or(Value::Null, Value::Number),
    }
}

/// The Ansible local facts document of a host (keys in snake_case; unknown facts are
/// `null` and named in `unknown`).
pub fn ansible_json(f: &HostFacts) -> Value {
    let host = f.host;
    let mut unknown = Vec::new();
    if f.ready.is_none() {
        unknown.push("ready");
    }
    if f.min_address_width.is_none() {
        unknown.push("min_address_width");
    }
    if f.highest_mappable_iova.is_none() {
        unknown.push("highest_mappable_iova");
    }
    if host.settings.dma_entry_limit.is_none() {
        unknown.push("dma_entry_limit");
    }
    if host.settings.allow_unsafe_interrupts.is_none() {
        unknown.push("allow_unsafe_interrupts");
    }
    let groups: Vec<Value> = f
        .groups
        .iter()
        .map(|g| {
            let highest = g.highest().flatten();
            json!({
                "id": g.group.id,
                "type": g.group.domain_type.as_str(),
                "iommu": g.unit.map(|u| u.name.clone()),
                "devices": g.group.devices,
                "ready": g.ready,
                "blocked": if g.blockers.iter().any(|(_, b)| *b == Some(true)) {
                    Some(true)
                } else if g.blockers.iter().all(|(_, b)| b.is_some()) {
                    Some(false)
                } else {
                    None
                },
                "blockers": g.blocker_messages.iter().map(|(k, m)| json!({
                    "kind": k.as_str(),
                    "message": m,
                })).collect::<Vec<_>>(),
                "valid_iova_bytes": g.valid.as_ref().map(|v| bytes_json(v.len())),
                "highest_mappable_iova": highest.map(hex),
                "highest_mappable_iova_bits": highest.map(bits_of),
                "valid_iova_ranges": g.valid.as_ref().map(set_json),
                "reserved_regions": g.group.reserved_regions.iter().map(|r| json!({
                    "first": hex(r.range.first()),
                    "last": hex(r.range.last()),
                    "kind": r.kind.as_str(),
                    "bytes": bytes_json(r.range.len()),
                    "excluded": r.kind.excludes_iova(),
                })).collect::<Vec<_>>(),
                "unknown": g.unknown,
            })
        })
        .collect();
    let ready_groups: Vec<u32> = f
        .groups
        .iter()
        .filter(|g| g.ready == Some(true))
        .map(|g| g.group.id)
        .collect();
    json!({
        "format_version": 1,
        "generator": format!("iovactl {}", env!("CARGO_PKG_VERSION")),
        "source": f.source,
        "ready": f.ready,
        "ready_groups": ready_groups,
        "group_count": f.groups.len(),
        "iommu_kinds": f.iommu_kinds,
        "min_address_width": f.min_address_width,
        "highest_mappable_iova": f.highest_mappable_iova.map(hex),
        "highest_mappable_iova_bits": f.highest_mappable_iova.map(bits_of),
        "dma_entry_limit": host.settings.dma_entry_limit,
        "allow_unsafe_interrupts": host.settings.allow_unsafe_interrupts,
        "unknown": unknown,
        "iommus": host.iommus.iter().map(|u| json!({
            "name": u.name,
            "kind": u.vendor.as_str(),
            "address_width": u.address_width,
            "aperture": u.aperture.as_ref().map(range_json),
            "page_sizes": u.page_sizes.map(hex),
            "interrupt_remapping": u.interrupt_remapping,
        })).collect::<Vec<_>>(),
        "groups": groups,
    })
}

/// Runs `iovactl export ansible`.
pub fn run_ansible(args: &AnsibleArgs) -> Result<ExitCode, CliError> {
    let loaded = load(&args.host)?;
    let facts = HostFacts::of(&loaded)?;
    let text = serde_json::to_string_pretty(&ansible_json(&facts))
        .map_err(|e| CliError::Os(format!("cannot serialize the Ansible facts: {e}")))?;
    note_suffix(&args.output, ".fact", "Ansible's fact_path");
    crate::out::write_output(
        &args.output,
        "--output",
        (text + "\n").as_bytes(),
        &inputs(&args.host),
    )?;
    Ok(ExitCode::SUCCESS)
}

// ---- Node Feature Discovery ---------------------------------------------------------

/// Whether `s` is a DNS-1123 subdomain (the namespace of a Kubernetes label): at most
/// 253 characters, dot-separated parts of lower-case letters, digits and `-`, each
/// starting and ending with a letter or digit.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

/// Whether `s` is a Kubernetes label name (the part after the `/`) or a non-empty
/// label value: at most 63 characters of letters, digits, `-`, `_` and `.`, starting
/// and ending with a letter or digit.
pub fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks `--prefix`: a DNS subdomain that nfd-master publishes (not kubernetes.io or
/// one of its subdomains other than NFD's own two). A trailing `/` is accepted.
fn nfd_namespace(prefix: &str) -> Result<String, CliError> {
    let ns = prefix.strip_suffix('/').unwrap_or(prefix);
    if !is_dns_subdomain(ns) {
        return Err(CliError::input(format!(
            "--prefix {prefix}: a label namespace is a DNS subdomain (lower-case letters, digits, '-' and '.', at most 253 characters), such as iova.example"
        )));
    }
    let under = |d: &str| ns == d || ns.ends_with(&format!(".{d}"));
    if under("kubernetes.io")
        && !under("feature.node.kubernetes.io")
        && !under("profile.node.kubernetes.io")
    {
        return Err(CliError::input(format!(
            "--prefix {prefix}: nfd-master never publishes labels in kubernetes.io or its subdomains (except feature.node.kubernetes.io and profile.node.kubernetes.io)"
        )));
    }
    Ok(ns.to_owned())
}

/// A duration of `--expires-in` in seconds: a number, or one with a suffix s, m, h or
/// d; between 1 second and 100 years.
fn parse_duration(text: &str) -> Result<u64, CliError> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let mult: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    let n: Option<u64> = if num.bytes().all(|b| b.is_ascii_digit()) {
        num.parse().ok()
    } else {
        None
    };
    match n.and_then(|n| n.checked_mul(mult)) {
        Some(s) if (1..=100 * 366 * 86_400).contains(&s) => Ok(s),
        _ => Err(CliError::input(format!(
            "--expires-in {text}: a duration is a whole number of seconds, or one with a suffix s, m, h or d (90m, 2h, 7d), from 1 second to 100 years"
        ))),
    }
}

/// The calendar date of a day counted from 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's algorithm, shifted to start on 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC time (`2026-01-02T03:04:05Z`).
pub fn rfc3339(secs: u64) -> String {
    let (y, mo, d) = civil_from_days(secs / 86_400);
    let t = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The NFD feature file of a host: `NAMESPACE/NAME=VALUE` lines (after an optional
/// `# +expiry-time=` directive), unknown facts left out and named in a comment, except
/// `iova-ready`, which is `unknown`.
pub fn nfd_text(f: &HostFacts, namespace: &str, expiry: Option<&str>) -> String {
    let mut s = String::from(
        "# IOMMU facts written by iovactl export nfd (docs/exports.md); do not edit.\n",
    );
    if let Some(t) = expiry {
        let _ = writeln!(s, "# +expiry-time={t}");
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    let ready = match f.ready {
        Some(true) => "true",
        Some(false) => "false",
        None => "unknown",
    };
    labels.push(("iova-ready".into(), ready.into()));
    let mut num = |name: &'static str, v: Option<u64>| match v {
        Some(v) => labels.push((name.into(), v.to_string())),
        None => unknown.push(name),
    };
    num(
        "iova-iommu-address-width-min",
        f.min_address_width.map(u64::from),
    );
    num(
        "iova-highest-iova-bits",
        f.highest_mappable_iova.map(|h| u64::from(bits_of(h))),
    );
    num(
        "iova-dma-entry-limit",
        f.host.settings.dma_entry_limit.map(u64::from),
    );
    for k in &f.iommu_kinds {
        labels.push((format!("iova-iommu.{k}"), "true".into()));
    }
    if !unknown.is_empty() {
        let _ = writeln!(s, "# unknown, so left out: {}", unknown.join(" "));
    }
    for (name, value) in labels
        .iter()
        .filter(|(n, v)| is_label_token(n) && is_label_token(v))
    {
        let _ = writeln!(s, "{namespace}/{name}={value}");
    }
    s
}

/// Runs `iovactl export nfd`.
pub fn run_nfd(args: &NfdArgs) -> Result<ExitCode, CliError> {
    let namespace = nfd_namespace(&args.prefix)?;
    let expiry = match &args.expires_in {
        Some(d) => {
            let secs = parse_duration(d)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| {
                    CliError::Os("--expires-in: the system clock is set before 1970".to_owned())
                })?;
            Some(rfc3339(now.as_secs().saturating_add(secs)))
        }
        None => None,
    };
    let loaded = load(&args.host)?;
    let facts = HostFacts::of(&loaded)?;
    let text = nfd_text(&facts, &namespace, expiry.as_deref());
    crate::out::write_output(
        &args.output,
        "--output",
        text.as_bytes(),
        &inputs(&args.host),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_690_629_753), "2023-07-29T11:22:33Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").ok(), Some(90));
        assert_eq!(parse_duration("90m").ok(), Some(5400));
        assert_eq!(parse_duration("2h").ok(), Some(7200));
        assert_eq!(parse_duration("7d").ok(), Some(604_800));
        for bad in [
            "",
            "0",
            "h",
            "-5m",
            "1.5h",
            "2w",
            "99999999999999999999",
            "1000000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces_and_label_tokens() {
        assert!(nfd_namespace("iova.example").is_ok());
        assert!(nfd_namespace("iova.example/").is_ok());
        assert!(nfd_namespace("feature.node.kubernetes.io").is_ok());
        assert!(nfd_namespace("iova.feature.node.kubernetes.io").is_ok());
        for bad in [
            "",
            "Iova.example",
            "kubernetes.io",
            "node.kubernetes.io",
            "-a.b",
            "a..b",
            "a/b",
        ] {
            assert!(nfd_namespace(bad).is_err(), "{bad}");
        }
        for name in [
            "iova-ready",
            "iova-iommu-address-width-min",
            "iova-highest-iova-bits",
            "iova-dma-entry-limit",
            "iova-iommu.arm-smmu-v3",
            "unknown",
            "65535",
        ] {
            assert!(is_label_token(name), "{name}");
        }
        for bad in ["", "-a", "a-", "a b", "a,b", &"x".repeat(64)] {
            assert!(!is_label_token(bad), "{bad}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn bits() {
        assert_eq!(bits_of(0x7f_ffff_ffff), 39);
        assert_eq!(bits_of(0xffff_ffff_ffff), 48);
        assert_eq!(bits_of(u64::MAX), 64);
        assert_eq!(bits_of(0), 0);
    }
}
