//! Whole-heap behaviour through `GlobalAlloc` and the page API.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout};
use strata_alloc::{Heap, HeapError, PageRequest, PhysAddr, PhysRange, PAGE_SIZE};

const MIB: usize = 1 << 20;

/// A heap for `cpus` CPUs over one fresh arena of `bytes`, used from
/// CPU 0.
fn heap_of(bytes: usize, cpus: usize) -> (Arena, Box<Heap<TestCpu>>) {
    let arena = Arena::new(bytes);
    let heap = heap_over::<TestCpu>(cpus, &[arena.whole()]);
    set_cpu(0);
    (arena, heap)
}

/// Frees everything cached and reclaims: afterwards every page not used by a
/// live block is back in the page heap.
fn settle(heap: &Heap<TestCpu>, cpus: usize) {
    for cpu in 0..cpus {
        heap.drain_cpu(cpu);
    }
    heap.reclaim();
    heap.check();
}

/// A random sequence of alloc / dealloc / realloc against a model.
fn random_sequence(heap: &Heap<TestCpu>, arena: &Arena, seed: u64, ops: usize, max_size: usize) {
    let mut rng = Rng(seed);
    let mut live: Vec<(*mut u8, Layout, u64)> = Vec::new();
    let mut model = Live::default();
    for op in 0..ops {
        let r = rng.below(100);
        if r < 50 || live.is_empty() {
            let size = rng.log_uniform(1, max_size);
            let bits = if rng.below(10) == 0 { 22 } else { 5 };
            let align = 1usize << rng.below(bits);
            let align = align.min(2 * MIB);
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { heap.alloc(layout) };
            if p.is_null() {
                continue;
            }
            assert!(arena.contains(p as usize, size), "{p:p} outside the arena");
            let s = rng.next();
            model.insert(p, layout, s);
            fill(p, size, s);
            live.push((p, layout, s));
        } else if r < 80 {
            let i = rng.below(live.len() as u64) as usize;
            let (p, layout, s) = live.swap_remove(i);
            verify(p, layout.size(), s);
            model.remove(p);
            // SAFETY: p is live with this layout.
            unsafe { heap.dealloc(p, layout) };
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let (p, layout, s) = live[i];
            let new_size = rng.log_uniform(1, max_size);
            verify(p, layout.size(), s);
            model.remove(p);
            // SAFETY: p is live with this layout; new_size is non-zero.
            let q = unsafe { heap.realloc(p, layout, new_size) };
            if q.is_null() {
                model.insert(p, layout, s);
                continue;
            }
            let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
            verify(q, layout.size().min(new_size).min(PAGE_SIZE), s);
            let s2 = rng.next();
            model.insert(q, new_layout, s2);
            fill(q, new_size, s2);
            live[i] = (q, new_layout, s2);
        }
        if op % 4096 == 0 {
            heap.check();
        }
    }
    for (p, layout, s) in live {
        verify(p, layout.size(), s);
        // SAFETY: p is live with this layout.
        unsafe { heap.dealloc(p, layout) };
    }
}

#[test]
fn random_sequences_return_every_page() {
    let (arena, heap) = heap_of(256 * MIB, 2);
    let start = heap.stats().free_pages();
    random_sequence(&heap, &arena, 0x5eed, 30_000, 8 * MIB);
    settle(&heap, 2);
    let s = heap.stats();
    assert_eq!(s.free_pages(), start, "pages lost:\n{s}");
    assert_eq!(s.large_runs, 0);
    assert_eq!(s.small_objects_in_use(), 0);
    assert_eq!(s.span_pages(), 0);
}

#[test]
fn small_heavy_sequence_through_caches() {
    let arena = Arena::new(64 * MIB);
    let heap = heap_over::<TestCpu>(4, &[arena.whole()]);
    let start = heap.stats().free_pages();
    for cpu in 0..4 {
        set_cpu(cpu);
        random_sequence(&heap, &arena, 77 + cpu as u64, 20_000, 20_000);
    }
    set_cpu(0);
    let s = heap.stats();
    assert!(s.per_cpu[0].hits > 0 && s.per_cpu[3].refills > 0, "{s}");
    settle(&heap, 4);
    assert_eq!(heap.stats().free_pages(), start);
}

