//! Instruction-count driver for `valgrind --tool=callgrind`: runs one workload's hot
//! loop inside the `measured` function (set up outside it), so that
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/icount WORKLOAD N
//! ```
//!
//! reports the instructions of N operations alone. Instruction counts do not depend on
//! the machine's load, unlike wall-clock times. Workloads: `tracker`, `tracker-peer`, `tracker-pagetable` (the page table alone, as
//! the container drives it),
//! `pt-map-4k`, `pt-map-4k-peer`, `pt-map-4k-warm` (tables already there, the bench's
//! median case), `pt-map-4k-warm-peer`, `pt-bulk` (N ignored: 1 GiB of 4K pages),
//! `pt-bulk-peer`, `pt-translate`, `pt-translate-peer`, `alloc-hit`, `alloc-hit-core`,
//! `alloc-frag`, `alloc-frag-peer` (first-fit), `trace-parse` (N lines of the replay
//! bench's trace through `iova::trace::parse_trace_line`), `trace-parse-peer` (the same
//! lines through the naive model's parser). `scripts/icount replay-cli N` runs the whole
//! `iovactl replay` process on that trace instead (per operation, start-up included).

use std::hint::black_box;

use iova::alloc::{Policy, SharedAllocator};
use iova::dma::Access;
use iova::pagetable::PageTable;
use iova_bench::tracker::{self, ArrayWalk, Tracker};
use iova_bench::{IovaAlloc, PAGE, Rng, fragment, low_4g, ours};

