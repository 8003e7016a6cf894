//! The allocators under test, each behind one [`Contender`] impl.
//!
//! Adding an allocator is one impl of [`Contender`] plus one line in
//! [`visit_all`]; every workload, table, chart and the instruction-count
//! driver pick it up from there.

use core::alloc::GlobalAlloc;

use crate::region::Region;

mod hosted;
mod region_based;
mod strata;

pub use self::strata::*;
pub use hosted::*;
pub use region_based::*;

/// One allocator under test.
pub trait Contender: GlobalAlloc + Send + Sync + Sized + 'static {
    /// Display name (tables, chart).
    const NAME: &'static str;
    /// Short name for the command line of the `ir` driver.
    const KEY: &'static str;
    /// Crate and exact version, or what the hosted allocator is.
    const VERSION: &'static str;
    /// Whether it manages a caller-supplied region (and so gets one per
    /// repetition, and takes part in the space workloads).
    const REGION: bool;

    /// A fresh instance. Region-based contenders are initialised over
    /// `region` (always `Some` for them); hosted ones ignore it.
    ///
    /// # Safety
    /// The region is used by nothing else and outlives the returned
    /// allocator and every block it hands out.
    unsafe fn create(region: Option<&Region>) -> Box<Self>;
}

/// Something run once per contender type.
pub trait Visit {
    /// Called with each contender in turn.
    fn visit<C: Contender>(&mut self);
}

/// Calls `v.visit::<C>()` for every contender, in table order.
pub fn visit_all(v: &mut impl Visit) {
    #[cfg(feature = "strata")]
    v.visit::<StrataHeap<HostCpus>>();
    #[cfg(feature = "strata")]
    v.visit::<StrataHeap<HostCpusNonPreemptive>>();
    v.visit::<Mimalloc>();
    v.visit::<SystemAlloc>();
    v.visit::<Talc>();
    v.visit::<Rlsf>();
    v.visit::<BuddyHeap>();
    v.visit::<LinkedListHeap>();
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Versions(Vec<&'static str>);

    impl Visit for Versions {
        fn visit<C: Contender>(&mut self) {
            self.0.push(C::VERSION);
        }
    }

    /// The versions printed in the report are the ones Cargo.toml pins.
    #[test]
    fn versions_match_cargo_toml() {
        let toml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        let mut v = Versions(Vec::new());
        visit_all(&mut v);
        let mut pinned = 0;
        for version in v.0 {
            let Some((name, ver)) = version.split_once(" =") else {
                continue;
            };
            let line = toml
                .lines()
                .find(|l| l.starts_with(&format!("{name} =")))
                .unwrap_or_else(|| panic!("{name} is not a dependency"));
            assert!(
                line.contains(&format!("\"={ver}\"")),
                "{name}: Cargo.toml says `{line}`, report says {ver}"
            );
            pinned += 1;
        }
        assert_eq!(pinned, 5);
    }

    struct Smoke;

    impl Visit for Smoke {
        fn visit<C: Contender>(&mut self) {
            use core::alloc::Layout;
            let region = C::REGION.then(|| Region::new(4 << 20));
            // SAFETY: fresh region, dropped after the allocator.
            let a = unsafe { C::create(region.as_ref()) };
            for (size, align) in [(8, 8), (64, 8), (100, 64), (4096, 4096), (70_000, 8)] {
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size; freed with the same layout.
                unsafe {
                    let p = a.alloc(l);
                    assert!(!p.is_null(), "{}: {l:?}", C::NAME);
                    assert_eq!(p as usize % align, 0, "{}", C::NAME);
                    p.write_bytes(0xab, size);
                    a.dealloc(p, l);
                }
            }
            drop(a);
            drop(region);
        }
    }

    #[test]
    fn every_contender_allocates() {
        visit_all(&mut Smoke);
    }
}