/// Objects flushed from a CPU cache go back to their spans in runs of
/// neighbours and one by one, interleaved across spans: every span's free
/// list and count must come out right (no object handed out twice, every
/// page back at the end).
#[test]
fn objects_return_to_their_spans_in_runs_and_singly() {
    let (arena, heap) = heap_of(16 * MIB, 1);
    let start = heap.stats().free_pages();
    let layout = Layout::from_size_align(64, 8).unwrap();
    let alloc = || {
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(layout) };
        assert!(!p.is_null());
        p as usize
    };
    let mut by_page: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for _ in 0..12 * 64 {
        let p = alloc();
        by_page.entry(p & !(PAGE_SIZE - 1)).or_default().push(p);
    }
    // One object per page stays live, so no span empties and every freed
    // object must come back from the same spans.
    let mut pins = Vec::new();
    let mut pages: Vec<Vec<usize>> = Vec::new();
    for mut objs in by_page.into_values() {
        objs.sort_unstable();
        pins.push(objs.pop().unwrap());
        pages.push(objs);
    }
    assert!(
        pages.len() >= 12,
        "64-byte objects should fill at least 12 pages"
    );
    let mut order = Vec::new();
    let mut rng = Rng(7);
    for (i, objs) in pages.iter().enumerate() {
        match i % 4 {
            0 => order.extend(objs.iter().copied()),
            1 => order.extend(objs.iter().rev().copied()),
            _ => {}
        }
    }
    // Pages 2 and 3 (mod 4) alternate object by object, then a random order.
    for pair in pages.chunks(4).filter(|c| c.len() == 4) {
        for (a, b) in pair[2].iter().zip(&pair[3]) {
            order.push(*a);
            order.push(*b);
        }
    }
    let mut rest: Vec<usize> = pages
        .chunks(4)
        .filter(|c| c.len() < 4)
        .flat_map(|c| c.iter().skip(2).flatten().copied())
        .collect();
    for i in (1..rest.len()).rev() {
        rest.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order.extend(rest);
    let freed = order.len();
    for p in order {
        // SAFETY: p is live with this layout.
        unsafe { heap.dealloc(p as *mut u8, layout) };
    }
    heap.drain_cpu(0);
    let s = heap.stats();
    assert_eq!(s.small_objects_in_use(), pins.len() as u64, "{s}");
    // Allocate as many again: none may repeat a pin or another new one.
    let mut seen: std::collections::HashSet<usize> = pins.iter().copied().collect();
    let again: Vec<usize> = (0..freed).map(|_| alloc()).collect();
    for &p in &again {
        assert!(seen.insert(p), "{p:#x} handed out twice");
        assert!(arena.contains(p, 64));
    }
    for p in again.into_iter().chain(pins) {
        // SAFETY: p is live with this layout.
        unsafe { heap.dealloc(p as *mut u8, layout) };
    }
    settle(&heap, 1);
    let s = heap.stats();
    assert_eq!(s.free_pages(), start, "pages lost:\n{s}");
    assert_eq!(s.span_pages(), 0);
}

/// A heap over `bytes` whose free memory is single pages no two of which
/// are buddies: every page is taken, then every page with an odd frame
/// number is given back. Returns the pages still held (to free at the end)
/// and the free-page count of the fresh heap.
fn fragmented_heap(bytes: usize) -> (Arena, Box<Heap<TestCpu>>, Vec<u64>, u64) {
    let (arena, heap) = heap_of(bytes, 1);
    let start = heap.stats().free_pages();
    let mut held = Vec::new();
    while let Some(p) = heap.alloc_pages(PageRequest::new(1)) {
        held.push(p.phys.as_u64());
    }
    assert_eq!(held.len() as u64, start);
    held.retain(|&a| {
        if (a / PAGE_SIZE as u64) % 2 == 1 {
            // SAFETY: a live page, unused.
            unsafe { heap.free_pages(PhysAddr::new(a), 1) };
            false
        } else {
            true
        }
    });
    settle(&heap, 1);
    let s = heap.stats();
    assert_eq!(s.pages.free_pages, start - held.len() as u64, "{s}");
    (arena, heap, held, start)
}

