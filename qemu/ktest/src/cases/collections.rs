//! `collections`: the `alloc` crate's collections through the global
//! allocator, as a kernel uses them.
//!
//! A `BTreeMap<u64, String>` with random inserts and removes (node splits
//! and merges allocate and free many small objects), a `Vec` that grows one
//! element at a time to a few hundred KiB (repeated realloc of a large
//! block), `Box`ed slices of random sizes, and `String`s built piecewise.
//! Every value is checked against what was stored.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::note::{fail, passed};
use crate::pattern::Rng;
use crate::{Ctx, Machine, TestResult};

/// BTreeMap operations per CPU.
const MAP_STEPS: usize = 6_000;
/// Keys are drawn from `0..KEY_SPACE`, so inserts and removes both hit.
const KEY_SPACE: usize = 1_500;
/// Length the growing `Vec<u64>` reaches (256 KiB).
const VEC_LEN: usize = 32 * 1024;
/// Boxed slices allocated and dropped per CPU.
const BOXES: usize = 2_000;

fn value_for(cpu: usize, key: u64) -> String {
    let mut value = String::new();
    // Built piecewise so the string reallocates as it grows.
    for part in 0..(key % 7 + 1) {
        let _ = write!(value, "cpu{cpu}:key{key}:{part};");
    }
    value
}

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    let mut rng = Rng::new(ctx.cpu, 3);

    let mut map: BTreeMap<u64, String> = BTreeMap::new();
    for _ in 0..MAP_STEPS {
        let key = rng.below(KEY_SPACE) as u64;
        if rng.below(3) == 0 {
            if let Some(value) = map.remove(&key) {
                if value != value_for(ctx.cpu, key) {
                    fail!("map value for {key} changed to {value:?}");
                }
            }
        } else {
            map.insert(key, value_for(ctx.cpu, key));
        }
    }
    let entries = map.len();
    for (&key, value) in &map {
        if *value != value_for(ctx.cpu, key) {
            fail!("map value for {key} changed");
        }
    }
    drop(map);

    let mut numbers: Vec<u64> = Vec::new();
    for index in 0..VEC_LEN as u64 {
        numbers.push(index ^ ctx.cpu as u64);
    }
    if let Some(index) = (0..VEC_LEN).find(|&i| numbers[i] != i as u64 ^ ctx.cpu as u64) {
        fail!("vec element {index} changed while growing");
    }
    numbers.truncate(VEC_LEN / 16);
    numbers.shrink_to_fit();
    if numbers
        .iter()
        .enumerate()
        .any(|(i, &n)| n != i as u64 ^ ctx.cpu as u64)
    {
        fail!("vec contents changed by shrink_to_fit");
    }
    drop(numbers);

    let mut boxes: Vec<Box<[u8]>> = Vec::new();
    for round in 0..BOXES {
        let len = rng.range(1, 600);
        let byte = (round % 251) as u8;
        boxes.push(alloc::vec![byte; len].into_boxed_slice());
        if boxes.len() > 64 {
            let victim = boxes.swap_remove(rng.below(boxes.len()));
            let expected = victim[0];
            if victim.iter().any(|&b| b != expected) {
                fail!("boxed slice of {} bytes changed", victim.len());
            }
        }
    }
    drop(boxes);

    passed!("{MAP_STEPS} map ops ({entries} entries left), vec to {VEC_LEN}, {BOXES} boxes")
}
