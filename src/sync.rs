//! The atomics the per-CPU claim is built on: `core`'s, or `loom`'s when
//! the crate is model-checked (`--cfg loom`, see `scripts/loom.sh`).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

pub(crate) use core::sync::atomic::{compiler_fence, Ordering};
