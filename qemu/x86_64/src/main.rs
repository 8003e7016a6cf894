//! The strata x86_64 test kernel: runs the in-kernel test suite on every
//! CPU. Words on the command line (`cargo run --release -- WORD`) choose
//! another mode:
//! - `demo`: a short workload on every CPU that prints the heap's
//!   statistics table while objects are live and after they are freed;
//! - `fault`: CPU 0 touches an unmapped address, to check that a page
//!   fault is reported (vector, error code, RIP, CR2) and fails the run;
//! - `panic`: CPU 0 panics, to check the same for panics.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

kernel::entry_point!(main);

/// A canonical address that the identity map does not cover (it maps
/// only the first PML4 entry's 512 GiB).
const UNMAPPED: usize = 0x7F00_0000_0000;

fn main(k: &kernel::Kernel) -> bool {
    let config = k.ktest_config();
    let mode = |word| k.cmdline().split_whitespace().any(|w| w == word);
    if mode("fault") && k.cpu() == 0 {
        // SAFETY: the address is unmapped, so the read faults and the fault
        // handler ends the run: no value is ever produced.
        let value = unsafe { (UNMAPPED as *const u64).read_volatile() };
        kernel::println!("fault mode: read {value:#x} from an unmapped address");
        false
    } else if mode("panic") && k.cpu() == 0 {
        panic!("panic mode: deliberate panic on cpu 0");
    } else if mode("demo") {
        strata_ktest::demo(k.machine(), &config)
    } else if mode("fault") || mode("panic") {
        // The other CPUs wait for CPU 0 to end the run.
        loop {
            core::hint::spin_loop();
        }
    } else {
        strata_ktest::run(k.machine(), &config)
    }
}
