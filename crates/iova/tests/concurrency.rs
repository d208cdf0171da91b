//! Concurrency: the container is `Send + Sync` and, behind a `Mutex` or an `RwLock`,
//! stays consistent when several threads map and unmap disjoint and overlapping
//! ranges and translate at the same time. Bounded in operations (and so in time).
//!
//! The final check does not trust the container: the mapping count must equal the
//! successful maps minus the mappings the threads' unmaps reported removing, and the
//! page table must agree with the tracker at every mapped page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use iova::container::{Container, ContainerConfig, Flavour};
use iova::dma::{Access, DmaSpace, Errno};
use iova::host::{Group, Host, IommuUnit, IommuVendor, ReservedKind, ReservedRegion};
use iova::range::IovaRange;

const THREADS: u64 = 4;
/// Every mapping is one slot: slots are equal or disjoint, so an unmap of a slot
/// removes zero or one mapping.
const SLOT: u64 = 0x1_0000;
const SLOTS_PER_THREAD: u64 = 32;
const SHARED_SLOTS: u64 = 16;
#[cfg(not(miri))]
const OPS: u64 = 1500;
#[cfg(miri)]
const OPS: u64 = 40;

fn host() -> Host {
    let mut g = Group::new(1);
    g.iommu = Some("dmar0".into());
    g.reserved_regions.push(ReservedRegion {
        range: IovaRange::new(0xfee0_0000, 0xfeef_ffff).unwrap(),
        kind: ReservedKind::Msi,
    });
    Host {
        iommus: vec![
            IommuUnit::new("dmar0", IommuVendor::Intel)
                .with_address_width(39)
                .with_page_sizes(0x4020_1000)
                .with_interrupt_remapping(true),
        ],
        groups: vec![g],
        ..Host::default()
    }
}

/// Thread `t`'s private slots start at `(t + 1) * 16 MiB`; the shared slots at 0.
fn slot_iova(thread: u64, private: bool, k: u64) -> u64 {
    if private {
        (thread + 1) * 0x100_0000 + k * SLOT
    } else {
        k * SLOT
    }
}

/// A small deterministic generator per thread.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[derive(Default)]
struct Tally {
    maps_ok: AtomicU64,
    removed: AtomicU64,
}

/// One thread's work on a locked container: maps and unmaps of its own and shared
/// slots, unmaps of random shared slots it may not own, and translations.
fn work(thread: u64, lock: impl Fn(&mut dyn FnMut(&mut Container)), tally: &Tally) {
    let mut rng = thread.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..OPS {
        let private = next(&mut rng) % 3 != 0;
        let k = next(&mut rng)
            % if private {
                SLOTS_PER_THREAD
            } else {
                SHARED_SLOTS
            };
        let iova = slot_iova(thread, private, k);
        let host_addr = 0x7f00_0000_0000 + iova;
        match next(&mut rng) % 4 {
            0 | 1 => lock(&mut |c| match c.map(iova, host_addr, SLOT, Access::RW) {
                Ok(()) => {
                    tally.maps_ok.fetch_add(1, Ordering::Relaxed);
                }
                // The slot is taken (by this or another thread).
                Err(e) => assert_eq!(e.errno(), Errno::EEXIST, "map {iova:#x}"),
            }),
            2 => lock(&mut |c| {
                let bytes = match c.unmap(iova, SLOT) {
                    Ok(b) => b,
                    // iommufd answers ENOENT when nothing is mapped there.
                    Err(e)
                        if c.config().flavour() == Flavour::Iommufd
                            && e.errno() == Errno::ENOENT =>
                    {
                        0
                    }
                    Err(e) => panic!("whole-slot unmap of {iova:#x}: {e}"),
                };
                assert!(bytes == 0 || bytes == u128::from(SLOT), "{bytes:#x}");
                tally
                    .removed
                    .fetch_add(u64::try_from(bytes).unwrap() / SLOT, Ordering::Relaxed);
            }),
            _ => lock(&mut |c| {
                // Under the lock the tracker and the page table agree.
                match c.mapping_at(iova) {
                    Some(m) => {
                        assert_eq!(m.iova, IovaRange::from_start_size(iova, SLOT).unwrap());
                        assert_eq!(
                            c.translate(iova + 0x123, Access::READ),
                            Ok(m.host_addr + 0x123)
                        );
                    }
                    None => assert!(c.translate(iova, Access::READ).is_err()),
                }
            }),
        }
    }
}