#[test]
fn classes_fall_back_to_small_spans_in_a_fragmented_heap() {
    let (arena, heap, held, start) = fragmented_heap(4 * MIB);
    let free = start - held.len() as u64;
    assert!(free > 400, "{free} free pages");
    // 1 KiB objects have spans of 8 pages, and no two free pages are
    // adjacent: every object must come from a one-page fallback span.
    let layout = Layout::from_size_align(1024, 8).unwrap();
    let mut objs = Vec::new();
    loop {
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(layout) };
        if p.is_null() {
            break;
        }
        let a = p as usize;
        assert_eq!(a % 1024, 0, "{p:p} misaligned");
        assert!(arena.contains(a, 1024));
        assert_eq!((a / PAGE_SIZE) % 2, 1, "{p:p} is not in a free page");
        fill(p, 1024, a as u64);
        objs.push(a);
    }
    assert_eq!(
        objs.len() as u64,
        4 * free,
        "every free page holds 4 objects"
    );
    let mut sorted = objs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), objs.len(), "an object was handed out twice");
    let s = heap.stats();
    let class = strata_alloc::SizeClass::for_size(1024).unwrap().index();
    assert_eq!(s.classes[class].spans as u64, free, "{s}");
    assert_eq!(s.classes[class].span_pages, free, "{s}");
    assert_eq!(s.span_pages(), free, "{s}");
    // Free in a scattered order, contents intact; the fallback spans go
    // back to the page heap, and with the held pages every page returns.
    let mut rng = Rng(11);
    for i in (1..objs.len()).rev() {
        objs.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for a in objs {
        verify(a as *mut u8, 1024, a as u64);
        // SAFETY: live with this layout.
        unsafe { heap.dealloc(a as *mut u8, layout) };
    }
    for a in held {
        // SAFETY: a live page.
        unsafe { heap.free_pages(PhysAddr::new(a), 1) };
    }
    settle(&heap, 1);
    let s = heap.stats();
    assert_eq!(s.span_pages(), 0, "{s}");
    assert_eq!(s.free_pages(), start, "pages lost:\n{s}");
    // The heap has whole blocks again: the class gets its own spans.
    // SAFETY: non-zero size.
    let p = unsafe { heap.alloc(layout) };
    assert!(!p.is_null());
    let s = heap.stats();
    assert_eq!(s.classes[class].span_pages, 8, "{s}");
    // SAFETY: live with this layout.
    unsafe { heap.dealloc(p, layout) };
}

#[test]
fn several_regions_with_holes_and_unaligned_edges() {
    let arena = Arena::new(32 * MIB);
    let regions = [
        arena.range(123, 3 * MIB),
        arena.range(4 * MIB + 7, 5 * MIB - 100),
        arena.range(12 * MIB, 20 * MIB),
    ];
    let heap = heap_over::<TestCpu>(1, &regions);
    set_cpu(0);
    assert_eq!(heap.regions().count(), 3);
    // Largest first: the free check tries the first descriptor alone.
    assert_eq!(heap.regions().next(), Some(regions[2]));
    let s = heap.stats();
    // The unaligned edges are trimmed inward.
    let pages = |r: &PhysRange| r.end.as_u64() / 4096 - r.start.as_u64().div_ceil(4096);
    let total: u64 = regions.iter().map(pages).sum();
    assert_eq!(s.pages.managed_pages + s.pages.metadata_pages, total);
    assert!(s.metadata_ratio() <= 0.005);
    let start = s.free_pages();
    // Allocations never land in the holes.
    let mut blocks = Vec::new();
    let mut rng = Rng(9);
    for _ in 0..2000 {
        let size = rng.log_uniform(8, 256 * 1024);
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(layout) } as usize;
        if p == 0 {
            break;
        }
        let inside = regions
            .iter()
            .any(|r| p as u64 >= r.start.as_u64() && (p + size) as u64 <= r.end.as_u64());
        assert!(inside, "{p:#x}+{size} outside every region");
        blocks.push((p, layout));
    }
    for (p, layout) in blocks {
        // SAFETY: live with this layout.
        unsafe { heap.dealloc(p as *mut u8, layout) };
    }
    settle(&heap, 1);
    assert_eq!(heap.stats().free_pages(), start);
}

