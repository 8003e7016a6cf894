//! Region-based competitors: each is given the whole prepared region at
//! creation, the way a kernel hands its heap range to them.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};

use super::Contender;
use crate::region::Region;

fn region(r: Option<&Region>) -> &Region {
    r.expect("region-based contender created without a region")
}

/// `talc::TalcLock` over a spin lock, with a manually claimed region.
pub struct Talc(talc::TalcLock<spinning_top::RawSpinlock, talc::source::Manual>);

// SAFETY: forwards to `TalcLock`'s `GlobalAlloc` impl.
unsafe impl GlobalAlloc for Talc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

impl Contender for Talc {
    const NAME: &'static str = "talc";
    const KEY: &'static str = "talc";
    const VERSION: &'static str = "talc =5.1.1";
    const REGION: bool = true;
    unsafe fn create(r: Option<&Region>) -> Box<Self> {
        let r = region(r);
        let t = Box::new(Talc(talc::TalcLock::new(talc::source::Manual)));
        // SAFETY: the region is exclusively ours and outlives `t` (caller contract).
        unsafe { t.0.lock().claim(r.base(), r.len()) }.expect("talc: claim failed");
        t
    }
}

/// `linked_list_allocator::LockedHeap`.
pub struct LinkedListHeap(linked_list_allocator::LockedHeap);

// SAFETY: forwards to `LockedHeap`'s `GlobalAlloc` impl.
unsafe impl GlobalAlloc for LinkedListHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

impl Contender for LinkedListHeap {
    const NAME: &'static str = "linked_list_allocator";
    const KEY: &'static str = "linked_list";
    const VERSION: &'static str = "linked_list_allocator =0.10.6";
    const REGION: bool = true;
    unsafe fn create(r: Option<&Region>) -> Box<Self> {
        let r = region(r);
        let h = Box::new(LinkedListHeap(linked_list_allocator::LockedHeap::empty()));
        // SAFETY: the region is exclusively ours and outlives `h` (caller contract).
        unsafe { h.0.lock().init(r.base(), r.len()) };
        h
    }
}

/// `buddy_system_allocator::LockedHeap<32>` (blocks up to 2 GiB).
pub struct BuddyHeap(buddy_system_allocator::LockedHeap<32>);

// SAFETY: forwards to `LockedHeap`'s `GlobalAlloc` impl.
unsafe impl GlobalAlloc for BuddyHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

impl Contender for BuddyHeap {
    const NAME: &'static str = "buddy_system_allocator";
    const KEY: &'static str = "buddy";
    const VERSION: &'static str = "buddy_system_allocator =0.13.0";
    const REGION: bool = true;
    unsafe fn create(r: Option<&Region>) -> Box<Self> {
        let r = region(r);
        let h = Box::new(BuddyHeap(buddy_system_allocator::LockedHeap::<32>::new()));
        // SAFETY: the region is exclusively ours and outlives `h` (caller contract).
        unsafe { h.0.lock().init(r.base() as usize, r.len()) };
        h
    }
}

/// The TLSF instance: first-level classes up to 32 B << 24 = 512 MiB
/// blocks, 32 second-level classes.
type TlsfHeap = rlsf::Tlsf<'static, u32, u32, 24, 32>;

/// `rlsf::Tlsf` in a `spin::Mutex`.
pub struct Rlsf(spin::Mutex<TlsfHeap>);

// SAFETY: every call holds the lock; `Tlsf::allocate`/`deallocate` uphold
// the `GlobalAlloc` contract (null on failure, blocks fit the layout).
unsafe impl GlobalAlloc for Rlsf {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate(layout)
            .map_or(null_mut(), NonNull::as_ptr)
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above (caller contract), so it is
        // non-null and was allocated by this TLSF with `layout.align()`.
        unsafe {
            self.0
                .lock()
                .deallocate(NonNull::new_unchecked(ptr), layout.align())
        }
    }
}

impl Contender for Rlsf {
    const NAME: &'static str = "rlsf";
    const KEY: &'static str = "rlsf";
    const VERSION: &'static str = "rlsf =0.2.3";
    const REGION: bool = true;
    unsafe fn create(r: Option<&Region>) -> Box<Self> {
        let r = region(r);
        let h = Box::new(Rlsf(spin::Mutex::new(TlsfHeap::new())));
        let block =
            NonNull::slice_from_raw_parts(NonNull::new(r.base()).expect("null region"), r.len());
        // SAFETY: the region is exclusively ours and outlives `h` (caller contract).
        unsafe { h.0.lock().insert_free_block_ptr(block) }.expect("rlsf: region too small");
        h
    }
}
