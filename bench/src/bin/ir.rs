//! Driver for `callgrind.sh`: `ir ALLOCATOR SIZE N` runs a warm-up of
//! 10,000 alloc+free pairs of SIZE bytes (align 8), then N more, through
//! the same non-inlined shims as the suite. callgrind counts the whole
//! process; the script subtracts the count of an `N = 0` run, so all that
//! remains is N pairs (and the loop around them).
//!
//! `ir --list` prints the allocator keys; `ir none SIZE N` runs the same
//! loop around an allocator that does nothing (the harness's share);
//! `ir floor SIZE N` around a bare per-thread stack per size class with no
//! claim, check or statistics (`baseline::Floor`, the least a per-CPU-cache
//! design does);
//! `ir strata-pages SIZE N` allocates and frees one page through strata's
//! page API instead (SIZE is ignored).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

use strata_bench::contenders::{visit_all, Contender, Visit};
use strata_bench::region::Region;
use strata_bench::shim;

const WARM_UP: usize = 10_000;
const REGION: usize = 32 << 20;

#[inline(never)]
fn pairs<A: GlobalAlloc>(a: &A, layout: Layout, n: usize) {
    for _ in 0..n {
        // SAFETY: non-zero size; the block is freed with its own layout.
        unsafe {
            let p = shim::alloc(a, layout);
            if p.is_null() {
                eprintln!("allocation of {layout:?} failed");
                std::process::exit(2);
            }
            shim::dealloc(a, black_box(p), layout);
        }
    }
}

struct Run<'a> {
    key: &'a str,
    layout: Layout,
    n: usize,
    found: bool,
}

impl Visit for Run<'_> {
    fn visit<C: Contender>(&mut self) {
        if C::KEY != self.key {
            return;
        }
        self.found = true;
        let region = C::REGION.then(|| Region::new(REGION));
        // SAFETY: the region is fresh, used by nothing else, and dropped
        // after the allocator.
        let a = unsafe { C::create(region.as_ref()) };
        pairs(&*a, self.layout, WARM_UP);
        pairs(&*a, self.layout, black_box(self.n));
        drop(a);
        drop(region);
    }
}

/// `alloc_pages` + `free_pages` of one page, `WARM_UP` then `n` times,
/// through non-inlined calls, on strata over a fresh region.
#[cfg(feature = "strata")]
fn page_pairs(n: usize) {
    use strata_alloc::{Heap, PageRequest};
    use strata_bench::contenders::{HostCpus, StrataHeap};

    #[inline(never)]
    fn pairs(heap: &Heap<HostCpus>, n: usize) {
        for _ in 0..n {
            let Some(p) = black_box(heap).alloc_pages(PageRequest::new(1)) else {
                eprintln!("alloc_pages failed");
                std::process::exit(2);
            };
            // SAFETY: the page was just allocated and is not used.
            unsafe { black_box(heap).free_pages(black_box(p.phys), 1) };
        }
    }

    let region = Region::new(REGION);
    // SAFETY: the region is fresh, used by nothing else, and dropped after
    // the heap.
    let heap = unsafe { StrataHeap::<HostCpus>::create(Some(&region)) };
    pairs(heap.heap(), WARM_UP);
    pairs(heap.heap(), black_box(n));
    drop(heap);
    drop(region);
}

#[cfg(not(feature = "strata"))]
fn page_pairs(_: usize) {
    eprintln!("strata-pages needs the `strata` feature");
    std::process::exit(64);
}

struct List(Vec<&'static str>);

impl Visit for List {
    fn visit<C: Contender>(&mut self) {
        self.0.push(C::KEY);
    }
}

fn main() {
    strata_bench::contenders::host_cpu::id();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        let mut l = List(Vec::new());
        visit_all(&mut l);
        println!("{}", l.0.join(" "));
        return;
    }
    let [key, size, n] = &args[..] else {
        eprintln!("usage: ir ALLOCATOR SIZE N | ir --list");
        std::process::exit(64);
    };
    let size: usize = size.parse().expect("SIZE");
    let n: usize = n.parse().expect("N");
    let mut run = Run {
        key,
        layout: Layout::from_size_align(size, 8).expect("layout"),
        n,
        found: false,
    };
    visit_all(&mut run);
    if key == "strata-pages" {
        // strata's page API: one page allocated and freed per pair.
        page_pairs(run.n);
        return;
    }
    #[cfg(feature = "strata")]
    if key == "floor" {
        // The least a per-CPU-cache design does (see `baseline::Floor`).
        let a = strata_bench::baseline::Floor;
        pairs(&a, run.layout, WARM_UP);
        pairs(&a, run.layout, black_box(n));
        return;
    }
    if key == "none" {
        // The loop and shims around an allocator that does nothing.
        let a = strata_bench::baseline::OneBlock::new();
        pairs(&a, run.layout, WARM_UP);
        pairs(&a, run.layout, black_box(n));
        return;
    }
    if !run.found {
        eprintln!("unknown allocator `{key}` (ir --list)");
        std::process::exit(64);
    }
}
