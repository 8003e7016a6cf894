//! Debug flags, the early heap and growth on demand.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use strata_alloc::{DebugFlags, Heap, PhysRange};

const MIB: usize = 1 << 20;

fn debug_heap(flags: DebugFlags) -> (Arena, Box<Heap<TestCpu>>) {
    let arena = Arena::new(8 * MIB);
    let heap = Box::new(Heap::<TestCpu>::with_debug(flags));
    // SAFETY: the arena outlives the heap and is used by nothing else.
    unsafe { heap.init(0, 2, &[arena.whole()]) }.unwrap();
    set_cpu(0);
    (arena, heap)
}

/// Random allocations and frees, contents checked, spread over CPU ids
/// `0..cpus`; everything is freed at the end.
fn churn(
    heap: &Heap<TestCpu>,
    arena: &Arena,
    seed: u64,
    ops: usize,
    max_size: usize,
    max_align_log2: u64,
    cpus: usize,
) {
    let mut rng = Rng(seed);
    let mut live = Vec::new();
    for i in 0..ops {
        set_cpu(i % cpus);
        if rng.below(2) == 0 || live.is_empty() {
            let align = 1 << rng.below(max_align_log2 + 1);
            let l = Layout::from_size_align(rng.log_uniform(1, max_size), align).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { heap.alloc(l) };
            assert!(arena.contains(p as usize, l.size()));
            fill(p, l.size(), i as u64);
            live.push((p, l, i as u64));
        } else {
            let (p, l, seed) = live.swap_remove(rng.below(live.len() as u64) as usize);
            verify(p, l.size(), seed);
            // SAFETY: live.
            unsafe { heap.dealloc(p, l) };
        }
    }
    for (p, l, seed) in live {
        verify(p, l.size(), seed);
        // SAFETY: live.
        unsafe { heap.dealloc(p, l) };
    }
    set_cpu(0);
}

#[test]
fn debug_heap_runs_a_clean_workload() {
    let (arena, heap) = debug_heap(DebugFlags::all());
    let start = heap.stats().free_pages();
    churn(&heap, &arena, 3, 20_000, 40_000, 5, 3);
    heap.drain_cpu(0);
    heap.drain_cpu(1);
    heap.reclaim();
    assert_eq!(heap.stats().free_pages(), start);
}

#[test]
#[should_panic(expected = "write after free: byte 40 of the free 48-byte object")]
fn poison_catches_a_write_after_free() {
    let (_a, heap) = debug_heap(DebugFlags::POISON);
    let l = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: deliberately writes to a freed block; the heap must report it
    // when the block is handed out again.
    unsafe {
        let p = heap.alloc(l);
        heap.dealloc(p, l);
        p.add(40).write(1);
        let _ = heap.alloc(l);
    }
}

#[test]
#[should_panic(expected = "overflow past the end of the 20-byte block")]
fn canary_catches_an_overflow() {
    let (_a, heap) = debug_heap(DebugFlags::CANARY);
    let l = Layout::from_size_align(20, 4).unwrap();
    // SAFETY: deliberately writes one byte past the block (into its slack).
    unsafe {
        let p = heap.alloc(l);
        p.add(20).write(0);
        heap.dealloc(p, l);
    }
}

#[test]
#[should_panic(expected = "overflow past the end of the 20000-byte block")]
fn canary_catches_an_overflow_of_a_page_run() {
    let (_a, heap) = debug_heap(DebugFlags::CANARY);
    let l = Layout::from_size_align(20_000, 8).unwrap();
    // SAFETY: deliberately writes past the block (into its last page).
    unsafe {
        let p = heap.alloc(l);
        p.add(20_003).write(7);
        heap.dealloc(p, l);
    }
}

#[test]
#[should_panic(expected = "double free of")]
fn double_free_in_the_cpu_cache() {
    let (_a, heap) = debug_heap(DebugFlags::DOUBLE_FREE);
    let l = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: deliberately freed twice.
    unsafe {
        let p = heap.alloc(l);
        heap.dealloc(p, l);
        heap.dealloc(p, l);
    }
}

#[test]
#[should_panic(expected = "double free of")]
fn double_free_back_in_its_span() {
    let (_a, heap) = debug_heap(DebugFlags::DOUBLE_FREE);
    let l = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: deliberately freed twice, the first time from another CPU and
    // then drained, so the object is back on its span's free list.
    unsafe {
        let keep = heap.alloc(l);
        let p = heap.alloc(l);
        set_cpu(1);
        heap.dealloc(p, l);
        heap.drain_cpu(1);
        set_cpu(0);
        heap.dealloc(p, l);
        heap.dealloc(keep, l);
    }
}

