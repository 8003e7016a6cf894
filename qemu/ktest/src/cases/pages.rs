//! `page_api`: the page-frame API under concurrent use.
//!
//! On every CPU: runs of 1, 3 and 16 pages below each configured physical
//! limit (their whole run must end at or below it), `zeroed` pages that are
//! really zero even when the frames were dirty before, runs aligned to 2,
//! 16 and 512 pages, single pages through the CPU's page list (more than
//! it holds, some zeroed, half of them freed and taken again), and a
//! request combining all options. Every run is written with a pattern
//! while held (so two CPUs handed the same frames would see each other's
//! writes), then freed.

use strata_alloc::{PageAllocation, PageRequest, PhysAddr, PAGE_SIZE};

use crate::note::{fail, passed, Note};
use crate::{Ctx, Machine, TestResult};

/// Page counts requested below each limit.
const COUNTS: [usize; 3] = [1, 3, 16];
/// Alignments (in pages) requested: 8 KiB, 64 KiB and 2 MiB.
const ALIGNS: [usize; 3] = [2, 16, 512];

/// A page run held by the test; written with a pattern while held.
struct Run<'h, M: Machine> {
    heap: &'h strata_alloc::Heap<M::Platform>,
    allocation: PageAllocation,
    seed: u64,
}

impl<'h, M: Machine> Run<'h, M> {
    /// Allocates `count` pages with `request`; `what` names the request
    /// in a failure.
    fn new(
        ctx: &Ctx<'h, M>,
        request: PageRequest,
        count: usize,
        seed: u64,
        what: &str,
    ) -> Result<Self, Note> {
        let Some(allocation) = ctx.heap().alloc_pages(request) else {
            fail!("alloc_pages: {count} pages {what}: none");
        };
        let run = Run {
            heap: ctx.heap(),
            allocation,
            seed,
        };
        let phys = run.allocation.phys.as_u64();
        if run.allocation.count != count {
            fail!(
                "asked {count} pages at {phys:#x}, got {}",
                run.allocation.count
            );
        }
        if !phys.is_multiple_of(PAGE_SIZE as u64) {
            fail!("run at {phys:#x} is not page aligned");
        }
        let expected = phys as usize + ctx.config.phys_offset;
        if run.allocation.virt.as_usize() != expected {
            fail!(
                "run at phys {phys:#x} mapped at {:#x}, expected {expected:#x}",
                run.allocation.virt.as_usize()
            );
        }
        Ok(run)
    }

    fn phys(&self) -> u64 {
        self.allocation.phys.as_u64()
    }

    fn end(&self) -> u64 {
        self.phys() + (self.allocation.count * PAGE_SIZE) as u64
    }

    fn words(&self) -> *mut u64 {
        self.allocation.virt.as_mut_ptr::<u64>()
    }

    fn word_count(&self) -> usize {
        self.allocation.count * PAGE_SIZE / 8
    }

    /// Writes the run's pattern: one word per 64 bytes.
    fn fill(&mut self) {
        for index in (0..self.word_count()).step_by(8) {
            // SAFETY: `index` is within the run, which this test owns and
            // which is mapped at `virt`.
            unsafe {
                self.words()
                    .add(index)
                    .write_volatile(self.seed ^ index as u64)
            }
        }
    }

    /// Checks what [`fill`](Self::fill) wrote.
    fn check(&self) -> Result<(), Note> {
        for index in (0..self.word_count()).step_by(8) {
            // SAFETY: as in `fill`; the word was written there.
            let word = unsafe { self.words().add(index).read_volatile() };
            if word != self.seed ^ index as u64 {
                fail!(
                    "run at {:#x}: word {index} overwritten ({word:#x})",
                    self.phys()
                );
            }
        }
        Ok(())
    }

    /// Offset of the first non-zero byte, for a run allocated `zeroed`.
    fn first_nonzero(&self) -> Option<usize> {
        // SAFETY: the run is owned and mapped; `zeroed` initialised it.
        (0..self.word_count())
            .find(|&index| unsafe { self.words().add(index).read_volatile() } != 0)
    }
}

