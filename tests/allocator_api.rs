//! Collections placed in a specific heap through the `Allocator` trait
//! (`allocator-api2` on stable).
#![cfg(feature = "allocator-api2")]

mod common;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::boxed::Box as HBox;
use allocator_api2::vec::Vec as HVec;
use common::*;
use std::alloc::Layout;
use strata_alloc::{Heap, PAGE_SIZE};

const MIB: usize = 1 << 20;

/// A heap over a fresh arena, and its free page count right after `init`.
fn fresh(bytes: usize, cpus: usize) -> (Arena, Box<Heap<TestCpu>>, u64) {
    let arena = Arena::new(bytes);
    let heap = heap_over::<TestCpu>(cpus, &[arena.whole()]);
    let free0 = heap.stats().free_pages();
    (arena, heap, free0)
}

/// Gives everything cached back: afterwards the free page count is the one
/// after `init` exactly when every block has been returned.
fn settle(heap: &Heap<TestCpu>, cpus: usize) -> u64 {
    for cpu in 0..cpus {
        heap.drain_cpu(cpu);
    }
    heap.reclaim();
    heap.check();
    heap.stats().free_pages()
}

#[test]
fn vec_lives_in_the_heap_and_gives_its_memory_back() {
    let (arena, heap, free0) = fresh(16 * MIB, 1);
    set_cpu(0);
    {
        let mut v: HVec<u64, &Heap<TestCpu>> = HVec::new_in(&*heap);
        for i in 0..100_000u64 {
            v.push(i * 3);
        }
        assert!(arena.contains(v.as_ptr() as usize, v.len() * 8));
        let s = heap.stats();
        assert_eq!(s.large_runs, 1, "the buffer is one page run");
        assert!(s.large_pages as usize * PAGE_SIZE >= 800_000);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));

        // Shrinking to a small size class moves it out of the page run.
        v.truncate(100);
        v.shrink_to_fit();
        assert_eq!(heap.stats().large_runs, 0);
        assert!(arena.contains(v.as_ptr() as usize, 800));
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        assert_eq!(heap.stats().small_objects_in_use(), 1);
    }
    assert_eq!(settle(&heap, 1), free0, "every page is back");
}

#[test]
fn boxes_strings_and_nested_vecs() {
    let (arena, heap, free0) = fresh(8 * MIB, 1);
    set_cpu(0);
    {
        let h = &*heap;
        let mut rows: HVec<HVec<u8, _>, _> = HVec::new_in(h);
        for r in 0..200usize {
            let mut row = HVec::with_capacity_in(r + 1, h);
            row.extend((0..=r).map(|i| (i * r) as u8));
            rows.push(row);
        }
        let big = HBox::new_in([7u64; 1024], h);
        assert!(arena.contains(&*big as *const _ as usize, 8192));
        for (r, row) in rows.iter().enumerate() {
            assert!(arena.contains(row.as_ptr() as usize, row.len()));
            assert!(row.iter().enumerate().all(|(i, &b)| b == (i * r) as u8));
        }
        assert!(big.iter().all(|&x| x == 7));
        // 200 rows and the outer buffer are small objects; `big` (8 KiB) too.
        let s = heap.stats();
        assert_eq!(s.small_objects_in_use(), 202);
    }
    assert_eq!(settle(&heap, 1), free0);
}

#[test]
fn hashbrown_map_in_a_heap() {
    let (arena, heap, free0) = fresh(16 * MIB, 2);
    set_cpu(1);
    {
        let mut map = hashbrown::HashMap::with_hasher_in(std::hash::RandomState::new(), &*heap);
        for k in 0..20_000u64 {
            map.insert(k, [k, k * k, !k]);
        }
        for k in (0..20_000u64).step_by(3) {
            assert_eq!(map.remove(&k), Some([k, k * k, !k]));
        }
        for k in 0..20_000u64 {
            assert_eq!(map.get(&k).is_some(), k % 3 != 0, "key {k}");
        }
        let s = heap.stats();
        assert!(s.large_pages > 0, "the table is a page run of this heap");
        assert!(s.per_cpu[1].hits > 0 || s.large_runs > 0);
        let _ = &arena;
    }
    assert_eq!(settle(&heap, 2), free0);
}

#[test]
fn zero_size_requests_do_not_touch_the_heap() {
    let (_arena, heap, _) = fresh(4 * MIB, 1);
    set_cpu(0);
    let before = heap.stats();
    let a: &Heap<TestCpu> = &heap;
    for align in [1, 8, 64, 4096, 1 << 21] {
        let layout = Layout::from_size_align(0, align).unwrap();
        let block = a.allocate(layout).unwrap();
        assert_eq!(block.len(), 0);
        assert_eq!(block.cast::<u8>().as_ptr() as usize % align, 0);
        // SAFETY: just allocated with this layout.
        unsafe { a.deallocate(block.cast(), layout) };
    }
    let unit = HBox::new_in((), a);
    let empty: HVec<u32, _> = HVec::with_capacity_in(0, a);
    drop((unit, empty));
    assert_eq!(heap.stats(), before);
}

