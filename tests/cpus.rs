//! Host threads as CPUs: the per-CPU caches under concurrency, re-entry and
//! out-of-range ids.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use strata_alloc::{Heap, Platform};

const MIB: usize = 1 << 20;

struct Block(*mut u8, Layout, u64);
// SAFETY: a block is plain memory owned by whoever holds the Block.
unsafe impl Send for Block {}

fn drain_all<P: Platform>(heap: &Heap<P>, cpus: usize) {
    for cpu in 0..cpus {
        assert!(heap.drain_cpu(cpu).is_drained());
    }
    heap.reclaim();
    heap.check();
}

#[test]
fn threads_with_cross_cpu_frees() {
    const THREADS: usize = 4;
    let arena = Arena::new(128 * MIB);
    let heap = heap_over::<TestCpu>(THREADS, &[arena.whole()]);
    let start = heap.stats().free_pages();
    let heap = &*heap;
    std::thread::scope(|s| {
        // Thread i sends some of its blocks to thread (i + 1) % THREADS,
        // which checks and frees them.
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
        for (cpu, rx) in rxs.into_iter().enumerate() {
            let tx = txs[(cpu + 1) % THREADS].clone();
            s.spawn(move || {
                set_cpu(cpu);
                let mut rng = Rng(cpu as u64 * 7919 + 1);
                let mut live = Vec::new();
                for i in 0..40_000 {
                    let size = rng.log_uniform(1, 40_000);
                    let layout = Layout::from_size_align(size, 1 << rng.below(5)).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { heap.alloc(layout) };
                    assert!(!p.is_null());
                    let seed = rng.next();
                    fill(p, size, seed);
                    let b = Block(p, layout, seed);
                    match rng.below(3) {
                        0 => tx.send(b).unwrap(),
                        _ => live.push(b),
                    }
                    if live.len() > 300 || i % 97 == 0 {
                        while let Some(Block(p, l, seed)) = live.pop() {
                            verify(p, l.size(), seed);
                            // SAFETY: live with this layout.
                            unsafe { heap.dealloc(p, l) };
                            if rng.below(2) == 0 {
                                break;
                            }
                        }
                    }
                    while let Ok(Block(p, l, seed)) = rx.try_recv() {
                        verify(p, l.size(), seed);
                        // SAFETY: live, sent by its owner.
                        unsafe { heap.dealloc(p, l) };
                    }
                }
                drop(tx);
                for Block(p, l, seed) in live {
                    verify(p, l.size(), seed);
                    // SAFETY: live.
                    unsafe { heap.dealloc(p, l) };
                }
                // Blocks still in flight to this thread.
                for Block(p, l, seed) in rx {
                    verify(p, l.size(), seed);
                    // SAFETY: live.
                    unsafe { heap.dealloc(p, l) };
                }
            });
        }
        drop(txs);
    });
    let s = heap.stats();
    assert!(s.per_cpu[..THREADS].iter().all(|c| c.hits > 10_000), "{s}");
    assert_eq!(s.small_objects_in_use(), 0, "{s}");
    drain_all(heap, THREADS);
    assert_eq!(heap.stats().free_pages(), start, "{}", heap.stats());
}

#[test]
fn ids_out_of_range_use_the_shared_path() {
    let arena = Arena::new(16 * MIB);
    let heap = heap_over::<TestCpu>(2, &[arena.whole()]);
    let start = heap.stats().free_pages();
    set_cpu(usize::MAX);
    let mut blocks = Vec::new();
    for i in 0..5000 {
        let l = Layout::from_size_align(8 + i % 3000, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(l) };
        assert!(!p.is_null());
        fill(p, l.size(), i as u64);
        blocks.push((p, l, i as u64));
    }
    set_cpu(2);
    for (p, l, seed) in blocks {
        verify(p, l.size(), seed);
        // SAFETY: live.
        unsafe { heap.dealloc(p, l) };
    }
    let s = heap.stats();
    assert_eq!(s.per_cpu[0].hits + s.per_cpu[1].hits, 0, "{s}");
    assert_eq!(s.cached_objects, 0);
    assert_eq!(heap.drain_cpu(2), strata_alloc::Drain::NoCache);
    heap.reclaim();
    assert_eq!(heap.stats().free_pages(), start);
}

