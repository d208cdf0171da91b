//! Proposing a layout that fits the container.

use serde::Serialize;

use super::check::{CheckReport, Container, check_container};
use super::presets::{AMD_HT_END, AMD_HT_START, GuestConfig, Preset};
use super::{CpuVendor, Layout, Section, SectionKind, align_down, align_up, human_bytes};
use iova::range::{IovaRange, IovaSet};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What to plan for: a VMM preset (planned through its options) or a custom layout
/// (planned by moving and splitting RAM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanInput {
    /// A preset with its configuration.
    Preset(Preset, GuestConfig),
    /// A custom layout (from a file).
    Custom(Layout),
}

/// A proposal: a layout that fits, what changed and how to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Whether a layout that fits was found.
    pub feasible: bool,
    /// The proposed layout; `None` when nothing fits.
    pub layout: Option<Layout>,
    /// For presets: the configuration that produces it.
    pub config: Option<GuestConfig>,
    /// RAM asked for, in bytes.
    pub memory_requested: u128,
    /// RAM in the proposed layout, in bytes.
    pub memory_planned: u128,
    /// How the layout differs from the one asked for.
    pub changes: Vec<String>,
    /// The VMM options (command line or configuration) that produce it.
    pub options: Vec<String>,
    /// Caveats: what the VMM cannot do, warnings left, blockers a layout cannot fix.
    pub notes: Vec<String>,
    /// The check of the proposed layout against the container.
    pub report: Option<CheckReport>,
    /// For presets whose plan leaves peer-to-peer warnings: the largest memory size
    /// (1 GiB steps) at which the layout has no conflict at all, with its options.
    pub without_warnings: Option<(GuestConfig, Vec<String>)>,
}

/// Proposes a layout for `input` that the container can map: every RAM and ROM section
/// inside the valid IOVAs and page-aligned. Presets are planned through the options
/// their VMM has (QEMU: guest CPU vendor for the AMD relocation, `max-ram-below-4g`)
/// and, when that is not enough, by capping the memory size; custom layouts by keeping
/// the RAM that fits and moving the rest into free valid space.
pub fn plan(input: &PlanInput, container: &Container) -> Plan {
    match input {
        PlanInput::Preset(p, cfg) => plan_preset(*p, cfg, container),
        PlanInput::Custom(l) => plan_custom(l, container),
    }
}

/// Whether the container excludes (part of) the AMD HyperTransport window.
fn has_ht_hole(c: &Container) -> bool {
    IovaRange::new(AMD_HT_START, AMD_HT_END).is_ok_and(|ht| {
        c.reserved
            .iter()
            .any(|r| r.region.kind.excludes_iova() && r.region.range.overlaps(&ht))
    })
}

/// Shrinks the memory of `cfg` until the preset's layout has no fatal conflict.
/// Returns the configuration and its report, or `None` when no size works.
fn cap_until_fits(
    preset: Preset,
    mut cfg: GuestConfig,
    c: &Container,
) -> Option<(GuestConfig, Layout, CheckReport)> {
    let step = 2 * MIB;
    for _ in 0..128 {
        let layout = preset.layout(&cfg).ok()?;
        let report = check_container(&layout, c);
        let Some(lowest) = report.fatal().map(|x| x.range.first()).min() else {
            return Some((cfg, layout, report));
        };
        if report.fatal().any(|x| x.section_kind != SectionKind::Ram) {
            return None; // ROM cannot be moved by resizing RAM
        }
        // Drop every byte of RAM at or above the lowest fatal address.
        let above: u128 = layout
            .sections()
            .iter()
            .filter(|s| s.kind == SectionKind::Ram && s.range.last() >= lowest)
            .map(|s| u128::from(s.range.last() - s.range.first().max(lowest)) + 1)
            .sum();
        let above = u64::try_from(above).ok()?;
        let next = align_down(cfg.memory.checked_sub(above)?, step);
        if next < step || next >= cfg.memory {
            return None;
        }
        cfg.memory = next;
    }
    None
}

/// The highest `max-ram-below-4g` (a multiple of 2 MiB) that keeps RAM from 1 MiB up in
/// one valid range, when RAM below 4 GiB hits a hole.
fn lowmem_candidate(c: &Container) -> Option<u64> {
    let r = c.valid.range_containing(0x10_0000)?;
    let end = r.last().checked_add(1)?;
    let v = align_down(end.min(0xe000_0000), 2 * MIB);
    (v >= 4 * MIB).then_some(v)
}

