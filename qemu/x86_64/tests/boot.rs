//! Boot facts, checked on every CPU: dense CPU indices with distinct APIC
//! ids, the interrupt guard really masks and restores, the timer ticks on
//! every CPU, and the heap regions are RAM from the memory map, disjoint,
//! outside the kernel image, covering RAM on both sides of the PCI hole
//! when the machine has RAM above 4 GiB.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::sync::atomic::{AtomicUsize, Ordering};

use kernel::{cpu, memmap, percpu, println, time};
use strata_alloc::Platform;

kernel::entry_point!(main);

static CHECKED: AtomicUsize = AtomicUsize::new(0);

macro_rules! check {
    ($ok:expr, $($arg:tt)*) => {
        if !$ok {
            println!("boot test: cpu {} FAIL: {}", percpu::index(), format_args!($($arg)*));
            return false;
        }
    };
}

fn main(k: &kernel::Kernel) -> bool {
    let me = k.cpu();
    check!(me < k.cpu_count(), "index {me} of {}", k.cpu_count());
    let apic_id = cpu::apic_id();
    check!(
        percpu::get(me).apic_id.load(Ordering::Relaxed) == apic_id,
        "per-CPU APIC id differs from CPUID's {apic_id}"
    );
    for other in (0..k.cpu_count()).filter(|&o| o != me) {
        let theirs = percpu::get(other).apic_id.load(Ordering::Relaxed);
        check!(
            theirs != apic_id,
            "cpu {other} has the same APIC id {apic_id}"
        );
    }
    check!(
        <kernel::platform::KernelPlatform as Platform>::cpu_id() == me,
        "cpu_id() is not the index"
    );

    check!(cpu::interrupts_enabled(), "interrupts are off in main");
    {
        let _outer = kernel::platform::IrqGuard::new();
        check!(!cpu::interrupts_enabled(), "guard did not mask interrupts");
        {
            let _inner = <kernel::platform::KernelPlatform as Platform>::disable_interrupts();
            check!(
                !cpu::interrupts_enabled(),
                "nested guard unmasked interrupts"
            );
        }
        check!(
            !cpu::interrupts_enabled(),
            "inner guard's drop unmasked interrupts"
        );
    }
    check!(
        cpu::interrupts_enabled(),
        "guard did not restore interrupts"
    );

    let ticks = || percpu::get(me).timer_ticks.load(Ordering::Relaxed);
    let before = ticks();
    let start = time::now_us();
    while ticks() < before + 5 && time::now_us() - start < 2_000_000 {
        core::hint::spin_loop();
    }
    check!(
        ticks() >= before + 5,
        "timer: {} ticks in 2 s",
        ticks() - before
    );

    if me == 0 {
        let info = k.boot_info();
        let regions = k.regions();
        let (kernel_start, kernel_end) = memmap::kernel_image();
        check!(!regions.is_empty(), "no heap regions");
        for (index, range) in regions.iter().enumerate() {
            let (start, end) = (range.start.as_u64(), range.end.as_u64());
            check!(
                start < end && start % 4096 == 0 && end % 4096 == 0,
                "region {index} malformed"
            );
            check!(
                start >= memmap::LOW_RESERVED,
                "region {index} in the reserved low memory"
            );
            check!(
                end <= kernel_start || start >= kernel_end,
                "region {index} overlaps the kernel"
            );
            check!(
                info.entries()
                    .iter()
                    .any(|e| e.is_ram() && e.addr <= start && end <= e.end()),
                "region {index} {start:#x}..{end:#x} is not inside one RAM entry"
            );
            for (other, them) in regions.iter().enumerate().skip(index + 1) {
                check!(
                    end <= them.start.as_u64() || them.end.as_u64() <= start,
                    "regions {index} and {other} overlap"
                );
            }
        }
        let high_ram = info
            .entries()
            .iter()
            .any(|e| e.is_ram() && e.end() > 1 << 32);
        if high_ram {
            check!(
                regions.iter().any(|r| r.end.as_u64() > 1 << 32),
                "RAM above 4 GiB is not used"
            );
            check!(
                regions.iter().any(|r| r.start.as_u64() < 1 << 32),
                "RAM below 4 GiB is not used"
            );
        }
        let low = regions.iter().any(|r| r.start.as_u64() < 1 << 20);
        check!(low, "no heap region below 1 MiB");
        let managed = kernel::heap::HEAP.stats().managed_pages();
        let given: u64 = regions
            .iter()
            .map(|r| (r.end.as_u64() - r.start.as_u64()) / 4096)
            .sum();
        check!(
            managed <= given,
            "heap manages {managed} pages of {given} given"
        );
        println!(
            "boot test: {} regions ({} pages), heap manages {managed} pages, RAM above 4 GiB: {high_ram}",
            regions.len(),
            given
        );
    }
    CHECKED.fetch_add(1, Ordering::AcqRel);
    println!("boot test: cpu {me} ok");
    true
}
