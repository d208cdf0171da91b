//! `iovactl check | plan | export virtio-iommu | render`: a guest layout against the
//! container the assigned devices' groups form.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use iova::units::parse_number;
use iova_guest::virtio_iommu::{self, ResvSubtype};
use iova_guest::{
    CheckReport, Container, CpuVendor, GuestConfig, Layout, Plan, PlanInput, Preset, check,
    layout_file, plan, svg,
};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::hostsrc::{HostArgs, LoadedHost};
use crate::report::{hex, human_bytes, page_sizes, range_json, set_json};

/// The guest and the devices: shared by check, plan and render.
#[derive(Debug, Args)]
pub struct GuestArgs {
    #[command(flatten)]
    host: HostArgs,
    /// A device to assign (PCI address such as 0000:03:00.0 or 03:00.0). Repeat for
    /// several: their groups share one container.
    #[arg(long = "device", value_name = "BDF", required = true)]
    devices: Vec<String>,
    /// The VMM whose layout to use: qemu-q35, qemu-pc, qemu-virt, cloud-hypervisor,
    /// firecracker, crosvm.
    #[arg(long, value_name = "PRESET", conflicts_with = "layout")]
    guest: Option<String>,
    /// Guest RAM with --guest: 512M, 8G, 1T (binary units; no fractions).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// A custom layout (TOML; see docs/guest-layouts.md) instead of --guest.
    #[arg(long, value_name = "FILE")]
    layout: Option<PathBuf>,
    /// The guest CPU vendor (intel or amd); default: the host's.
    #[arg(long = "cpu-vendor", value_name = "V")]
    cpu_vendor: Option<String>,
}

/// Options of `iovactl check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Print JSON instead of a report.
    #[arg(long)]
    json: bool,
}

/// Options of `iovactl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Print JSON instead of a report.
    #[arg(long)]
    json: bool,
}

/// Options of `iovactl render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Where to write the SVG picture (`-` for standard output). Written to a temporary
    /// file beside it, then renamed into place; never one of the command's inputs.
    #[arg(long, value_name = "FILE")]
    svg: PathBuf,
}

/// `iovactl export FORMAT`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    format: ExportFormat,
}

#[derive(Debug, Subcommand)]
enum ExportFormat {
    /// The virtio-iommu config (input range, page-size mask) and the reserved regions of
    /// its PROBE replies that keep a guest inside the host's valid IOVAs, as JSON.
    VirtioIommu(ExportVirtioArgs),
}

#[derive(Debug, Args)]
struct ExportVirtioArgs {
    #[command(flatten)]
    host: HostArgs,
    /// A device behind the virtio-iommu (repeat for several sharing one container).
    #[arg(long = "device", value_name = "BDF", required = true)]
    devices: Vec<String>,
    /// Accepted for symmetry with check; the export does not depend on the guest.
    #[arg(long, value_name = "PRESET", hide = true)]
    guest: Option<String>,
    /// Accepted for symmetry with check.
    #[arg(long, value_name = "SIZE", hide = true)]
    memory: Option<String>,
}

/// Everything a guest command needs.
struct Loaded {
    loaded: LoadedHost,
    layout: Layout,
    input: PlanInput,
    guest_desc: String,
}

fn container(host: &iova::Host, devices: &[String]) -> Result<Container, CliError> {
    Container::of_devices(host, devices).map_err(|e| CliError::input(format!("--device {e}")))
}

