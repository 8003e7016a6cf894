//! Host mode: `HostHeap` as the global allocator of this test binary (the
//! test harness, `std` and every test allocate through it), plus private
//! `HostHeap`s for the first-use race and for growth.
#![cfg(all(feature = "std", unix))]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use strata_alloc::HostHeap;

#[global_allocator]
static GLOBAL: HostHeap = HostHeap::new();

const MIB: usize = 1 << 20;

fn in_heap(heap: &HostHeap, p: *const u8) -> bool {
    let p = p as u64;
    heap.heap()
        .regions()
        .any(|r| r.start.as_u64() <= p && p < r.end.as_u64())
}

#[test]
fn std_workload_runs_on_the_global_heap() {
    const THREADS: usize = 8;
    let (tx, rx) = mpsc::channel::<Box<(usize, String)>>();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut m: HashMap<String, Vec<usize>> = HashMap::new();
                let mut b = BTreeMap::new();
                for i in 0..5000 {
                    m.entry(format!("{t}/{}", i % 257)).or_default().push(i);
                    b.insert(i, vec![t as u8; i % 100]);
                    if i % 50 == 0 {
                        tx.send(Box::new((t, format!("{t}:{i}:{}", "y".repeat(i % 200)))))
                            .unwrap();
                    }
                }
                assert_eq!(m.len(), 257);
                assert!(b
                    .iter()
                    .all(|(i, v)| v.len() == i % 100 && v.iter().all(|&x| x == t as u8)));
                m.values().map(|v| v.iter().sum::<usize>()).sum::<usize>()
            })
        })
        .collect();
    drop(tx);
    let mut got = 0;
    for msg in rx {
        // Allocated on a worker, checked and freed here.
        let (t, text) = *msg;
        assert!(in_heap(&GLOBAL, text.as_ptr()));
        assert!(text.starts_with(&format!("{t}:")));
        got += 1;
    }
    assert_eq!(got, THREADS * 100);
    for w in workers {
        assert_eq!(w.join().unwrap(), 5000 * 4999 / 2);
    }

    // A large block is a page run of the global heap.
    let big = vec![0x5au8; 3 * MIB];
    assert!(in_heap(&GLOBAL, big.as_ptr()));
    assert!(GLOBAL.stats().large_pages as usize >= 3 * MIB / 4096);
    assert!(big.iter().all(|&b| b == 0x5a));
    drop(big);
    assert!(GLOBAL.mapped_bytes() >= 64 * MIB);
    println!("{}", GLOBAL.stats());
}

#[test]
fn first_allocations_race_and_map_one_chunk() {
    const THREADS: usize = 16;
    // The default first chunk (64 MiB): room for 16 CPU caches' refills
    // of the ~40 classes touched, so one chunk serves the whole burst.
    let heap = Arc::new(HostHeap::new());
    assert_eq!(heap.mapped_bytes(), 0);
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (heap, start) = (heap.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                (0..64)
                    .map(|i| {
                        let layout = Layout::from_size_align(16 + i * 8, 8).unwrap();
                        // SAFETY: non-zero size.
                        let p = unsafe { heap.alloc(layout) };
                        assert!(!p.is_null());
                        // SAFETY: a live block of that size.
                        unsafe { p.write_bytes(t as u8, layout.size()) };
                        p as usize
                    })
                    .collect::<Vec<usize>>()
            })
        })
        .collect();
    let blocks: Vec<Vec<usize>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(heap.chunks(), 1, "initialised once");
    assert_eq!(heap.mapped_bytes(), strata_alloc::host::HOST_CHUNK_DEFAULT);
    // Every block is distinct and kept what its thread wrote.
    let mut all: Vec<usize> = blocks.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), THREADS * 64);
    for (t, list) in blocks.iter().enumerate() {
        for (i, &p) in list.iter().enumerate() {
            let layout = Layout::from_size_align(16 + i * 8, 8).unwrap();
            // SAFETY: a live block of that size.
            let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, layout.size()) };
            assert!(bytes.iter().all(|&b| b == t as u8));
            // SAFETY: allocated above with this layout.
            unsafe { heap.dealloc(p as *mut u8, layout) };
        }
    }
    assert_eq!(heap.stats().small_objects_in_use(), 0);
}

