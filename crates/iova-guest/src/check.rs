//! Checking a guest layout against the IOVAs a VFIO container can map.

use std::fmt;

use serde::Serialize;

use super::{Layout, Section, SectionKind, align_down, align_up, human_bytes};
use iova::domain::{Domain, DomainConfig, Member, Refusal};
use iova::host::{GroupIssue, Host, HostError, ReservedKind, ReservedRegion};
use iova::range::{IovaRange, IovaSet};

/// The devices' groups taken as ONE container: what every group allows, as the
/// kernel model's [`Domain`] computes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The devices, with their full names, in the order given (no repeats).
    pub devices: Vec<String>,
    /// Their groups, in order of first appearance.
    pub groups: Vec<u32>,
    /// IOVAs every group can map ([`Domain::valid`]); empty when the groups cannot
    /// share a container (see `refusal`).
    pub valid: IovaSet,
    /// The aperture behind each group (one entry per distinct unit and aperture).
    pub apertures: Vec<UnitAperture>,
    /// The reserved regions of the groups, with the group they come from.
    pub reserved: Vec<GroupRegion>,
    /// Page sizes every IOMMU supports ([`Domain::page_sizes`]; 0 when refused).
    pub page_size_mask: u64,
    /// Whether a unit did not say which page sizes it supports (the CPU page was
    /// assumed).
    pub page_sizes_assumed: bool,
    /// Why the kernel would refuse to put these groups in one container, whatever the
    /// layout (no valid IOVA left, no common page size, ...); isolation issues are
    /// reported as blockers by [`check()`] instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<ContainerRefusal>,
}

/// A refusal of the kernel model's [`Domain`], in a form for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRefusal {
    /// The group it names, if any.
    pub group: Option<u32>,
    /// The errno the kernel answers (`EINVAL`, ...).
    pub errno: String,
    /// The rule, in words.
    pub message: String,
}

impl From<&Refusal> for ContainerRefusal {
    fn from(r: &Refusal) -> Self {
        ContainerRefusal {
            group: r.group(),
            errno: r.errno().name(),
            message: r.to_string(),
        }
    }
}

/// The aperture of the IOMMU unit behind a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitAperture {
    /// The unit's name, when known.
    pub unit: Option<String>,
    /// A group it translates for.
    pub group: u32,
    /// The aperture; `None` when unknown (the whole space is then assumed).
    pub aperture: Option<IovaRange>,
    /// Its address width in bits, when known.
    pub width: Option<u8>,
}

/// A reserved region and the group that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupRegion {
    /// The group.
    pub group: u32,
    /// The region.
    pub region: ReservedRegion,
}

/// The inputs of a check that make no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No device was named.
    #[error("no device given: name at least one device to assign")]
    NoDevices,
    /// A device the host does not have, or one outside any IOMMU group.
    #[error("{device}: {source}")]
    UnknownDevice {
        /// The name as given.
        device: String,
        /// What the host said.
        source: HostError,
    },
}

impl Container {
    /// The container that would hold these devices' groups, under the safe defaults
    /// ([`DomainConfig::default`]).
    pub fn of_devices<S: AsRef<str>>(host: &Host, devices: &[S]) -> Result<Container, CheckError> {
        Container::of_devices_with(host, devices, DomainConfig::default())
    }