fn load(args: &GuestArgs) -> Result<Loaded, CliError> {
    let loaded = args.host.load()?;
    let host_vendor = CpuVendor::of_host(&loaded.host);
    let (layout, input, guest_desc) = match (&args.guest, &args.layout) {
        (Some(name), None) => {
            let preset = Preset::from_name(name).ok_or_else(|| {
                CliError::input(format!(
                    "--guest {name}: unknown preset; known presets: {}",
                    Preset::known_names()
                ))
            })?;
            let mem_text = args.memory.as_deref().ok_or_else(|| {
                CliError::input(format!("--guest {name} needs --memory SIZE (e.g. 8G)"))
            })?;
            let memory =
                parse_number(mem_text).map_err(|e| CliError::input(format!("--memory: {e}")))?;
            let bare = !mem_text.is_empty() && mem_text.bytes().all(|b| b.is_ascii_digit());
            if bare && memory < (1 << 20) {
                // QEMU's `-m 2048` counts MiB; here a number without a unit is bytes.
                return Err(CliError::input(format!(
                    "--memory {mem_text}: a size without a unit is bytes, far too little \
                     RAM; did you mean {mem_text}M?"
                )));
            }
            let (vendor, from) = if preset.is_arm() {
                (CpuVendor::Arm, "aarch64 guest")
            } else {
                match &args.cpu_vendor {
                    Some(v) => match CpuVendor::parse(v) {
                        Some(x @ (CpuVendor::Intel | CpuVendor::Amd)) => (x, "--cpu-vendor"),
                        _ => {
                            return Err(CliError::input(format!(
                                "--cpu-vendor {v}: use intel or amd"
                            )));
                        }
                    },
                    None => match host_vendor {
                        Some(x @ (CpuVendor::Intel | CpuVendor::Amd)) => (x, "the host's"),
                        _ => (CpuVendor::Intel, "assumed: host CPU vendor unknown"),
                    },
                }
            };
            let cfg = GuestConfig::new(memory, vendor);
            let layout = preset
                .layout(&cfg)
                .map_err(|e| CliError::input(format!("--guest {name} --memory {mem_text}: {e}")))?;
            let desc = format!(
                "{} with {} of RAM, {} vCPU ({from}); layout from {}",
                preset.name(),
                human_bytes(u128::from(memory)),
                vendor,
                preset.source()
            );
            (layout, PlanInput::Preset(preset, cfg), desc)
        }
        (None, Some(path)) => {
            if args.memory.is_some() {
                return Err(CliError::input(
                    "--memory goes with --guest; a --layout file gives its own sizes",
                ));
            }
            // read_file refuses a FIFO (which would block), a directory or a dangling
            // link before reading anything.
            let bytes = crate::input::read_file(path, "layout file")?;
            let text = String::from_utf8(bytes).map_err(|e| {
                CliError::input(format!(
                    "layout file {} is not UTF-8 text: {e}",
                    path.display()
                ))
            })?;
            let layout = layout_file::parse(&path.display().to_string(), &text)
                .map_err(|e| CliError::input(e.to_string()))?;
            let desc = format!(
                "custom layout '{}' from {} ({} of RAM)",
                layout.name,
                path.display(),
                human_bytes(layout.ram_bytes())
            );
            (layout.clone(), PlanInput::Custom(layout), desc)
        }
        _ => {
            return Err(CliError::input(
                "give the guest as --guest PRESET --memory SIZE or as --layout FILE",
            ));
        }
    };
    Ok(Loaded {
        loaded,
        layout,
        input,
        guest_desc,
    })
}

fn run_check(l: &Loaded, devices: &[String]) -> Result<CheckReport, CliError> {
    check(&l.layout, &l.loaded.host, devices).map_err(|e| CliError::input(format!("--device {e}")))
}

fn layout_json(layout: &Layout) -> Value {
    Value::Array(
        layout
            .sections()
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "kind": s.kind.as_str(),
                    "first": hex(s.range.first()),
                    "last": hex(s.range.last()),
                    "size": s.range.len().to_string(),
                    "p2p": s.p2p,
                    "dma_mapped": s.is_dma_mapped(),
                })
            })
            .collect(),
    )
}

