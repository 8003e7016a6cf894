//! The in-kernel test suite (`strata_ktest`) on every CPU.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

kernel::entry_point!(main);

fn main(k: &kernel::Kernel) -> bool {
    strata_ktest::run(k.machine(), &k.ktest_config())
}