#[test]
fn region_added_mid_run_is_used() {
    let arena = Arena::new(16 * MIB);
    let heap = heap_over::<TestCpu>(1, &[arena.range(0, 4 * MIB)]);
    set_cpu(0);
    let big = Layout::from_size_align(3 * MIB, 4096).unwrap();
    // SAFETY: non-zero size.
    let a = unsafe { heap.alloc(big) };
    assert!(!a.is_null());
    // SAFETY: non-zero size.
    assert!(
        unsafe { heap.alloc(big) }.is_null(),
        "4 MiB cannot hold two 3 MiB blocks"
    );
    // SAFETY: the range is part of the arena, unused.
    unsafe { heap.add_region(arena.range(8 * MIB, 8 * MIB)) }.unwrap();
    // SAFETY: non-zero size.
    let b = unsafe { heap.alloc(big) };
    assert!(!b.is_null());
    assert!(b as usize >= arena.base() + 8 * MIB);
    // SAFETY: the same range again.
    let again = unsafe { heap.add_region(arena.range(9 * MIB, MIB)) };
    assert!(matches!(again, Err(HeapError::Overlap { .. })), "{again:?}");
    // SAFETY: live blocks.
    unsafe {
        heap.dealloc(a, big);
        heap.dealloc(b, big);
    }
    heap.check();
}

#[test]
fn exhaustion_then_recovery() {
    let (_arena, heap) = heap_of(8 * MIB, 1);
    let start = heap.stats().free_pages();
    for size in [24usize, 1000, 5000, 64 * 1024] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let mut blocks = Vec::new();
        loop {
            // SAFETY: non-zero size.
            let p = unsafe { heap.alloc(layout) };
            if p.is_null() {
                break;
            }
            blocks.push(p);
        }
        assert!(
            blocks.len() * size > 6 * MIB,
            "only {} blocks of {size}\n{}",
            blocks.len(),
            heap.stats()
        );
        for p in blocks.drain(..) {
            // SAFETY: live with this layout.
            unsafe { heap.dealloc(p, layout) };
        }
        // Everything can be had again after the frees.
        let big = Layout::from_size_align(4 * MIB, 4096).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(big) };
        assert!(
            !p.is_null(),
            "no recovery after exhausting with {size}-byte blocks"
        );
        // SAFETY: live.
        unsafe { heap.dealloc(p, big) };
    }
    settle(&heap, 1);
    assert_eq!(heap.stats().free_pages(), start);
}

#[test]
fn large_allocations_are_page_exact() {
    let (_arena, heap) = heap_of(64 * MIB, 1);
    let cases = [
        (5 * 4096 + 1, 8, 6),
        (16 * 1024 + 1, 8, 5),
        (100_000, 64, 25),
        (3 * MIB + 1, 2 * MIB, 769),
        (8 * MIB, 4096, 2048),
    ];
    for (size, align, pages) in cases {
        let before = heap.stats().free_pages();
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        let used = before - heap.stats().free_pages();
        assert_eq!(
            used, pages,
            "{size} bytes aligned {align} took {used} pages"
        );
        // SAFETY: live with this layout.
        unsafe { heap.dealloc(p, layout) };
        assert_eq!(heap.stats().free_pages(), before);
    }
}

/// Memory cost per allocation, measured as a benchmark would: fill a fresh
/// heap until the first failure.
fn fill_cost(size: usize, align: usize) -> (u64, u64) {
    let (count, stats) = fill_heap(size, align);
    (count, stats.managed_pages())
}

