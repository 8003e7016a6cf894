//! The test kernel as a binary: `cargo run --release [-- demo]`.
//!
//! Everything lives in the library; linking it brings in the entry point
//! (`_start`), the panic handler and the global allocator.

#![no_std]
#![no_main]

use strata_qemu_aarch64 as _;
