//! `iovactl inspect`: which IOVAs can this host map for this device?

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use iova::host::{Group, Host};
use iova::range::IovaSet;
use serde_json::{Value, json};

use crate::error::CliError;
use crate::hostsrc::{HostArgs, LoadedHost, group_facts, groups_of_devices};
use crate::report::{hex, human_bytes, page_sizes, range_json, set_json};

/// Options of `iovactl inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Only the groups of these devices (PCI address such as 0000:03:00.0 or 03:00.0).
    /// Repeat for several.
    #[arg(long = "device", value_name = "BDF")]
    devices: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also save the host as a profile file, to be loaded later with --host.
    #[arg(long, value_name = "FILE")]
    save_profile: Option<PathBuf>,
    /// Do not ask the kernel through /dev/vfio (by default, on the live host, groups
    /// bound to vfio-pci are opened and their valid IOVA ranges read with
    /// VFIO_IOMMU_GET_INFO).
    #[arg(long)]
    no_vfio: bool,
}

/// What the kernel itself said about a group through VFIO, or why it could not be asked.
enum VfioAnswer {
    /// Not asked: not the live host, or --no-vfio.
    NotAsked,
    /// `/dev/vfio/N` is absent: the group is not bound to vfio-pci.
    NotBound,
    /// Asking failed.
    Failed(String),
    /// GET_INFO of a type1 v2 container holding just this group.
    Info {
        ranges: IovaSet,
        page_sizes: Option<u64>,
        dma_avail: Option<u32>,
    },
}

/// Opens the group in a fresh type1 v2 container and reads GET_INFO.
fn ask_vfio(group: u32) -> VfioAnswer {
    use iova_linux::type1::{Container, IommuType};
    if !std::path::Path::new(&format!("/dev/vfio/{group}")).exists() {
        return VfioAnswer::NotBound;
    }
    let res = Container::open()
        .and_then(|mut c| c.attach_group(group, IommuType::Type1v2).map(|()| c))
        .map_err(|e| e.to_string())
        .and_then(|c| c.get_info().map_err(|e| e.to_string()));
    match res {
        Ok(info) => VfioAnswer::Info {
            ranges: info.iova_ranges.unwrap_or_default().into_iter().collect(),
            page_sizes: info.iova_pgsizes,
            dma_avail: info.dma_avail,
        },
        Err(e) => VfioAnswer::Failed(e),
    }
}

/// The answers for the groups shown, asked only on the live host.
fn vfio_answers(args: &InspectArgs, groups: &[&Group]) -> Vec<VfioAnswer> {
    let live = is_live(args);
    groups
        .iter()
        .map(|g| {
            if live && !args.no_vfio {
                ask_vfio(g.id)
            } else {
                VfioAnswer::NotAsked
            }
        })
        .collect()
}

/// Whether the host is the running one (no profile, no other sysfs root).
fn is_live(args: &InspectArgs) -> bool {
    args.host.is_live()
}

