//! Spans: runs of `2^k` pages cut into objects of one size class.
//!
//! # What a span is
//!
//! A span is a page run taken from the [buddy heap](crate::buddy) for one
//! [size class](crate::size_class): `2^span_order` pages holding
//! `objects` objects of `size` bytes back to back from the first byte, the
//! tail left over. All of its state lives out of band, in the
//! [`PageMeta`] of its pages — never in a header in front of user objects,
//! so an overflow of a user object cannot reach it:
//!
//! ```text
//!  pages:  [ obj0 | obj1 | obj2 | ...                 | objN-1 |tail]
//!  meta:   [SPAN_HEAD class c ][SPAN_TAIL c, a=1][SPAN_TAIL c, a=2] ...
//!           inuse  carved  free─┐
//!                               └─► obj5 ─► obj2 ─► NIL   (u16 index links
//!                                                          in the free objects)
//! ```
//!
//! * `carved` objects have ever been handed out; those above it were never
//!   touched, so a fresh span costs no writes to its memory.
//! * `free` heads a list of returned objects, linked through the first two
//!   bytes of each free object as a `u16` object index. A link is checked
//!   against the object count before it is followed, so a stray write into
//!   a freed object is reported, not followed.
//! * `inuse` counts objects out of the span (in CPU caches or with users).
//!
//! # Pointer → span
//!
//! O(regions) to find the region of a pointer (one comparison each), then
//! one metadata load: every page of a span carries its class in its tag, and
//! a later page carries its distance to the first. The object index is a
//! multiply and a shift ([`ClassInfo::index_of`]), never a division.
//!
//! # Locking
//!
//! A span's head fields and its free list belong to the central list of
//! its class and change only under that list's lock. The tags of its pages
//! are written when the span is made or retired, under the same lock, and
//! are read without any lock to validate frees.

use crate::addr::{PhysOffset, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::buddy::{kind, PageHeap, PageId, PageMeta, Region, Run};
use crate::size_class::SizeClass;
use core::sync::atomic::Ordering;

const R: Ordering = Ordering::Relaxed;
/// End of a span's free list.
const NIL16: u16 = u16::MAX;

/// A span, named by its first page. Only valid under its class's lock.
#[derive(Copy, Clone)]
pub(crate) struct Span<'a> {
    pub(crate) region: Region<'a>,
    pub(crate) index: u64,
}

/// Why a pointer handed to `dealloc` is not a live object.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum BadFree {
    /// Outside every region.
    Foreign,
    /// Inside the heap, but in a page that holds no span or run start
    /// (free memory, metadata, the interior of a page run).
    NotAllocated,
    /// In a span of another class than the layout's.
    WrongClass { span_class: SizeClass },
    /// In a span of the right class but not at the start of an object.
    Misaligned { object: VirtAddr },
    /// A page run where the layout asks for a small object.
    IsRun,
    /// A page run of another length than the layout's.
    WrongLength { pages: u64 },
}

impl<'a> Span<'a> {
    /// Tags a fresh run as an empty span of `class`.
    pub(crate) fn init(run: Run<'a>, class: SizeClass) -> Span<'a> {
        let Run { region, index } = run;
        let info = class.info();
        let head = region.meta(index);
        head.set_tag(kind::SPAN_HEAD, class.index() as u8);
        head.inuse.store(0, R);
        head.carved.store(0, R);
        head.free.store(NIL16, R);
        head.a.store(PageId::NIL.0, R);
        head.b.store(PageId::NIL.0, R);
        for i in 1..1u64 << info.span_order {
            let m = region.meta(index + i);
            m.set_tag(kind::SPAN_TAIL, class.index() as u8);
            m.a.store(i as u32, R);
        }
        Span { region, index }
    }

    /// Clears the tags of the span's later pages; the page heap clears the
    /// first when it takes the run back.
    pub(crate) fn retire(self) -> Run<'a> {
        let order = self.class().info().span_order;
        for i in 1..1u64 << order {
            self.region.meta(self.index + i).set_tag(kind::UNUSED, 0);
        }
        Run {
            region: self.region,
            index: self.index,
        }
    }