fn fill_heap(size: usize, align: usize) -> (u64, strata_alloc::HeapStats) {
    let (_arena, heap) = heap_of(16 * MIB, 1);
    let layout = Layout::from_size_align(size, align).unwrap();
    let mut count = 0u64;
    // SAFETY: non-zero size; the blocks are never freed (the arena goes).
    while !unsafe { heap.alloc(layout) }.is_null() {
        count += 1;
    }
    (count, heap.stats())
}

#[test]
fn page_sized_blocks_cost_one_page() {
    // (4096, 4096): one page each; the only pages not handed out hold the
    // CPU cache's own storage.
    let (count, managed) = fill_cost(4096, 4096);
    assert!(
        count <= managed && count + 16 >= managed,
        "{count} blocks from {managed} pages"
    );
}

#[test]
fn odd_runs_pack_back_to_back() {
    // 5 pages + 1 byte takes 6 pages each, and runs of one odd size pack
    // together: a full heap holds runs in 98 % of its pages (a buddy heap
    // that strands each run's 2-page surplus manages 75 %).
    let (count, s) = fill_heap(5 * 4096 + 1, 8);
    assert_eq!(s.large_pages, count * 6);
    assert!(
        count * 6 * 100 >= s.managed_pages() * 98,
        "{count} runs\n{s}"
    );
    assert!(s.pages.free_blocks[3..].iter().all(|&n| n == 0), "{s}");
}

#[test]
fn realloc_stays_in_place_when_it_can() {
    let (_arena, heap) = heap_of(16 * MIB, 1);
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: live blocks, non-zero sizes throughout.
    unsafe {
        let p = heap.alloc(l);
        fill(p, 100, 1);
        // 100 and 110 share the 112-byte class.
        assert_eq!(heap.realloc(p, l, 110), p);
        let l2 = Layout::from_size_align(110, 8).unwrap();
        let q = heap.realloc(p, l2, 3000);
        assert_ne!(q, p);
        verify(q, 100, 1);
        heap.dealloc(q, Layout::from_size_align(3000, 8).unwrap());

        // A page run shrinks in place and grows into the pages it gave up.
        let big = Layout::from_size_align(40 * 4096, 4096).unwrap();
        let r = heap.alloc(big);
        fill(r, 40 * 4096, 2);
        let before = heap.stats().free_pages();
        assert_eq!(heap.realloc(r, big, 20 * 4096), r);
        assert_eq!(heap.stats().free_pages(), before + 20);
        let mid = Layout::from_size_align(20 * 4096, 4096).unwrap();
        assert_eq!(heap.realloc(r, mid, 30 * 4096), r);
        assert_eq!(heap.stats().free_pages(), before + 10);
        verify(r, 4096, 2);
        heap.dealloc(r, Layout::from_size_align(30 * 4096, 4096).unwrap());
    }
}

#[test]
fn page_api_limits_alignment_and_zeroing() {
    let (arena, heap) = heap_of(64 * MIB, 1);
    let start = heap.stats().free_pages();
    let limit = PhysAddr::new((arena.base() + 4 * MIB) as u64);
    let low = heap.alloc_pages(PageRequest::new(3).below(limit)).unwrap();
    assert!(low.phys.as_u64() + 3 * 4096 <= limit.as_u64());
    let aligned = heap.alloc_pages(PageRequest::new(5).align(512)).unwrap();
    assert_eq!(aligned.phys.as_u64() % (2 * MIB as u64), 0);
    assert_eq!(aligned.virt.as_usize() as u64, aligned.phys.as_u64());
    // Dirty some pages, free them, then ask for zeroed pages.
    let dirty = heap.alloc_pages(PageRequest::new(8)).unwrap();
    // SAFETY: the pages are ours.
    unsafe { std::ptr::write_bytes(dirty.virt.as_mut_ptr::<u8>(), 0xAB, 8 * 4096) };
    // SAFETY: nothing uses them.
    unsafe { heap.free_pages(dirty.phys, 8) };
    let zero = heap.alloc_pages(PageRequest::new(8).zeroed()).unwrap();
    // SAFETY: the pages are ours.
    let bytes = unsafe { std::slice::from_raw_parts(zero.virt.as_mut_ptr::<u8>(), 8 * 4096) };
    assert!(bytes.iter().all(|&b| b == 0));
    assert!(heap
        .alloc_pages(PageRequest::new(2048).below(limit))
        .is_none());
    assert_eq!(heap.stats().large_runs, 3);
    // SAFETY: nothing uses them.
    unsafe {
        heap.free_pages(low.phys, 3);
        heap.free_pages(aligned.phys, 5);
        heap.free_pages(zero.phys, 8);
    }
    assert_eq!(heap.stats().free_pages(), start);
}