    /// The container that would hold these devices' groups under `config`. Unknown
    /// devices are an error; a combination the kernel refuses is recorded in
    /// `refusal` (its geometry is then empty).
    pub fn of_devices_with<S: AsRef<str>>(
        host: &Host,
        devices: &[S],
        config: DomainConfig,
    ) -> Result<Container, CheckError> {
        if devices.is_empty() {
            return Err(CheckError::NoDevices);
        }
        let mut names: Vec<String> = Vec::new();
        let mut members: Vec<Member> = Vec::new();
        for d in devices {
            let d = d.as_ref();
            let unknown = |source| CheckError::UnknownDevice {
                device: d.to_owned(),
                source,
            };
            let dev = host.device(d).map_err(unknown)?;
            let group = host.group_of_device(d).map_err(unknown)?;
            if !names.contains(&dev.name) {
                names.push(dev.name.clone());
            }
            if !members.iter().any(|m| m.group == group.id) {
                members.push(host.member(group.id).map_err(unknown)?);
            }
        }
        let mut apertures: Vec<UnitAperture> = Vec::new();
        for m in &members {
            let ua = UnitAperture {
                unit: m.unit.clone(),
                group: m.group,
                aperture: m.aperture,
                width: m.width,
            };
            if !apertures
                .iter()
                .any(|a| a.unit == ua.unit && a.aperture == ua.aperture)
            {
                apertures.push(ua);
            }
        }
        let reserved = members
            .iter()
            .flat_map(|m| {
                m.reserved.iter().map(|r| GroupRegion {
                    group: m.group,
                    region: *r,
                })
            })
            .collect();
        let groups = members.iter().map(|m| m.group).collect();
        let assumed = members.iter().any(|m| m.page_sizes.is_none());
        let (valid, page_size_mask, refusal) = match Domain::combine(members, config) {
            Ok(d) => (d.valid().clone(), d.page_sizes(), None),
            Err(r) => (IovaSet::new(), 0, Some(ContainerRefusal::from(&r))),
        };
        Ok(Container {
            devices: names,
            groups,
            valid,
            apertures,
            reserved,
            page_size_mask,
            page_sizes_assumed: assumed,
            refusal,
        })
    }

    /// The smallest page size every IOMMU supports: the alignment every mapped
    /// section needs (4 KiB when the container is refused and has no page sizes).
    pub fn min_page_size(&self) -> u64 {
        match self.page_size_mask {
            0 => 4096,
            m => 1u64 << m.trailing_zeros(),
        }
    }

    /// The host regions of MSI kind among the groups' reserved regions.
    pub fn msi_regions(&self) -> IovaSet {
        self.reserved
            .iter()
            .filter(|r| r.region.kind == ReservedKind::Msi)
            .map(|r| r.region.range)
            .collect()
    }
}

/// Why part of a section cannot be DMA-mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ConflictReason {
    /// Past what the IOMMU unit can translate.
    BeyondAperture {
        /// The unit, when known.
        unit: Option<String>,
        /// Its aperture.
        aperture: IovaRange,
        /// Its address width in bits, when known.
        width: Option<u8>,
    },
    /// Inside a reserved region of a group (MSI window, HyperTransport, RMRR …).
    Reserved {
        /// The group.
        group: u32,
        /// The whole region.
        region: IovaRange,
        /// Its kind.
        region_kind: ReservedKind,
    },
    /// The section does not start or end on a page the IOMMU can map.
    Misaligned {
        /// The smallest page size every IOMMU of the container supports.
        page_size: u64,
    },
}

impl ConflictReason {
    /// The reason's kind as JSON names it (`beyond-aperture`, `reserved`, `misaligned`).
    pub fn kind(&self) -> &'static str {
        match self {
            ConflictReason::BeyondAperture { .. } => "beyond-aperture",
            ConflictReason::Reserved { .. } => "reserved",
            ConflictReason::Misaligned { .. } => "misaligned",
        }
    }
}

impl fmt::Display for ConflictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictReason::BeyondAperture {
                unit,
                aperture,
                width,
            } => {
                write!(
                    f,
                    "beyond the aperture of IOMMU unit {}",
                    unit.as_deref().unwrap_or("?")
                )?;
                if let Some(w) = width {
                    write!(f, " ({w}-bit, {aperture})")
                } else {
                    write!(f, " ({aperture})")
                }
            }
            ConflictReason::Reserved {
                group,
                region,
                region_kind,
            } => write!(
                f,
                "inside reserved region {} {region} of group {group}",
                region_kind.as_str()
            ),
            ConflictReason::Misaligned { page_size } => write!(
                f,
                "misaligned to the minimum IOMMU page size {}",
                human_bytes(u128::from(*page_size))
            ),
        }
    }
}

