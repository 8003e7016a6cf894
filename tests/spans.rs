//! Spans and central lists through the public API: double frees caught
//! when objects return to their spans, fallback spans, the empty-span
//! reserve and reclaim.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout};
use strata_alloc::size_class::SizeClass;
use strata_alloc::{Heap, PageRequest, PAGE_SIZE};

const MIB: usize = 1 << 20;

/// A one-region heap of `bytes` with the default flags, one CPU, used from
/// CPU 0.
fn heap_of(bytes: usize) -> (Arena, Box<Heap<TestCpu>>) {
    let arena = Arena::new(bytes);
    let heap = heap_over::<TestCpu>(1, &[arena.whole()]);
    set_cpu(0);
    (arena, heap)
}

/// A CPU id without a cache (the heaps here have one CPU): its allocations
/// and frees take the central path one object at a time, so every free
/// returns the object to its span at once and every allocation carves or
/// pops exactly one.
const UNCACHED: usize = 1;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn class(size: usize) -> SizeClass {
    SizeClass::for_size(size).unwrap()
}

fn alloc(heap: &Heap<TestCpu>, layout: Layout) -> *mut u8 {
    // SAFETY: every layout used here has a non-zero size.
    let p = unsafe { heap.alloc(layout) };
    assert!(!p.is_null(), "out of memory for {layout:?}");
    p
}

fn free(heap: &Heap<TestCpu>, p: *mut u8, layout: Layout) {
    // SAFETY: the tests free blocks of this heap with their layout (twice
    // where a test says so: that is what is being tested).
    unsafe { heap.dealloc(p, layout) }
}

/// A double free of an object that is back in its span, with the default
/// flags: the second return to the span panics. Before the check, the
/// span's count went to 0, the span was reset, and the next allocation
/// returned `keep` while it was live.
#[test]
#[should_panic(expected = "strata: double free of")]
fn double_free_back_in_span_panics() {
    let (_arena, heap) = heap_of(4 * MIB);
    let l = Layout::from_size_align(64, 8).unwrap();
    let keep = alloc(&heap, l);
    let p = alloc(&heap, l);
    free(&heap, p, l);
    heap.drain_cpu(0);
    free(&heap, p, l);
    heap.drain_cpu(0);
    // Without the check: the span looks empty, and `keep` comes back.
    let q = alloc(&heap, l);
    assert_ne!(q, keep, "a live object was handed out again");
}

/// The same double free with both copies flushed in one batch (a CPU cache
/// full of its frees): the second push of the batch panics.
#[test]
#[should_panic(expected = "strata: double free of")]
fn double_free_in_one_flush_panics() {
    let (_arena, heap) = heap_of(4 * MIB);
    let l = layout(64);
    let keep = alloc(&heap, l);
    let p = alloc(&heap, l);
    free(&heap, p, l);
    free(&heap, p, l);
    heap.drain_cpu(0);
    free(&heap, keep, l);
}

/// A double free through the central path (no CPU cache): the second
/// `dealloc` itself panics.
#[test]
#[should_panic(expected = "strata: double free of")]
fn double_free_uncached_panics() {
    let (_arena, heap) = heap_of(4 * MIB);
    set_cpu(UNCACHED);
    let l = layout(256);
    let _keep = alloc(&heap, l);
    let p = alloc(&heap, l);
    free(&heap, p, l);
    free(&heap, p, l);
}

/// The check holds in a span that was retired to the page heap and made
/// again at the same pages (and in the reset spans of the reserve).
#[test]
#[should_panic(expected = "strata: double free of")]
fn double_free_in_remade_span_panics() {
    let (_arena, heap) = heap_of(4 * MIB);
    set_cpu(UNCACHED);
    let l = layout(64);
    let per_span = class(64).info().objects as usize;
    // Three spans' worth: the reserve keeps two when they empty, the third
    // goes back to the page heap.
    let all: Vec<_> = (0..3 * per_span).map(|_| alloc(&heap, l)).collect();
    for &p in &all {
        free(&heap, p, l);
    }
    assert_eq!(heap.stats().classes[class(64).index()].spans, 2);
    // Use every object again: the reserve's spans and a span made again.
    let mut again: Vec<_> = (0..3 * per_span).map(|_| alloc(&heap, l)).collect();
    let mut before = all.clone();
    before.sort();
    again.sort();
    assert_eq!(before, again, "the third span is made at the same pages");
    // The spans emptied in order: the third, retired, held these objects.
    let x = all[2 * per_span + 1];
    free(&heap, x, l);
    free(&heap, x, l);
}