/// Runs `iovactl inspect`.
pub fn run(args: &InspectArgs) -> Result<ExitCode, CliError> {
    let mut loaded = args.host.load()?;
    // On a live sPAPR host the windows exist only behind VFIO: ask, so that they are
    // shown and saved in the profile.
    if is_live(args) && !args.no_vfio {
        for g in &mut loaded.host.groups {
            if g.spapr.is_none() {
                g.spapr = crate::hostsrc::ask_spapr(g.id);
            }
        }
    }
    let host = &loaded.host;
    let groups = selected_groups(host, &args.devices)?;
    if let Some(path) = &args.save_profile {
        let text = serde_json::to_string_pretty(host)
            .map_err(|e| CliError::Os(format!("cannot serialize the host profile: {e}")))?;
        let inputs: Vec<&std::path::Path> = args.host.profile()?.into_iter().collect();
        crate::out::write_output(path, "host profile", (text + "\n").as_bytes(), &inputs)?;
    }
    let vfio = vfio_answers(args, &groups);
    if args.json {
        let mut v = to_json(host, &groups, &vfio)?;
        if host.groups.is_empty() {
            let vm = loaded
                .root
                .as_deref()
                .and_then(crate::hostsrc::virtual_machine);
            if let Value::Object(m) = &mut v {
                m.insert(
                    "no_groups".to_owned(),
                    json!({
                        "message": no_groups_advice(host, &loaded),
                        "virtual_machine": vm,
                    }),
                );
            }
        }
        crate::out::println(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    } else {
        // Names come from sysfs or a profile: no control character reaches the terminal.
        crate::out::print(&iova_guest::text::clean_lines(&to_table(
            host, &groups, &vfio, &loaded,
        )?))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The groups to show: all of them, or those of the named devices.
fn selected_groups<'h>(host: &'h Host, devices: &[String]) -> Result<Vec<&'h Group>, CliError> {
    if devices.is_empty() {
        return Ok(host.groups.iter().collect());
    }
    groups_of_devices(host, devices)
}

fn group_json(host: &Host, g: &Group, vfio: &VfioAnswer) -> Result<Value, CliError> {
    let (valid, issues) = group_facts(host, g)?;
    let iommu = host.iommu_of_group(g).map(|u| u.name.clone());
    let mut warnings: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    let (valid_set, source, kernel) = match vfio {
        VfioAnswer::Info {
            ranges,
            page_sizes,
            dma_avail,
        } => {
            if ranges != &valid.ranges {
                warnings.push(format!(
                    "the kernel's valid ranges differ from those computed from sysfs ({})",
                    valid.ranges
                ));
            }
            (
                ranges.clone(),
                "vfio",
                json!({
                    "valid_iova_ranges": set_json(ranges),
                    "page_sizes": page_sizes.map(hex),
                    "dma_avail": dma_avail,
                }),
            )
        }
        VfioAnswer::Failed(e) => {
            warnings.push(format!("VFIO query failed: {e}"));
            (valid.ranges.clone(), "sysfs", Value::Null)
        }
        VfioAnswer::NotBound | VfioAnswer::NotAsked => (valid.ranges.clone(), "sysfs", Value::Null),
    };
    Ok(json!({
        "id": g.id,
        "type": g.domain_type.as_str(),
        "devices": g.devices,
        "iommu": iommu,
        "aperture": valid.aperture.as_ref().map(range_json),
        "reserved_regions": g.reserved_regions.iter().map(|r| json!({
            "first": hex(r.range.first()),
            "last": hex(r.range.last()),
            "kind": r.kind.as_str(),
        })).collect::<Vec<_>>(),
        "valid_iova_ranges": set_json(&valid_set),
        "valid_iova_ranges_source": source,
        "sysfs_valid_iova_ranges": set_json(&valid.ranges),
        "vfio": kernel,
        "spapr": g.spapr.as_ref().map(|sp| json!({
            "dma32_window_start": hex(u64::from(sp.dma32_window_start)),
            "dma32_window_size": hex(u64::from(sp.dma32_window_size)),
            "ddw": sp.ddw.map(|d| json!({
                "pgsizes": hex(d.pgsizes),
                "max_dynamic_windows_supported": d.max_dynamic_windows_supported,
                "levels": d.levels,
            })),
        })),
        "warnings": warnings,
        "blocked": issues.iter().any(|i| i.is_blocker()),
        "viability": host.viability(g.id, &[]).ok(),
        "node": host.settings.device_nodes.as_ref().map(|nodes| {
            nodes
                .iter()
                .find(|n| n.kind == iova::NodeKind::Group(g.id))
                .map_or(Value::Null, |n| json!({
                    "path": n.path, "uid": n.uid, "gid": n.gid,
                    "mode": format!("{:04o}", n.mode), "acl": n.acl,
                }))
        }),
    }))
}

/// The group's `/dev/vfio/N` with its owner and mode, or why there is none; `None`
/// when the host's nodes were not read.
fn node_text(host: &Host, g: &Group) -> Option<String> {
    let nodes = host.settings.device_nodes.as_ref()?;
    Some(
        match nodes.iter().find(|n| n.kind == iova::NodeKind::Group(g.id)) {
            Some(n) => format!(
                "{} owner {}:{} mode {:04o}{}",
                n.path,
                n.uid,
                n.gid,
                n.mode,
                if n.acl { " (with an ACL)" } else { "" }
            ),
            None => format!(
                "no /dev/vfio/{}: no device of the group is bound to vfio-pci",
                g.id
            ),
        },
    )
}

/// Whether VFIO can claim the group now (every device unbound, bound to a VFIO driver
/// or to one allowed beside it), in words.
fn viability_text(host: &Host, g: &Group) -> String {
    use iova::host::Viability;
    match host.viability(g.id, &[]) {
        Ok(Viability::Viable) => "yes".into(),
        Ok(Viability::NotViable { devices }) => format!(
            "no: {} (bind the group's devices to vfio-pci, e.g. `driverctl set-override \
             BDF vfio-pci`, or unbind them; libvirt rebinds only the devices it assigns)",
            devices
                .iter()
                .map(|(d, drv)| format!("{d} is bound to {drv}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Ok(Viability::Unknown { devices }) => {
            format!("unknown: the driver of {} is not known", devices.join(", "))
        }
        Err(e) => format!("unknown: {e}"),
    }
}

/// The host's interrupt remapping as the running kernel enabled it, with the evidence.
fn remapping_text(host: &Host) -> String {
    let st = &host.settings;
    let on = match st.interrupt_remapping_active {
        Some(true) => "on",
        Some(false) => "OFF",
        None => "unknown",
    };
    match &st.interrupt_remapping_evidence {
        Some(e) => format!("{on} ({})", iova_guest::text::clean(e)),
        None => format!("{on} (no evidence: kernel/irq/*/chip_name not read)"),
    }
}

fn to_json(host: &Host, groups: &[&Group], vfio: &[VfioAnswer]) -> Result<Value, CliError> {
    let groups = groups
        .iter()
        .zip(vfio)
        .map(|(g, v)| group_json(host, g, v))
        .collect::<Result<Vec<_>, _>>()?;
    let iommus: Vec<Value> = host
        .iommus
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "vendor": u.vendor.as_str(),
                "address_width": u.address_width,
                "aperture": u.aperture.as_ref().map(range_json),
                "page_sizes": u.page_sizes.map(hex),
                "interrupt_remapping": u.interrupt_remapping,
            })
        })
        .collect();
    let devices: Vec<Value> = host
        .devices
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "vendor_id": d.vendor_id.map(|v| format!("{v:#06x}")),
                "device_id": d.device_id.map(|v| format!("{v:#06x}")),
                "class": d.class.map(|v| format!("{v:#08x}")),
                "group": d.group,
                "iommu": d.iommu,
                "driver": d.driver.as_ref().map(|b| match b {
                    iova::host::Binding::Unbound => Value::Null,
                    iova::host::Binding::Driver(n) => Value::String(n.clone()),
                }),
                "driver_known": d.driver.is_some(),
            })
        })
        .collect();
    Ok(json!({
        "groups": groups,
        "iommus": iommus,
        "devices": devices,
        "interrupt_remapping": {
            "active": host.settings.interrupt_remapping_active,
            "evidence": host.settings.interrupt_remapping_evidence,
        },
    }))
}