/// Part of a DMA-mapped section the container cannot map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The section's name.
    pub section: String,
    /// The section's kind.
    pub section_kind: SectionKind,
    /// The addresses in conflict (inclusive, within the section).
    pub range: IovaRange,
    /// Why.
    pub reason: ConflictReason,
    /// Whether the VM cannot work (RAM and ROM); MMIO windows mapped for peer-to-peer
    /// only lose peer-to-peer DMA there.
    pub fatal: bool,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}) {}: {}",
            if self.fatal { "FATAL" } else { "warning" },
            self.section,
            self.section_kind,
            self.range,
            self.reason
        )
    }
}

/// A group issue that makes assignment impossible whatever the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// The group.
    pub group: u32,
    /// The requested devices in it.
    pub devices: Vec<String>,
    /// The issue.
    pub issue: GroupIssue,
    /// The issue in words.
    pub message: String,
}

/// The result of [`check()`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Whether the VM can start with these devices: no fatal conflict and no blocker.
    pub ok: bool,
    /// The layout checked.
    pub layout: Layout,
    /// The container the devices' groups form.
    pub container: Container,
    /// Every part of a DMA-mapped section that cannot be mapped, by address.
    pub conflicts: Vec<Conflict>,
    /// Group issues that block assignment.
    pub blockers: Vec<Blocker>,
    /// Other things worth knowing (unknown apertures, …).
    pub notes: Vec<String>,
}

impl CheckReport {
    /// The fatal conflicts.
    pub fn fatal(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts.iter().filter(|c| c.fatal)
    }

    /// Whether there is a fatal conflict.
    pub fn has_fatal(&self) -> bool {
        self.fatal().next().is_some()
    }
}

