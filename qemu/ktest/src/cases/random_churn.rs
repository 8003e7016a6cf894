//! `random_churn`: random allocation, free and realloc on every CPU at once.
//!
//! Each CPU keeps a table of [`SLOTS`] live objects. A step picks a slot at
//! random: an empty slot gets a new object of a random size (mostly small,
//! see `Rng::object_size`) and alignment (1 B .. 4 KiB), sometimes through
//! `alloc_zeroed`, which must then be zero; a full slot is checked against
//! its fill pattern and then freed or reallocated to a new size (the common
//! prefix must survive). Every [`SCAN_EVERY`] steps the live objects are
//! sorted by address and checked for overlap. Objects of other CPUs are
//! caught by the pattern checks: an overlap across CPUs overwrites a
//! pattern on one side.

use crate::block::Block;
use crate::note::{fail, passed};
use crate::pattern::Rng;
use crate::{Ctx, Machine, TestResult};

/// Live objects per CPU.
const SLOTS: usize = 128;
/// Random steps per CPU.
const STEPS: usize = 20_000;
/// Steps between two overlap scans.
const SCAN_EVERY: usize = 2_500;
/// Largest alignment requested, as a power of two (4 KiB).
const MAX_ALIGN_SHIFT: usize = 12;

struct Slot {
    block: Block,
    seed: u64,
}

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    let mut rng = Rng::new(ctx.cpu, 1);
    let mut slots: [Option<Slot>; SLOTS] = [const { None }; SLOTS];
    let (mut allocs, mut reallocs, mut scans) = (0usize, 0usize, 0usize);

    for step in 0..STEPS {
        let slot = &mut slots[rng.below(SLOTS)];
        match slot.take() {
            None => {
                let size = rng.object_size();
                let align = 1 << rng.below(MAX_ALIGN_SHIFT + 1);
                let zeroed = rng.below(8) == 0;
                let layout = core::alloc::Layout::from_size_align(size, align).unwrap();
                let block = if zeroed {
                    Block::alloc_zeroed(layout)
                } else {
                    Block::alloc(layout)
                };
                let Some(mut block) = block else {
                    fail!("step {step}: alloc({size}, align {align}) returned null");
                };
                if block.addr() % align != 0 {
                    fail!("alloc({size}, align {align}) returned {:#x}", block.addr());
                }
                if zeroed {
                    if let Some(offset) = block.check_zero() {
                        fail!(
                            "alloc_zeroed({size}) at {:#x}: byte {offset} not zero",
                            block.addr()
                        );
                    }
                }
                let seed = rng.next_u64();
                block.fill(seed);
                *slot = Some(Slot { block, seed });
                allocs += 1;
            }
            Some(Slot { block, seed }) => {
                if let Some(offset) = block.check(block.len(), seed) {
                    fail!(
                        "object {:#x}+{} corrupted at byte {offset}",
                        block.addr(),
                        block.len()
                    );
                }
                if rng.below(3) == 0 {
                    let old = block.len();
                    let new = rng.object_size();
                    let mut block = match block.realloc(new) {
                        Ok(block) => block,
                        Err(block) => {
                            fail!("realloc {:#x} from {old} to {new} failed", block.addr())
                        }
                    };
                    if block.addr() % block.layout().align() != 0 {
                        fail!(
                            "realloc lost alignment {} at {:#x}",
                            block.layout().align(),
                            block.addr()
                        );
                    }
                    if let Some(offset) = block.check(old.min(new), seed) {
                        fail!(
                            "realloc {old} -> {new} at {:#x} lost byte {offset}",
                            block.addr()
                        );
                    }
                    let seed = rng.next_u64();
                    block.fill(seed);
                    *slot = Some(Slot { block, seed });
                    reallocs += 1;
                }
                // Otherwise the block is dropped here: freed.
            }
        }
        if step % SCAN_EVERY == SCAN_EVERY - 1 {
            check_overlap(&slots)?;
            scans += 1;
        }
    }
    for Slot { block, seed } in slots.iter().flatten() {
        if let Some(offset) = block.check(block.len(), *seed) {
            fail!(
                "object {:#x} corrupted at byte {offset} before the final free",
                block.addr()
            );
        }
    }
    drop(slots);
    passed!("{STEPS} steps: {allocs} allocs, {reallocs} reallocs, {scans} overlap scans")
}

/// Sorts the live objects by address and fails on any overlap.
fn check_overlap(slots: &[Option<Slot>; SLOTS]) -> Result<(), crate::Note> {
    let mut ranges = [(0usize, 0usize); SLOTS];
    let mut count = 0;
    for slot in slots.iter().flatten() {
        ranges[count] = (slot.block.addr(), slot.block.addr() + slot.block.len());
        count += 1;
    }
    let ranges = &mut ranges[..count];
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if pair[0].1 > pair[1].0 {
            fail!(
                "objects overlap: {:#x}..{:#x} and {:#x}..{:#x}",
                pair[0].0,
                pair[0].1,
                pair[1].0,
                pair[1].1
            );
        }
    }
    Ok(())
}
