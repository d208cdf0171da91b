//! Property tests of the range algebra against simple reference models.
//!
//! Two models are used:
//! - a *small universe* of 256 consecutive addresses placed at interesting offsets
//!   (0, around 2^32, around 2^48, and the very top ending at `u64::MAX`), where every
//!   set is a 256-bit membership array and every operation (including the fits) is
//!   checked by brute force over every address;
//! - the *whole space* with ranges whose ends favour the edges (0, 2^32, 2^48,
//!   `u64::MAX`, adjacent and touching values); membership is compared at every critical
//!   point (each range end and its neighbours), which fully decides two sets whose
//!   boundaries all lie among those points.

use iova::range::{IovaRange, IovaSet};
use proptest::prelude::*;

const N: usize = 256;

fn offsets() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just((1u64 << 32) - 128),
        Just((1u64 << 48) - 128),
        Just(u64::MAX - (N as u64 - 1)),
    ]
}

/// A range inside the universe as (first, last) offsets.
fn small_range() -> impl Strategy<Value = (usize, usize)> {
    (0..N, 0..N).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

fn to_set(base: u64, rs: &[(usize, usize)]) -> IovaSet {
    rs.iter()
        .map(|&(a, b)| IovaRange::new(base + a as u64, base + b as u64).unwrap())
        .collect()
}

fn to_bits(rs: &[(usize, usize)]) -> [bool; N] {
    let mut m = [false; N];
    for &(a, b) in rs {
        for x in m.iter_mut().take(b + 1).skip(a) {
            *x = true;
        }
    }
    m
}

/// Checks the set's invariants and that it holds exactly the addresses of `bits`
/// (and nothing outside the universe).
fn assert_matches(base: u64, s: &IovaSet, bits: &[bool; N]) -> Result<(), TestCaseError> {
    for w in s.ranges().windows(2) {
        prop_assert!(
            w[0].last() < w[1].first() && w[1].first() - w[0].last() > 1,
            "not sorted/disjoint/non-adjacent: {s:?}"
        );
    }
    let universe = IovaRange::new(base, base + (N as u64 - 1)).unwrap();
    for r in s.iter() {
        prop_assert!(universe.contains_range(r), "{r} outside universe");
    }
    for (i, &b) in bits.iter().enumerate() {
        prop_assert_eq!(
            s.contains(base + i as u64),
            b,
            "address {:#x}",
            base + i as u64
        );
    }
    let count = bits.iter().filter(|&&b| b).count() as u128;
    prop_assert_eq!(s.len(), count);
    Ok(())
}

fn brute_fit(bits: &[bool; N], base: u64, size: usize, align: u64, top_down: bool) -> Option<u64> {
    let fits = |start: usize| {
        (base + start as u64) % align == 0
            && start + size <= N
            && bits[start..start + size].iter().all(|&b| b)
    };
    if top_down {
        (0..N).rev().find(|&s| fits(s)).map(|s| base + s as u64)
    } else {
        (0..N).find(|&s| fits(s)).map(|s| base + s as u64)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn small_universe_algebra(
        base in offsets(),
        a in prop::collection::vec(small_range(), 0..6),
        b in prop::collection::vec(small_range(), 0..6),
    ) {
        let (sa, sb) = (to_set(base, &a), to_set(base, &b));
        let (ba, bb) = (to_bits(&a), to_bits(&b));
        assert_matches(base, &sa, &ba)?;
        let zip = |f: fn(bool, bool) -> bool| {
            let mut m = [false; N];
            for i in 0..N { m[i] = f(ba[i], bb[i]); }
            m
        };
        assert_matches(base, &sa.union(&sb), &zip(|x, y| x || y))?;
        assert_matches(base, &sa.intersection(&sb), &zip(|x, y| x && y))?;
        assert_matches(base, &sa.difference(&sb), &zip(|x, y| x && !y))?;
        let universe = IovaRange::new(base, base + (N as u64 - 1)).unwrap();
        assert_matches(base, &sa.complement_within(universe), &zip(|x, _| !x))?;
        // The whole-space complement holds everything outside the universe too.
        let c = sa.complement();
        prop_assert_eq!(c.len() + sa.len(), 1u128 << 64);
        prop_assert_eq!(c.complement(), sa.clone());
        // insert/remove agree with union/difference.
        let mut ins = sa.clone();
        let mut rem = sa.clone();
        for r in sb.iter() { ins.insert(*r); rem.remove(*r); }
        prop_assert_eq!(&ins, &sa.union(&sb));
        prop_assert_eq!(&rem, &sa.difference(&sb));
        // Containment of each range of b.
        for &(x, y) in &b {
            let r = IovaRange::new(base + x as u64, base + y as u64).unwrap();
            prop_assert_eq!(sa.contains_range(&r), ba[x..=y].iter().all(|&v| v));
            prop_assert_eq!(sa.overlaps(&r), ba[x..=y].iter().any(|&v| v));
        }
    }

    #[test]
    fn small_universe_fits(
        base in offsets(),
        a in prop::collection::vec(small_range(), 0..6),
        size in 1usize..40,
        pick in any::<prop::sample::Index>(),
        exact in any::<bool>(),
        align_log in 0u32..6,
    ) {
        let s = to_set(base, &a);
        let bits = to_bits(&a);
        // Half of the cases ask for exactly the length of one of the set's ranges (or
        // one more), where off-by-one mistakes at a range's end show.
        let size = match (exact, s.range_count()) {
            (true, n) if n > 0 => {
                let r = s.ranges()[pick.index(n)];
                usize::try_from(r.len()).unwrap() + usize::from(size % 2 == 0)
            }
            _ => size,
        };
        let align = 1u64 << align_log;
        let low = s.first_fit(size as u64, align).map(|r| r.first());
        prop_assert_eq!(low, brute_fit(&bits, base, size, align, false));
        let high = s.last_fit(size as u64, align).map(|r| r.first());
        prop_assert_eq!(high, brute_fit(&bits, base, size, align, true));
        if let Some(r) = s.first_fit(size as u64, align) {
            prop_assert_eq!(r.len(), size as u128);
            prop_assert!(s.contains_range(&r));
        }
    }
}

/// Addresses that favour the edges of the space and of common apertures.
fn edge_addr() -> impl Strategy<Value = u64> {
    let anchors = [0u64, 1 << 32, 1 << 39, 1 << 48, 0xfee0_0000, u64::MAX];
    prop_oneof![
        3 => (prop::sample::select(anchors.to_vec()), -2i64..=2).prop_map(|(a, d)| a.wrapping_add_signed(d)),
        1 => any::<u64>(),
    ]
}

fn edge_range() -> impl Strategy<Value = IovaRange> {
    (edge_addr(), edge_addr()).prop_map(|(a, b)| IovaRange::new(a.min(b), a.max(b)).unwrap())
}

fn critical_points(ranges: &[IovaRange]) -> Vec<u64> {
    let mut pts = vec![0, 1, u64::MAX - 1, u64::MAX];
    for r in ranges {
        for p in [r.first(), r.last()] {
            pts.extend([p.wrapping_sub(1), p, p.wrapping_add(1)]);
        }
    }
    pts.sort_unstable();
    pts.dedup();
    pts
}

/// The exact size of a union, by sweeping elementary intervals between boundaries.
fn model_len(ranges: &[IovaRange]) -> u128 {
    let mut cuts: Vec<u128> = vec![0, 1u128 << 64];
    for r in ranges {
        cuts.push(u128::from(r.first()));
        cuts.push(u128::from(r.last()) + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut total = 0;
    for w in cuts.windows(2) {
        let start = u64::try_from(w[0]).unwrap();
        if ranges.iter().any(|r| r.contains(start)) {
            total += w[1] - w[0];
        }
    }
    total
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn whole_space_algebra(
        a in prop::collection::vec(edge_range(), 0..6),
        b in prop::collection::vec(edge_range(), 0..6),
    ) {
        let sa: IovaSet = a.iter().copied().collect();
        let sb: IovaSet = b.iter().copied().collect();
        let in_a = |x: u64| a.iter().any(|r| r.contains(x));
        let in_b = |x: u64| b.iter().any(|r| r.contains(x));
        let (u, i, d, c) = (sa.union(&sb), sa.intersection(&sb), sa.difference(&sb), sa.complement());
        let all: Vec<IovaRange> = a.iter().chain(b.iter()).copied().collect();
        for x in critical_points(&all) {
            prop_assert_eq!(sa.contains(x), in_a(x), "a at {:#x}", x);
            prop_assert_eq!(u.contains(x), in_a(x) || in_b(x), "union at {:#x}", x);
            prop_assert_eq!(i.contains(x), in_a(x) && in_b(x), "intersection at {:#x}", x);
            prop_assert_eq!(d.contains(x), in_a(x) && !in_b(x), "difference at {:#x}", x);
            prop_assert_eq!(c.contains(x), !in_a(x), "complement at {:#x}", x);
        }
        prop_assert_eq!(sa.len(), model_len(&a));
        prop_assert_eq!(u.len(), model_len(&all));
        prop_assert_eq!(u.len() + i.len(), sa.len() + sb.len());
        prop_assert_eq!(c.len(), (1u128 << 64) - sa.len());
        for s in [&u, &i, &d, &c] {
            for w in s.ranges().windows(2) {
                prop_assert!(w[0].last() < w[1].first() && w[1].first() - w[0].last() > 1);
            }
        }
    }

    #[test]
    fn start_size_round_trip(start in edge_addr(), size in edge_addr()) {
        match IovaRange::from_start_size(start, size) {
            Ok(r) => {
                prop_assert_eq!(r.first(), start);
                prop_assert_eq!(r.len(), u128::from(size));
                prop_assert!(u128::from(start) + u128::from(size) <= 1u128 << 64);
            }
            Err(_) => prop_assert!(size == 0 || u128::from(start) + u128::from(size) > 1u128 << 64),
        }
    }
}

#[test]
fn full_space_is_ordinary() {
    let full = IovaSet::full();
    assert_eq!(full.len(), 1u128 << 64);
    assert!(full.contains(u64::MAX));
    assert!(full.contains_range(&IovaRange::FULL));
    let top = IovaRange::new(u64::MAX, u64::MAX).unwrap();
    let without_top = full.difference(&IovaSet::from(top));
    assert_eq!(
        without_top.ranges(),
        &[IovaRange::new(0, u64::MAX - 1).unwrap()]
    );
    assert_eq!(
        without_top.last_fit(1, 1),
        IovaRange::new(u64::MAX - 1, u64::MAX - 1).ok()
    );
    assert_eq!(
        full.last_fit(0x1000, 0x1000),
        IovaRange::new(u64::MAX - 0xfff, u64::MAX).ok()
    );
    assert_eq!(
        full.first_fit(u64::MAX, 1),
        IovaRange::new(0, u64::MAX - 1).ok()
    );
}