fn plan_preset(preset: Preset, cfg: &GuestConfig, c: &Container) -> Plan {
    let mut plan = Plan {
        feasible: false,
        layout: None,
        config: None,
        memory_requested: u128::from(cfg.memory),
        memory_planned: 0,
        changes: Vec::new(),
        options: Vec::new(),
        notes: Vec::new(),
        report: None,
        without_warnings: None,
    };
    let original = match preset.layout(cfg) {
        Ok(l) => l,
        Err(e) => {
            plan.notes.push(e.to_string());
            return plan;
        }
    };
    let original_report = check_container(&original, c);

    // Candidate configurations, most faithful first.
    let mut candidates: Vec<(GuestConfig, Vec<String>)> = vec![(*cfg, Vec::new())];
    let qemu_x86 = preset.depends_on_cpu_vendor();
    if qemu_x86 && cfg.cpu_vendor != CpuVendor::Amd && has_ht_hole(c) {
        candidates.push((
            GuestConfig {
                cpu_vendor: CpuVendor::Amd,
                ..*cfg
            },
            vec![
                "give the guest an AMD vCPU (-cpu host on this AMD host, or an EPYC model): \
                 QEMU then moves RAM above 4 GiB to 1 TiB, past the HyperTransport window"
                    .to_owned(),
            ],
        ));
    }
    if qemu_x86 {
        let low_conflict = original_report
            .fatal()
            .any(|x| x.range.first() < (1u64 << 32));
        if let (true, Some(v)) = (low_conflict, lowmem_candidate(c)) {
            let base: Vec<(GuestConfig, Vec<String>)> = candidates.clone();
            for (cand, why) in base {
                let mut why = why.clone();
                why.push(format!(
                    "keep at most {} of RAM below 4 GiB (max-ram-below-4g) so it ends before the hole",
                    human_bytes(u128::from(v))
                ));
                candidates.push((
                    GuestConfig {
                        max_ram_below_4g: Some(v),
                        ..cand
                    },
                    why,
                ));
            }
        }
    }

    let mut best: Option<(GuestConfig, Layout, CheckReport, Vec<String>)> = None;
    for (cand, why) in candidates {
        if let Some((fit, layout, report)) = cap_until_fits(preset, cand, c) {
            let better = best.as_ref().is_none_or(|(b, ..)| fit.memory > b.memory);
            if better {
                best = Some((fit, layout, report, why));
            }
        }
    }
    let Some((fit, layout, report, why)) = best else {
        plan.notes.push(format!(
            "no memory size makes {} fit: a ROM or the lowest RAM of its fixed layout lies outside \
             the valid IOVAs",
            preset.name()
        ));
        if let Some(r) = original_report.fatal().next() {
            plan.notes.push(format!("first fatal conflict: {r}"));
        }
        return plan;
    };
    plan.changes.extend(why);
    if fit.memory < cfg.memory {
        let lost = cfg.memory - fit.memory;
        plan.changes.push(format!(
            "cap guest RAM at {} (-{}): {} cannot place RAM around the hole at {}",
            human_bytes(u128::from(fit.memory)),
            human_bytes(u128::from(lost)),
            preset.name(),
            original_report
                .fatal()
                .next()
                .map_or_else(String::new, |x| format!("{} ({})", x.range, x.reason))
        ));
        plan.notes.push(vmm_limitation(preset, c));
    }
    if plan.changes.is_empty() {
        plan.notes
            .push("the requested layout fits as it is".to_owned());
    }
    plan.options = preset.options(&fit);
    plan.notes.extend(layout.notes.iter().cloned());
    if qemu_x86 {
        let top = layout
            .sections()
            .iter()
            .map(|s| s.range.last())
            .max()
            .unwrap_or(0);
        let bits = 64 - top.leading_zeros();
        plan.notes.push(format!(
            "the highest guest-physical address is {top:#x}: the vCPU needs at least {bits} \
             physical address bits (QEMU refuses to start otherwise: use host-phys-bits=on or \
             phys-bits={bits})"
        ));
    }
    for w in report.conflicts.iter().filter(|x| !x.fatal) {
        plan.notes.push(format!("warning left: {w}"));
    }
    if !report.conflicts.is_empty() {
        if let Some(clean) = largest_without_conflicts(preset, &fit, c) {
            plan.notes.push(format!(
                "with {} of RAM the layout has no warning either (peer-to-peer DMA into every \
                 BAR window works): {}",
                human_bytes(u128::from(clean.memory)),
                preset.options(&clean).join(" ")
            ));
            plan.without_warnings = Some((clean, preset.options(&clean)));
        }
    }
    plan.memory_planned = u128::from(fit.memory);
    plan.feasible = true;
    plan.config = Some(fit);
    plan.layout = Some(layout);
    plan.report = Some(report);
    plan
}

