//! Differential fuzzing of the simulated container against a naive reference model.
//!
//! Random sequences of attach / detach / map / unmap / unmap_all / map_auto /
//! allow_iovas run on the container (type1 v1, v2 or iommufd, with or without the
//! unsafe permissions) and on a reference model, which decides every check the slow,
//! obvious way (page by page over a small space, in the kernel's order from
//! SEMANTICS.md; overlaps to the byte, as an IOAS without a domain has alignment 1).
//! Any disagreement in a result, in the mappings, the valid IOVAs or the allowed
//! list, any change made by a failed operation, or any broken container invariant is
//! a crash. Bit 3 of `unsafe_bits` picks the kernel, 6.12 or 6.18; on type1 before
//! 6.18, once a mapping ends at 2^64-1 the kernel's answers depend on the shape of its
//! `vfio_dma` tree, which the model does not keep, so from then on only the
//! container's invariants and the atomicity of failures are checked.

use crate::common::check_invariants;
use arbitrary::Arbitrary;
use iova::container::{Container, ContainerConfig, Flavour, KernelVersion};
use iova::dma::{Access, DmaSpace, Errno};
use iova::host::{DomainType, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
use iova::range::{IovaRange, IovaSet};

const PG: u64 = 0x1000;
/// Pages of the small space where most addresses fall.
const SPACE_PAGES: u64 = 0x300;
const LIMIT: u32 = 8;
/// How far up the model searches for an automatic IOVA.
const AUTO_SEARCH_END: u64 = 0x300_0000;

/// A group as the model sees it.
struct G {
    id: u32,
    ap: Option<(u64, u64)>,
    pgs: Option<u64>,
    /// Regions that punch IOVAs out (msi/reserved).
    excl: Vec<(u64, u64)>,
    /// A direct (RMRR) region: refused unless allowed, then punched out too.
    direct: Option<(u64, u64)>,
    /// A direct-relaxable region: never punched out.
    relaxable: Option<(u64, u64)>,
    ir: Option<bool>,
    bypass: bool,
}

fn groups() -> Vec<G> {
    let ap = Some((0, 0x1ff_ffff));
    let g = |id, ap, pgs, excl: &[(u64, u64)]| G {
        id,
        ap,
        pgs,
        excl: excl.to_vec(),
        direct: None,
        relaxable: None,
        ir: Some(true),
        bypass: false,
    };
    vec![
        g(1, ap, Some(0x20_1000), &[(0x8_0000, 0x8_ffff)]),
        g(
            2,
            Some((0, 0xff_ffff)),
            Some(0x4020_1000),
            &[(0x4_0000, 0x4_0fff)],
        ),
        G {
            relaxable: Some((0, 0xf_ffff)),
            ir: None,
            ..g(3, None, None, &[])
        },
        G {
            ir: Some(false),
            ..g(4, ap, Some(0x20_1000), &[])
        },
        G {
            bypass: true,
            ..g(5, ap, Some(0x20_1000), &[(0x8_0000, 0x8_ffff)])
        },
        g(6, ap, Some(0x1_0000), &[]),
        g(7, ap, Some(0x20_1000), &[(0, 0x1ff_ffff)]),
        g(8, Some((0x1_0000, 0x1ff_ffff)), Some(0x20_2000), &[]),
        G {
            direct: Some((0x10_0000, 0x10_ffff)),
            ..g(9, ap, Some(0x1000), &[(0x8_0000, 0x8_ffff)])
        },
        g(10, ap, Some(1 << 40), &[]),
    ]
}

fn host() -> Host {
    let mut h = Host::default();
    for g in groups() {
        let name = format!("u{}", g.id);
        let mut u = IommuUnit::new(name.clone(), IommuVendor::Unknown);
        u.aperture = g.ap.map(|(a, b)| IovaRange::new(a, b).unwrap());
        u.page_sizes = g.pgs;
        u.interrupt_remapping = g.ir;
        h.iommus.push(u);
        let mut grp = iova::host::Group::new(g.id);
        grp.iommu = Some(name);
        let region = |(a, b): (u64, u64), kind| ReservedRegion {
            range: IovaRange::new(a, b).unwrap(),
            kind,
        };
        for &e in &g.excl {
            grp.reserved_regions.push(region(e, ReservedKind::Msi));
        }
        if let Some(d) = g.direct {
            grp.reserved_regions.push(region(d, ReservedKind::Direct));
        }
        if let Some(d) = g.relaxable {
            grp.reserved_regions
                .push(region(d, ReservedKind::DirectRelaxable));
        }
        if g.bypass {
            grp.domain_type = DomainType::Identity;
        }
        h.groups.push(grp);
    }
    h
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct M {
    first: u64,
    last: u64,
    host: u64,
    access: Access,
}

struct Model {
    flavour: Flavour,
    allow_direct: bool,
    allow_irq: bool,
    all: Vec<G>,
    members: Vec<u32>,
    maps: Vec<M>,
    allowed: Vec<(u64, u64)>,
    /// type1 answers as 6.18 does (wrapping ranges EOVERFLOW, checked before the
    /// flags and the alignment; ranges up to 2^64-1 handled like any other), else
    /// as 6.12.
    type1_6_18: bool,
    /// Set once a type1 container before 6.18 holds a mapping ending at 2^64-1.
    /// From then on the kernel's answers depend on the shape of its `vfio_dma`
    /// red-black tree (`vfio_find_dma` never finds such a mapping and, meeting it,
    /// always turns right, skipping what lies to its left; docs/semantics.md §5),
    /// which this model does not keep: the container's answers are no longer
    /// compared, only its invariants checked. The tree itself is the container's
    /// `container/legacy.rs`, tested against the real 6.12 by vmtest.
    tree_shaped: bool,
}

fn inside(a: u64, (x, y): (u64, u64)) -> bool {
    x <= a && a <= y
}

fn pages(first: u64, last: u64) -> impl Iterator<Item = u64> {
    (first / PG..=last / PG).map(|p| p * PG)
}

type R = Result<Option<u128>, Errno>;

impl Model {
    fn g(&self, id: u32) -> &G {
        self.all.iter().find(|g| g.id == id).unwrap()
    }
    fn ap(&self, id: u32) -> (u64, u64) {
        self.g(id).ap.unwrap_or((0, u64::MAX))
    }
    /// The ranges this group punches out (direct only when allowed at all).
    fn punched(&self, id: u32) -> Vec<(u64, u64)> {
        let g = self.g(id);
        let mut v = g.excl.clone();
        v.extend(g.direct);
        v
    }
    fn valid_in(&self, id: u32, a: u64) -> bool {
        inside(a, self.ap(id)) && !self.punched(id).iter().any(|&r| inside(a, r))
    }
    fn valid_with(&self, members: &[u32], a: u64) -> bool {
        if members.is_empty() {
            // An IOAS with no domain reserves nothing; type1 is not set up.
            return self.flavour == Flavour::Iommufd;
        }
        members.iter().all(|&id| self.valid_in(id, a))
    }
    /// type1 needs a group; an iommufd IOAS works from the start.
    fn not_ready(&self) -> bool {
        self.members.is_empty() && self.flavour != Flavour::Iommufd
    }
    /// iommufd's alignment: the largest of the members' smallest pages, from 1.
    fn iommufd_align(&self, members: &[u32]) -> u64 {
        members
            .iter()
            .map(|&id| match self.g(id).pgs {
                Some(b) if b != 0 => 1u64 << b.trailing_zeros(),
                _ => PG,
            })
            .fold(1, u64::max)
    }
    fn valid(&self, a: u64) -> bool {
        self.valid_with(&self.members, a)
    }
    fn bitmap(&self, members: &[u32]) -> u64 {
        let mut b = u64::MAX;
        for &id in members {
            b &= self.g(id).pgs.unwrap_or(PG);
        }
        if b & (PG - 1) != 0 {
            b = (b & !(PG - 1)) | PG;
        }
        b
    }
    fn page(&self) -> u64 {
        if self.flavour == Flavour::Iommufd {
            return self.iommufd_align(&self.members);
        }
        if self.members.is_empty() {
            return PG;
        }
        1 << self.bitmap(&self.members).trailing_zeros()
    }
    fn any_valid(&self, members: &[u32]) -> bool {
        let mut cands = vec![];
        for &id in members {
            cands.push(self.ap(id).0);
            cands.extend(
                self.punched(id)
                    .iter()
                    .filter_map(|&(_, y)| y.checked_add(1)),
            );
        }
        cands.into_iter().any(|a| self.valid_with(members, a))
    }
    fn geometry_ok(&self, members: &[u32]) -> bool {
        let b = self.bitmap(members);
        self.any_valid(members) && b != 0 && b.trailing_zeros() <= 32
    }
    fn mapped(&self, a: u64) -> bool {
        self.maps.iter().any(|m| inside(a, (m.first, m.last)))
    }
    fn in_allowed(&self, a: u64) -> bool {
        self.allowed.iter().any(|&r| inside(a, r))
    }
    fn map_overlaps(&self, (x, y): (u64, u64)) -> bool {
        self.maps.iter().any(|m| m.first <= y && x <= m.last)
    }
    fn allowed_overlaps(&self, (x, y): (u64, u64)) -> bool {
        self.allowed.iter().any(|&(a, b)| a <= y && x <= b)
    }

    fn attach(&mut self, id: u32) -> Result<(), Errno> {
        if !self.all.iter().any(|g| g.id == id) {
            return Err(Errno::ENOENT);
        }
        if self.members.contains(&id) {
            return Err(Errno::EBUSY);
        }
        let g = self.g(id);
        // An identity (iommu=pt) default domain is no refusal: VFIO claims the group
        // and attaches its own domain.
        if g.direct.is_some() && !self.allow_direct {
            return Err(Errno::EPERM);
        }
        let irq_bad = g.ir == Some(false) && !self.allow_irq;
        let mut members = self.members.clone();
        members.push(id);
        let newpage = if self.flavour == Flavour::Iommufd {
            self.iommufd_align(&members)
        } else {
            1u64.checked_shl(self.bitmap(&members).trailing_zeros())
                .unwrap_or(0)
        };
        let misaligned = |m: &M, host: u64| {
            newpage == 0 || (m.first | (m.last - m.first + 1) | host) % newpage != 0
        };
        if self.flavour == Flavour::Iommufd {
            if irq_bad {
                return Err(Errno::EPERM);
            }
            if self
                .punched(id)
                .iter()
                .any(|&r| self.map_overlaps(r) || self.allowed_overlaps(r))
            {
                return Err(Errno::EADDRINUSE);
            }
            if 1u64 << g.pgs.unwrap_or(PG).trailing_zeros() > PG && g.pgs != Some(0) {
                return Err(Errno::EINVAL);
            }
            if !self.geometry_ok(&members) {
                return Err(Errno::EINVAL);
            }
            if newpage > self.page() && self.maps.iter().any(|m| misaligned(m, m.host % PG)) {
                return Err(Errno::EADDRINUSE);
            }
            let (s, e) = self.ap(id);
            let outside: Vec<(u64, u64)> = [
                s.checked_sub(1).map(|b| (0, b)),
                e.checked_add(1).map(|a| (a, u64::MAX)),
            ]
            .into_iter()
            .flatten()
            .collect();
            if outside
                .iter()
                .any(|&r| self.map_overlaps(r) || self.allowed_overlaps(r))
            {
                return Err(Errno::EADDRINUSE);
            }
        } else {
            if self
                .maps
                .iter()
                .any(|m| pages(m.first, m.last).any(|a| !self.valid_in(id, a)))
            {
                return Err(Errno::EINVAL);
            }
            if !self.geometry_ok(&members) {
                return Err(Errno::EINVAL);
            }
            if irq_bad {
                return Err(Errno::EPERM);
            }
            if self.maps.iter().any(|m| misaligned(m, m.host)) {
                return Err(Errno::EINVAL);
            }
        }
        self.members = members;
        Ok(())
    }

    fn detach(&mut self, id: u32) -> Result<(), Errno> {
        let i = self
            .members
            .iter()
            .position(|&m| m == id)
            .ok_or(Errno::EINVAL)?;
        self.members.remove(i);
        if self.members.is_empty() && self.flavour != Flavour::Iommufd {
            // type1 drops every mapping with the last group; an IOAS keeps them.
            self.maps.clear();
        }
        Ok(())
    }

    fn map(&mut self, iova: u64, host: u64, size: u64, access: Access) -> Result<(), Errno> {
        if self.not_ready() {
            return Err(Errno::EINVAL);
        }
        let pg = self.page();
        let none = !access.read && !access.write;
        let top = 1u128 << 64;
        let end = u128::from(iova) + u128::from(size);
        let hend = u128::from(host) + u128::from(size);
        if self.flavour == Flavour::Iommufd {
            if iova == u64::MAX || size == u64::MAX {
                return Err(Errno::EOVERFLOW);
            }
            if none {
                return Err(Errno::EINVAL);
            }
            if hend >= top {
                return Err(Errno::EOVERFLOW);
            }
            if size == 0 || size % pg != 0 || iova % pg != 0 {
                return Err(Errno::EINVAL);
            }
            if end > top {
                return Err(Errno::EOVERFLOW);
            }
            let last = iova + (size - 1);
            if pages(iova, last).any(|a| !self.valid(a)) {
                return Err(Errno::EINVAL);
            }
            // iopt_check_iova: any area meeting [iova, last], to the byte. Without a
            // domain the IOAS alignment is 1 (iopt_init_table), so areas can start and
            // end inside a page and a page-by-page search would miss them (issue 27).
            if self.map_overlaps((iova, last)) {
                return Err(Errno::EEXIST);
            }
            if (host % PG) % pg != 0 {
                return Err(Errno::EINVAL);
            }
        } else {
            let wraps = end > top || hend > top;
            if self.type1_6_18 {
                // 6.18: size 0, then the wrap (EOVERFLOW), then flags and alignment.
                if size == 0 {
                    return Err(Errno::EINVAL);
                }
                if wraps {
                    return Err(Errno::EOVERFLOW);
                }
            }
            if none || size == 0 || (iova | host | size) % pg != 0 || wraps {
                return Err(Errno::EINVAL);
            }
            let last = iova + (size - 1);
            // Before 6.18 `vfio_find_dma` compares `iova + size`, 0 for a range
            // ending at 2^64-1: such a map goes left at every node and never finds
            // an overlapping mapping, whatever the tree's shape.
            let blind = !self.type1_6_18 && last == u64::MAX;
            if !blind && self.map_overlaps((iova, last)) {
                return Err(Errno::EEXIST);
            }
            if self.maps.len() >= LIMIT as usize {
                return Err(Errno::ENOSPC);
            }
            if pages(iova, last).any(|a| !self.valid(a)) {
                return Err(Errno::EINVAL);
            }
            if blind {
                self.tree_shaped = true;
            }
        }
        self.maps.push(M {
            first: iova,
            last: iova + (size - 1),
            host,
            access,
        });
        Ok(())
    }

    /// Whether `[a, a + size - 1]` may be picked by automatic allocation.
    fn auto_fits(&self, a: u64, size: u64) -> bool {
        let Some(last) = a.checked_add(size - 1) else {
            return false;
        };
        a >= PG
            && last <= u64::MAX - PG
            && !self.map_overlaps((a, last))
            && pages(a, last)
                .all(|p| self.valid(p) && (self.allowed.is_empty() || self.in_allowed(p)))
    }

    /// Returns `Ok(Some(iova))`, or `Ok(None)` when nothing fits below
    /// [`AUTO_SEARCH_END`] (the container may then fail or pick a higher IOVA).
    fn map_auto(&mut self, host: u64, size: u64, access: Access) -> Result<Option<u64>, Errno> {
        if self.flavour != Flavour::Iommufd {
            return Err(Errno::ENOTTY);
        }
        if size == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if !access.read && !access.write {
            return Err(Errno::EINVAL);
        }
        if u128::from(host) + u128::from(size) > u128::from(u64::MAX) {
            return Err(Errno::EOVERFLOW);
        }
        let pg = self.page();
        if size == 0 || size % pg != 0 {
            return Err(Errno::EINVAL);
        }
        if size >= u64::MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let mut align = size.next_power_of_two();
        if host != 0 {
            align = align.min(1 << host.trailing_zeros());
        }
        align = align.min(PG * 512);
        if align < pg {
            return Err(Errno::EINVAL);
        }
        // iopt_alloc_iova: hole by hole from the first page; in each hole only
        // ALIGN(hole start, align) | page offset of the host address is tried.
        let free = |m: &Self, p: u64| {
            m.valid(p) && !m.mapped(p) && (m.allowed.is_empty() || m.in_allowed(p))
        };
        let mut starts: Vec<u64> = vec![PG];
        starts.extend(self.maps.iter().filter_map(|m| m.last.checked_add(1)));
        starts.extend(self.allowed.iter().map(|&(a, _)| a));
        for &id in &self.members {
            starts.push(self.ap(id).0);
            starts.extend(
                self.punched(id)
                    .iter()
                    .filter_map(|&(_, b)| b.checked_add(1)),
            );
        }
        starts.retain(|h| (PG..AUTO_SEARCH_END).contains(h));
        starts.sort_unstable();
        starts.dedup();
        for hs in starts {
            // A hole starts here: free, and the byte below is not (or is IOVA 0).
            if !free(self, hs) || (hs > PG && free(self, hs - 1)) {
                continue;
            }
            let Some(c) = hs
                .checked_add(align - 1)
                .map(|x| (x & !(align - 1)) | (host % PG))
            else {
                continue;
            };
            let Some(last) = c.checked_add(size - 1) else {
                continue;
            };
            // The whole of [hs, last] must lie in this one hole.
            if self.auto_fits(c, size) && (hs == c || self.auto_fits(hs, last - hs + 1)) {
                self.maps.push(M {
                    first: c,
                    last,
                    host,
                    access,
                });
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    fn allow(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        if self.flavour != Flavour::Iommufd {
            return Err(Errno::ENOTTY);
        }
        if ranges.iter().any(|&(a, b)| a == b) {
            return Err(Errno::EINVAL);
        }
        if !self.members.is_empty()
            && ranges
                .iter()
                .any(|&(a, b)| pages(a, b).any(|p| !self.valid(p)))
        {
            return Err(Errno::EADDRINUSE);
        }
        self.allowed = ranges.to_vec();
        Ok(())
    }

    fn remove(&mut self, gone: &[M]) -> u128 {
        self.maps.retain(|m| !gone.contains(m));
        gone.iter().map(|m| u128::from(m.last - m.first) + 1).sum()
    }

    fn unmap(&mut self, iova: u64, size: u64) -> R {
        if self.not_ready() {
            return Err(Errno::EINVAL);
        }
        let end = u128::from(iova) + u128::from(size);
        let hit = |last: u64| -> Vec<M> {
            self.maps
                .iter()
                .copied()
                .filter(|m| m.first <= last && iova <= m.last)
                .collect()
        };
        if self.flavour == Flavour::Iommufd {
            if iova == 0 && size == u64::MAX {
                return self.unmap_all();
            }
            if iova == u64::MAX || size == u64::MAX {
                return Err(Errno::EOVERFLOW);
            }
            if size == 0 {
                return Err(Errno::EINVAL);
            }
            if end > 1u128 << 64 {
                return Err(Errno::EOVERFLOW);
            }
            let last = iova + (size - 1);
            let mut h = hit(last);
            h.sort_by_key(|m| m.first);
            // iopt_unmap_iova_range: areas go in IOVA order; one starting below the
            // range stops at once, one ending past it stops after the whole areas
            // before it were removed (seen on 6.12). Both answer ENOENT.
            match h.first() {
                None => return Err(Errno::ENOENT),
                Some(m) if m.first < iova => return Err(Errno::ENOENT),
                Some(_) => {}
            }
            let whole: Vec<M> = h.iter().copied().take_while(|m| m.last <= last).collect();
            if whole.len() < h.len() {
                self.remove(&whole);
                return Err(Errno::ENOENT);
            }
            return Ok(Some(self.remove(&h)));
        }
        let pg = self.page();
        if iova % pg != 0 || size == 0 || size % pg != 0 {
            return Err(Errno::EINVAL);
        }
        if end > 1u128 << 64 {
            return Err(if self.type1_6_18 {
                Errno::EOVERFLOW
            } else {
                Errno::EINVAL
            });
        }
        let last = iova + (size - 1);
        let h = hit(last);
        if self.flavour == Flavour::Type1V2 {
            if h.iter().any(|m| m.first < iova || m.last > last) {
                return Err(Errno::EINVAL);
            }
            Ok(Some(self.remove(&h)))
        } else {
            if h.iter().any(|m| m.first < iova) {
                return Ok(Some(0));
            }
            Ok(Some(self.remove(&h)))
        }
    }

    fn unmap_all(&mut self) -> R {
        if self.not_ready() {
            return Err(Errno::EINVAL);
        }
        let all = self.maps.clone();
        Ok(Some(self.remove(&all)))
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Addr {
    Page(u16),
    LastPage,
    Max,
    FourGiB,
}

impl Addr {
    fn get(self) -> u64 {
        match self {
            Addr::Page(p) => (u64::from(p) % SPACE_PAGES) * PG,
            Addr::LastPage => u64::MAX - (PG - 1),
            Addr::Max => u64::MAX,
            Addr::FourGiB => 0x1_0000_0000,
        }
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Size {
    Pages(u8),
    Blocks64K(u8),
    Huge,
    Quarter,
    Max,
}

impl Size {
    fn get(self) -> u64 {
        match self {
            Size::Pages(p) => u64::from(p % 12) * PG,
            Size::Blocks64K(b) => u64::from(1 + b % 4) * 0x1_0000,
            Size::Huge => 0x20_0000,
            Size::Quarter => 0x1000_0000,
            Size::Max => u64::MAX,
        }
    }
}

#[derive(Debug, Arbitrary, Clone)]
enum Op {
    Attach(u8),
    Detach(u8),
    Map {
        iova: Addr,
        size: Size,
        host: u16,
        odd: u8,
        access: u8,
    },
    Unmap {
        iova: Addr,
        size: Size,
        odd: bool,
    },
    UnmapAll,
    MapAuto {
        host: u16,
        shift: u8,
        size: Size,
        access: u8,
    },
    Allow(Vec<(u16, u16, bool)>),
}

fn access(a: u8) -> Access {
    [
        Access::RW,
        Access::RW,
        Access::RW,
        Access::RW,
        Access::READ,
        Access::WRITE,
        Access::NONE,
        Access::RW,
    ][usize::from(a % 8)]
}

/// One fuzz input (decoded from bytes by [`crate::decode`]).
#[derive(Debug, Arbitrary)]
pub struct Input {
    /// Modulo 3: type1 v1, type1 v2, iommufd.
    flavour: u8,
    /// Bit 1: allow unsafe direct regions; bit 2: unsafe interrupts; bit 3: the
    /// kernel is 6.18 rather than 6.12. Bit 0 is unused (it allowed identity groups,
    /// which are no longer refused), so saved inputs decode as before.
    unsafe_bits: u8,
    /// The first 64 run.
    ops: Vec<Op>,
}

fn check_state(c: &Container, m: &Model) {
    let mut want = m.maps.clone();
    want.sort_by_key(|x| x.first);
    let got: Vec<M> = c
        .mappings()
        .map(|x| M {
            first: x.iova.first(),
            last: x.iova.last(),
            host: x.host_addr,
            access: x.access,
        })
        .collect();
    assert_eq!(got, want, "mappings differ");
    assert_eq!(c.is_ready(), !m.not_ready());
    assert_eq!(c.groups().collect::<Vec<_>>(), m.members);
    let valid = c.valid_iovas();
    for a in (0..SPACE_PAGES + 0x10)
        .map(|p| p * PG)
        .chain([0x1_0000_0000, u64::MAX - (PG - 1)])
    {
        assert_eq!(valid.contains(a), m.valid(a), "validity of {a:#x}");
    }
    let allowed: IovaSet = m
        .allowed
        .iter()
        .map(|&(a, b)| IovaRange::new(a, b).unwrap())
        .collect();
    assert_eq!(c.allowed_iovas(), &allowed);
    check_invariants(c);
}

/// Runs one input given as bytes, decoded as libFuzzer's `fuzz_target!` does (an
/// input that does not decode is skipped); panics on a finding.
pub fn run_bytes(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(input);
    }
}

/// Runs one decoded input; panics on a finding.
pub fn run(input: Input) {
    let flavour =
        [Flavour::Type1V1, Flavour::Type1V2, Flavour::Iommufd][usize::from(input.flavour % 3)];
    // Bit 3 of `unsafe_bits` picks the kernel: 6.18 (type1 wraps are EOVERFLOW and
    // reach 2^64-1 like any other range) or 6.12 (the model stops comparing once its
    // tree's shape decides the answers, see `Model::tree_shaped`). iommufd answers
    // alike on both for every input this target can make.
    let type1_6_18 = input.unsafe_bits & 8 != 0;
    let kernel = if type1_6_18 {
        KernelVersion::V6_18
    } else {
        KernelVersion::V6_12
    };
    let mut cfg = ContainerConfig::with_flavour(flavour).kernel(kernel);
    cfg.dma_entry_limit = LIMIT;
    cfg.domain.allow_unsafe_direct = input.unsafe_bits & 2 != 0;
    cfg.domain.allow_unsafe_interrupts = input.unsafe_bits & 4 != 0;
    let h = host();
    let mut c = Container::new(cfg);
    let mut m = Model {
        flavour,
        allow_direct: cfg.domain.allow_unsafe_direct,
        allow_irq: cfg.domain.allow_unsafe_interrupts,
        all: groups(),
        members: vec![],
        maps: vec![],
        allowed: vec![],
        type1_6_18,
        tree_shaped: false,
    };
    for (i, op) in input.ops.iter().take(64).enumerate() {
        let before = c.clone();
        // Whether this op's answer is compared with the model's.
        let compare = !m.tree_shaped;
        let (got, want): (R, R) = match op.clone() {
            Op::Attach(g) => {
                let g = u32::from(g % 12);
                (
                    c.attach(&h, g).map(|()| None).map_err(|e| e.errno()),
                    m.attach(g).map(|()| None),
                )
            }
            Op::Detach(g) => {
                let g = u32::from(g % 12);
                (
                    c.detach(g).map(|()| None).map_err(|e| e.errno()),
                    m.detach(g).map(|()| None),
                )
            }
            Op::Map {
                iova,
                size,
                host,
                odd,
                access: a,
            } => {
                let o = |bit: u8| if odd & bit != 0 { 0x800 } else { 0 };
                let iova = iova.get() | o(1);
                let size = size.get() | o(2);
                let host = u64::from(host) * PG + o(4);
                (
                    c.map(iova, host, size, access(a))
                        .map(|()| None)
                        .map_err(|e| e.errno()),
                    m.map(iova, host, size, access(a)).map(|()| None),
                )
            }
            Op::Unmap { iova, size, odd } => {
                let iova = iova.get() | if odd { 0x800 } else { 0 };
                let size = size.get();
                (
                    c.unmap(iova, size).map(Some).map_err(|e| e.errno()),
                    m.unmap(iova, size),
                )
            }
            Op::UnmapAll => (
                c.unmap_all().map(Some).map_err(|e| e.errno()),
                m.unmap_all(),
            ),
            Op::MapAuto {
                host,
                shift,
                size,
                access: a,
            } => {
                let host = u64::from(host) << (8 + u32::from(shift % 16));
                let size = match size {
                    Size::Quarter => 0x20_0000,
                    s => s.get(),
                };
                let got = c.map_auto(host, size, access(a)).map_err(|e| e.errno());
                match m.map_auto(host, size, access(a)) {
                    Ok(Some(iova)) => {
                        (got.map(|v| Some(u128::from(v))), Ok(Some(u128::from(iova))))
                    }
                    Ok(None) => {
                        // Nothing fits in the model's search window: the container must
                        // fail with ENOSPC or pick a fitting IOVA above it.
                        match got {
                            Err(e) => assert_eq!(e, Errno::ENOSPC, "op {i} {op:?}"),
                            Ok(v) => {
                                assert!(
                                    v >= AUTO_SEARCH_END && m.auto_fits(v, size),
                                    "op {i} {op:?}: {v:#x}"
                                );
                                m.maps.push(M {
                                    first: v,
                                    last: v + (size - 1),
                                    host,
                                    access: access(a),
                                });
                            }
                        }
                        // (Only iommufd has map_auto: the model is still compared.)
                        check_state(&c, &m);
                        continue;
                    }
                    Err(e) => (got.map(|v| Some(u128::from(v))), Err(e)),
                }
            }
            Op::Allow(list) => {
                let set: IovaSet = list
                    .iter()
                    .take(4)
                    .filter_map(|&(p, n, single)| {
                        let a = (u64::from(p) % SPACE_PAGES) * PG;
                        let b = if single {
                            a
                        } else {
                            a + u64::from(n % 64) * PG + (PG - 1)
                        };
                        IovaRange::new(a, b).ok()
                    })
                    .collect();
                let ranges: Vec<(u64, u64)> = set.iter().map(|r| (r.first(), r.last())).collect();
                (
                    c.allow_iovas(&set).map(|()| None).map_err(|e| e.errno()),
                    m.allow(&ranges).map(|()| None),
                )
            }
        };
        if compare {
            assert_eq!(got, want, "op {i} {op:?}");
        }
        if let Err(e) = got {
            // The kernel's one non-atomic failure (docs/kernel-facts.md).
            let partial = flavour.is_iommufd()
                && matches!(op, Op::Unmap { .. })
                && e == Errno::ENOENT
                && c.is_before_less_whole_mappings(&before);
            assert!(
                c == before || partial,
                "failed op {i} {op:?} changed the container"
            );
        }
        if m.tree_shaped {
            check_invariants(&c);
        } else {
            check_state(&c, &m);
        }
    }
}
