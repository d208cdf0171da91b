//! An SVG picture of the 64-bit address space: the container's valid IOVAs, reserved
//! regions and apertures next to the guest's sections, conflicts in red.
//!
//! A linear scale cannot show a 1 MiB MSI window next to a terabyte of RAM, so the map
//! is cut into bands at every interesting address (a boundary of a section, a valid
//! range, a reserved region, an aperture or a conflict). Each band's height grows with
//! the logarithm of its size, and every cut is labelled with its address, so small
//! windows stay visible and large ranges stay readable.

use std::fmt::Write as _;

use super::check::{CheckReport, ConflictReason};
use super::{SectionKind, human_bytes};
use iova::host::ReservedKind;

const W: f64 = 1300.0;
const AXIS_X: f64 = 150.0;
const HOST_X: f64 = 400.0;
const LANE_W: f64 = 120.0;
const GUEST_X: f64 = 540.0;
const LINE: f64 = 12.0;
const TOP: f64 = 130.0;

const C_VALID: &str = "#cde9c8";
const C_MSI: &str = "#f6c46b";
const C_RESERVED: &str = "#d9a3a3";
const C_DIRECT: &str = "#b05a5a";
const C_BEYOND: &str = "#b9b9b9";
const C_RAM: &str = "#6f9fd8";
const C_ROM: &str = "#9b7fc4";
const C_MMIO: &str = "#e4e4e4";
const C_P2P: &str = "#e8d48c";
const C_FATAL: &str = "#e01e1e";
const C_WARN: &str = "#ff8c00";

#[derive(Clone, PartialEq, Eq)]
enum HostState {
    Valid,
    Beyond(String),
    Reserved(ReservedKind, u32),
    Excluded,
}

/// Text for an SVG attribute or element: the XML specials as entities, and every
/// character XML 1.0 forbids (controls other than tab and line breaks, U+FFFE, U+FFFF)
/// or that a viewer would act on (line breaks, tabs, the other C0/C1 controls, the
/// bidirectional overrides) shown escaped (`\u{1b}`), so any name gives valid XML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control()
                || matches!(c, '\u{fffe}' | '\u{ffff}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.extend(c.escape_default());
            }
            c => out.push(c),
        }
    }
    out
}

fn hex128(v: u128) -> String {
    format!("{v:#x}")
}

/// The band height for `len` bytes: 12 px plus 1.6 px per doubling above 4 KiB.
fn band_height(len: u128) -> f64 {
    let bits = 128 - len.leading_zeros();
    let over = f64::from(bits.saturating_sub(13));
    12.0 + 1.6 * over
}

/// Labels in one column, pushed down so they never overlap; each remembers the band
/// it belongs to for a leader line.
struct Column {
    next_free: f64,
    items: Vec<(f64, f64, Vec<String>, &'static str, bool)>,
}

impl Column {
    fn new() -> Self {
        Column {
            next_free: TOP,
            items: Vec::new(),
        }
    }