fn to_table(
    host: &Host,
    groups: &[&Group],
    vfio: &[VfioAnswer],
    loaded: &LoadedHost,
) -> Result<String, CliError> {
    let source = loaded.source.as_str();
    let computed = format!("computed from {}", loaded.basis);
    use std::fmt::Write as _;
    let mut s = String::new();
    if host.groups.is_empty() {
        let _ = writeln!(
            s,
            "No IOMMU groups found ({source}).\n{}",
            no_groups_advice(host, loaded)
        );
        return Ok(s);
    }
    let _ = writeln!(
        s,
        "Host ({source}): {} IOMMU unit(s), {} group(s), {} device(s)\n",
        host.iommus.len(),
        host.groups.len(),
        host.devices.len()
    );
    let _ = writeln!(s, "Interrupt remapping: {}\n", remapping_text(host));
    if !host.iommus.is_empty() {
        let _ = writeln!(s, "IOMMU units");
        let mut rows = vec![vec![
            "NAME".to_string(),
            "VENDOR".into(),
            "WIDTH".into(),
            "APERTURE".into(),
            "PAGE SIZES".into(),
            "IR CAPABLE".into(),
        ]];
        for u in &host.iommus {
            rows.push(vec![
                iova_guest::text::clean(&u.name),
                u.vendor.as_str().into(),
                u.address_width.map_or("?".into(), |w| format!("{w}-bit")),
                u.aperture.map_or("unknown".into(), |a| a.to_string()),
                u.page_sizes.map_or("unknown".into(), |p| {
                    format!("{} ({})", hex(p), page_sizes(p))
                }),
                match u.interrupt_remapping {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "unknown".into(),
                },
            ]);
        }
        s.push_str(&table(&rows));
        s.push('\n');
    }
    for (g, answer) in groups.iter().zip(vfio) {
        let (valid, issues) = group_facts(host, g)?;
        let unit = host
            .iommu_of_group(g)
            .map_or("unknown".to_string(), |u| iova_guest::text::clean(&u.name));
        let _ = writeln!(
            s,
            "Group {}  type {}  iommu {}",
            g.id,
            g.domain_type.as_str(),
            unit
        );
        for name in &g.devices {
            let detail = host.device(name).ok().map_or(String::new(), |d| {
                let mut t = String::new();
                if let (Some(v), Some(p)) = (d.vendor_id, d.device_id) {
                    let _ = write!(t, "  {v:04x}:{p:04x}");
                }
                if let Some(c) = d.class {
                    let _ = write!(t, "  class {c:06x}");
                }
                match &d.driver {
                    Some(iova::host::Binding::Driver(n)) => {
                        let _ = write!(t, "  driver {}", iova_guest::text::clean(n));
                    }
                    Some(iova::host::Binding::Unbound) => t.push_str("  no driver"),
                    None => {}
                }
                t
            });
            let _ = writeln!(s, "  device    {}{detail}", iova_guest::text::clean(name));
        }
        if let Some(sp) = &g.spapr {
            let _ = writeln!(
                s,
                "  sPAPR     TCE: 32-bit window {:#x}+{:#x}  ({})",
                sp.dma32_window_start,
                sp.dma32_window_size,
                human_bytes(u128::from(sp.dma32_window_size))
            );
            match sp.ddw {
                Some(d) => {
                    let _ = writeln!(
                        s,
                        "  sPAPR     dynamic windows: {} at most, TCE page sizes {:#x}, {} level(s)",
                        d.max_dynamic_windows_supported, d.pgsizes, d.levels
                    );
                }
                None => {
                    let _ = writeln!(s, "  sPAPR     no dynamic windows");
                }
            }
        }
        match valid.aperture {
            Some(a) => {
                let _ = writeln!(s, "  aperture  {a}  ({})", human_bytes(a.len()));
            }
            None => {
                let _ = writeln!(s, "  aperture  unknown (whole 64-bit space assumed)");
            }
        }
        if g.reserved_regions.is_empty() {
            let _ = writeln!(s, "  reserved  none");
        }
        for r in &g.reserved_regions {
            let note = if r.kind.excludes_iova() {
                ""
            } else {
                "  (not excluded by VFIO)"
            };
            let _ = writeln!(
                s,
                "  reserved  {}  {}  {}{note}",
                r.range,
                r.kind.as_str(),
                human_bytes(r.range.len())
            );
        }
        let (ranges, from) = match answer {
            VfioAnswer::Info { ranges, .. } => (ranges, "read from the kernel (VFIO GET_INFO)"),
            _ => (&valid.ranges, computed.as_str()),
        };
        if ranges.is_empty() {
            let _ = writeln!(s, "  valid     none: nothing can be mapped");
        }
        for r in ranges.iter() {
            let _ = writeln!(s, "  valid     {r}  {}", human_bytes(r.len()));
        }
        let _ = writeln!(s, "  source    valid ranges {from}");
        match answer {
            VfioAnswer::Info {
                ranges,
                page_sizes: pgs,
                dma_avail,
            } => {
                if ranges != &valid.ranges {
                    let _ = writeln!(s, "  warning   sysfs predicted {} instead", valid.ranges);
                }
                if let Some(p) = pgs {
                    let _ = writeln!(s, "  pages     {} ({}) per VFIO", hex(*p), page_sizes(*p));
                }
                if let Some(n) = dma_avail {
                    let _ = writeln!(s, "  mappings  {n} available (dma_entry_limit)");
                }
            }
            VfioAnswer::Failed(e) => {
                let _ = writeln!(s, "  warning   VFIO query failed: {e}");
            }
            VfioAnswer::NotBound => {
                let _ = writeln!(
                    s,
                    "  note      not bound to vfio-pci: ranges computed from sysfs only"
                );
            }
            VfioAnswer::NotAsked => {}
        }
        let _ = writeln!(s, "  viable    {}", viability_text(host, g));
        if let Some(n) = node_text(host, g) {
            let _ = writeln!(s, "  node      {n}");
        }
        for i in &issues {
            let tag = if i.is_blocker() {
                "BLOCKER"
            } else if matches!(i, iova::host::GroupIssue::IdentityDomain) {
                "note"
            } else {
                "warning"
            };
            let _ = writeln!(s, "  {tag:<8}  {i}");
        }
        s.push('\n');
    }
    Ok(s)
}

