//! A bounded lock-free single-producer single-consumer ring of `usize`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Keeps the producer's and the consumer's indices on separate cache lines.
#[repr(align(128))]
struct Padded<T>(T);

/// A ring of `capacity` (a power of two) slots. One thread pushes, one pops.
pub struct Ring {
    buf: Box<[AtomicUsize]>,
    mask: usize,
    /// Next slot to pop; written by the consumer only.
    head: Padded<AtomicUsize>,
    /// Next slot to push; written by the producer only.
    tail: Padded<AtomicUsize>,
}

/// The producer's end, with its cached view of `head`.
pub struct Producer<'r> {
    ring: &'r Ring,
    tail: usize,
    head_cache: usize,
}

/// The consumer's end, with its cached view of `tail`.
pub struct Consumer<'r> {
    ring: &'r Ring,
    head: usize,
    tail_cache: usize,
}

impl Ring {
    /// An empty ring.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity.is_power_of_two());
        Ring {
            buf: (0..capacity).map(|_| AtomicUsize::new(0)).collect(),
            mask: capacity - 1,
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    /// The two ends. Call once; each end goes to its own thread.
    pub fn split(&self) -> (Producer<'_>, Consumer<'_>) {
        let t = self.tail.0.load(Ordering::Relaxed);
        let h = self.head.0.load(Ordering::Relaxed);
        (
            Producer {
                ring: self,
                tail: t,
                head_cache: h,
            },
            Consumer {
                ring: self,
                head: h,
                tail_cache: t,
            },
        )
    }
}

impl Producer<'_> {
    /// Pushes `v`, or returns false when the ring is full.
    #[inline]
    pub fn push(&mut self, v: usize) -> bool {
        let r = self.ring;
        if self.tail - self.head_cache > r.mask {
            self.head_cache = r.head.0.load(Ordering::Acquire);
            if self.tail - self.head_cache > r.mask {
                return false;
            }
        }
        r.buf[self.tail & r.mask].store(v, Ordering::Relaxed);
        self.tail += 1;
        r.tail.0.store(self.tail, Ordering::Release);
        true
    }
}

impl Consumer<'_> {
    /// Pops the oldest value, or `None` when the ring is empty.
    #[inline]
    pub fn pop(&mut self) -> Option<usize> {
        let r = self.ring;
        if self.head == self.tail_cache {
            self.tail_cache = r.tail.0.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        let v = r.buf[self.head & r.mask].load(Ordering::Relaxed);
        self.head += 1;
        r.head.0.store(self.head, Ordering::Release);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_across_threads() {
        let ring = Ring::new(8);
        let (mut p, mut c) = ring.split();
        let n = 20_000;
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 1..=n {
                    while !p.push(i) {
                        std::thread::yield_now();
                    }
                }
            });
            for i in 1..=n {
                let v = loop {
                    if let Some(v) = c.pop() {
                        break v;
                    }
                    std::thread::yield_now();
                };
                assert_eq!(v, i);
            }
        });
    }

    #[test]
    fn full_and_empty() {
        let ring = Ring::new(4);
        let (mut p, mut c) = ring.split();
        assert_eq!(c.pop(), None);
        for i in 0..4 {
            assert!(p.push(i));
        }
        assert!(!p.push(9));
        assert_eq!(c.pop(), Some(0));
        assert!(p.push(4));
        for i in 1..5 {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(c.pop(), None);
    }
}
