//! Abandoning repetitions that run past their time budget.
//!
//! A watchdog thread raises a global flag when the armed deadline passes;
//! workload loops read the flag (one relaxed load) between operations and
//! give up with [`Timeout`]. Allocators that go quadratic on a workload so
//! cost one budget, not minutes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

static EXPIRED: AtomicBool = AtomicBool::new(false);

struct Dog {
    deadline: Mutex<Option<Instant>>,
    wake: Condvar,
}

fn dog() -> &'static Dog {
    static DOG: OnceLock<&'static Dog> = OnceLock::new();
    DOG.get_or_init(|| {
        let d: &'static Dog = Box::leak(Box::new(Dog {
            deadline: Mutex::new(None),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || watch(d))
            .expect("spawn watchdog");
        d
    })
}

fn watch(d: &'static Dog) {
    let mut g = d.deadline.lock().unwrap();
    loop {
        match *g {
            None => g = d.wake.wait(g).unwrap(),
            Some(t) => {
                let now = Instant::now();
                if now >= t {
                    EXPIRED.store(true, Ordering::Relaxed);
                    *g = None;
                } else {
                    g = d.wake.wait_timeout(g, t - now).unwrap().0;
                }
            }
        }
    }
}

/// The repetition ran past its budget and was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout;

/// Starts a budget: [`expired`] turns true `budget` from now.
pub fn arm(budget: Duration) {
    let d = dog();
    EXPIRED.store(false, Ordering::Relaxed);
    *d.deadline.lock().unwrap() = Some(Instant::now() + budget);
    d.wake.notify_one();
}

/// Ends the budget.
pub fn disarm() {
    let d = dog();
    *d.deadline.lock().unwrap() = None;
    d.wake.notify_one();
    EXPIRED.store(false, Ordering::Relaxed);
}

/// Whether the armed budget has run out.
#[inline(always)]
pub fn expired() -> bool {
    EXPIRED.load(Ordering::Relaxed)
}

/// `Err(Timeout)` once the budget has run out, checked every 64th `i`.
#[inline(always)]
pub fn poll(i: usize) -> Result<(), Timeout> {
    if i.is_multiple_of(64) && expired() {
        Err(Timeout)
    } else {
        Ok(())
    }
}
