//! `large`: allocations of 64 KiB to 4 MiB through the global allocator.
//!
//! These bypass the size classes and come from page runs. Each CPU holds a
//! set of them at once (with alignments up to 2 MiB), writes a pattern word
//! into every page of each (so two CPUs given overlapping runs would see it),
//! checks them all, then grows and shrinks each with `realloc`, checking
//! that the contents survive every move.

use crate::block::Block;
use crate::note::{fail, passed};
use crate::pattern::Rng;
use crate::{Ctx, Machine, TestResult};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Sizes and alignments held at the same time (about 7 MiB per CPU).
const SHAPES: [(usize, usize); 7] = [
    (64 * KIB, 8),
    (100 * KIB + 3, 16),
    (256 * KIB, 4 * KIB),
    (MIB, 64 * KIB),
    (MIB + MIB / 2 + 17, 8),
    (2 * MIB, 2 * MIB),
    (4 * MIB, 4 * KIB),
];
/// Rounds of the whole set.
const ROUNDS: usize = 3;

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    let mut rng = Rng::new(ctx.cpu, 4);
    let mut bytes = 0;
    let mut reallocs = 0;
    for _ in 0..ROUNDS {
        let mut held: [Option<(Block, u64)>; SHAPES.len()] = [const { None }; SHAPES.len()];
        for (slot, &(size, align)) in held.iter_mut().zip(&SHAPES) {
            let Some(mut block) = Block::new(size, align) else {
                fail!("alloc({size}, align {align}) returned null");
            };
            if block.addr() % align != 0 {
                fail!("alloc({size}, align {align}) at {:#x}", block.addr());
            }
            let seed = rng.next_u64();
            block.fill_sparse(seed);
            bytes += size;
            *slot = Some((block, seed));
        }
        for (block, seed) in held.iter().flatten() {
            if let Some(offset) = block.check_sparse(block.len(), *seed) {
                fail!(
                    "block {:#x}+{} overwritten at {offset}",
                    block.addr(),
                    block.len()
                );
            }
        }
        for slot in held.iter_mut() {
            let Some((mut block, seed)) = slot.take() else {
                continue;
            };
            let size = block.len();
            let align = block.layout().align();
            // Grow by up to half, then shrink to between a quarter and a half.
            for new in [size + rng.range(1, size / 2), rng.range(size / 4, size / 2)] {
                let old = block.len();
                block = match block.realloc(new) {
                    Ok(block) => block,
                    Err(block) => fail!("realloc {:#x} from {old} to {new} failed", block.addr()),
                };
                if block.addr() % align != 0 {
                    fail!(
                        "realloc to {new} lost alignment {align}: {:#x}",
                        block.addr()
                    );
                }
                if let Some(offset) = block.check_sparse(size, seed) {
                    fail!(
                        "realloc {old} -> {new} at {:#x} lost offset {offset}",
                        block.addr()
                    );
                }
                reallocs += 1;
            }
            // The block is freed here.
        }
    }
    passed!(
        "{} MiB in {} blocks, {reallocs} reallocs",
        bytes / MIB,
        ROUNDS * SHAPES.len()
    )
}