/// The timed region: everything callgrind counts. With `ICOUNT_TIME` set in the
/// environment it also prints its wall-clock time (for a quick look outside callgrind).
#[inline(never)]
fn measured<F: FnOnce()>(f: F) {
    let t = std::time::Instant::now();
    f();
    if std::env::var_os("ICOUNT_TIME").is_some() {
        eprintln!("measured: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
}

fn churn_plan(slots: u64, live: usize, n: usize) -> (Vec<u64>, Vec<(u64, u64)>) {
    let mut rng = Rng::new(0xc0ffee);
    let mut used = vec![false; usize::try_from(slots).unwrap_or(0)];
    let pick = |rng: &mut Rng, used: &mut Vec<bool>| loop {
        let p = rng.below(used.len());
        if !used[p] {
            used[p] = true;
            return p as u64;
        }
    };
    let mut pages: Vec<u64> = (0..live).map(|_| pick(&mut rng, &mut used)).collect();
    let fill = pages.clone();
    let plan = (0..n)
        .map(|_| {
            let i = rng.below(pages.len());
            let p = pages.swap_remove(i);
            used[p as usize] = false;
            let q = pick(&mut rng, &mut used);
            pages.push(q);
            (p, q)
        })
        .collect();
    (fill, plan)
}

fn run_tracker<T: Tracker>(t: &mut T, n: usize) {
    let (fill, plan) = churn_plan(1 << 20, 65_535, n);
    for &p in &fill {
        t.map_page(p, (1 << 40) + p * PAGE);
    }
    measured(|| {
        for &(p, q) in &plan {
            t.unmap_page(p);
            t.map_page(q, (1 << 40) + q * PAGE);
        }
    });
}

fn shuffled_pages(n: usize) -> Vec<u64> {
    let mut rng = Rng::new(9);
    let mut v: Vec<u64> = (0..(1u64 << 18)).collect();
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v.truncate(n);
    v
}

fn addrs(n: usize) -> Vec<u64> {
    let mut rng = Rng::new(3);
    (0..n)
        .map(|_| (1 << 30) + (rng.next_u64() & ((1 << 30) - 1)))
        .collect()
}

/// The alloc-fragmented churn (300,000 live 4 KiB IOVAs) on any allocator.
fn frag<A: IovaAlloc>(a: &mut A, n: usize) {
    let mut rng = Rng::new(0x5eed);
    let mut live = fragment(a, 600_000, 300_000, &mut rng);
    let plan: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    measured(|| {
        for &pick in &plan {
            let i = (pick % live.len() as u64) as usize;
            let (f, s) = live.swap_remove(i);
            a.free(f, s);
            let got = a.alloc(PAGE, PAGE).expect("space");
            live.push((got, PAGE));
        }
    });
}

/// The replay bench's trace (`bench.rs: write_replay_trace`): `n` lines, map page j,
/// unmap page j - 1024.
fn replay_trace(n: usize) -> String {
    use std::fmt::Write as _;
    let page = |j: u64| 0x10_0000 + (j % (1 << 18)) * 0x1000;
    let mut t = String::new();
    for j in 0..(n as u64).div_ceil(2) {
        let _ = writeln!(t, "map {:#x} 0x1000", page(j));
        let _ = writeln!(t, "unmap {:#x} 0x1000", page(j.wrapping_sub(1024)));
    }
    t
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|x| x.parse().ok()).unwrap_or(10_000);
    match what.as_str() {
        "tracker" => run_tracker(&mut tracker::container(65_535), n),
        "tracker-peer" => run_tracker(&mut tracker::RangeMapTracker::default(), n),
        "tracker-pagetable" => run_tracker(&mut PageTable::x86(39).expect("table"), n),
        "pt-map-4k" => {
            let pages = shuffled_pages(n);
            let mut pt = PageTable::new(PAGE, 48).expect("table");
            measured(|| {
                for &p in &pages {
                    pt.map((1 << 30) + p * PAGE, (1 << 40) + p * PAGE, PAGE, Access::RW)
                        .expect("map");
                }
            });
            black_box(&pt);
        }
        "pt-map-4k-warm" => {
            // The bench's median case: the tables exist (20,000 maps made them).
            let pages = shuffled_pages(n + 20_000);
            let mut pt = PageTable::new(PAGE, 48).expect("table");
            let (warm, rest) = pages.split_at(20_000);
            for &p in warm {
                pt.map((1 << 30) + p * PAGE, (1 << 40) + p * PAGE, PAGE, Access::RW)
                    .expect("map");
            }
            measured(|| {
                for &p in rest {
                    pt.map((1 << 30) + p * PAGE, (1 << 40) + p * PAGE, PAGE, Access::RW)
                        .expect("map");
                }
            });
            black_box(&pt);
        }
        "pt-map-4k-warm-peer" => {
            let pages = shuffled_pages(n + 20_000);
            let mut w = ArrayWalk::default();
            let (warm, rest) = pages.split_at(20_000);
            for &p in warm {
                w.map_4k((1 << 30) + p * PAGE, (1 << 40) + p * PAGE);
            }
            measured(|| {
                for &p in rest {
                    w.map_4k((1 << 30) + p * PAGE, (1 << 40) + p * PAGE);
                }
            });
            black_box(&w);
        }
        "pt-map-4k-peer" => {
            let pages = shuffled_pages(n);
            let mut w = ArrayWalk::default();
            measured(|| {
                for &p in &pages {
                    w.map_4k((1 << 30) + p * PAGE, (1 << 40) + p * PAGE);
                }
            });
            black_box(&w);
        }
        "pt-bulk" => {
            let mut pt = PageTable::new(PAGE, 48).expect("table");
            measured(|| {
                pt.map(1 << 30, 1 << 40, 1 << 30, Access::RW).expect("map");
            });
            black_box(&pt);
        }
        "pt-bulk-peer" => {
            let mut w = ArrayWalk::default();
            measured(|| {
                for i in 0..(1u64 << 18) {
                    w.map_4k((1 << 30) + i * PAGE, (1 << 40) + i * PAGE);
                }
            });
            black_box(&w);
        }
        "pt-translate" => {
            let mut pt = PageTable::new(PAGE, 48).expect("table");
            pt.map(1 << 30, 1 << 40, 1 << 30, Access::RW).expect("map");
            let a = addrs(n);
            measured(|| {
                let mut s = 0u64;
                for &x in &a {
                    s = s.wrapping_add(pt.translate(x, Access::READ).unwrap_or(0));
                }
                black_box(s);
            });
        }
        "pt-translate-peer" => {
            let mut w = ArrayWalk::default();
            for i in 0..(1u64 << 18) {
                w.map_4k((1 << 30) + i * PAGE, (1 << 40) + i * PAGE);
            }
            let a = addrs(n);
            measured(|| {
                let mut s = 0u64;
                for &x in &a {
                    s = s.wrapping_add(w.translate(x).unwrap_or(0));
                }
                black_box(s);
            });
        }
        "alloc-hit" => {
            let shared = SharedAllocator::new(&low_4g(), PAGE, Policy::FirstFit).expect("set");
            let mut c = shared.local();
            iova_bench::alloc_hit(&mut c, 20_000);
            measured(|| {
                iova_bench::alloc_hit(&mut c, n);
            });
        }
        "alloc-hit-core" => {
            let mut a = ours(&low_4g());
            iova_bench::alloc_hit(&mut a, 20_000);
            measured(|| {
                iova_bench::alloc_hit(&mut a, n);
            });
        }
        "alloc-frag" => frag(&mut ours(&low_4g()), n),
        "alloc-frag-peer" => frag(&mut iova_bench::FirstFitPeer::new(&low_4g()), n),
        "trace-parse" => {
            let text = replay_trace(n);
            measured(|| {
                for (i, line) in text.lines().enumerate() {
                    black_box(iova::trace::parse_trace_line(i + 1, black_box(line)).ok());
                }
            });
        }
        "trace-parse-peer" => {
            let text = replay_trace(n);
            measured(|| {
                for line in text.lines() {
                    black_box(iova_bench::naive::parse_line(black_box(line)));
                }
            });
        }
        other => {
            eprintln!("icount: unknown workload '{other}'");
            std::process::exit(2);
        }
    }
}
