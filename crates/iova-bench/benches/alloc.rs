//! Criterion benches of the allocator and its peers (`cargo bench -p iova-bench`).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use iova::alloc::{Policy, SharedAllocator};
use iova_bench::{
    FirstFitPeer, IovaAlloc, PAGE, RangeAllocPeer, Rng, fragment, low_4g, mixed_pages, ours,
};

fn pair<A: IovaAlloc>(a: &mut A, size: u64) {
    let f = a.alloc(black_box(size), PAGE).expect("space");
    a.free(black_box(f), size);
}

fn alloc_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc-hit");
    for size in [PAGE, 32 * PAGE] {
        let shared = SharedAllocator::new(&low_4g(), PAGE, Policy::FirstFit).expect("set");
        let mut cache = shared.local();
        g.bench_function(format!("ours-cache/{}K", size / 1024), |b| {
            b.iter(|| pair(&mut cache, size))
        });
        let mut core = ours(&low_4g());
        g.bench_function(format!("ours-core/{}K", size / 1024), |b| {
            b.iter(|| pair(&mut core, size))
        });
        let mut ra = RangeAllocPeer::new(0, 0xffff_ffff);
        g.bench_function(format!("range-alloc/{}K", size / 1024), |b| {
            b.iter(|| pair(&mut ra, size))
        });
        let mut ff = FirstFitPeer::new(&low_4g());
        g.bench_function(format!("first-fit/{}K", size / 1024), |b| {
            b.iter(|| pair(&mut ff, size))
        });
    }
    g.finish();
}

/// One free of a random live range plus one mixed-size allocation, on the near-full
/// low 4 GiB (2^20 one-page entries, 1/16 freed).
fn nearfull(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc-nearfull");
    g.sample_size(20);
    fn run<A: IovaAlloc>(b: &mut criterion::Bencher<'_>, a: &mut A) {
        let mut rng = Rng::new(7);
        let mut live = fragment(a, 1 << 20, 1 << 16, &mut rng);
        b.iter_batched(
            || (),
            |()| {
                let i = rng.below(live.len());
                let (f, s) = live.swap_remove(i);
                a.free(f, s);
                let size = mixed_pages(&mut rng) * PAGE;
                match a.alloc(size, PAGE) {
                    Some(f) => live.push((f, size)),
                    None => {
                        if let Some(f) = a.alloc(PAGE, PAGE) {
                            live.push((f, PAGE));
                        }
                    }
                }
            },
            BatchSize::SmallInput,
        );
    }
    g.bench_function("ours", |b| run(b, &mut ours(&low_4g())));
    g.bench_function("first-fit", |b| run(b, &mut FirstFitPeer::new(&low_4g())));
    g.finish();
}

criterion_group!(benches, alloc_hit, nearfull);
criterion_main!(benches);
