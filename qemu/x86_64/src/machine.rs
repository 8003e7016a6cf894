//! [`KernelMachine`]: this kernel as the in-kernel test suite
//! (`strata_ktest::Machine`) sees it.

use core::fmt;
use core::sync::atomic::Ordering;

use strata_alloc::Heap;

use crate::platform::KernelPlatform;
use crate::{background, heap, percpu, serial, smp, time};

/// The machine handed to `strata_ktest::run` and `strata_ktest::demo`.
pub struct KernelMachine {
    _private: (),
}

pub(crate) static MACHINE: KernelMachine = KernelMachine { _private: () };

impl strata_ktest::Machine for KernelMachine {
    type Platform = KernelPlatform;

    fn heap(&self) -> &'static Heap<KernelPlatform> {
        &heap::HEAP
    }

    fn cpu_count(&self) -> usize {
        smp::ONLINE.load(Ordering::Acquire)
    }

    fn cpu_index(&self) -> usize {
        percpu::index()
    }

    fn print(&self, args: fmt::Arguments<'_>) {
        serial::print_line(args);
    }

    fn time_us(&self) -> u64 {
        time::now_us()
    }

    fn timer_allocations(&self, cpu: usize) -> Option<u64> {
        Some(percpu::get(cpu).timer_allocations.load(Ordering::Relaxed))
    }

    fn pause_background(&self, paused: bool) {
        background::pause(paused);
    }
}