#[test]
fn single_pages_go_through_cpu_page_lists() {
    let (arena, heap) = heap_of(16 * MIB, 2);
    let s0 = heap.stats();
    let start = s0.free_pages();
    assert_eq!(s0.pages.free_pages, start, "nothing cached yet");
    let mut live = std::collections::BTreeMap::new();
    for i in 0..200u64 {
        let zeroed = i % 3 == 0;
        let req = if zeroed {
            PageRequest::new(1).zeroed()
        } else {
            PageRequest::new(1)
        };
        let p = heap.alloc_pages(req).unwrap();
        let addr = p.phys.as_u64();
        assert_eq!(addr % 4096, 0);
        assert!(arena.contains(addr as usize, 4096));
        let ptr: *mut u64 = p.virt.as_mut_ptr();
        if zeroed {
            // SAFETY: the page is ours.
            let page = unsafe { std::slice::from_raw_parts(ptr, 512) };
            assert!(page.iter().all(|&w| w == 0), "page {addr:#x} not zeroed");
        }
        // SAFETY: as above.
        unsafe { ptr.write_bytes(0x5a, 512) };
        // SAFETY: as above.
        unsafe { ptr.write(addr) };
        assert!(
            live.insert(addr, i).is_none(),
            "page {addr:#x} handed out twice"
        );
        let s = heap.stats();
        assert_eq!(s.free_pages(), start - live.len() as u64, "{s}");
        assert_eq!(s.large_runs, live.len() as u64, "{s}");
    }
    assert!(
        heap.stats().per_cpu[0].cached_pages > 0,
        "the list was refilled in batches"
    );
    // Free every other page on CPU 1: they go to CPU 1's list (and, past
    // its capacity, back to the page heap), and CPU 1 hands them out again.
    set_cpu(1);
    let odd: Vec<u64> = live.keys().copied().skip(1).step_by(2).collect();
    for &addr in &odd {
        // SAFETY: the page is live, unused now.
        assert_eq!(
            unsafe { (addr as *const u64).read() },
            addr,
            "contents lost"
        );
        // SAFETY: as above.
        unsafe { heap.free_pages(PhysAddr::new(addr), 1) };
        live.remove(&addr);
    }
    let s = heap.stats();
    assert!(s.per_cpu[1].cached_pages > 0, "{s}");
    assert_eq!(s.free_pages(), start - live.len() as u64, "{s}");
    let again = heap.alloc_pages(PageRequest::new(1)).unwrap();
    assert!(
        odd.contains(&again.phys.as_u64()),
        "CPU 1 reuses its own list"
    );
    live.insert(again.phys.as_u64(), 0);
    set_cpu(0);
    for (&addr, _) in live.iter() {
        // SAFETY: live, unused now.
        unsafe { heap.free_pages(PhysAddr::new(addr), 1) };
    }
    let s = heap.stats();
    assert_eq!(s.large_runs, 0, "{s}");
    assert_eq!(s.free_pages(), start, "{s}");
    // Draining the CPUs gives the lists back to the page heap itself.
    settle(&heap, 2);
    let s = heap.stats();
    assert_eq!(s.cached_pages, 0, "{s}");
    assert_eq!(s.pages.free_pages, start, "{s}");
}

