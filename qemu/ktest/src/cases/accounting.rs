//! `accounting`: every page comes back.
//!
//! With background allocation paused and every test object freed, each CPU
//! drains its own cache (`drain_cpu`), then CPU 0 calls `reclaim` and
//! compares `stats().free_pages()` with the value read right after
//! `Heap::init`. A difference is memory the allocator lost (or handed out
//! twice). CPU 0 prints the statistics table at that point. Background
//! allocation is resumed afterwards.

use crate::note::{note, passed};
use crate::{Ctx, Machine, TestResult};

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    if ctx.cpu == 0 {
        ctx.m.pause_background(true);
    }
    ctx.barrier()?;
    ctx.heap().drain_cpu(ctx.cpu);
    ctx.barrier()?;
    let result = if ctx.cpu == 0 {
        ctx.heap().reclaim();
        let stats = ctx.heap().stats();
        let baseline = ctx.config.baseline_free_pages;
        ctx.m.print(format_args!(
            "ktest: heap after drain_cpu on every CPU and reclaim:"
        ));
        ctx.m.print(format_args!("{stats}"));
        ctx.m.pause_background(false);
        if stats.free_pages() != baseline {
            let diff = stats.free_pages() as i64 - baseline as i64;
            Err(note!(
                "{} free pages after drain and reclaim, {baseline} after init ({diff:+})",
                stats.free_pages()
            ))
        } else {
            passed!("{baseline} free pages, as after init")
        }
    } else {
        passed!("drained")
    };
    ctx.barrier()?;
    result
}