/// Checks a guest layout for the devices to assign: their groups form one container;
/// every DMA-mapped section must lie in the container's valid IOVAs and be aligned to
/// its smallest page. Unknown devices are an error; group blockers (direct RMRR, no
/// interrupt remapping, another device of the group bound to a driver that keeps the
/// group from VFIO) are reported and make `ok` false. The assigned devices' own drivers
/// do not count: the user (or libvirt, for a managed hostdev) binds them to vfio-pci.
pub fn check<S: AsRef<str>>(
    layout: &Layout,
    host: &Host,
    devices: &[S],
) -> Result<CheckReport, CheckError> {
    let container = Container::of_devices(host, devices)?;
    let mut report = check_container(layout, &container);
    for &g in &container.groups {
        let issues = host
            .group_issues(g)
            .map_err(|source| CheckError::UnknownDevice {
                device: format!("group {g}"),
                source,
            })?;
        let members: Vec<String> = host
            .groups
            .iter()
            .find(|x| x.id == g)
            .map(|x| {
                x.devices
                    .iter()
                    .filter(|d| container.devices.contains(d))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let assigned: Vec<&str> = members.iter().map(String::as_str).collect();
        let viability =
            host.viability(g, &assigned)
                .map_err(|source| CheckError::UnknownDevice {
                    device: format!("group {g}"),
                    source,
                })?;
        let viability = match viability {
            iova::host::Viability::Viable => None,
            iova::host::Viability::NotViable { devices } => Some(GroupIssue::NotViable { devices }),
            iova::host::Viability::Unknown { devices } => {
                Some(GroupIssue::ViabilityUnknown { devices })
            }
        };
        for issue in issues.into_iter().chain(viability) {
            if issue.is_blocker() {
                report.blockers.push(Blocker {
                    group: g,
                    devices: members.clone(),
                    message: issue.to_string(),
                    issue,
                });
            } else {
                report.notes.push(format!("group {g}: {issue}"));
            }
        }
    }
    if let Some(r) = &container.refusal {
        let group = r.group.unwrap_or(0);
        report.blockers.push(Blocker {
            group,
            devices: container.devices.clone(),
            issue: GroupIssue::Refused {
                errno: r.errno.clone(),
            },
            message: r.message.clone(),
        });
    }
    report.ok = !report.has_fatal() && report.blockers.is_empty();
    Ok(report)
}

/// Checks a layout against an already-built container (no blockers are looked at).
pub fn check_container(layout: &Layout, container: &Container) -> CheckReport {
    let mut conflicts = Vec::new();
    let page = container.min_page_size();
    for s in layout.sections().iter().filter(|s| s.is_dma_mapped()) {
        section_conflicts(s, container, page, &mut conflicts);
    }
    conflicts.sort_by_key(|c| (c.range.first(), c.range.last(), c.section.clone()));
    let mut notes = Vec::new();
    if container.apertures.iter().any(|a| a.aperture.is_none()) {
        notes.push("an IOMMU aperture is unknown: the whole 64-bit space was assumed".to_owned());
    }
    if container.page_sizes_assumed {
        notes.push(
            "an IOMMU does not report its page sizes: only the CPU page was assumed".to_owned(),
        );
    }
    let ok = !conflicts.iter().any(|c| c.fatal);
    CheckReport {
        ok,
        layout: layout.clone(),
        container: container.clone(),
        conflicts,
        blockers: Vec::new(),
        notes,
    }
}

fn section_conflicts(s: &Section, c: &Container, page: u64, out: &mut Vec<Conflict>) {
    let fatal = s.is_fatal_if_unmappable();
    let mut push = |range: IovaRange, reason: ConflictReason| {
        let dup = out
            .iter()
            .any(|x| x.section == s.name && x.range == range && same_cause(&x.reason, &reason));
        if !dup {
            out.push(Conflict {
                section: s.name.clone(),
                section_kind: s.kind,
                range,
                reason,
                fatal,
            });
        }
    };
    for a in &c.apertures {
        let Some(ap) = a.aperture else { continue };
        for piece in IovaSet::from(s.range).difference(&IovaSet::from(ap)).iter() {
            push(
                *piece,
                ConflictReason::BeyondAperture {
                    unit: a.unit.clone(),
                    aperture: ap,
                    width: a.width,
                },
            );
        }
    }
    for gr in &c.reserved {
        if !gr.region.kind.excludes_iova() {
            continue;
        }
        if let Some(piece) = s.range.intersection(&gr.region.range) {
            push(
                piece,
                ConflictReason::Reserved {
                    group: gr.group,
                    region: gr.region.range,
                    region_kind: gr.region.kind,
                },
            );
        }
    }
    // Alignment of both ends to the smallest page.
    let reason = ConflictReason::Misaligned { page_size: page };
    let first = s.range.first();
    let last = s.range.last();
    if first % page != 0 {
        let end = align_up(first, page)
            .and_then(|e| e.checked_sub(1))
            .map_or(last, |e| e.min(last));
        if let Ok(r) = IovaRange::new(first, end) {
            push(r, reason.clone());
        }
    }
    if let Some(after) = last.checked_add(1) {
        if after % page != 0 {
            let start = align_down(last, page).max(first);
            if let Ok(r) = IovaRange::new(start, last) {
                push(r, reason);
            }
        }
    }
}

/// Two reasons name the same cause (the same reserved region in two groups counts once).
fn same_cause(a: &ConflictReason, b: &ConflictReason) -> bool {
    match (a, b) {
        (
            ConflictReason::Reserved {
                region: ra,
                region_kind: ka,
                ..
            },
            ConflictReason::Reserved {
                region: rb,
                region_kind: kb,
                ..
            },
        ) => ra == rb && ka == kb,
        _ => a == b,
    }
}