/// The largest memory below `fit` (in 1 GiB steps, at most 4096 tries) whose layout has
/// no conflict at all, fatal or not.
fn largest_without_conflicts(
    preset: Preset,
    fit: &GuestConfig,
    c: &Container,
) -> Option<GuestConfig> {
    let step = (fit.memory / 4096).max(GIB) & !(2 * MIB - 1);
    let mut mem = align_down(fit.memory, GIB);
    if mem == fit.memory {
        mem = mem.checked_sub(step)?;
    }
    while mem >= GIB {
        let cand = GuestConfig {
            memory: mem,
            ..*fit
        };
        if let Ok(l) = preset.layout(&cand) {
            if check_container(&l, c).conflicts.is_empty() {
                return Some(cand);
            }
        }
        mem = mem.checked_sub(step)?;
    }
    None
}

/// What the VMM can and cannot do about RAM placement, in one honest sentence.
fn vmm_limitation(preset: Preset, c: &Container) -> String {
    let ht = has_ht_hole(c);
    match preset {
        Preset::QemuQ35 | Preset::QemuPc => {
            "QEMU puts RAM above 4 GiB in one block (at 4 GiB, or at 1 TiB for AMD \
             vCPUs); it has no option to split it around a hole, so only the size can change"
                .to_owned()
        }
        Preset::QemuVirt => {
            "QEMU virt puts all RAM in one block at 1 GiB; only the size can change".to_owned()
        }
        Preset::CloudHypervisor => format!(
            "cloud-hypervisor puts RAM above 4 GiB in one block and has no option to place it{}",
            if ht {
                "; it does not skip the AMD HyperTransport window (QEMU q35 with an AMD vCPU does)"
            } else {
                ""
            }
        ),
        Preset::Firecracker => {
            "firecracker's layout is fixed (RAM below 3 GiB, from 4 GiB, from 512 GiB); \
             it has no option to place RAM"
                .to_owned()
        }
        Preset::Crosvm => format!(
            "crosvm puts RAM above 4 GiB in one block and has no option to place it{}",
            if ht {
                "; it does not skip the AMD HyperTransport window"
            } else {
                ""
            }
        ),
    }
}

