//! The demonstration workload behind [`crate::demo`]: every CPU allocates a
//! mix of small and large objects, CPU 0 prints the heap's statistics while
//! they are live, everything is freed, drained and reclaimed, and CPU 0
//! prints the statistics again.

use alloc::vec::Vec;

use crate::block::Block;
use crate::note::{note, Note};
use crate::pattern::Rng;
use crate::{Ctx, Machine};

/// Random steps per CPU.
const STEPS: usize = 20_000;
/// Objects each CPU keeps live at most.
const LIVE: usize = 400;

/// Allocates and frees at random, keeping up to [`LIVE`] objects, which it
/// returns (with their seeds) along with the first problem found.
fn workload<M: Machine>(ctx: &Ctx<'_, M>) -> (Vec<(Block, u64)>, Result<(), Note>) {
    let mut rng = Rng::new(ctx.cpu, 9);
    let mut live: Vec<(Block, u64)> = Vec::with_capacity(LIVE);
    let start = ctx.m.time_us();
    let mut allocs = 0usize;
    for _ in 0..STEPS {
        if live.len() < LIVE && rng.below(3) != 0 {
            let size = rng.object_size();
            let Some(mut block) = Block::new(size, 8) else {
                return (live, Err(note!("alloc({size}) returned null")));
            };
            let seed = rng.next_u64();
            block.fill_sparse_or_full(seed);
            live.push((block, seed));
            allocs += 1;
        } else if !live.is_empty() {
            let (block, seed) = live.swap_remove(rng.below(live.len()));
            if !block.check_sparse_or_full(seed) {
                let error = note!("object {:#x}+{} corrupted", block.addr(), block.len());
                return (live, Err(error));
            }
        }
    }
    let bytes: usize = live.iter().map(|(block, _)| block.len()).sum();
    ctx.m.print(format_args!(
        "demo: cpu {} made {allocs} allocations in {} ms, holds {} objects ({} KiB)",
        ctx.cpu,
        (ctx.m.time_us() - start) / 1000,
        live.len(),
        bytes / 1024
    ));
    (live, Ok(()))
}

/// Every CPU passes every barrier, even after a failure, so that one
/// CPU's problem is reported instead of stalling the others.
pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> Result<(), Note> {
    let m = ctx.m;
    ctx.barrier()?;
    let (live, mut result) = workload(ctx);
    ctx.barrier()?;
    if ctx.cpu == 0 {
        m.print(format_args!("demo: heap while the objects are live:"));
        m.print(format_args!("{}", ctx.heap().stats()));
    }
    ctx.barrier()?;
    for (block, seed) in &live {
        if result.is_ok() && !block.check_sparse_or_full(*seed) {
            result = Err(note!(
                "object {:#x}+{} corrupted",
                block.addr(),
                block.len()
            ));
        }
    }
    drop(live);
    if ctx.cpu == 0 {
        m.pause_background(true);
    }
    ctx.barrier()?;
    ctx.heap().drain_cpu(ctx.cpu);
    ctx.barrier()?;
    if ctx.cpu == 0 {
        ctx.heap().reclaim();
        let stats = ctx.heap().stats();
        m.print(format_args!(
            "demo: heap after freeing, drain_cpu on every CPU and reclaim:"
        ));
        m.print(format_args!("{stats}"));
        if result.is_ok() && stats.free_pages() != ctx.config.baseline_free_pages {
            result = Err(note!(
                "{} free pages at the end, {} after init",
                stats.free_pages(),
                ctx.config.baseline_free_pages
            ));
        }
        m.pause_background(false);
    }
    ctx.barrier()?;
    result
}
