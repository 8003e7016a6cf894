//! The buddy page heap through the page API: physical limits, alignment,
//! foreign pointers and frees that race.

mod common;

use common::*;
use std::sync::Barrier;
use strata_alloc::{Heap, PageRequest, PhysAddr, PAGE_SIZE};

const MIB: usize = 1 << 20;
const PAGE: u64 = PAGE_SIZE as u64;

/// A heap for one CPU over `pages` pages of a fresh arena starting `skip`
/// pages after its 2 MiB-aligned base (so the region's first frame is
/// `skip` past a boundary aligned to 512 pages). Returns the arena, the
/// heap and the region's first address.
fn heap_at(skip: usize, pages: usize) -> (Arena, Box<Heap<TestCpu>>, u64) {
    let arena = Arena::new((skip + pages).next_multiple_of(512) * PAGE_SIZE);
    let range = arena.range(skip * PAGE_SIZE, pages * PAGE_SIZE);
    let heap = heap_over::<TestCpu>(1, &[range]);
    set_cpu(0);
    (arena, heap, range.start.as_u64())
}

/// Frees a run from `alloc_pages`.
fn free(heap: &Heap<TestCpu>, phys: PhysAddr, count: usize) {
    // SAFETY: the run is live with this length and nothing uses it.
    unsafe { heap.free_pages(phys, count) }
}

/// The run from `alloc_pages` of `count` pages below `limit`, checked to
/// end at or below it.
fn below(heap: &Heap<TestCpu>, count: usize, align: usize, limit: u64) -> Option<PhysAddr> {
    let req = PageRequest::new(count)
        .align(align)
        .below(PhysAddr::new(limit));
    let run = heap.alloc_pages(req)?;
    let start = run.phys.as_u64();
    assert!(
        start + count as u64 * PAGE <= limit,
        "{count} pages at {start:#x} end past the limit {limit:#x}"
    );
    assert_eq!(
        start % (align as u64 * PAGE),
        0,
        "not aligned to {align} pages"
    );
    Some(run.phys)
}

/// A region one page past a 512-page boundary starts with free blocks of
/// orders 0, 1 and 2. No block of order 2 ends three pages at or below page
/// 4; adjacent smaller blocks hold such a run.
#[test]
fn limited_run_is_assembled_from_smaller_blocks() {
    let (_arena, heap, base) = heap_at(1, 511);
    let start = heap.stats().free_pages();
    let limit = base + 4 * PAGE;
    let low = below(&heap, 3, 1, limit).expect("pages 1-3 are free below the limit");
    heap.check();
    assert_eq!(heap.stats().free_pages(), start - 3);
    free(&heap, low, 3);
    heap.check();
    assert_eq!(heap.stats().free_pages(), start);
}

/// The limit is inclusive of a run that ends exactly at it, through both
/// the block search and the assembled path; a page less is not enough.
#[test]
fn limit_edges() {
    // 1024 pages at a 512-page boundary: a free block of 512 pages at the
    // region's first page (the caches take a page at the top).
    let (_arena, heap, base) = heap_at(0, 1024);
    let start = heap.stats().free_pages();
    let exact = below(&heap, 4, 1, base + 4 * PAGE).expect("4 pages ending at the limit");
    assert_eq!(exact.as_u64(), base);
    free(&heap, exact, 4);
    assert_eq!(below(&heap, 4, 1, base + 3 * PAGE), None, "one page over");
    assert_eq!(
        below(&heap, 1, 1, base),
        None,
        "the limit at the first page"
    );
    assert_eq!(
        below(&heap, 1, 1, base - PAGE),
        None,
        "the limit below the region"
    );
    heap.check();
    assert_eq!(heap.stats().free_pages(), start);

    // A region one page past a boundary: page 0 is a block of order 0,
    // pages 1 and 2 one of order 1, pages 3 to 6 one of order 2.
    let (_arena, heap, base) = heap_at(1, 511);
    let start = heap.stats().free_pages();
    assert_eq!(below(&heap, 3, 1, base + 2 * PAGE), None, "one page over");
    let exact = below(&heap, 3, 1, base + 3 * PAGE).expect("3 pages ending at the limit");
    assert_eq!(exact.as_u64(), base, "assembled from pages 0 to 2");
    free(&heap, exact, 3);
    heap.check();
    assert_eq!(heap.stats().free_pages(), start);
}