    fn add(&mut self, anchor: f64, lines: Vec<String>, color: &'static str, bold: bool) {
        let y = anchor.max(self.next_free);
        let n = u32::try_from(lines.len()).unwrap_or(1);
        self.next_free = y + LINE * f64::from(n) + 2.0;
        self.items.push((anchor, y, lines, color, bold));
    }
}

/// Renders a check report as a self-contained SVG document.
pub fn render(report: &CheckReport) -> String {
    let c = &report.container;
    let layout = &report.layout;
    // Cuts (as u128 so that 2^64 is representable).
    let mut cuts: Vec<u128> = vec![0, 1u128 << 64];
    let mut cut = |first: u64, last: u64| {
        cuts.push(u128::from(first));
        cuts.push(u128::from(last) + 1);
    };
    for s in layout.sections() {
        cut(s.range.first(), s.range.last());
    }
    for r in c.valid.iter() {
        cut(r.first(), r.last());
    }
    for r in &c.reserved {
        cut(r.region.range.first(), r.region.range.last());
    }
    for a in &c.apertures {
        if let Some(ap) = a.aperture {
            cut(ap.first(), ap.last());
        }
    }
    for x in &report.conflicts {
        cut(x.range.first(), x.range.last());
    }
    cuts.sort_unstable();
    cuts.dedup();

    let host_state = |addr: u64| -> HostState {
        if c.valid.contains(addr) {
            return HostState::Valid;
        }
        if let Some(a) = c
            .apertures
            .iter()
            .find(|a| a.aperture.is_some_and(|ap| !ap.contains(addr)))
        {
            let w = a.width.map_or_else(String::new, |w| format!(", {w}-bit"));
            return HostState::Beyond(format!("{}{w}", a.unit.as_deref().unwrap_or("IOMMU")));
        }
        c.reserved
            .iter()
            .filter(|r| r.region.kind.excludes_iova() && r.region.range.contains(addr))
            .map(|r| HostState::Reserved(r.region.kind, r.group))
            .next()
            .unwrap_or(HostState::Excluded)
    };

    let mut body = String::new();
    let mut axis = Column::new();
    let mut host_labels = Column::new();
    let mut guest_labels = Column::new();
    let mut y = TOP;
    let mut prev_host: Option<HostState> = None;
    let mut labelled_sections: Vec<&str> = Vec::new();
    let mut labelled_conflicts: Vec<usize> = Vec::new();

    for w in cuts.windows(2) {
        let [a, b] = w else { continue };
        let (a, b) = (*a, *b);
        let Ok(addr) = u64::try_from(a) else { continue };
        let h = band_height(b - a);
        axis.add(y, vec![hex128(a)], "#333333", false);

        // Host lane.
        let hs = host_state(addr);
        let (fill, label) = match &hs {
            HostState::Valid => (C_VALID, "valid IOVAs".to_owned()),
            HostState::Beyond(u) => (C_BEYOND, format!("beyond aperture ({u})")),
            HostState::Reserved(k, g) => (
                match k {
                    ReservedKind::Msi => C_MSI,
                    ReservedKind::Direct => C_DIRECT,
                    _ => C_RESERVED,
                },
                format!("reserved region: {} (group {g})", k.as_str()),
            ),
            HostState::Excluded => (C_RESERVED, "not valid".to_owned()),
        };
        let _ = writeln!(
            body,
            r##"<rect x="{HOST_X}" y="{y:.1}" width="{LANE_W}" height="{h:.1}" fill="{fill}" stroke="#777" stroke-width="0.5"/>"##
        );
        if prev_host.as_ref() != Some(&hs) {
            // Find how far this state runs to label it with its extent.
            let run_end = cuts
                .iter()
                .skip_while(|&&x| x <= a)
                .take_while(|&&x| u64::try_from(x).is_ok_and(|x| host_state(x) == hs))
                .last()
                .copied();
            let end = cuts
                .iter()
                .find(|&&x| x > run_end.unwrap_or(a))
                .copied()
                .unwrap_or(1u128 << 64);
            host_labels.add(
                y,
                vec![
                    label,
                    format!(
                        "{}-{} ({})",
                        hex128(a),
                        hex128(end - 1),
                        human_bytes(end - a)
                    ),
                ],
                "#222222",
                false,
            );
            prev_host = Some(hs);
        }

        // Guest lane.
        let section = layout.sections().iter().find(|s| s.range.contains(addr));
        if let Some(s) = section {
            let fill = match (s.kind, s.p2p) {
                (SectionKind::Ram, _) => C_RAM,
                (SectionKind::Rom, _) => C_ROM,
                (SectionKind::Mmio, true) => C_P2P,
                (SectionKind::Mmio, false) => C_MMIO,
            };
            let conflict = report
                .conflicts
                .iter()
                .enumerate()
                .find(|(_, x)| x.range.contains(addr));
            let (fill, stroke, sw) = match conflict {
                Some((_, x)) if x.fatal => (C_FATAL, C_FATAL, 2.0),
                Some(_) => (C_WARN, C_WARN, 2.0),
                None => (fill, "#555", 0.5),
            };
            let _ = writeln!(
                body,
                r#"<rect x="{GUEST_X}" y="{y:.1}" width="{LANE_W}" height="{h:.1}" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>"#
            );
            if !labelled_sections.contains(&s.name.as_str()) {
                labelled_sections.push(&s.name);
                let p2p = if s.p2p { ", p2p" } else { "" };
                guest_labels.add(
                    y,
                    vec![format!(
                        "{} [{}{p2p}] {} ({})",
                        s.name,
                        s.kind,
                        s.range,
                        human_bytes(s.range.len())
                    )],
                    "#111111",
                    false,
                );
            }
            if let Some((i, x)) = conflict {
                if !labelled_conflicts.contains(&i) {
                    labelled_conflicts.push(i);
                    let why = match &x.reason {
                        ConflictReason::BeyondAperture { .. }
                        | ConflictReason::Reserved { .. }
                        | ConflictReason::Misaligned { .. } => x.reason.to_string(),
                    };
                    guest_labels.add(
                        y,
                        vec![
                            format!(
                                "{} {} {} ({})",
                                if x.fatal { "CONFLICT" } else { "warning" },
                                x.section,
                                x.range,
                                human_bytes(x.range.len())
                            ),
                            format!("  {why}"),
                        ],
                        if x.fatal { C_FATAL } else { C_WARN },
                        true,
                    );
                }
            }
        }
        y += h;
    }
    let bottom = y;
    let _ = writeln!(
        body,
        r##"<text x="{AXIS_X}" y="{:.1}" font-size="10" text-anchor="end" fill="#333">2^64</text>"##,
        bottom + 4.0
    );

    let mut labels = String::new();
    for (col, x, anchor, leader_to) in [
        (&axis, AXIS_X, "end", None),
        (&host_labels, HOST_X - 8.0, "end", Some(HOST_X)),
        (
            &guest_labels,
            GUEST_X + LANE_W + 10.0,
            "start",
            Some(GUEST_X + LANE_W),
        ),
    ] {
        for (anchor_y, ly, lines, color, bold) in &col.items {
            let weight = if *bold { "bold" } else { "normal" };
            for (i, text) in lines.iter().enumerate() {
                let dy = LINE * f64::from(u32::try_from(i).unwrap_or(0));
                let _ = writeln!(
                    labels,
                    r#"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="{anchor}" font-weight="{weight}" fill="{color}">{}</text>"#,
                    ly + 9.0 + dy,
                    esc(text)
                );
            }
            match leader_to {
                Some(lx) => {
                    let tx = if anchor == "end" { x + 2.0 } else { x - 2.0 };
                    let _ = writeln!(
                        labels,
                        r##"<line x1="{tx:.1}" y1="{:.1}" x2="{lx:.1}" y2="{:.1}" stroke="{color}" stroke-width="0.6"/>"##,
                        ly + 5.0,
                        anchor_y + 1.0
                    );
                }
                None => {
                    let _ = writeln!(
                        labels,
                        r##"<line x1="{:.1}" y1="{anchor_y:.1}" x2="{:.1}" y2="{anchor_y:.1}" stroke="#999" stroke-width="0.5"/>"##,
                        AXIS_X + 4.0,
                        HOST_X
                    );
                }
            }
        }
    }
    let content_bottom = [
        axis.next_free,
        host_labels.next_free,
        guest_labels.next_free,
        bottom + 10.0,
    ]
    .into_iter()
    .fold(0.0_f64, f64::max);
    let height = content_bottom + 30.0;

    // Header and legend.
    let fatal = report.conflicts.iter().filter(|x| x.fatal).count();
    let warnings = report.conflicts.len() - fatal;
    let verdict = if report.ok {
        "OK: every DMA-mapped section fits".to_owned()
    } else if fatal > 0 {
        format!(
            "NOT OK: {fatal} fatal conflict(s), {warnings} warning(s), {} blocker(s)",
            report.blockers.len()
        )
    } else {
        format!("NOT OK: {} blocker(s)", report.blockers.len())
    };
    let mut head = String::new();
    let _ = writeln!(
        head,
        r##"<text x="20" y="28" font-size="17" font-weight="bold" fill="#111">{}</text>"##,
        esc(&format!(
            "Guest layout '{}' vs. the IOMMU container of {} (group{} {})",
            layout.name,
            c.devices.join(", "),
            if c.groups.len() == 1 { "" } else { "s" },
            c.groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    );
    let _ = writeln!(
        head,
        r#"<text x="20" y="48" font-size="13" font-weight="bold" fill="{}">{}</text>"#,
        if report.ok { "#1a7f1a" } else { C_FATAL },
        esc(&verdict)
    );
    let _ = writeln!(
        head,
        r##"<text x="20" y="66" font-size="10" fill="#555">Piecewise scale: one band per interesting range, height growing with log2 of its size; every boundary is labelled on the left.</text>"##
    );
    let legend = [
        (C_VALID, "valid IOVA"),
        (C_MSI, "reserved: msi"),
        (C_RESERVED, "reserved"),
        (C_DIRECT, "reserved: direct (RMRR)"),
        (C_BEYOND, "beyond aperture"),
        (C_RAM, "guest RAM"),
        (C_ROM, "guest ROM"),
        (C_MMIO, "MMIO"),
        (C_P2P, "MMIO mapped for p2p"),
        (C_FATAL, "fatal conflict"),
        (C_WARN, "warning"),
    ];
    let mut lx = 20.0;
    for (color, name) in legend {
        let _ = writeln!(
            head,
            r##"<rect x="{lx:.1}" y="78" width="14" height="12" fill="{color}" stroke="#555" stroke-width="0.5"/><text x="{:.1}" y="88" font-size="10" fill="#222">{name}</text>"##,
            lx + 18.0
        );
        lx += 26.0 + 6.2 * f64::from(u32::try_from(name.len()).unwrap_or(0));
    }
    let _ = writeln!(
        head,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" font-weight="bold" text-anchor="middle" fill="#222">host container</text><text x="{:.1}" y="{:.1}" font-size="11" font-weight="bold" text-anchor="middle" fill="#222">guest</text>"##,
        HOST_X + LANE_W / 2.0,
        TOP - 8.0,
        GUEST_X + LANE_W / 2.0,
        TOP - 8.0
    );

    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height:.0}\" viewBox=\"0 0 {W} {height:.0}\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{head}{body}{labels}</svg>\n"
    )
}
