//! `core::alloc::Allocator` (the `nightly` feature): std's own collections
//! placed in a heap. Run with `cargo +nightly test --features nightly`.
#![cfg(feature = "nightly")]
#![cfg_attr(feature = "nightly", feature(allocator_api))]

mod common;

use common::*;
use std::alloc::{AllocError, Allocator, Layout};
use std::collections::VecDeque;
use strata_alloc::{Heap, PAGE_SIZE};

#[test]
fn std_collections_in_a_heap() {
    let arena = Arena::new(8 << 20);
    let heap = heap_over::<TestCpu>(1, &[arena.whole()]);
    set_cpu(0);
    let free0 = heap.stats().free_pages();
    {
        let h: &Heap<TestCpu> = &heap;
        let mut v: Vec<u32, _> = Vec::new_in(h);
        v.extend(0..50_000u32);
        assert!(arena.contains(v.as_ptr() as usize, v.len() * 4));
        assert_eq!(heap.stats().large_runs, 1);
        let b = Box::new_in([3u8; 100], h);
        let mut q = VecDeque::new_in(h);
        q.extend(v.iter().rev().take(10).copied());
        assert_eq!(q.pop_front(), Some(49_999));
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
        assert!(b.iter().all(|&x| x == 3));
        let huge = Layout::from_size_align(64 << 20, PAGE_SIZE).unwrap();
        assert_eq!(h.allocate(huge), Err(AllocError));
    }
    heap.drain_cpu(0);
    heap.reclaim();
    assert_eq!(heap.stats().free_pages(), free0);
}
