//! Shared pieces of the strata benchmark suite: the allocators under test
//! ([`contenders`]), the memory regions handed to the region-based ones
//! ([`region`]), the non-inlined call shims ([`shim`]), block checks
//! ([`check`]) and a small fixed-seed PRNG ([`rng`]).
//!
//! The suite itself is `src/main.rs`; `src/bin/ir.rs` is the driver that
//! `callgrind.sh` runs under valgrind.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod baseline;
pub mod check;
pub mod contenders;
pub mod region;
pub mod rng;
pub mod shim;