/// The assembled path honours the alignment: the only run below the limit
/// that adjacent free blocks hold starts at an odd frame.
#[test]
fn assembled_limited_run_is_aligned() {
    let (_arena, heap, base) = heap_at(1, 511);
    let start = heap.stats().free_pages();
    // Take region pages 0 and 1 (frames 1 and 2): free are frame 3 (order
    // 0) and frames 4 to 7 (order 2).
    let one = below(&heap, 1, 1, base + PAGE).unwrap();
    assert_eq!(one.as_u64(), base);
    let two = below(&heap, 1, 1, base + 2 * PAGE).unwrap();
    assert_eq!(two.as_u64(), base + PAGE);
    let limit = base + 5 * PAGE;
    assert_eq!(below(&heap, 3, 2, limit), None, "frame 3 is odd");
    assert_eq!(below(&heap, 3, 4, limit), None, "frame 3 is odd");
    let odd = below(&heap, 3, 1, limit).expect("frames 3 to 5");
    assert_eq!(odd.as_u64(), base + 2 * PAGE);
    free(&heap, odd, 3);
    free(&heap, two, 1);
    free(&heap, one, 1);
    heap.check();
    assert_eq!(heap.stats().free_pages(), start);
}

/// A region that lies wholly above the limit is skipped; one that ends at
/// the limit serves it.
#[test]
fn regions_above_the_limit_are_skipped() {
    let (a, b) = (Arena::new(MIB), Arena::new(MIB));
    let (low, high) = if a.base() < b.base() { (a, b) } else { (b, a) };
    let heap = heap_over::<TestCpu>(1, &[high.whole(), low.whole()]);
    set_cpu(0);
    let start = heap.stats().free_pages();
    let low_end = (low.base() + low.len()) as u64;
    let run = below(&heap, 4, 1, low_end).expect("the lower region serves it");
    assert!(low.contains(run.as_u64() as usize, 4 * PAGE_SIZE));
    let base = low.base() as u64;
    assert_eq!(below(&heap, 4, 1, base + 3 * PAGE), None);
    assert_eq!(below(&heap, 1, 1, base), None);
    free(&heap, run, 4);
    heap.check();
    assert_eq!(heap.stats().free_pages(), start);
}

/// The page just past a region's managed pages is its first metadata page:
/// not a page of the heap.
#[test]
#[should_panic(expected = "not a live page run (Foreign)")]
fn free_of_the_page_past_the_managed_pages_is_foreign() {
    let (_arena, heap, base) = heap_at(0, 1024);
    let managed = heap.stats().pages.managed_pages;
    assert_eq!(managed, 1020);
    free(&heap, PhysAddr::new(base + managed * PAGE), 1);
}

/// The text of a panic payload.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

/// Two threads free one run at once: whichever comes second panics, either
/// at the lock-free check or (when both pass it) at the page heap's check
/// under its lock, and the heap stays intact.
#[test]
fn a_run_freed_by_two_threads_at_once_is_caught() {
    let (_arena, heap, _) = heap_at(0, 1024);
    let start = heap.stats().free_pages();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut under_lock = 0;
    for i in 0..1000 {
        let n = [2, 3, 5, 8, 300][i % 5];
        let run = heap.alloc_pages(PageRequest::new(n)).unwrap();
        let barrier = Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|cpu| {
                    let (heap, barrier) = (&heap, &barrier);
                    s.spawn(move || {
                        set_cpu(cpu);
                        barrier.wait();
                        free(heap, run.phys, n);
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join()).collect()
        });
        let panics: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(panic_text))
            .collect();
        assert_eq!(panics.len(), 1, "{n} pages: {panics:?}");
        let text = &panics[0];
        let addr = format!("{:#x}", run.phys.as_u64());
        assert!(
            text.starts_with("strata: free") && text.contains(&addr),
            "{text}"
        );
        if text.contains("under its lock") {
            under_lock += 1;
        }
        heap.check();
        assert_eq!(heap.stats().free_pages(), start, "{n} pages");
    }
    std::panic::set_hook(hook);
    eprintln!("{under_lock} of 1000 second frees were caught under the lock");
}