#[test]
fn stats_are_consistent() {
    let arena = Arena::new(32 * MIB);
    let heap = heap_over::<TestCpu>(2, &[arena.whole()]);
    set_cpu(1);
    let mut blocks = Vec::new();
    for i in 0..3000usize {
        let layout = Layout::from_size_align(16 + (i % 700) * 3, 8).unwrap();
        // SAFETY: non-zero size.
        blocks.push((unsafe { heap.alloc(layout) }, layout));
    }
    let big = Layout::from_size_align(100_000, 8).unwrap();
    // SAFETY: non-zero size.
    let b = unsafe { heap.alloc(big) };
    let s = heap.stats();
    let cache_pages = (s.pages.managed_pages - s.pages.free_pages) - s.span_pages() - s.large_pages;
    // The CPU caches' storage is the only other user of pages.
    assert!(cache_pages > 0 && cache_pages < 64, "{cache_pages}\n{s}");
    assert_eq!(s.small_objects_in_use(), 3000, "{s}");
    assert_eq!(s.large_runs, 1);
    assert_eq!(s.large_pages, 25);
    let text = format!("{s}");
    assert!(
        text.contains("strata heap") && text.contains("refills"),
        "{text}"
    );
    for (p, layout) in blocks {
        // SAFETY: live.
        unsafe { heap.dealloc(p, layout) };
    }
    // SAFETY: live.
    unsafe { heap.dealloc(b, big) };
    assert_eq!(heap.stats().small_objects_in_use(), 0);
}

#[test]
fn init_rejects_bad_regions() {
    let arena = Arena::new(8 * MIB);
    let a = arena.range(0, 4 * MIB);
    let overlapping = arena.range(4 * MIB - 4096, MIB);
    let heap = Heap::<TestCpu>::new();
    // SAFETY: rejected before memory is touched.
    let r = unsafe { heap.init(0, 1, &[a, overlapping]) };
    assert_eq!(
        r,
        Err(HeapError::Overlap {
            new: overlapping,
            existing: a
        })
    );
    let empty = arena.range(5 * MIB + 1, 100);
    // SAFETY: rejected before memory is touched.
    assert_eq!(
        unsafe { heap.init(0, 1, &[empty]) },
        Err(HeapError::EmptyRegion(empty))
    );
    // SAFETY: rejected before memory is touched.
    assert_eq!(
        unsafe { heap.init(0, 0, &[a]) },
        Err(HeapError::InvalidConfig)
    );
    // SAFETY: a is unused arena memory.
    unsafe { heap.init(0, 1, &[a]) }.unwrap();
    // SAFETY: rejected.
    assert_eq!(
        unsafe { heap.init(0, 1, &[a]) },
        Err(HeapError::AlreadyInitialized)
    );
    let msg = format!(
        "{}",
        HeapError::Overlap {
            new: overlapping,
            existing: a
        }
    );
    assert!(
        msg.contains(&format!("{:#x}", overlapping.start.as_u64())),
        "{msg}"
    );
}

#[test]
fn uninitialised_heap_returns_null() {
    let heap = Heap::<TestCpu>::new();
    // SAFETY: non-zero size.
    assert!(unsafe { heap.alloc(Layout::new::<u64>()) }.is_null());
    assert!(heap.alloc_pages(PageRequest::new(1)).is_none());
}

mod bad_frees {
    use super::*;

    fn heap() -> (Arena, Box<Heap<TestCpu>>) {
        heap_of(8 * MIB, 1)
    }

    #[test]
    #[should_panic(expected = "not inside any region")]
    fn foreign_pointer() {
        let (_a, heap) = heap();
        let mut x = 0u64;
        // SAFETY: deliberately wrong; the heap must catch it.
        unsafe { heap.dealloc(&mut x as *mut u64 as *mut u8, Layout::new::<u64>()) };
    }

    #[test]
    #[should_panic(expected = "not at an object boundary")]
    fn interior_pointer() {
        let (_a, heap) = heap();
        let l = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: deliberately wrong free of p + 8.
        unsafe {
            let p = heap.alloc(l);
            heap.dealloc(p.add(8), l);
        }
    }