/// Why a host has no IOMMU groups and what to do about it: on a virtual machine, a
/// virtual IOMMU in its VMM; on hardware, the IOMMU in the firmware and on the kernel
/// command line (VT-d / AMD-Vi on x86, the SMMU on ARM).
fn no_groups_advice(host: &Host, loaded: &LoadedHost) -> String {
    let vm = loaded
        .root
        .as_deref()
        .and_then(crate::hostsrc::virtual_machine);
    let lead = "This host has no IOMMU enabled, or it is not exposed to this system: no device \
                can be assigned with VFIO here.";
    let fix = match (vm, host.settings.cpu_vendor.as_deref()) {
        (Some(vmm), _) => format!(
            "This host is a virtual machine ({vmm}): firmware settings cannot help; its VMM \
             must give it a virtual IOMMU, for example QEMU's `-device intel-iommu,intremap=on` \
             (with `-machine q35,kernel-irqchip=split`) or `-device virtio-iommu-pci`, with the \
             devices to assign passed through behind it; then boot the guest with \
             intel_iommu=on and check /sys/kernel/iommu_groups."
        ),
        (None, Some("arm")) => "To enable one: enable the SMMU in the firmware (ACPI IORT or \
             the device tree) and make sure the kernel's arm-smmu-v3 driver is loaded; then \
             check /sys/kernel/iommu_groups."
            .to_owned(),
        (None, _) => "To enable one: turn on VT-d / AMD-Vi (IOMMU) in the firmware and boot \
             Linux with intel_iommu=on (Intel) or amd_iommu=on (AMD); then check \
             /sys/kernel/iommu_groups."
            .to_owned(),
    };
    format!("{lead}\n{fix}")
}

/// Left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |x| x.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < r.len() {
                let pad = widths[c].saturating_sub(cell.chars().count()) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