/// User data equal to an object's check word is not a double free: the
/// push walks the free list, does not find the object and goes on.
#[test]
fn check_word_in_user_data_is_not_a_double_free() {
    let (_arena, heap) = heap_of(4 * MIB);
    set_cpu(UNCACHED);
    let l = layout(64);
    let keep = alloc(&heap, l);
    let p = alloc(&heap, l);
    free(&heap, p, l);
    // The first word of the free object: its link and check word.
    // SAFETY: host memory of the arena, 8-byte aligned; nothing else runs.
    let word = unsafe { (p as *const u64).read() };
    let q = alloc(&heap, l);
    assert_eq!(q, p);
    // SAFETY: q is live, 64 bytes.
    unsafe { (q as *mut u64).write(word) };
    free(&heap, q, l);
    let r = alloc(&heap, l);
    assert_eq!(r, p);
    free(&heap, r, l);
    free(&heap, keep, l);
    assert_eq!(heap.stats().small_objects_in_use(), 0);
}

/// An object handed out again after its span was reset carries no check
/// word: carving an object clears its first word, so frees of objects
/// carved afresh never walk the free list.
#[test]
fn reset_span_clears_check_words() {
    let (_arena, heap) = heap_of(4 * MIB);
    set_cpu(UNCACHED);
    let l = layout(64);
    let p = alloc(&heap, l);
    let q = alloc(&heap, l);
    free(&heap, q, l);
    // SAFETY: host memory of the arena, 8-byte aligned; nothing else runs.
    let word = |x: *mut u8| unsafe { (x as *const u64).read() };
    assert_ne!(word(q), 0, "a free object holds its link and check word");
    free(&heap, p, l);
    let c = heap.stats().classes[class(64).index()];
    assert_eq!((c.spans, c.empty_spans), (1, 1), "the span is kept, reset");
    assert_ne!(word(p), 0, "p is free: it holds its link and check word");
    let again = [alloc(&heap, l), alloc(&heap, l)];
    assert_eq!(
        again,
        [p, q],
        "a reset span carves from its first object again"
    );
    assert_eq!(word(p), 0, "carving cleared p's check word");
    assert_eq!(word(q), 0, "carving cleared q's check word");
    free(&heap, p, l);
    free(&heap, q, l);
}

/// A free of an object of a live span that was never handed out panics,
/// even though other objects of the span are out.
#[test]
#[should_panic(expected = "was never allocated")]
fn free_of_never_carved_object_panics() {
    let (_arena, heap) = heap_of(4 * MIB);
    set_cpu(UNCACHED);
    let l = layout(64);
    let p = alloc(&heap, l);
    // The next object of the span: carved by nobody yet.
    let next = p.wrapping_add(64);
    free(&heap, next, l);
}

/// A free into a span none of whose objects is out (emptied and reset)
/// panics as never allocated, before any count goes below zero.
#[test]
#[should_panic(expected = "was never allocated")]
fn free_into_empty_span_panics() {
    let (_arena, heap) = heap_of(4 * MIB);
    set_cpu(UNCACHED);
    let l = layout(64);
    let p = alloc(&heap, l);
    free(&heap, p, l);
    assert_eq!(heap.stats().classes[class(64).index()].empty_spans, 1);
    free(&heap, p, l);
}

/// Fills the page heap with 2-page runs, then frees every other one: only
/// 2-page blocks (whose buddies are taken) and single pages stay free.
/// Returns the runs still held.
fn fragment_into_two_page_blocks(heap: &Heap<TestCpu>) -> Vec<strata_alloc::PageAllocation> {
    let mut runs = Vec::new();
    while let Some(run) = heap.alloc_pages(PageRequest::new(2)) {
        runs.push(run);
    }
    let mut held = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        if i % 2 == 0 {
            // SAFETY: the run was allocated above and is not used.
            unsafe { heap.free_pages(run.phys, run.count) };
        } else {
            held.push(run);
        }
    }
    let blocks = heap.stats().pages.free_blocks;
    assert!(blocks[1] > 0, "2-page blocks are free: {blocks:?}");
    assert!(blocks[2..].iter().all(|&b| b == 0), "{blocks:?}");
    held
}

/// With only 2-page blocks free, a 4352-byte class (own span 16 pages)
/// makes fallback spans of 2 pages; an empty fallback span goes back to
/// the page heap at once, reserve or not.
#[test]
fn fallback_span_of_two_pages_when_heap_is_fragmented() {
    let (_arena, heap) = heap_of(4 * MIB);
    set_cpu(UNCACHED);
    let size = 4352;
    let c = class(size);
    assert!(c.info().span_order > 1);
    assert_eq!(c.fallback().span_order, 1);
    let held = fragment_into_two_page_blocks(&heap);
    let free_before = heap.stats().free_pages();
    let l = layout(size);
    let p = alloc(&heap, l);
    fill(p, size, 7);
    let q = alloc(&heap, l);
    fill(q, size, 8);
    assert_ne!(p, q);
    let s = heap.stats();
    let st = s.classes[c.index()];
    assert_eq!((st.spans, st.span_pages, st.objects_out), (2, 4, 2));
    assert_eq!(s.free_pages(), free_before - 4);
    verify(p, size, 7);
    verify(q, size, 8);
    free(&heap, p, l);
    free(&heap, q, l);
    let st = heap.stats().classes[c.index()];
    assert_eq!((st.spans, st.span_pages, st.empty_spans), (0, 0, 0));
    assert_eq!(heap.stats().free_pages(), free_before);
    for run in held {
        // SAFETY: allocated above, not used.
        unsafe { heap.free_pages(run.phys, run.count) };
    }
}

