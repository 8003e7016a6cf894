//! A single-CPU firmware heap: strata over a static arena, with
//! [`SingleCpu`](strata_alloc::SingleCpu).
//!
//! ```text
//! cargo build --example firmware --target x86_64-unknown-none
//! cargo build --example firmware --target aarch64-unknown-none
//! ```
//!
//! Firmware, a boot loader or an early kernel runs on one CPU with memory
//! identity-mapped (or the MMU off) and does not allocate from interrupt
//! handlers. Then the heap needs no platform code: `SingleCpu` says CPU 0,
//! no interrupt masking, and no preemption (its cache is claimed with a
//! plain store instead of an atomic swap). The memory is an arena in
//! `.bss`; on a board with a memory map, it would be the RAM the map
//! reports, as in `examples/kernel.rs`.
//!
//! The entry `_start` is called by the reset code once a stack is set up.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "examples/firmware.rs is bare-metal firmware; build it with\n  \
         cargo build --example firmware --target x86_64-unknown-none\n  \
         cargo build --example firmware --target aarch64-unknown-none"
    );
}

#[cfg(target_os = "none")]
mod firmware {
    extern crate alloc;

    use alloc::boxed::Box;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::UnsafeCell;
    use core::fmt::Write;
    use strata_alloc::{Heap, PageRequest, PhysAddr, PhysRange, SingleCpu};

    /// Bytes of RAM given to the heap.
    const ARENA_BYTES: usize = 1 << 20;

    /// The heap's memory: page-aligned, zero-initialised, in `.bss`.
    #[repr(C, align(4096))]
    struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);
    // SAFETY: only the heap touches the arena, after `init` hands it over.
    unsafe impl Sync for Arena {}
    static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

    #[global_allocator]
    static HEAP: Heap<SingleCpu> = Heap::new();

    /// A device found while probing.
    struct Device {
        name: String,
        mmio: u64,
        irqs: Vec<u32>,
    }

    /// The firmware's entry.
    #[no_mangle]
    pub extern "C" fn _start() -> ! {
        let base = ARENA.0.get() as u64;
        let arena = PhysRange::new(
            PhysAddr::new(base),
            PhysAddr::new(base + ARENA_BYTES as u64),
        );
        // SAFETY: the arena is used by nothing but the heap, and identity-
        // mapped (offset 0): its address is its physical address.
        if unsafe { HEAP.init(0, 1, &[arena]) }.is_err() {
            halt();
        }

        let mut devices: Vec<Device> = Vec::new();
        for (i, mmio) in [0x1000_0000u64, 0x1000_1000, 0x1000_2000]
            .into_iter()
            .enumerate()
        {
            let mut name = String::new();
            let _ = write!(name, "uart{i}");
            devices.push(Device {
                name,
                mmio,
                irqs: (0..=i as u32).map(|n| 33 + n).collect(),
            });
        }
        let console = devices.iter().find(|d| d.name == "uart1").map(|d| d.mmio);
        assert_eq!(console, Some(0x1000_1000));
        assert_eq!(devices[2].irqs, [33, 34, 35]);

        // A descriptor ring for a device: whole, zeroed, 16 KiB-aligned pages.
        let ring = HEAP
            .alloc_pages(PageRequest::new(4).align(4).zeroed())
            .expect("descriptor ring");
        assert_eq!(ring.phys.as_u64() % (4 * 4096), 0);

        let big: Box<[u8]> = alloc::vec![0xa5; 64 * 1024].into_boxed_slice();
        assert!(big.iter().all(|&b| b == 0xa5));

        // SAFETY: nothing uses the ring any more.
        unsafe { HEAP.free_pages(ring.phys, ring.count) };
        drop((devices, big));
        assert_eq!(HEAP.stats().large_runs, 0);
        halt()
    }

    fn halt() -> ! {
        loop {
            core::hint::spin_loop();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        halt()
    }
}
