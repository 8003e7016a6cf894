//! The test cases, in the order the suite runs them. Each runs on every CPU
//! at once, between two barriers, and returns its own verdict for the CPU
//! it ran on.

use crate::{Ctx, Machine, TestResult};

mod accounting;
mod collections;
mod cross_cpu;
pub mod demo;
mod exhaustion;
mod irq_alloc;
mod large;
mod pages;
mod random_churn;

/// One named test.
pub struct Case<M: Machine> {
    pub name: &'static str,
    pub run: fn(&Ctx<'_, M>) -> TestResult,
}

/// Number of test cases in [`all`].
pub const COUNT: usize = 8;

/// Every test, in running order. `page_api` runs first, while low memory is
/// still untouched by object spans; `accounting` runs last.
pub fn all<M: Machine>() -> [Case<M>; COUNT] {
    [
        Case {
            name: "page_api",
            run: pages::run,
        },
        Case {
            name: "random_churn",
            run: random_churn::run,
        },
        Case {
            name: "cross_cpu_free",
            run: cross_cpu::run,
        },
        Case {
            name: "collections",
            run: collections::run,
        },
        Case {
            name: "large",
            run: large::run,
        },
        Case {
            name: "exhaustion",
            run: exhaustion::run,
        },
        Case {
            name: "irq_alloc",
            run: irq_alloc::run,
        },
        Case {
            name: "accounting",
            run: accounting::run,
        },
    ]
}
