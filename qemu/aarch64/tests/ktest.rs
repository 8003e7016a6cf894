//! `cargo test --release`: boots the test kernel in QEMU (through the
//! runner in `.cargo/config.toml`) and runs the in-kernel suite on every CPU.
//! The kernel's exit status is the test result.

#![no_std]
#![no_main]

use strata_qemu_aarch64 as _;
