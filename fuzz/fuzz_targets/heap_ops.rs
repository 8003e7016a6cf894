//! Fuzzes one `Heap` with sequences of operations decoded from the fuzzer's
//! bytes, checked by the model in `harness.rs`.
//!
//! The first bytes choose the setup (arena size, regions with unaligned
//! edges, `max_cpus`); the rest is a sequence of ops: GlobalAlloc
//! alloc/dealloc/realloc (1 B..1 MiB, alignments up to 64 KiB), page API
//! alloc/free (count, alignment, zeroed, below a limit), on CPU ids below
//! and beyond `max_cpus`, drain_cpu, reclaim, add_region from a second
//! arena, re-entry from inside the allocator, and heap checks.
//!
//! Run with `scripts/fuzz.sh [seconds]`. To replay a crash, pass its file
//! to `cargo +nightly fuzz run heap_ops <file>`; `-Zrun-debug` or
//! `RUST_LOG` are not needed: the panic message names the op.
#![no_main]

#[path = "../harness.rs"]
mod harness;

use arbitrary::{Result, Unstructured};
use harness::{Config, Cpu, Op, MAX_ALIGN_LOG2, MAX_PAGES, MAX_PAGE_ALIGN_LOG2, MAX_SIZE};
use libfuzzer_sys::fuzz_target;
use strata_alloc::{MAX_SMALL, PAGE_SIZE};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// The second arena, for `AddRegion`.
const EXTRA: usize = 4 * MIB;
/// The longest sequence decoded from one input.
const MAX_OPS: usize = 2000;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(config) = config(&mut u) else { return };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match op(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    harness::run(&config, &ops);
});

fn config(u: &mut Unstructured<'_>) -> Result<Config> {
    let arena = *u.choose(&[256 * KIB, 2 * MIB, 16 * MIB, 32 * MIB])?;
    let max_cpus = u.int_in_range(1..=4)?;
    let n = u.int_in_range(1..=3usize)?;
    let slot = arena / n;
    let mut regions = Vec::with_capacity(n);
    for i in 0..n {
        // Edges anywhere in the outer quarters of the slot, unaligned.
        let start = i * slot + u.int_in_range(0..=slot / 4)?;
        let end = (i + 1) * slot - u.int_in_range(0..=slot / 4)?;
        regions.push((start, end));
    }
    Ok(Config {
        arena,
        extra: EXTRA,
        max_cpus,
        regions,
    })
}

fn cpu(u: &mut Unstructured<'_>) -> Result<Cpu> {
    Ok(match u.arbitrary::<u8>()? {
        255 => Cpu::Max,
        b => Cpu::Id(b),
    })
}

/// 1..=MAX_SIZE bytes, log-uniform, with the class and page boundaries
/// often.
fn size(u: &mut Unstructured<'_>) -> Result<usize> {
    Ok(match u.int_in_range(0..=9)? {
        0 => *u.choose(&[
            1,
            8,
            16,
            PAGE_SIZE - 1,
            PAGE_SIZE,
            PAGE_SIZE + 1,
            2 * PAGE_SIZE,
            MAX_SMALL - 1,
            MAX_SMALL,
            MAX_SMALL + 1,
            64 * KIB,
            MAX_SIZE,
        ])?,
        1..=6 => {
            let bits = u.int_in_range(0..=13u32)?;
            (1 << bits) + u.int_in_range(0..=(1usize << bits) - 1)?
        }
        _ => {
            let bits = u.int_in_range(0..=19u32)?;
            (1 << bits) + u.int_in_range(0..=(1usize << bits) - 1)?
        }
    })
}

fn align_log2(u: &mut Unstructured<'_>) -> Result<u8> {
    Ok(if u.ratio(3, 4)? {
        u.int_in_range(0..=3)?
    } else {
        u.int_in_range(0..=MAX_ALIGN_LOG2 as u8)?
    })
}

fn op(u: &mut Unstructured<'_>) -> Result<Op> {
    Ok(match u.int_in_range(0..=33u8)? {
        0..=9 => Op::Alloc {
            size: size(u)?,
            align_log2: align_log2(u)?,
            zeroed: u.ratio(1, 8)?,
            cpu: cpu(u)?,
        },
        10..=16 => Op::Dealloc {
            pick: u.arbitrary()?,
            cpu: cpu(u)?,
        },
        17..=20 => Op::Realloc {
            pick: u.arbitrary()?,
            new_size: size(u)?,
            cpu: cpu(u)?,
        },
        21..=23 => Op::AllocPages {
            count: if u.ratio(1, 32)? {
                0
            } else {
                let bits = u.int_in_range(0..=MAX_PAGE_ALIGN_LOG2)?;
                ((1usize << bits) + u.int_in_range(0..=(1usize << bits) - 1)?).min(MAX_PAGES)
            },
            align: if u.ratio(1, 32)? {
                3
            } else if u.ratio(1, 2)? {
                1
            } else {
                1 << u.int_in_range(0..=MAX_PAGE_ALIGN_LOG2)?
            },
            zeroed: u.ratio(1, 4)?,
            below: if u.ratio(1, 2)? {
                // Up to a little past the largest arena, any byte.
                Some(u.int_in_range(0..=33 * MIB)?)
            } else {
                None
            },
            cpu: cpu(u)?,
        },
        24..=26 => Op::FreePages {
            pick: u.arbitrary()?,
            cpu: cpu(u)?,
        },
        27 => Op::DrainCpu(cpu(u)?),
        28 => Op::Reclaim,
        29 => Op::AddRegion {
            start: if u.ratio(1, 2)? {
                u.int_in_range(0..=EXTRA / PAGE_SIZE)? * PAGE_SIZE
            } else {
                u.int_in_range(0..=EXTRA)?
            },
            len: if u.ratio(1, 2)? {
                u.int_in_range(0..=64)? * PAGE_SIZE
            } else {
                u.int_in_range(0..=EXTRA)?
            },
        },
        30 => Op::Check,
        31 => Op::NestedDrain,
        32 => Op::Refused {
            pick: u.arbitrary()?,
            how: u.arbitrary()?,
            cpu: cpu(u)?,
        },
        _ => Op::Nested {
            size: size(u)?,
            align_log2: align_log2(u)?,
        },
    })
}
