//! Deterministic randomness and fill patterns.
//!
//! Every live test object is filled with a pattern derived from its own
//! seed, and checked before it is freed or moved. Two objects that overlap
//! (on one CPU or across CPUs) overwrite each other's pattern, so a check
//! finds the overlap as well as any stray write by the allocator.

/// xorshift64*: small, fast and good enough to pick sizes and slots.
pub struct Rng(u64);

impl Rng {
    /// A generator for `cpu`'s stream `stream` (never seeded with zero).
    pub fn new(cpu: usize, stream: u64) -> Self {
        let seed = (cpu as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.rotate_left(32);
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), up to a negligible bias.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// An object size with a kernel-like distribution: mostly small, some
    /// up to a few pages, rarely up to 64 KiB, and one in 500 a page run
    /// of up to 512 KiB (interleaving runs with the spans of small objects).
    pub fn object_size(&mut self) -> usize {
        match self.below(1000) {
            0..=599 => self.range(1, 128),
            600..=899 => self.range(129, 2048),
            900..=989 => self.range(2049, 8192),
            990..=997 => self.range(8193, 65536),
            _ => self.range(65537, 512 * 1024),
        }
    }
}

/// Word `index` (the 8 bytes at `8 * index`) of the pattern for `seed`.
pub fn word(seed: u64, index: usize) -> u64 {
    (seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(23)
}

/// Distance between the words of a sparse fill: one per page.
pub const SPARSE_STRIDE: usize = 4096;