#[test]
fn grow_and_shrink_keep_contents_across_classes_and_alignments() {
    let (arena, heap, free0) = fresh(8 * MIB, 1);
    set_cpu(0);
    let a = &*heap;
    let l8 = Layout::from_size_align(8, 64).unwrap();
    let p = a.allocate(l8).unwrap().cast::<u8>();
    // SAFETY: 8 bytes of a live block.
    unsafe { p.as_ptr().copy_from(b"abcdefgh".as_ptr(), 8) };

    // Growing to a smaller alignment moves the block to the class of the
    // new layout, so freeing with that layout is exact.
    let l16 = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: p is live with l8; 16 >= 8.
    let p = unsafe { a.grow_zeroed(p, l8, l16) }.unwrap().cast::<u8>();
    // SAFETY: 16 bytes of a live block.
    let got = unsafe { std::slice::from_raw_parts(p.as_ptr(), 16) };
    assert_eq!(got, b"abcdefgh\0\0\0\0\0\0\0\0");

    // Small to a page run, zeroed tail.
    let lbig = Layout::from_size_align(40_000, 8).unwrap();
    // SAFETY: p is live with l16.
    let p = unsafe { a.grow_zeroed(p, l16, lbig) }.unwrap().cast::<u8>();
    assert!(arena.contains(p.as_ptr() as usize, 40_000));
    // SAFETY: 40 000 bytes of a live block.
    let got = unsafe { std::slice::from_raw_parts(p.as_ptr(), 40_000) };
    assert_eq!(&got[..8], b"abcdefgh");
    assert!(got[8..].iter().all(|&b| b == 0));
    assert_eq!(heap.stats().large_runs, 1);

    // Shrink to a larger alignment.
    let l4 = Layout::from_size_align(4, 256).unwrap();
    // SAFETY: p is live with lbig; 4 <= 40 000.
    let p = unsafe { a.shrink(p, lbig, l4) }.unwrap().cast::<u8>();
    assert_eq!(p.as_ptr() as usize % 256, 0);
    // SAFETY: 4 bytes of a live block.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(p.as_ptr(), 4) },
        b"abcd"
    );
    assert_eq!(heap.stats().large_runs, 0);

    // Shrink to nothing frees it.
    let l0 = Layout::from_size_align(0, 256).unwrap();
    // SAFETY: p is live with l4.
    let z = unsafe { a.shrink(p, l4, l0) }.unwrap();
    assert_eq!(z.len(), 0);
    assert_eq!(settle(&heap, 1), free0);
}

#[test]
fn out_of_memory_is_an_error_and_the_heap_keeps_working() {
    let (_arena, heap, free0) = fresh(2 * MIB, 1);
    set_cpu(0);
    let a = &*heap;
    let huge = Layout::from_size_align(64 * MIB, 8).unwrap();
    assert_eq!(a.allocate(huge), Err(AllocError));
    assert_eq!(a.allocate_zeroed(huge), Err(AllocError));

    let mut v: HVec<u8, _> = HVec::new_in(a);
    assert!(v.try_reserve(64 * MIB).is_err());
    v.extend_from_slice(b"still works");
    let small = Layout::from_size_align(1000, 8).unwrap();
    let p = a.allocate(small).unwrap().cast::<u8>();
    // Growing past the heap fails and leaves the block as it was.
    // SAFETY: p is live with `small`; 64 MiB >= 1000.
    unsafe {
        p.as_ptr().write(42);
        assert_eq!(a.grow(p, small, huge), Err(AllocError));
        assert_eq!(p.as_ptr().read(), 42);
        a.deallocate(p, small);
    }
    assert_eq!(&v[..], b"still works");
    drop(v);
    assert_eq!(settle(&heap, 1), free0);
}

#[test]
fn collections_move_between_cpus() {
    const CPUS: usize = 4;
    let (_arena, heap, free0) = fresh(32 * MIB, CPUS);
    let h = &*heap;
    // Each thread builds vectors on its own CPU and hands them to the next
    // thread, which checks and frees them on its CPU.
    let made: Vec<_> = std::thread::scope(|s| {
        (0..CPUS)
            .map(|cpu| {
                s.spawn(move || {
                    set_cpu(cpu);
                    (0..200)
                        .map(|i| {
                            let mut v = HVec::new_in(h);
                            v.extend((0..i * 10).map(|x| (x * cpu) as u32));
                            v
                        })
                        .collect::<Vec<_>>()
                })
            })
            .map(|t| t.join().unwrap())
            .collect()
    });
    std::thread::scope(|s| {
        for (cpu, vecs) in made.into_iter().enumerate() {
            s.spawn(move || {
                set_cpu((cpu + 1) % CPUS);
                for (i, v) in vecs.into_iter().enumerate() {
                    assert_eq!(v.len(), i * 10);
                    assert!(v.iter().enumerate().all(|(x, &y)| y == (x * cpu) as u32));
                }
            });
        }
    });
    assert_eq!(settle(&heap, CPUS), free0);
}

#[test]
#[should_panic(expected = "strata: free of")]
fn freeing_with_the_wrong_layout_panics() {
    let (_arena, heap, _) = fresh(4 * MIB, 1);
    set_cpu(0);
    let a = &*heap;
    let p = a.allocate(Layout::from_size_align(48, 8).unwrap()).unwrap();
    // SAFETY: deliberately wrong: the block is a 48-byte object. strata
    // checks before it touches anything, and panics.
    unsafe { a.deallocate(p.cast(), Layout::from_size_align(4096, 8).unwrap()) };
}
