//! How a kernel wires strata in: a sketch of the integration points, for
//! x86_64 and aarch64.
//!
//! ```text
//! cargo build --example kernel --target x86_64-unknown-none
//! cargo build --example kernel --target aarch64-unknown-none
//! ```
//!
//! It links into an ELF whose entry `_start` sets up a boot stack and calls
//! [`kernel_main`] with a [`BootInfo`]. A real kernel gets that from its
//! boot protocol (Limine, multiboot2, PVH, a device tree) and links with its
//! own linker script; the test kernels under `qemu/` are complete ones that
//! boot. What this file shows:
//!
//! * a `Platform` for each architecture, chosen with `cfg(target_arch)`:
//!   the CPU id from the per-CPU area (GS base on x86_64, `TPIDR_EL1` on
//!   aarch64), and an interrupt guard that saves the interrupt flag
//!   (`pushfq` / `DAIF`), masks interrupts and restores the saved state;
//! * the heap in a `static`, as the `#[global_allocator]`;
//! * `init` from the boot loader's memory map: the largest usable range
//!   first, then the others one by one, so one odd entry (too small, or
//!   overlapping) costs that entry only;
//! * `Box`, `Vec`, `BTreeMap`, `String` once `init` returns;
//! * the page API: a zeroed page-table page, a trampoline page below 1 MiB
//!   for the application processors, a 2 MiB-aligned DMA buffer below 4 GiB;
//! * CPU bring-up and take-down (`drain_stopped_cpu`), memory pressure (`reclaim`)
//!   and the statistics table on the serial console.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "examples/kernel.rs is a bare-metal kernel; build it with\n  \
         cargo build --example kernel --target x86_64-unknown-none\n  \
         cargo build --example kernel --target aarch64-unknown-none"
    );
}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;

    use alloc::boxed::Box;
    use alloc::collections::BTreeMap;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::fmt::Write;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use strata_alloc::buddy::MAX_REGIONS;
    use strata_alloc::{Heap, PageRequest, PhysAddr, PhysRange, Platform, PAGE_SIZE};

    /// CPUs this kernel supports; each gets a strata CPU cache.
    pub const MAX_CPUS: usize = 64;

    /// The kernel heap: every `Box`, `Vec` and `BTreeMap` lands here.
    #[global_allocator]
    pub static HEAP: Heap<KernelPlatform> = Heap::new();

    // ---- what the boot loader hands over ----------------------------------

    /// One entry of the boot loader's memory map.
    #[repr(C)]
    pub struct MemoryRegion {
        /// Physical start.
        pub base: u64,
        /// Length in bytes.
        pub len: u64,
        /// [`USABLE`], or anything else (reserved, ACPI, the kernel image,
        /// the loader's own data…).
        pub kind: u32,
    }

    /// Free RAM that nothing else uses.
    pub const USABLE: u32 = 1;

    /// What the boot stub passes to [`kernel_main`].
    #[repr(C)]
    pub struct BootInfo {
        /// The memory map, `memory_map_len` entries.
        pub memory_map: *const MemoryRegion,
        /// Entries in the map.
        pub memory_map_len: usize,
        /// Base of the direct map of all physical memory (the HHDM):
        /// `virt = phys + phys_offset`. 0 if memory is identity-mapped.
        pub phys_offset: usize,
    }

    // ---- the per-CPU area and the platform ---------------------------------

    /// A CPU's private data. Its first field is what the `Platform` reads.
    #[repr(C, align(64))]
    #[derive(Copy, Clone)]
    pub struct PerCpu {
        /// Dense CPU index: 0 for the boot CPU, then in bring-up order.
        pub index: usize,
    }

    /// One per CPU, found through a CPU register (see [`arch`]).
    pub static PER_CPU: [PerCpu; MAX_CPUS] = {
        let mut cpus = [PerCpu { index: 0 }; MAX_CPUS];
        let mut i = 0;
        while i < MAX_CPUS {
            cpus[i].index = i;
            i += 1;
        }
        cpus
    };

    /// strata's view of this machine.
    pub struct KernelPlatform;

    impl Platform for KernelPlatform {
        type IrqGuard = arch::IrqGuard;

        #[inline(always)]
        fn cpu_id() -> usize {
            arch::cpu_id()
        }

        #[inline(always)]
        fn disable_interrupts() -> arch::IrqGuard {
            arch::IrqGuard::new()
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub mod arch {
        //! x86_64: the GS base points at this CPU's [`PerCpu`].
        use super::PerCpu;
        use core::arch::asm;

        const IA32_GS_BASE: u32 = 0xC000_0101;
        const RFLAGS_IF: u64 = 1 << 9;

        /// Points the GS base at `cpu`'s per-CPU area. Runs on each CPU
        /// before its first allocation.
        pub fn init_this_cpu(cpu: &'static PerCpu) {
            let addr = cpu as *const PerCpu as u64;
            // SAFETY: writing IA32_GS_BASE only changes what `gs:`-relative
            // loads read; nothing else in this kernel uses GS.
            unsafe {
                asm!("wrmsr", in("ecx") IA32_GS_BASE, in("eax") addr as u32,
                     in("edx") (addr >> 32) as u32, options(nostack, preserves_flags));
            }
        }

        /// `PerCpu::index` of this CPU: one `gs:`-relative load.
        #[inline(always)]
        pub fn cpu_id() -> usize {
            let id: usize;
            // SAFETY: GS points at this CPU's `PerCpu` (init_this_cpu), whose
            // first field is the index.
            unsafe {
                asm!("mov {}, gs:[0]", out(reg) id,
                     options(nostack, preserves_flags, readonly, pure));
            }
            id
        }

        /// Interrupts masked until drop; then the saved state comes back.
        pub struct IrqGuard {
            were_enabled: bool,
        }

        impl IrqGuard {
            /// Saves RFLAGS.IF and masks interrupts.
            #[inline(always)]
            pub fn new() -> Self {
                let flags: u64;
                // SAFETY: reads RFLAGS through the stack and clears IF. No
                // `nomem`: this is a compiler barrier, so no memory access
                // moves out of the masked section.
                unsafe { asm!("pushfq", "pop {}", "cli", out(reg) flags) };
                IrqGuard {
                    were_enabled: flags & RFLAGS_IF != 0,
                }
            }
        }

        impl Drop for IrqGuard {
            #[inline(always)]
            fn drop(&mut self) {
                if self.were_enabled {
                    // SAFETY: interrupts were enabled when the guard was
                    // made; `sti` restores that (a compiler barrier too).
                    unsafe { asm!("sti", options(nostack)) };
                }
            }
        }

        /// COM1, 8N1 as the firmware left it.
        pub struct Serial;

        impl Serial {
            /// The console.
            pub fn new(_phys_offset: usize) -> Self {
                Serial
            }
        }

        impl core::fmt::Write for Serial {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                for b in s.bytes() {
                    // SAFETY: port I/O on COM1: wait for the transmit
                    // holding register to empty (LSR bit 5), then send.
                    unsafe {
                        loop {
                            let lsr: u8;
                            asm!("in al, dx", out("al") lsr, in("dx") 0x3fdu16,
                                 options(nomem, nostack, preserves_flags));
                            if lsr & 0x20 != 0 {
                                break;
                            }
                        }
                        asm!("out dx, al", in("dx") 0x3f8u16, in("al") b,
                             options(nomem, nostack, preserves_flags));
                    }
                }
                Ok(())
            }
        }

        /// Stops this CPU.
        pub fn halt() -> ! {
            loop {
                // SAFETY: masks interrupts and waits; nothing follows.
                unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
            }
        }

        // The entry point: a boot stack, then kernel_main(boot_info) with the
        // loader's first-argument register (rdi) untouched.
        core::arch::global_asm!(
            ".globl _start",
            "_start:",
            "lea rsp, [rip + {stack}]",
            "add rsp, {size}",
            "call {main}",
            "ud2",
            stack = sym super::BOOT_STACK,
            size = const super::BOOT_STACK_SIZE,
            main = sym super::kernel_main,
        );
    }

    #[cfg(target_arch = "aarch64")]
    pub mod arch {
        //! aarch64: `TPIDR_EL1` points at this CPU's [`PerCpu`].
        use super::PerCpu;
        use core::arch::asm;

        /// Points `TPIDR_EL1` at `cpu`'s per-CPU area. Runs on each CPU
        /// before its first allocation.
        pub fn init_this_cpu(cpu: &'static PerCpu) {
            // SAFETY: TPIDR_EL1 is a scratch register this kernel reserves
            // for the per-CPU pointer.
            unsafe {
                asm!("msr tpidr_el1, {}", in(reg) cpu as *const PerCpu as usize,
                     options(nomem, nostack, preserves_flags));
            }
        }

        /// `PerCpu::index` of this CPU; out of range (the shared path)
        /// before `init_this_cpu`.
        #[inline(always)]
        pub fn cpu_id() -> usize {
            let base: *const PerCpu;
            // SAFETY: reads a system register.
            unsafe {
                asm!("mrs {}, tpidr_el1", out(reg) base,
                     options(nomem, nostack, preserves_flags));
            }
            if base.is_null() {
                return usize::MAX;
            }
            // SAFETY: a non-null TPIDR_EL1 points at this CPU's `PerCpu`,
            // a `static`.
            unsafe { (*base).index }
        }

        /// Interrupts masked until drop; then the saved `DAIF` comes back.
        pub struct IrqGuard {
            daif: u64,
        }

        impl IrqGuard {
            /// Saves `DAIF` and masks IRQ and FIQ.
            #[inline(always)]
            pub fn new() -> Self {
                let daif: u64;
                // SAFETY: reads DAIF and sets the I and F masks. No `nomem`:
                // a compiler barrier, so no memory access leaves the masked
                // section.
                unsafe { asm!("mrs {}, daif", "msr daifset, #3", out(reg) daif, options(nostack)) };
                IrqGuard { daif }
            }
        }

        impl Drop for IrqGuard {
            #[inline(always)]
            fn drop(&mut self) {
                // SAFETY: restores the DAIF value saved by `new`.
                unsafe { asm!("msr daif, {}", in(reg) self.daif, options(nostack)) };
            }
        }

        /// The PL011 UART of QEMU's `virt` board (a real kernel takes its
        /// address from the device tree), through the direct map.
        pub struct Serial {
            base: usize,
        }

        impl Serial {
            /// The console.
            pub fn new(phys_offset: usize) -> Self {
                Serial {
                    base: phys_offset + 0x0900_0000,
                }
            }
        }

        impl core::fmt::Write for Serial {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                let (dr, fr) = (self.base as *mut u32, (self.base + 0x18) as *const u32);
                for b in s.bytes() {
                    // SAFETY: MMIO on the UART: wait while the transmit FIFO
                    // is full (FR bit 5), then write the data register.
                    unsafe {
                        while fr.read_volatile() & (1 << 5) != 0 {}
                        dr.write_volatile(b as u32);
                    }
                }
                Ok(())
            }
        }

        /// Stops this CPU.
        pub fn halt() -> ! {
            loop {
                // SAFETY: masks interrupts and waits; nothing follows.
                unsafe { asm!("msr daifset, #3", "wfi", options(nomem, nostack)) };
            }
        }

        // The entry point: a boot stack, then kernel_main(boot_info) with the
        // loader's first-argument register (x0) untouched.
        core::arch::global_asm!(
            ".globl _start",
            "_start:",
            "adrp x9, {stack}",
            "add x9, x9, :lo12:{stack}",
            "add x9, x9, #{pages}, lsl #12",
            "mov sp, x9",
            "bl {main}",
            "b .",
            stack = sym super::BOOT_STACK,
            pages = const super::BOOT_STACK_SIZE / 4096,
            main = sym super::kernel_main,
        );
    }

    /// The boot CPU's stack until the kernel sets up its own.
    #[repr(C, align(4096))]
    pub struct BootStack(core::cell::UnsafeCell<[u8; BOOT_STACK_SIZE]>);
    // SAFETY: only the boot CPU's entry code uses it, as its stack.
    unsafe impl Sync for BootStack {}
    /// Bytes of the boot stack (pages, at most 4095 of them).
    pub const BOOT_STACK_SIZE: usize = 64 * 1024;
    /// The boot stack.
    pub static BOOT_STACK: BootStack = BootStack(core::cell::UnsafeCell::new([0; BOOT_STACK_SIZE]));

    // ---- bring-up ------------------------------------------------------------

    /// Hands the usable memory to the heap: the largest range to `init`,
    /// the rest to `add_region`, each on its own. Returns the regions used.
    fn init_heap(map: &[MemoryRegion], phys_offset: usize, log: &mut impl Write) -> usize {
        let usable = || {
            map.iter()
                .filter(|r| r.kind == USABLE)
                .filter_map(|r| PhysRange::from_start_len(PhysAddr::new(r.base), r.len))
        };
        let len = |r: &PhysRange| r.end.as_u64() - r.start.as_u64();
        let Some(largest) = usable().max_by_key(len) else {
            let _ = writeln!(log, "no usable memory");
            arch::halt();
        };
        // SAFETY: the loader marks a range usable only if it is free RAM
        // (the kernel image, page tables and boot data are marked
        // otherwise), and its direct map covers all RAM at
        // `phys + phys_offset`. The heap owns the ranges from here on.
        if let Err(e) = unsafe { HEAP.init(phys_offset, MAX_CPUS, &[largest]) } {
            let _ = writeln!(log, "heap init: {e}");
            arch::halt();
        }
        let mut regions = 1;
        for range in usable().filter(|r| *r != largest) {
            if regions == MAX_REGIONS {
                let _ = writeln!(log, "heap: more usable ranges than regions; {range} unused");
                continue;
            }
            // SAFETY: as for `init`, for this range.
            match unsafe { HEAP.add_region(range) } {
                Ok(()) => regions += 1,
                // A few KiB below 1 MiB, say: too small to be worth a region.
                Err(e) => {
                    let _ = writeln!(log, "heap: {range} skipped: {e}");
                }
            }
        }
        regions
    }

    /// The direct-map base, for the panic handler's console.
    static PHYS_OFFSET: AtomicUsize = AtomicUsize::new(0);

    /// The boot CPU's entry, called by `_start`.
    #[no_mangle]
    pub extern "C" fn kernel_main(boot: &'static BootInfo) -> ! {
        arch::init_this_cpu(&PER_CPU[0]);
        PHYS_OFFSET.store(boot.phys_offset, Ordering::Relaxed);
        let mut serial = arch::Serial::new(boot.phys_offset);
        // SAFETY: the loader's map: `memory_map_len` entries, valid for as
        // long as its memory is not marked usable (it is not).
        let map = unsafe { core::slice::from_raw_parts(boot.memory_map, boot.memory_map_len) };
        let regions = init_heap(map, boot.phys_offset, &mut serial);
        let _ = writeln!(serial, "heap: {regions} regions");

        // The global allocator works from here on.
        let mut names: BTreeMap<u32, String> = BTreeMap::new();
        for irq in 32..48 {
            names.insert(irq, alloc::format!("irq{irq}"));
        }
        let ring: Box<[u64; 512]> = Box::new([0; 512]);
        let mut tasks: Vec<Box<Task>> = (0..64).map(|id| Box::new(Task { id, ticks: 0 })).collect();
        tasks.retain(|t| t.id % 2 == 0);
        tasks.iter_mut().for_each(|t| t.ticks += 1);
        let ticks: u64 = tasks.iter().map(|t| t.ticks).sum();
        assert!(names[&40] == "irq40" && ring.len() == 512 && ticks == 32);

        // Page frames: a zeroed page table.
        let pml4 = HEAP
            .alloc_pages(PageRequest::new(1).zeroed())
            .expect("a page table");
        // A real-mode trampoline for the application processors.
        let trampoline = HEAP.alloc_pages(PageRequest::new(1).below(PhysAddr::new(1 << 20)));
        // A DMA buffer for a device that addresses 32 bits, 2 MiB-aligned.
        let dma = HEAP.alloc_pages(
            PageRequest::new(512)
                .align(512)
                .below(PhysAddr::new(1 << 32)),
        );
        let _ = writeln!(
            serial,
            "page table {} (virt {}), trampoline {:?}, dma {:?}",
            pml4.phys,
            pml4.virt,
            trampoline.map(|t| t.phys),
            dma.map(|d| d.phys)
        );
        for a in [Some(pml4), trampoline, dma].into_iter().flatten() {
            // SAFETY: nothing uses these pages any more.
            unsafe { HEAP.free_pages(a.phys, a.count) };
        }

        drop((names, ring, tasks));
        // Memory pressure: give empty spans back to the page heap.
        let released = HEAP.reclaim();
        let _ = writeln!(
            serial,
            "reclaimed {released} pages ({} KiB)",
            released * PAGE_SIZE as u64 / 1024
        );
        let _ = writeln!(serial, "{}", HEAP.stats());
        arch::halt()
    }

    /// An application processor's entry (after its own boot stub).
    #[no_mangle]
    pub extern "C" fn ap_main(cpu: usize) -> ! {
        arch::init_this_cpu(&PER_CPU[cpu]);
        // This CPU now allocates from its own cache.
        let work: Vec<u64> = (0..1000).collect();
        assert_eq!(work.iter().sum::<u64>(), 499_500);
        drop(work);
        arch::halt()
    }

    /// Taking a CPU offline, on another CPU once `cpu` has parked itself
    /// (interrupts masked, outside the allocator): its cached objects and
    /// pages go back to the shared lists.
    ///
    /// # Safety
    /// `cpu` is parked and announced it with a Release store that this CPU
    /// read with Acquire.
    #[no_mangle]
    pub unsafe extern "C" fn cpu_offline(cpu: usize) {
        // SAFETY: the caller's contract is `drain_stopped_cpu`'s.
        unsafe { HEAP.drain_stopped_cpu(cpu) };
    }

    /// Something a kernel keeps in a `Box`.
    pub struct Task {
        /// Task id.
        pub id: u32,
        /// Timer ticks used.
        pub ticks: u64,
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        let mut console = arch::Serial::new(PHYS_OFFSET.load(Ordering::Relaxed));
        let _ = writeln!(console, "kernel panic: {info}");
        arch::halt()
    }
}