impl<M: Machine> Drop for Run<'_, M> {
    fn drop(&mut self) {
        // SAFETY: the run was allocated by this heap with this count and is
        // freed once, here; nothing refers to it any more.
        unsafe {
            self.heap
                .free_pages(self.allocation.phys, self.allocation.count)
        }
    }
}

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    let mut runs = 0usize;
    let mut seed = (ctx.cpu as u64) << 48;
    let mut next_seed = || {
        seed += 1;
        seed
    };

    for &limit in ctx.config.page_limits {
        let mut held: [Option<Run<'_, M>>; COUNTS.len()] = [const { None }; COUNTS.len()];
        for (slot, &count) in held.iter_mut().zip(&COUNTS) {
            let request = PageRequest::new(count).below(PhysAddr::new(limit));
            let mut run = Run::new(ctx, request, count, next_seed(), "below a limit")?;
            if run.end() > limit {
                fail!("{count} pages below {limit:#x} ended at {:#x}", run.end());
            }
            run.fill();
            *slot = Some(run);
            runs += 1;
        }
        for run in held.iter().flatten() {
            run.check()?;
        }
    }

    for round in 0..4 {
        let count = 8 << round;
        let mut dirty = Run::new(ctx, PageRequest::new(count), count, u64::MAX, "to dirty")?;
        dirty.fill();
        drop(dirty);
        let zeroed = Run::new(ctx, PageRequest::new(count).zeroed(), count, 0, "zeroed")?;
        if let Some(index) = zeroed.first_nonzero() {
            fail!(
                "zeroed run of {count} at {:#x} has data at byte {}",
                zeroed.phys(),
                index * 8
            );
        }
        runs += 2;
    }

    for &align in &ALIGNS {
        let mut run = Run::new(
            ctx,
            PageRequest::new(1).align(align),
            1,
            next_seed(),
            "aligned",
        )?;
        if run.phys() % (align * PAGE_SIZE) as u64 != 0 {
            fail!("run aligned to {align} pages at {:#x}", run.phys());
        }
        run.fill();
        run.check()?;
        runs += 1;
    }

    // Single pages: the CPU's page list, refilled and flushed in batches
    // while the other CPUs do the same. 96 held at once (more than a list
    // holds), every third zeroed, half freed and taken again.
    const SINGLES: usize = 96;
    let mut singles: [Option<Run<'_, M>>; SINGLES] = [const { None }; SINGLES];
    for round in 0..3 {
        for (i, slot) in singles.iter_mut().enumerate() {
            if round > 0 && i % 2 == 0 {
                continue;
            }
            let zeroed = i % 3 == 0;
            let request = if zeroed {
                PageRequest::new(1).zeroed()
            } else {
                PageRequest::new(1)
            };
            // Dropping the old run frees its page onto this CPU's list.
            *slot = None;
            let mut run = Run::new(ctx, request, 1, next_seed(), "single")?;
            if zeroed {
                if let Some(index) = run.first_nonzero() {
                    fail!(
                        "zeroed page at {:#x}: data at byte {}",
                        run.phys(),
                        index * 8
                    );
                }
            }
            run.fill();
            *slot = Some(run);
            runs += 1;
        }
        for run in singles.iter().flatten() {
            run.check()?;
        }
    }
    drop(singles);

    let limit = ctx.config.page_limits.last().copied().unwrap_or(u64::MAX);
    let request = PageRequest::new(5)
        .align(8)
        .zeroed()
        .below(PhysAddr::new(limit));
    let combined = Run::new(ctx, request, 5, 0, "aligned, zeroed, below")?;
    if combined.phys() % (8 * PAGE_SIZE) as u64 != 0 || combined.end() > limit {
        fail!(
            "5 pages, align 8, below {limit:#x}: got {:#x}",
            combined.phys()
        );
    }
    if combined.first_nonzero().is_some() {
        fail!("zeroed aligned run at {:#x} is not zero", combined.phys());
    }
    runs += 1;
    drop(combined);

    passed!("{runs} page runs, limits {:x?}", ctx.config.page_limits)
}