fn report_json(r: &CheckReport, guest: &str) -> Value {
    json!({
        "ok": r.ok,
        "guest": guest,
        "devices": r.container.devices,
        "groups": r.container.groups,
        "valid_iova_ranges": set_json(&r.container.valid),
        "page_size_mask": hex(r.container.page_size_mask),
        "layout": layout_json(&r.layout),
        "conflicts": r.conflicts.iter().map(|c| {
            let reason_kind = serde_json::to_value(&c.reason)
                .ok()
                .and_then(|v| v.get("kind").cloned())
                .unwrap_or(Value::Null);
            json!({
                "section": c.section,
                "first": hex(c.range.first()),
                "last": hex(c.range.last()),
                "reason": c.reason.to_string(),
                "reason_kind": reason_kind,
                "fatal": c.fatal,
            })
        }).collect::<Vec<_>>(),
        "blockers": r.blockers.iter().map(|b| json!({
            "group": b.group,
            "devices": b.devices,
            "issue": b.issue,
            "message": b.message,
        })).collect::<Vec<_>>(),
        "notes": r.layout.notes.iter().chain(r.notes.iter()).collect::<Vec<_>>(),
    })
}

fn layout_table(layout: &Layout, r: Option<&CheckReport>) -> String {
    let mut rows = vec![[
        "SECTION".to_owned(),
        "KIND".to_owned(),
        "FIRST".to_owned(),
        "LAST".to_owned(),
        "SIZE".to_owned(),
        "STATUS".to_owned(),
    ]];
    for s in layout.sections() {
        let kind = if s.p2p {
            format!("{} (p2p)", s.kind)
        } else {
            s.kind.to_string()
        };
        let status = match r {
            Some(r) if r.conflicts.iter().any(|c| c.section == s.name && c.fatal) => "CONFLICT",
            Some(r) if r.conflicts.iter().any(|c| c.section == s.name) => "warning",
            _ if !s.is_dma_mapped() => "not mapped",
            _ => "ok",
        };
        rows.push([
            iova_guest::text::clean(&s.name),
            kind,
            hex(s.range.first()),
            hex(s.range.last()),
            human_bytes(s.range.len()),
            status.to_owned(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(
            out,
            "  {:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
    }
    out
}

fn report_text(r: &CheckReport, l: &Loaded) -> String {
    let mut s = String::new();
    let c = &r.container;
    let _ = writeln!(s, "Host: {}", iova_guest::text::clean(&l.loaded.source));
    let _ = writeln!(
        s,
        "Devices: {} (group{} {}), one container",
        iova_guest::text::clean(&c.devices.join(", ")),
        if c.groups.len() == 1 { "" } else { "s" },
        c.groups
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(s, "Valid IOVAs: {}", c.valid);
    let _ = writeln!(s, "Page sizes: {}", page_sizes(c.page_size_mask));
    let _ = writeln!(s, "Guest: {}", iova_guest::text::clean(&l.guest_desc));
    for n in &r.layout.notes {
        let _ = writeln!(s, "  note: {}", iova_guest::text::clean(n));
    }
    let _ = writeln!(s, "\nLayout (guest-physical = IOVA without a vIOMMU):");
    s.push_str(&layout_table(&r.layout, Some(r)));
    if !r.conflicts.is_empty() {
        let _ = writeln!(s, "\nConflicts:");
        for x in &r.conflicts {
            let _ = writeln!(
                s,
                "  {} {} {}-{} ({}): {}",
                if x.fatal { "FATAL  " } else { "warning" },
                iova_guest::text::clean(&x.section),
                hex(x.range.first()),
                hex(x.range.last()),
                human_bytes(x.range.len()),
                iova_guest::text::clean(&x.reason.to_string())
            );
        }
    }
    if !r.blockers.is_empty() {
        let _ = writeln!(s, "\nBlockers (no layout can fix these):");
        for b in &r.blockers {
            let _ = writeln!(
                s,
                "  group {} ({}): {}",
                b.group,
                iova_guest::text::clean(&b.devices.join(", ")),
                iova_guest::text::clean(&b.message)
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "  note: {}", iova_guest::text::clean(n));
    }
    let _ = writeln!(
        s,
        "\nResult: {}",
        if r.ok {
            "OK - every DMA-mapped section fits the container".to_owned()
        } else if r.has_fatal() {
            "NOT OK - the VMM's DMA mappings will fail (EINVAL); run `iovactl plan` with the same options for a layout that fits".to_owned()
        } else {
            "NOT OK - blocked".to_owned()
        }
    );
    s
}

/// Runs `iovactl check`.
pub fn run_check_cmd(args: &CheckArgs) -> Result<ExitCode, CliError> {
    let l = load(&args.guest)?;
    let r = run_check(&l, &args.guest.devices)?;
    if args.json {
        crate::out::println(
            &serde_json::to_string_pretty(&report_json(&r, &l.guest_desc)).unwrap_or_default(),
        )?;
    } else {
        crate::out::print(&iova_guest::text::clean_lines(&report_text(&r, &l)))?;
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plan_json(p: &Plan, before: &CheckReport, guest: &str) -> Value {
    json!({
        "feasible": p.feasible,
        "ok": p.feasible && before.blockers.is_empty(),
        "guest": guest,
        "memory_requested": p.memory_requested.to_string(),
        "memory_planned": p.memory_planned.to_string(),
        "config": p.config.map(|c| json!({
            "memory": hex(c.memory),
            "cpu_vendor": c.cpu_vendor.as_str(),
            "max_ram_below_4g": c.max_ram_below_4g.map(hex),
            "pci_hole64_size": c.pci_hole64_size.map(hex),
        })),
        "without_warnings": p.without_warnings.as_ref().map(|(c, opts)| json!({
            "memory": hex(c.memory),
            "options": opts,
        })),
        "changes": p.changes,
        "options": p.options,
        "notes": p.notes,
        "layout": p.layout.as_ref().map(layout_json),
        "layout_toml": p.layout.as_ref().filter(|_| p.config.is_none()).map(layout_file::to_toml),
        "conflicts_before": before.conflicts.iter().filter(|c| c.fatal).map(|c| json!({
            "section": c.section,
            "first": hex(c.range.first()),
            "last": hex(c.range.last()),
            "reason": c.reason.to_string(),
        })).collect::<Vec<_>>(),
        "blockers": before.blockers.iter().map(|b| b.message.clone()).collect::<Vec<_>>(),
    })
}

/// Runs `iovactl plan`.
pub fn run_plan_cmd(args: &PlanArgs) -> Result<ExitCode, CliError> {
    let l = load(&args.guest)?;
    let before = run_check(&l, &args.guest.devices)?;
    let p = plan(&l.input, &before.container);
    let ok = p.feasible && before.blockers.is_empty();
    if args.json {
        crate::out::println(
            &serde_json::to_string_pretty(&plan_json(&p, &before, &l.guest_desc))
                .unwrap_or_default(),
        )?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let mut s = String::new();
    let _ = writeln!(s, "Host: {}", iova_guest::text::clean(&l.loaded.source));
    let _ = writeln!(s, "Guest: {}", iova_guest::text::clean(&l.guest_desc));
    let _ = writeln!(s, "Valid IOVAs: {}", before.container.valid);
    let fatal: Vec<_> = before.fatal().collect();
    if fatal.is_empty() {
        let _ = writeln!(s, "The requested layout has no fatal conflict.");
    } else {
        let _ = writeln!(
            s,
            "The requested layout has {} fatal conflict(s), first: {}",
            fatal.len(),
            iova_guest::text::clean(&fatal[0].to_string())
        );
    }
    match &p.layout {
        Some(layout) => {
            let _ = writeln!(
                s,
                "\nProposed layout ({} of RAM of {} requested):",
                human_bytes(p.memory_planned),
                human_bytes(p.memory_requested)
            );
            s.push_str(&layout_table(layout, p.report.as_ref()));
        }
        None => {
            let _ = writeln!(s, "\nNo layout fits.");
        }
    }
    if !p.changes.is_empty() {
        let _ = writeln!(s, "\nChanges:");
        for c in &p.changes {
            let _ = writeln!(s, "  - {}", iova_guest::text::clean(c));
        }
    }
    if !p.options.is_empty() {
        let _ = writeln!(s, "\nVMM options:");
        for o in &p.options {
            let _ = writeln!(s, "  {}", iova_guest::text::clean(o));
        }
    }
    if let (Some(layout), None) = (&p.layout, p.config) {
        if !p.changes.is_empty() {
            let _ = writeln!(s, "\nAs a layout file:\n{}", layout_file::to_toml(layout));
        }
    }
    if !p.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &p.notes {
            let _ = writeln!(s, "  - {}", iova_guest::text::clean(n));
        }
    }
    if !before.blockers.is_empty() {
        let _ = writeln!(s, "\nBlockers no layout can fix:");
        for b in &before.blockers {
            let _ = writeln!(
                s,
                "  group {} ({}): {}",
                b.group,
                iova_guest::text::clean(&b.devices.join(", ")),
                iova_guest::text::clean(&b.message)
            );
        }
    }
    crate::out::print(&iova_guest::text::clean_lines(&s))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs `iovactl render`.
pub fn run_render_cmd(args: &RenderArgs) -> Result<ExitCode, CliError> {
    let l = load(&args.guest)?;
    let r = run_check(&l, &args.guest.devices)?;
    let doc = svg::render(&r);
    let inputs: Vec<&std::path::Path> = [
        args.guest.layout.as_deref(),
        args.guest.host.host.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    crate::out::write_output(&args.svg, "--svg", doc.as_bytes(), &inputs)?;
    let summary = format!(
        "wrote {} ({}; {} conflict(s), {} fatal)",
        iova_guest::text::clean(&args.svg.display().to_string()),
        if r.ok { "ok" } else { "NOT ok" },
        r.conflicts.len(),
        r.fatal().count()
    );
    if args.svg.as_os_str() == "-" {
        // The picture went to standard output: the summary goes beside the errors.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{summary}");
    } else {
        crate::out::println(&summary)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `iovactl export`.
pub fn run_export_cmd(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let ExportFormat::VirtioIommu(a) = &args.format;
    let _ = (&a.guest, &a.memory);
    let loaded = a.host.load()?;
    let c = container(&loaded.host, &a.devices)?;
    let cfg = virtio_iommu::export(&c).ok_or_else(|| {
        CliError::input(format!(
            "--device {}: the container has no valid IOVA at all",
            a.devices.join(", ")
        ))
    })?;
    // As `check` does: a blocked group (identity domain, direct RMRR, no interrupt
    // remapping) cannot be assigned whatever the limits say.
    let mut blockers = Vec::new();
    for &g in &c.groups {
        let issues = loaded
            .host
            .group_issues(g)
            .map_err(|e| CliError::input(format!("--device: {e}")))?;
        let members: Vec<&String> = loaded
            .host
            .group(g)
            .map(|x| x.devices.iter().filter(|d| c.devices.contains(d)).collect())
            .unwrap_or_default();
        for issue in issues.into_iter().filter(|i| i.is_blocker()) {
            blockers.push(json!({
                "group": g,
                "devices": members,
                "message": issue.to_string(),
                "issue": issue,
            }));
        }
    }
    let v = json!({
        "format": "virtio-iommu",
        "ok": blockers.is_empty(),
        "blockers": blockers,
        "devices": c.devices,
        "groups": c.groups,
        "config": {
            "page_size_mask": hex(cfg.page_size_mask),
            "input_range": {"start": hex(cfg.input_range.first()), "end": hex(cfg.input_range.last())},
            "domain_range": {"start": cfg.domain_range.0, "end": cfg.domain_range.1},
        },
        "probe": {
            "resv_mem": cfg.reserved.iter().map(|r| json!({
                "subtype": match r.subtype { ResvSubtype::Reserved => "reserved", ResvSubtype::Msi => "msi" },
                "subtype_value": r.subtype.value(),
                "start": hex(r.start),
                "end": hex(r.end),
            })).collect::<Vec<_>>(),
        },
        "valid_iova_ranges": set_json(&c.valid),
        "input_range_json": range_json(&cfg.input_range),
    });
    crate::out::println(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    if blockers.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write as _;
    for b in &blockers {
        let _ = writeln!(
            std::io::stderr(),
            "iovactl: export: blocked: group {}: {}",
            b["group"],
            iova_guest::text::clean(b["message"].as_str().unwrap_or_default())
        );
    }
    Ok(ExitCode::from(1))
}