/// Allocates `spans` spans' worth of objects of `size` through the central
/// path, frees them all (no reclaim), and checks that the class keeps
/// exactly `kept` empty spans and the page heap got the rest back.
fn empty_spans_beyond_reserve_go_back(size: usize, spans: usize, kept: u32) {
    let (_arena, heap) = heap_of(8 * MIB);
    set_cpu(UNCACHED);
    let c = class(size);
    let pages = 1u64 << c.info().span_order;
    let l = layout(size);
    let free_before = heap.stats().free_pages();
    let objs: Vec<_> = (0..spans * c.info().objects as usize)
        .map(|_| alloc(&heap, l))
        .collect();
    let st = heap.stats().classes[c.index()];
    assert_eq!(
        (st.spans, st.span_pages),
        (spans as u32, spans as u64 * pages)
    );
    assert_eq!(
        heap.stats().free_pages(),
        free_before - spans as u64 * pages
    );
    for &p in &objs {
        free(&heap, p, l);
    }
    let s = heap.stats();
    let st = s.classes[c.index()];
    assert_eq!(
        (st.spans, st.empty_spans, st.span_pages, st.objects_out),
        (kept, kept, kept as u64 * pages, 0)
    );
    assert_eq!(s.free_pages(), free_before - kept as u64 * pages);
    // Reclaim gives back exactly the reserve's pages.
    assert_eq!(heap.reclaim(), kept as u64 * pages);
    assert_eq!(heap.stats().free_pages(), free_before);
    assert_eq!(heap.stats().classes[c.index()].spans, 0);
    assert_eq!(heap.reclaim(), 0);
}

/// One-page spans: two empty spans are kept, the others go back.
#[test]
fn empty_one_page_spans_beyond_two_go_back() {
    assert_eq!(class(64).info().span_order, 0);
    empty_spans_beyond_reserve_go_back(64, 5, 2);
}

/// Larger spans: one empty span is kept, the others go back.
#[test]
fn empty_larger_spans_beyond_one_go_back() {
    assert_eq!(class(1024).info().span_order, 3);
    empty_spans_beyond_reserve_go_back(1024, 4, 1);
}

/// `Heap::reclaim` returns the pages of every class's empty spans, summed.
#[test]
fn reclaim_returns_exact_page_count() {
    let (_arena, heap) = heap_of(8 * MIB);
    set_cpu(UNCACHED);
    let free_before = heap.stats().free_pages();
    let mut expected = 0;
    for (size, spans) in [(64, 3), (1024, 2), (4096, 1)] {
        let c = class(size);
        let l = layout(size);
        let objs: Vec<_> = (0..spans * c.info().objects as usize)
            .map(|_| alloc(&heap, l))
            .collect();
        for p in objs {
            free(&heap, p, l);
        }
        let st = heap.stats().classes[c.index()];
        assert!(st.empty_spans > 0);
        expected += st.span_pages;
    }
    assert_eq!(expected, 2 + 8 + 16);
    assert_eq!(heap.reclaim(), expected);
    assert_eq!(heap.stats().free_pages(), free_before);
    assert_eq!(heap.stats().span_pages(), 0);
}

/// A page-sized workload through the CPU cache still settles: every page
/// back after drain and reclaim.
#[test]
fn cached_churn_settles() {
    let (_arena, heap) = heap_of(8 * MIB);
    let free_before = heap.stats().free_pages();
    let mut rng = Rng(5);
    let mut live = Vec::new();
    for i in 0..20_000u64 {
        if rng.below(2) == 0 || live.is_empty() {
            let size = rng.log_uniform(8, 2 * PAGE_SIZE);
            let p = alloc(&heap, layout(size));
            fill(p, size, i);
            live.push((p, size, i));
        } else {
            let (p, size, seed) = live.swap_remove(rng.below(live.len() as u64) as usize);
            verify(p, size, seed);
            free(&heap, p, layout(size));
        }
    }
    for (p, size, seed) in live {
        verify(p, size, seed);
        free(&heap, p, layout(size));
    }
    heap.drain_cpu(0);
    heap.reclaim();
    assert_eq!(heap.stats().free_pages(), free_before);
}