    #[inline(always)]
    pub(crate) fn head(&self) -> &'a PageMeta {
        self.region.meta(self.index)
    }

    #[inline(always)]
    pub(crate) fn id(&self) -> PageId {
        self.region.id(self.index)
    }

    #[inline(always)]
    pub(crate) fn class(&self) -> SizeClass {
        SizeClass::new((self.head().tag() >> 8) as usize)
    }

    #[inline(always)]
    pub(crate) fn base(&self, offset: PhysOffset) -> VirtAddr {
        offset.to_virt(self.region.pfn(self.index).addr())
    }

    #[inline(always)]
    pub(crate) fn inuse(&self) -> u16 {
        self.head().inuse.load(R)
    }

    /// Whether every object is out.
    #[inline(always)]
    pub(crate) fn is_full(&self) -> bool {
        let info = self.class().info();
        self.inuse() == info.objects
    }

    /// Takes one object, if any is left.
    #[inline]
    pub(crate) fn pop(&self, offset: PhysOffset) -> Option<VirtAddr> {
        let head = self.head();
        let info = self.class().info();
        let base = self.base(offset);
        let free = head.free.load(R);
        let index = if free != NIL16 {
            let obj = base.add(free as usize * info.size as usize);
            // SAFETY: `free` is a checked index of a free object of this span:
            // span memory is mapped and owned by the heap while the object
            // is free, and objects are at least 8-byte aligned.
            let next = unsafe { obj.as_mut_ptr::<u16>().read() };
            if next != NIL16 && next >= info.objects {
                corrupted_free_list(base, info.size, obj, next);
            }
            head.free.store(next, R);
            free
        } else {
            let carved = head.carved.load(R);
            if carved == info.objects {
                return None;
            }
            head.carved.store(carved + 1, R);
            carved
        };
        head.inuse.store(head.inuse.load(R) + 1, R);
        Some(base.add(index as usize * info.size as usize))
    }

    /// Returns object `index` (already validated by [`locate`]).
    #[inline]
    pub(crate) fn push(&self, offset: PhysOffset, index: u16) {
        let head = self.head();
        let info = self.class().info();
        if index >= head.carved.load(R) || head.inuse.load(R) == 0 {
            let obj = self.base(offset).add(index as usize * info.size as usize);
            never_allocated(obj, info.size);
        }
        let obj = self.base(offset).add(index as usize * info.size as usize);
        // SAFETY: the object belongs to this span and was just returned, so
        // the heap owns its bytes; see `pop` for alignment.
        unsafe { obj.as_mut_ptr::<u16>().write(head.free.load(R)) };
        head.free.store(index, R);
        head.inuse.store(head.inuse.load(R) - 1, R);
    }

    /// Whether object `index` is free: never carved, or on the free list.
    ///
    /// # Time Complexity
    /// O(objects).
    pub(crate) fn is_free(&self, offset: PhysOffset, index: u16) -> bool {
        let head = self.head();
        if index >= head.carved.load(R) {
            return true;
        }
        let info = self.class().info();
        let base = self.base(offset);
        let mut i = head.free.load(R);
        let mut steps = 0;
        while i != NIL16 && steps <= info.objects {
            if i == index {
                return true;
            }
            // SAFETY: `i` is a checked index of a free object of this span.
            i = unsafe {
                base.add(i as usize * info.size as usize)
                    .as_mut_ptr::<u16>()
                    .read()
            };
            if i != NIL16 && i >= info.objects {
                corrupted_free_list(base, info.size, base, i);
            }
            steps += 1;
        }
        false
    }

    /// Resets an empty span's free list so objects are carved afresh.
    pub(crate) fn reset(&self) {
        let head = self.head();
        debug_assert_eq!(head.inuse.load(R), 0);
        head.free.store(NIL16, R);
        head.carved.store(0, R);
    }

    /// The span holding `addr`, checked to be an object boundary of a span
    /// of `class`, and the object's index. Takes no lock.
    ///
    /// # Time Complexity
    /// O(regions) + O(1).
    #[inline(always)]
    pub(crate) fn locate(
        pages: &'a PageHeap,
        addr: VirtAddr,
        class: SizeClass,
    ) -> Result<(Span<'a>, u16), BadFree> {
        let offset = pages.offset();
        let phys = offset.to_phys(addr);
        let Some((region, index)) = pages.find(phys.pfn()) else {
            return Err(BadFree::Foreign);
        };
        let m = region.meta(index);
        let tag = m.tag();
        // SPAN_HEAD and SPAN_TAIL differ only in bit 0.
        if tag | 1 != kind::SPAN_TAIL as u16 | (class.index() as u16) << 8 {
            return Err(Self::classify(tag));
        }
        let head = if tag as u8 == kind::SPAN_HEAD {
            index
        } else {
            index - m.a.load(R) as u64
        };
        let span = Span {
            region,
            index: head,
        };
        let info = class.info();
        let off = addr.as_usize().wrapping_sub(span.base(offset).as_usize());
        let obj = info.index_of(off);
        if obj * info.size as usize != off || obj >= info.objects as usize {
            let object = span
                .base(offset)
                .add(obj.min(info.objects as usize - 1) * info.size as usize);
            return Err(BadFree::Misaligned { object });
        }
        Ok((span, obj as u16))
    }

    /// Whether `addr` is an object boundary of a live span of `class`,
    /// loading only the page's metadata and the class table: the check on
    /// every free's fast path. [`diagnose`](Self::diagnose) says what is
    /// wrong when it is not.
    ///
    /// # Time Complexity
    /// O(regions) + O(1): one comparison per region, one metadata load, a
    /// multiply instead of a division.
    #[inline(always)]
    pub(crate) fn is_object(pages: &PageHeap, addr: VirtAddr, class: SizeClass) -> bool {
        let phys = pages.offset().to_phys(addr);
        let Some(m) = pages.meta_of(phys.pfn()) else {
            return false;
        };
        let tag = m.tag();
        if tag | 1 != kind::SPAN_TAIL as u16 | (class.index() as u16) << 8 {
            return false;
        }
        // Pages from the span's first page: 0 on the head, `a` on the others.
        let pages_in = if tag & 1 == 0 {
            0
        } else {
            m.a.load(R) as usize
        };
        let off = (addr.as_usize() & (PAGE_SIZE - 1)) + (pages_in << PAGE_SHIFT);
        let info = class.info();
        let obj = info.index_of(off);
        obj * info.size as usize == off && obj < info.objects as usize
    }

    /// Why `addr` is not an object of `class` (after
    /// [`is_object`](Self::is_object) said so).
    #[cold]
    #[inline(never)]
    pub(crate) fn diagnose(pages: &'a PageHeap, addr: VirtAddr, class: SizeClass) -> BadFree {
        match Self::locate(pages, addr, class) {
            Ok(_) => unreachable!("strata: {addr} is an object after all"),
            Err(why) => why,
        }
    }

    #[cold]
    fn classify(tag: u16) -> BadFree {
        match tag as u8 {
            kind::SPAN_HEAD | kind::SPAN_TAIL => BadFree::WrongClass {
                span_class: SizeClass::new((tag >> 8) as usize),
            },
            kind::RUN | kind::INTERNAL => BadFree::IsRun,
            _ => BadFree::NotAllocated,
        }
    }
}

#[cold]
#[inline(never)]
fn corrupted_free_list(span: VirtAddr, size: u32, obj: VirtAddr, link: u16) -> ! {
    panic!(
        "strata: free list of the span at {span} ({size}-byte objects) is corrupted: \
         free object {obj} links to object {link}, past the span (written after free?)"
    )
}

#[cold]
#[inline(never)]
fn never_allocated(obj: VirtAddr, size: u32) -> ! {
    panic!("strata: free of {obj}: this {size}-byte object was never allocated (double free?)")
}