    /// A 3200-byte object's fallback span is one page holding one object;
    /// 3200 bytes in is the tail, which the class's own 20-object span
    /// would have as its second object.
    #[test]
    #[should_panic(expected = "not at an object boundary")]
    fn tail_of_a_fallback_span() {
        let (_a, heap, _held, _) = fragmented_heap(MIB / 2);
        let l = Layout::from_size_align(3200, 8).unwrap();
        // SAFETY: deliberately wrong free of p + 3200.
        unsafe {
            let p = heap.alloc(l);
            assert!(!p.is_null());
            heap.dealloc(p.add(3200), l);
        }
    }

    #[test]
    #[should_panic(expected = "not of this layout's size class")]
    fn wrong_layout_class() {
        let (_a, heap) = heap();
        // SAFETY: deliberately freed with another layout.
        unsafe {
            let p = heap.alloc(Layout::from_size_align(64, 8).unwrap());
            heap.dealloc(p, Layout::from_size_align(512, 8).unwrap());
        }
    }

    #[test]
    #[should_panic(expected = "no block is allocated there")]
    fn large_double_free() {
        let (_a, heap) = heap();
        let l = Layout::from_size_align(64 * 1024, 8).unwrap();
        // SAFETY: deliberately freed twice.
        unsafe {
            let p = heap.alloc(l);
            heap.dealloc(p, l);
            heap.dealloc(p, l);
        }
    }

    #[test]
    #[should_panic(expected = "run of 20 pages, not 7 (wrong layout)")]
    fn large_wrong_length() {
        let (_a, heap) = heap();
        // SAFETY: deliberately freed with another length.
        unsafe {
            let p = heap.alloc(Layout::from_size_align(20 * 4096, 8).unwrap());
            heap.dealloc(p, Layout::from_size_align(3 * 4096 + 16 * 1024, 8).unwrap());
        }
    }

    #[test]
    #[should_panic(expected = "the block is a page run")]
    fn large_freed_as_small() {
        let (_a, heap) = heap();
        // SAFETY: deliberately freed as a small object.
        unsafe {
            let p = heap.alloc(Layout::from_size_align(40_000, 8).unwrap());
            heap.dealloc(p, Layout::from_size_align(64, 8).unwrap());
        }
    }

    #[test]
    #[should_panic(expected = "no block is allocated there")]
    fn free_of_free_memory() {
        let (a, heap) = heap();
        // SAFETY: deliberately frees memory the heap never handed out (the
        // last page before the metadata is free in a fresh heap).
        unsafe { heap.dealloc((a.base() + 4 * MIB) as *mut u8, Layout::new::<u64>()) };
    }

    #[test]
    #[should_panic(expected = "the page is already free (double free)")]
    fn page_freed_twice() {
        let (_a, heap) = heap();
        let p = heap.alloc_pages(PageRequest::new(1)).unwrap();
        // SAFETY: the first free is right; the second is the bug under test.
        unsafe {
            heap.free_pages(p.phys, 1);
            heap.free_pages(p.phys, 1);
        }
    }

    #[test]
    #[should_panic(expected = "the page is already free (double free)")]
    fn free_of_a_page_still_on_a_cpu_list() {
        let (_a, heap) = heap();
        let p = heap.alloc_pages(PageRequest::new(1)).unwrap();
        // The list was refilled with a batch of pages taken in address
        // order and `p` is the last of it: the page below is on the list,
        // never handed out.
        assert!(heap.stats().cached_pages > 0);
        // SAFETY: deliberately frees a page the heap never handed out.
        unsafe { heap.free_pages(PhysAddr::new(p.phys.as_u64() - 4096), 1) };
    }

    #[test]
    #[should_panic(expected = "free_pages of")]
    fn page_free_of_wrong_count() {
        let (_a, heap) = heap();
        let p = heap.alloc_pages(PageRequest::new(4)).unwrap();
        // SAFETY: deliberately wrong count.
        unsafe { heap.free_pages(p.phys, 2) };
    }
}
