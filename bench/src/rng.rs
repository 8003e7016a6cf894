//! wyrand: a tiny, fast, fixed-seed PRNG (no external dependency).

/// The wyrand generator by Wang Yi.
#[derive(Clone, Debug)]
pub struct WyRand(u64);

impl WyRand {
    /// A generator with the given seed.
    pub const fn new(seed: u64) -> Self {
        WyRand(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (Lemire), no division.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Log-uniform integer in `lo..=hi` (`0 < lo <= hi`).
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (l, h) = ((lo as f64).ln(), ((hi + 1) as f64).ln());
        let v = (l + (h - l) * self.unit()).exp() as usize;
        v.clamp(lo, hi)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// A 64-bit mix of `x` (splitmix64 finaliser), used to derive block tags.
#[inline]
pub const fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = WyRand::new(7);
        let mut b = WyRand::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..100_000 {
            assert!(a.below(10) < 10);
            let s = a.log_uniform(8, 16384);
            assert!((8..=16384).contains(&s));
        }
    }

    #[test]
    fn log_uniform_spreads() {
        let mut r = WyRand::new(1);
        let n = 100_000;
        let small = (0..n).filter(|_| r.log_uniform(8, 16384) < 128).count();
        // ln(16)/ln(2048) ≈ 36 % of draws fall below 128.
        assert!((30_000..42_000).contains(&small), "{small}");
    }
}
