//! `exhaustion`: running out of memory and recovering.
//!
//! CPU 0 allocates until the allocator returns null, first 1 MiB blocks,
//! then ever smaller ones (64 KiB, 4 KiB, 256 B, 64 B) to use up what is
//! left, frees everything, and does it all again; the other CPUs wait at
//! the barrier meanwhile (their interrupt handlers may still allocate, and
//! must cope with null while the heap is empty). It checks that
//! - the first fill got at least [`MIN_FILL_PERCENT`] of the memory that
//!   was free, so the heap really was exhausted and not just stuck;
//! - null is returned, not a panic, and no two blocks overlap (the block
//!   list is sorted by address and checked before it is freed);
//! - the blocks up to [`MARKED_MAX`] bytes keep a head and a tail mark
//!   while held (larger ones are left untouched: writing one word into
//!   every MiB of a multi-GiB guest makes the emulator back all of it);
//! - the second fill gets as much as the first (within
//!   [`REFILL_TOLERANCE_PERCENT`]): freeing gave everything back;
//! - ordinary allocations succeed afterwards.
//!
//! The list of blocks is allocated before each fill with room for every
//! block the fill can take (bounded by [`SMALL_BLOCKS_MAX`] besides the
//! large ones), so the fill itself never needs memory for bookkeeping.

use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use strata_alloc::PAGE_SIZE;

use crate::block::Block;
use crate::note::{fail, note, passed, Note};
use crate::{Ctx, Machine, Outcome, TestResult};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Block sizes, largest first: each phase fills what the previous left.
const PHASES: [usize; 5] = [MIB, 64 * KIB, 4 * KIB, 256, 64];
/// Blocks of the phases after the first that one fill may take.
const SMALL_BLOCKS_MAX: usize = 128 * 1024;
/// Blocks up to this size carry a head and a tail mark.
const MARKED_MAX: usize = 64 * KIB;
/// Upper bound on the time of one fill.
const TIME_LIMIT_US: u64 = 20_000_000;
/// The first fill must get this much of the memory that was free.
const MIN_FILL_PERCENT: usize = 90;
/// The second fill may get this much less than the first (memory that
/// other CPUs' interrupt handlers held at that moment).
const REFILL_TOLERANCE_PERCENT: usize = 1;
/// Marks a live block's head and tail.
const MAGIC: u64 = 0x5354_5241_5441_4558; // "STRATAEX"

/// The blocks of one fill, as (address, size).
struct Fill {
    blocks: Vec<(NonNull<u8>, usize)>,
    bytes: usize,
    /// Blocks per phase.
    per_phase: [usize; PHASES.len()],
}

impl Fill {
    /// An empty fill with room for `capacity` blocks.
    fn new(capacity: usize) -> Result<Fill, Note> {
        let mut blocks = Vec::new();
        if blocks.try_reserve_exact(capacity).is_err() {
            fail!("no room for a list of {capacity} blocks");
        }
        Ok(Fill {
            blocks,
            bytes: 0,
            per_phase: [0; PHASES.len()],
        })
    }

    fn push(&mut self, mut block: Block, phase: usize) {
        let size = block.len();
        if size <= MARKED_MAX {
            let addr = block.addr() as u64;
            block.write_word(0, MAGIC ^ addr);
            block.write_word(size - 8, !MAGIC ^ addr);
        }
        self.blocks.push((block.into_raw(), size));
        self.bytes += size;
        self.per_phase[phase] += 1;
    }