fn final_check(c: &Container, tally: &Tally) {
    let maps_ok = tally.maps_ok.load(Ordering::Relaxed);
    let removed = tally.removed.load(Ordering::Relaxed);
    assert_eq!(
        u64::try_from(c.mapping_count()).unwrap(),
        maps_ok - removed,
        "{maps_ok} maps succeeded, {removed} mappings unmapped"
    );
    let mut bytes = 0u128;
    for m in c.mappings() {
        bytes += m.iova.len();
        let size = m.iova.size().unwrap();
        let mut off = 0;
        while off < size {
            assert_eq!(
                c.translate(m.iova.first() + off, Access::RW),
                Ok(m.host_addr + off),
                "page {:#x}",
                m.iova.first() + off
            );
            off += 0x1000;
        }
    }
    assert_eq!(c.page_table().unwrap().mapped_bytes(), bytes);
    assert!(maps_ok > 0 && removed > 0, "the threads did work");
}

#[test]
fn container_is_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Container>();
}

#[test]
fn mutex_guarded_container_stays_consistent() {
    for fl in [Flavour::Type1V1, Flavour::Type1V2, Flavour::Iommufd] {
        let mut c = Container::new(ContainerConfig::with_flavour(fl));
        c.attach(&host(), 1).unwrap();
        let shared = Arc::new(Mutex::new(c));
        let tally = Arc::new(Tally::default());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let shared = Arc::clone(&shared);
                let tally = Arc::clone(&tally);
                std::thread::spawn(move || {
                    work(t, |f| f(&mut shared.lock().unwrap()), &tally);
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker");
        }
        final_check(&shared.lock().unwrap(), &tally);
    }
}

#[test]
fn rwlock_readers_see_consistent_snapshots_while_writers_work() {
    let mut c = Container::new(ContainerConfig::default());
    c.attach(&host(), 1).unwrap();
    let shared = Arc::new(RwLock::new(c));
    let tally = Arc::new(Tally::default());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let (shared, tally) = (Arc::clone(&shared), Arc::clone(&tally));
                s.spawn(move || work(t, |f| f(&mut shared.write().unwrap()), &tally))
            })
            .collect();
        for _ in 0..2 {
            let (shared, done) = (Arc::clone(&shared), Arc::clone(&done));
            s.spawn(move || {
                let mut reads = 0u64;
                // Bounded: stop when the writers are done or after enough reads.
                while (!done.load(Ordering::Relaxed) || reads == 0) && reads < OPS * 4 {
                    let c = shared.read().unwrap();
                    // A reader's view is whole: every mapping translates, the page table
                    // holds exactly the tracker's bytes.
                    let mut bytes = 0u128;
                    for m in c.mappings() {
                        bytes += m.iova.len();
                        assert_eq!(
                            c.translate(m.iova.last(), Access::READ),
                            Ok(m.host_addr + (SLOT - 1))
                        );
                    }
                    assert_eq!(c.page_table().unwrap().mapped_bytes(), bytes);
                    reads += 1;
                }
            });
        }
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, Ordering::Relaxed);
    });
    final_check(&shared.read().unwrap(), &tally);
}

/// The shared allocator from several threads, each with its own per-thread cache:
/// ranges handed out at the same time never overlap (checked against a map of live
/// ranges kept outside the allocator), every range is inside the managed space, and
/// once everything is freed the free space is the whole managed space again.
#[test]
fn shared_allocator_hands_out_disjoint_ranges_across_threads() {
    use iova::alloc::{Policy, SharedAllocator};
    use iova::range::IovaSet;
    let space = IovaSet::from(IovaRange::new(0x10_0000, 0x4fff_ffff).unwrap());
    let shared = SharedAllocator::new(&space, 0x1000, Policy::FirstFit).unwrap();
    let live = Mutex::new(std::collections::BTreeMap::<u64, u64>::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (shared, live, space) = (&shared, &live, &space);
            s.spawn(move || {
                let mut cache = shared.local();
                let mut mine: Vec<IovaRange> = Vec::new();
                let mut rng = (t + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..OPS {
                    if mine.len() < 64 && next(&mut rng) % 3 != 0 {
                        let size = 0x1000 << (next(&mut rng) % 6);
                        let got = cache.alloc(size, 0x1000).expect("space is ample");
                        assert!(space.contains_range(&got));
                        let mut l = live.lock().unwrap();
                        // No live range overlaps the new one.
                        if let Some((&f, &last)) = l.range(..=got.last()).next_back() {
                            assert!(last < got.first(), "[{f:#x}, {last:#x}] overlaps {got}");
                        }
                        l.insert(got.first(), got.last());
                        drop(l);
                        mine.push(got);
                    } else if let Some(rr) = mine.pop() {
                        live.lock().unwrap().remove(&rr.first());
                        cache.free(rr).expect("freeing what was handed out");
                    }
                }
                for rr in mine {
                    live.lock().unwrap().remove(&rr.first());
                    cache.free(rr).expect("freeing what was handed out");
                }
            });
        }
    });
    assert!(live.lock().unwrap().is_empty());
    shared.with_core(|a| {
        assert_eq!(a.allocation_count(), 0, "every range was freed");
        assert_eq!(&a.free_ranges(), a.managed());
    });
}