#[test]
fn grows_by_mapping_more_chunks() {
    let heap = HostHeap::with_chunk_size(8 * MIB);
    let layout = Layout::from_size_align(MIB, 8).unwrap();
    // The first chunk, empty but for the CPU caches' storage.
    // SAFETY: non-zero size; freed at once.
    unsafe { heap.dealloc(heap.alloc(layout), layout) };
    let first = settle(&heap);
    assert_eq!(heap.chunks(), 1);
    // 40 MiB in 1 MiB blocks through a heap whose first chunk is 8 MiB.
    let blocks: Vec<*mut u8> = (0..40)
        .map(|i| {
            // SAFETY: non-zero size.
            let p = unsafe { heap.alloc(layout) };
            assert!(!p.is_null(), "block {i}");
            // SAFETY: a live 1 MiB block.
            unsafe { p.write_bytes(i as u8, MIB) };
            p
        })
        .collect();
    assert!(heap.chunks() > 1);
    assert!(heap.mapped_bytes() >= 40 * MIB);
    assert_eq!(heap.stats().pages.regions, heap.chunks());

    // A block larger than the next scheduled chunk gets a chunk that fits
    // it, and its alignment.
    let huge = Layout::from_size_align(100 * MIB, 2 * MIB).unwrap();
    // SAFETY: non-zero size.
    let h = unsafe { heap.alloc_zeroed(huge) };
    assert!(!h.is_null());
    assert_eq!(h as usize % (2 * MIB), 0);
    // SAFETY: a live zeroed block of that size.
    unsafe {
        assert_eq!(h.add(100 * MIB - 1).read(), 0);
        heap.dealloc(h, huge);
    }

    // Moving a block when the heap is full grows it too.
    let mut p = blocks[0];
    let mut size = MIB;
    for _ in 0..3 {
        // SAFETY: p is live with (size, 8); the new size is larger.
        p = unsafe { heap.realloc(p, Layout::from_size_align(size, 8).unwrap(), size * 4) };
        assert!(!p.is_null());
        size *= 4;
        // SAFETY: the first MiB kept block 0's contents.
        assert!(unsafe { std::slice::from_raw_parts(p, MIB) }
            .iter()
            .all(|&b| b == 0));
    }
    for (i, &b) in blocks.iter().enumerate().skip(1) {
        // SAFETY: a live block of 1 MiB.
        let bytes = unsafe { std::slice::from_raw_parts(b, MIB) };
        assert!(bytes.iter().all(|&x| x == i as u8), "block {i}");
        // SAFETY: allocated with `layout`.
        unsafe { heap.dealloc(b, layout) };
    }
    // SAFETY: p is live with (size, 8).
    unsafe { heap.dealloc(p, Layout::from_size_align(size, 8).unwrap()) };

    // All of it is free again: every page added since the first chunk.
    let s = settle(&heap);
    assert_eq!((s.large_runs, s.large_pages), (0, 0));
    assert_eq!(
        s.free_pages() - first.free_pages(),
        s.managed_pages() - first.managed_pages()
    );
    println!("{s}");
}

/// Gives every cached object and empty span back to the page heap.
fn settle(heap: &HostHeap) -> strata_alloc::HeapStats {
    for cpu in 0..strata_alloc::host::HOST_CPUS {
        heap.heap().drain_cpu(cpu);
    }
    heap.heap().reclaim();
    heap.heap().check();
    heap.stats()
}

#[cfg(feature = "allocator-api2")]
#[test]
fn a_private_host_heap_is_an_allocator() {
    let heap = HostHeap::with_chunk_size(8 * MIB);
    let mut v = allocator_api2::vec::Vec::new_in(&heap);
    v.extend((0..100_000u32).map(|x| x ^ 0xdead));
    assert!(in_heap(&heap, v.as_ptr() as *const u8));
    assert!(!in_heap(&GLOBAL, v.as_ptr() as *const u8));
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 ^ 0xdead));
    drop(v);
    assert_eq!(heap.stats().large_runs, 0);
}