// ---- re-entry: an "interrupt" inside the fast path ---------------------------

static REENTRANT: Heap<Interrupting> = Heap::new();
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    static TICK: Cell<u32> = const { Cell::new(0) };
}

/// A platform that "takes an interrupt" every third time a cache is claimed:
/// the handler allocates and frees through the same heap on the same CPU
/// while the interrupted operation holds the cache.
struct Interrupting;

impl Platform for Interrupting {
    type IrqGuard = ();
    const NON_PREEMPTIVE: bool = true;
    fn cpu_id() -> usize {
        0
    }
    fn disable_interrupts() {}
    fn cache_claimed() {
        let tick = TICK.with(|t| {
            t.set(t.get() + 1);
            t.get()
        });
        if tick % 3 != 0 || IN_HANDLER.with(|h| h.replace(true)) {
            return;
        }
        INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        let mut held = Vec::with_capacity(0);
        for (i, size) in [16usize, 64, 200, 1000, 4000].into_iter().enumerate() {
            let l = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { REENTRANT.alloc(l) };
            assert!(!p.is_null());
            fill(p, size, i as u64 + 1000);
            held.push((p, l, i as u64 + 1000));
        }
        for (p, l, seed) in held.drain(..) {
            verify(p, l.size(), seed);
            // SAFETY: live.
            unsafe { REENTRANT.dealloc(p, l) };
        }
        IN_HANDLER.with(|h| h.set(false));
    }
}

#[test]
fn reentry_takes_the_central_path_and_corrupts_nothing() {
    let arena = Box::leak(Box::new(Arena::new(32 * MIB)));
    // SAFETY: the leaked arena lives forever and is used by this heap only.
    unsafe { REENTRANT.init(0, 1, &[arena.whole()]) }.unwrap();
    let start = REENTRANT.stats().free_pages();
    let mut rng = Rng(42);
    let mut live = Live::default();
    let mut blocks = Vec::new();
    for _ in 0..20_000 {
        if rng.below(2) == 0 || blocks.is_empty() {
            let l = Layout::from_size_align(rng.log_uniform(1, 8000), 8).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { REENTRANT.alloc(l) };
            let seed = rng.next();
            live.insert(p, l, seed);
            fill(p, l.size(), seed);
            blocks.push((p, l, seed));
        } else {
            let (p, l, seed) = blocks.swap_remove(rng.below(blocks.len() as u64) as usize);
            verify(p, l.size(), seed);
            live.remove(p);
            // SAFETY: live.
            unsafe { REENTRANT.dealloc(p, l) };
        }
    }
    let s = REENTRANT.stats();
    let interrupts = INTERRUPTS.load(Ordering::Relaxed);
    assert!(interrupts > 1000);
    // Every allocation and free inside a handler found the cache claimed.
    assert_eq!(s.per_cpu[0].fallbacks, interrupts * 10, "{s}");
    for (p, l, seed) in blocks {
        verify(p, l.size(), seed);
        // SAFETY: live.
        unsafe { REENTRANT.dealloc(p, l) };
    }
    drain_all(&REENTRANT, 1);
    assert_eq!(REENTRANT.stats().free_pages(), start);
}

#[test]
fn host_threads_platform() {
    let arena = Arena::new(32 * MIB);
    let heap = heap_over::<strata_alloc::ThreadCpus>(64, &[arena.whole()]);
    let start = heap.stats().free_pages();
    let heap = &*heap;
    std::thread::scope(|s| {
        for t in 0..3u64 {
            s.spawn(move || {
                let mut v = Vec::new();
                for i in 0..10_000u64 {
                    let l = Layout::from_size_align(1 + (i as usize * 13) % 500, 8).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { heap.alloc(l) };
                    assert!(!p.is_null());
                    fill(p, l.size(), i ^ t);
                    v.push((p, l, i ^ t));
                }
                for (p, l, seed) in v {
                    verify(p, l.size(), seed);
                    // SAFETY: live.
                    unsafe { heap.dealloc(p, l) };
                }
            });
        }
    });
    let s = heap.stats();
    assert!(s.per_cpu.iter().filter(|c| c.hits > 0).count() >= 3, "{s}");
    drain_all(heap, 64);
    assert_eq!(heap.stats().free_pages(), start);
}