fn plan_custom(layout: &Layout, c: &Container) -> Plan {
    let requested = layout.ram_bytes();
    let mut plan = Plan {
        feasible: false,
        layout: None,
        config: None,
        memory_requested: requested,
        memory_planned: 0,
        changes: Vec::new(),
        options: Vec::new(),
        notes: Vec::new(),
        report: None,
        without_warnings: None,
    };
    let original = check_container(layout, c);
    if !original.has_fatal() {
        plan.feasible = true;
        plan.memory_planned = requested;
        plan.layout = Some(layout.clone());
        plan.notes.push("the layout fits as it is".to_owned());
        plan.report = Some(original);
        return plan;
    }
    if let Some(bad) = original
        .fatal()
        .find(|x| x.section_kind != SectionKind::Ram)
    {
        plan.notes.push(format!(
            "section '{}' is not RAM and cannot be moved by the planner: {bad}",
            bad.section
        ));
        return plan;
    }
    let page = c.min_page_size().max(4096);
    let align = page.max(2 * MIB);
    let fixed: IovaSet = layout
        .sections()
        .iter()
        .filter(|s| s.kind != SectionKind::Ram)
        .map(|s| s.range)
        .collect();
    let usable = c.valid.difference(&fixed);
    let mut sections: Vec<Section> = layout
        .sections()
        .iter()
        .filter(|s| s.kind != SectionKind::Ram)
        .cloned()
        .collect();
    let mut kept: u128 = 0;
    let mut taken = IovaSet::new();
    for s in layout
        .sections()
        .iter()
        .filter(|s| s.kind == SectionKind::Ram)
    {
        let fits = usable.clamp(s.range);
        let pieces: Vec<IovaRange> = fits.iter().filter_map(|r| trim(r, page)).collect();
        let moved = pieces.len() != 1 || pieces.first() != Some(&s.range);
        for (i, r) in pieces.iter().enumerate() {
            let name = if pieces.len() == 1 {
                s.name.clone()
            } else {
                format!("{}.{}", s.name, i + 1)
            };
            sections.push(Section::new(name, SectionKind::Ram, *r));
            kept += r.len();
            taken.insert(*r);
        }
        if moved {
            plan.changes.push(format!(
                "keep the valid parts of '{}' {} ({} of {})",
                s.name,
                s.range,
                human_bytes(pieces.iter().map(IovaRange::len).sum()),
                human_bytes(s.range.len())
            ));
        }
    }
    // Place what is missing in free valid space, lowest address first, above the
    // original RAM top when possible so the low layout stays familiar.
    let mut missing = requested.saturating_sub(kept);
    let free = usable.difference(&taken);
    let top = layout.ram_top().unwrap_or(0);
    let mut order: Vec<IovaRange> = free.iter().filter(|r| r.first() > top).copied().collect();
    order.extend(free.iter().filter(|r| r.first() <= top).copied());
    let mut n = 0;
    for r in order {
        if missing == 0 {
            break;
        }
        let Some(first) = align_up(r.first(), align) else {
            continue;
        };
        let end = match r.last().checked_add(1) {
            Some(e) => align_down(e, align),
            None => align_down(u64::MAX, align),
        };
        if end <= first {
            continue;
        }
        let room = u128::from(end - first);
        let take = room.min(missing);
        let Ok(take64) = u64::try_from(take) else {
            continue;
        };
        let take64 = align_down(take64, page);
        if take64 == 0 {
            continue;
        }
        let Ok(range) = IovaRange::from_start_size(first, take64) else {
            continue;
        };
        missing -= range.len();
        // Grow a RAM section that ends right below, rather than adding a new one.
        if let Some(prev) = sections.iter_mut().find(|s| {
            s.kind == SectionKind::Ram && s.range.last().checked_add(1) == Some(range.first())
        }) {
            if let Ok(grown) = IovaRange::new(prev.range.first(), range.last()) {
                plan.changes.push(format!(
                    "extend '{}' by {} to {grown}",
                    prev.name,
                    human_bytes(range.len())
                ));
                prev.range = grown;
                continue;
            }
        }
        n += 1;
        let name = format!("ram-moved-{n}");
        plan.changes.push(format!(
            "add {name} {range} ({}) in free valid space",
            human_bytes(range.len())
        ));
        sections.push(Section::new(name, SectionKind::Ram, range));
    }
    let Ok(new_layout) = Layout::new(format!("{} (planned)", layout.name), sections) else {
        plan.notes
            .push("internal: planned sections overlap".to_owned());
        return plan;
    };
    if missing > 0 {
        plan.changes.push(format!(
            "cap guest RAM at {} (-{}): no more valid space",
            human_bytes(new_layout.ram_bytes()),
            human_bytes(missing)
        ));
    }
    let report = check_container(&new_layout, c);
    if report.has_fatal() {
        plan.notes
            .push("internal: the planned layout still has fatal conflicts".to_owned());
        return plan;
    }
    plan.options.push(
        "a custom layout: give the VMM these RAM regions explicitly (QEMU, cloud-hypervisor, \
         firecracker and crosvm have no option for arbitrary RAM placement; a rust-vmm based \
         VMM with explicit GuestMemory regions can)"
            .to_owned(),
    );
    for w in report.conflicts.iter().filter(|x| !x.fatal) {
        plan.notes.push(format!("warning left: {w}"));
    }
    plan.memory_planned = new_layout.ram_bytes();
    plan.feasible = plan.memory_planned > 0;
    plan.layout = Some(new_layout);
    plan.report = Some(report);
    plan
}

/// The part of `r` made of whole pages of `page` bytes.
fn trim(r: &IovaRange, page: u64) -> Option<IovaRange> {
    let first = align_up(r.first(), page)?;
    let end = match r.last().checked_add(1) {
        Some(e) => align_down(e, page),
        None => align_down(u64::MAX, page),
    };
    let last = end.checked_sub(1)?;
    IovaRange::new(first, last).ok()
}