    /// Frees every block after checking that none overlaps the next and
    /// that the marks are intact. Frees all even after finding a problem,
    /// and reports the first.
    fn free_all(mut self) -> Result<(), Note> {
        let mut first_error = None;
        self.blocks
            .sort_unstable_by_key(|&(ptr, _)| ptr.as_ptr() as usize);
        for pair in self.blocks.windows(2) {
            let ((a, a_len), (b, _)) = (pair[0], pair[1]);
            if a.as_ptr() as usize + a_len > b.as_ptr() as usize {
                first_error = Some(note!("blocks {a:p}+{a_len} and {b:p} overlap"));
                break;
            }
        }
        for (ptr, size) in self.blocks.drain(..) {
            let layout = Layout::from_size_align(size, 8).expect("sizes come from PHASES");
            // SAFETY: each entry came from `Block::into_raw` of a block with
            // exactly this layout and is taken back once, as the list drains.
            let block = unsafe { Block::from_raw(ptr, layout) };
            let addr = block.addr() as u64;
            if size <= MARKED_MAX
                && first_error.is_none()
                && (block.read_word(0) != MAGIC ^ addr
                    || block.read_word(size - 8) != !MAGIC ^ addr)
            {
                first_error = Some(note!("block {addr:#x}+{size} overwritten while held"));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Allocates until every phase's size returns null (or a bound is hit).
fn fill<M: Machine>(ctx: &Ctx<'_, M>, capacity: usize) -> Result<(Fill, Option<Note>), Note> {
    let mut fill = Fill::new(capacity)?;
    let start = ctx.m.time_us();
    for (phase, &size) in PHASES.iter().enumerate() {
        while let Some(block) = Block::new(size, 8) {
            if fill.blocks.len() == capacity {
                drop(block);
                return Ok((
                    fill,
                    Some(note!("still allocating after {capacity} blocks")),
                ));
            }
            fill.push(block, phase);
            if fill.blocks.len() % 256 == 0 && ctx.m.time_us() - start > TIME_LIMIT_US {
                let mib = fill.bytes / MIB;
                return Ok((
                    fill,
                    Some(note!("fill too slow: {mib} MiB in {TIME_LIMIT_US} us")),
                ));
            }
        }
    }
    Ok((fill, None))
}

fn exhaust<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    let free_before = ctx.heap().stats().free_pages() as usize * PAGE_SIZE;
    let capacity = free_before / PHASES[0] + SMALL_BLOCKS_MAX;
    let start = ctx.m.time_us();

    let (first, error) = fill(ctx, capacity)?;
    let first_mib = first.bytes / MIB;
    let (first_bytes, first_blocks, phases) = (first.bytes, first.blocks.len(), first.per_phase);
    let freed = first.free_all();
    if let Some(error) = error {
        return Err(error);
    }
    freed?;
    let first_ms = (ctx.m.time_us() - start) / 1000;

    let (second, error) = fill(ctx, capacity)?;
    let second_bytes = second.bytes;
    let freed = second.free_all();
    if let Some(error) = error {
        return Err(error);
    }
    freed?;

    if first_bytes * 100 < free_before * MIN_FILL_PERCENT {
        fail!(
            "got only {first_mib} MiB before null, {} MiB were free",
            free_before / MIB
        );
    }
    if second_bytes * 100 < first_bytes * (100 - REFILL_TOLERANCE_PERCENT) {
        fail!(
            "second fill got {} MiB, first {first_mib} MiB: memory was lost",
            second_bytes / MIB
        );
    }
    let Some(mut after) = Block::new(MIB, 4096) else {
        fail!("no 1 MiB block after freeing everything");
    };
    after.fill_sparse(1);
    let numbers: Vec<u32> = (0..1000).collect();
    if numbers.iter().sum::<u32>() != 999 * 1000 / 2 {
        fail!("vec after recovery is wrong");
    }
    passed!(
        "{first_mib} MiB of {} MiB free in {first_blocks} blocks {phases:?}, refill {} MiB, first fill {first_ms} ms",
        free_before / MIB,
        second_bytes / MIB
    )
}

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    let result = if ctx.cpu == 0 {
        exhaust(ctx)
    } else {
        Ok(Outcome::Passed(note!(
            "parked while cpu 0 exhausted the heap"
        )))
    };
    // The other CPUs wait here until CPU 0 has given everything back.
    ctx.barrier()?;
    result
}