#[test]
fn early_blocks_are_served_before_init_and_freed_after() {
    static mut ARENA: [MaybeUninit<u8>; 64 * 1024] = [MaybeUninit::uninit(); 64 * 1024];
    let arena = Arena::new(8 * MIB);
    let heap = Box::new(Heap::<TestCpu>::new());
    set_cpu(0);
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: non-zero size; nothing is there yet.
    assert!(
        unsafe { heap.alloc(l) }.is_null(),
        "no memory before init_early"
    );
    // SAFETY: the static is handed over once, here, and never used otherwise.
    assert!(heap.init_early(unsafe { &mut *std::ptr::addr_of_mut!(ARENA) }));
    let mut early = Vec::new();
    for i in 0..50usize {
        let l = Layout::from_size_align(16 + i * 30, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(l) };
        assert!(!p.is_null());
        fill(p, l.size(), i as u64);
        early.push((p, l, i as u64));
    }
    let big = Layout::from_size_align(20_000, 16).unwrap();
    // SAFETY: non-zero size.
    let b = unsafe { heap.alloc(big) };
    assert!(!b.is_null() && b as usize % 16 == 0);
    assert!(heap.early_bytes_in_use() > 20_000);
    // SAFETY: the arena outlives the heap.
    unsafe { heap.init(0, 1, &[arena.whole()]) }.unwrap();
    // New blocks come from the heap proper.
    // SAFETY: non-zero size.
    let p = unsafe { heap.alloc(l) };
    assert!(arena.contains(p as usize, 100));
    // Early blocks are freed, and reallocated into the main heap.
    let (q, ql, qs) = early.pop().unwrap();
    // SAFETY: live early block.
    let moved = unsafe { heap.realloc(q, ql, 3000) };
    assert!(arena.contains(moved as usize, 3000));
    verify(moved, ql.size(), qs);
    for (p, l, seed) in early {
        verify(p, l.size(), seed);
        // SAFETY: live early blocks.
        unsafe { heap.dealloc(p, l) };
    }
    // SAFETY: live blocks.
    unsafe {
        heap.dealloc(b, big);
        heap.dealloc(p, l);
        heap.dealloc(moved, Layout::from_size_align(3000, 8).unwrap());
    }
    assert_eq!(heap.early_bytes_in_use(), 0);
}

static SPARE: AtomicUsize = AtomicUsize::new(0);
static GROWTHS: AtomicUsize = AtomicUsize::new(0);

fn grow(heap: &Heap<TestCpu>, layout: Layout) -> bool {
    let spare = SPARE.swap(0, Ordering::SeqCst);
    if spare == 0 {
        return false;
    }
    GROWTHS.fetch_add(1, Ordering::SeqCst);
    assert!(layout.size() > 0);
    let range = PhysRange::new(
        strata_alloc::PhysAddr::new(spare as u64),
        strata_alloc::PhysAddr::new((spare + 16 * MIB) as u64),
    );
    // SAFETY: the spare arena is leaked, unused, and handed over once.
    unsafe { heap.add_region(range) }.is_ok()
}

#[test]
fn a_small_heap_grows_on_demand() {
    let small = Arena::new(4 * MIB);
    let spare = Box::leak(Box::new(Arena::new(16 * MIB)));
    SPARE.store(spare.base(), Ordering::SeqCst);
    let heap = heap_over::<TestCpu>(1, &[small.whole()]);
    heap.set_grow_handler(grow);
    set_cpu(0);
    let l = Layout::from_size_align(1000, 8).unwrap();
    let mut blocks = Vec::new();
    // 12 MiB of objects do not fit in 4 MiB: the heap must grow once.
    for i in 0..12_000u64 {
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(l) };
        assert!(!p.is_null(), "allocation {i} failed after growing");
        fill(p, 1000, i);
        blocks.push((p, i));
    }
    assert_eq!(GROWTHS.load(Ordering::SeqCst), 1);
    assert_eq!(heap.regions().count(), 2);
    // With the spare used up, the handler says no and allocation fails.
    let big = Layout::from_size_align(64 * MIB, 4096).unwrap();
    // SAFETY: non-zero size.
    assert!(unsafe { heap.alloc(big) }.is_null());
    for (p, seed) in blocks {
        verify(p, 1000, seed);
        // SAFETY: live.
        unsafe { heap.dealloc(p, l) };
    }
}

#[test]
fn a_heap_without_checked_frees_still_works_and_frees_early_blocks() {
    static mut EARLY: [MaybeUninit<u8>; 16 * 1024] = [MaybeUninit::uninit(); 16 * 1024];
    let arena = Arena::new(8 * MIB);
    let heap = Box::new(Heap::<TestCpu>::with_debug(DebugFlags::empty()));
    set_cpu(0);
    // SAFETY: the static is handed over once, here, and never used otherwise.
    assert!(heap.init_early(unsafe { &mut *std::ptr::addr_of_mut!(EARLY) }));
    let l = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: non-zero size.
    let early = unsafe { heap.alloc(l) };
    // SAFETY: the arena outlives the heap.
    unsafe { heap.init(0, 1, &[arena.whole()]) }.unwrap();
    let start = heap.stats().free_pages();
    churn(&heap, &arena, 11, 5000, 30_000, 3, 1);
    // The early block goes back to the early arena, not into a CPU cache.
    // SAFETY: live early block.
    unsafe { heap.dealloc(early, l) };
    assert_eq!(heap.early_bytes_in_use(), 0);
    heap.drain_cpu(0);
    heap.reclaim();
    assert_eq!(heap.stats().free_pages(), start);
}
