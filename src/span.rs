//! Spans: runs of `2^k` pages cut into objects of one size class.
//!
//! # What a span is
//!
//! A span is a page run taken from the [buddy heap](crate::buddy) for one
//! [size class](crate::size_class): `2^span_order` pages holding
//! `objects` objects of `size` bytes back to back from the first byte, the
//! tail left over. Its geometry is the class's own ([`SizeClass::info`])
//! or, for a span made when the page heap had no block that large, the
//! class's fallback ([`SizeClass::fallback`]); the [`FALLBACK`] bit of its
//! pages' tags says which ([`Span::info`]). All of its state lives out of
//! band, in the [`PageMeta`] of its pages — never in a header in front of
//! user objects, so an overflow of a user object cannot reach it:
//!
//! ```text
//!  pages:  [ obj0 | obj1 | obj2 | ...                 | objN-1 |tail]
//!  meta:   [SPAN_HEAD class c ][SPAN_HEAD+1 c    ][SPAN_HEAD+2 c    ] ...
//!           inuse  carved  free─┐
//!                               └─► obj5 ─► obj2 ─► NIL   (u16 index links
//!                                                          in the free objects)
//! ```
//!
//! * `carved` objects have been handed out since the span was made or last
//!   reset; those above it were not touched since. An object is carved when
//!   a batch takes it, and its first word is written then (below), so a
//!   fresh span costs one store per object handed out and nothing for the
//!   rest.
//! * `free` heads a list of returned objects, linked through the first
//!   word (8 bytes, [`LINK_BYTES`]) of each free object: a `u64` whose low
//!   16 bits are the next object's index and whose high 48 bits are the
//!   object's check word (below). The word is always read and written as
//!   a `u64`, so the layout holds on either byte order. A link is checked
//!   against the object count before it is followed, so a stray write into
//!   a freed object is reported, not followed.
//! * `inuse` counts objects out of the span (in CPU caches or with users).
//!
//! # Double frees
//!
//! An object's check word is a hash of its address (48 bits, never 0).
//! [`push`](Span::push) writes it with the link; [`pop_into`](Span::pop_into)
//! clears the word when the object leaves the free list (it has just read
//! the link there, so the line is in cache), and writes 0 there when it
//! carves an object afresh. So every object handed out starts with a first
//! word the heap wrote (0), never a check word left by an earlier life of
//! the span or of the memory, and never bytes nobody wrote (which `push`
//! could not read soundly). So:
//!
//! * An object whose first word is not its check word is not on the free
//!   list: `push` reads one word it is about to write anyway, and compares.
//! * An object whose first word is its check word is either on the free
//!   list or a live object whose user stored that value. `push` then walks the free
//!   list ([`is_free`](Span::is_free)'s walk, O(objects)) and panics with
//!   `strata: double free of {addr}` only if the object is on it; user data
//!   equal to the check word costs a walk, never a false report.
//!
//! The other way to know "on the free list" in O(1) is a bit per object,
//! out of band; a span's only out-of-band state is its head page's
//! 16-byte [`PageMeta`], which is full. Objects are at least 8 bytes, so
//! the word fits in every one; the cost on the batch path
//! ([`CentralList::give`](crate::central::CentralList::give)) is a
//! multiply, a load, a compare and a predicted branch per object, the
//! store being the link's store widened, and one store per object leaving
//! the span in `pop_into`. Nothing is added to the CPU caches.
//!
//! What the default flags ([`DebugFlags::CHECK_FREES`] only) catch, then:
//! a second free of an object that reaches the span while the object is
//! still on its free list — after both copies left the CPU caches (a
//! flush, a drain, or a free that took the central path) — panics when
//! the second copy is pushed, which may be on another CPU and later than
//! the second `dealloc`. A free of an object that was never handed out
//! since its span was made or reset (above `carved`, or with no object
//! out) panics as "never allocated". Not caught: a double free whose
//! copies are both in CPU caches when one is handed out again (two users
//! then share the object, and the span never sees a second free), or one
//! where the object was allocated again before the second copy reached
//! the span. [`DebugFlags::DOUBLE_FREE`] catches the double free at the
//! second `dealloc` itself, looking in every CPU cache and in the span.
//! The walk runs under the class lock, like the rest of `push`.
//!
//! [`LINK_BYTES`]: crate::debug::LINK_BYTES
//! [`DebugFlags::CHECK_FREES`]: crate::DebugFlags::CHECK_FREES
//! [`DebugFlags::DOUBLE_FREE`]: crate::DebugFlags::DOUBLE_FREE
//!
//! # Pointer → span
//!
//! O(regions) to find the region of a pointer (one comparison each), then
//! one metadata load: every page of a span carries its class and its
//! distance to the first page in its tag (see [`kind::SPAN_HEAD`]). The
//! object index is a multiply and a shift ([`ClassInfo::index_of`]), never a
//! division.
//!
//! The check on every free ([`Span::is_object`]) has one branch. The tag
//! of the pointer's page XOR the class's span tag is the distance to the
//! span's first page on a span page of that class, and 128 or more on any
//! other page, so `off = (distance << 12) + (addr % 4096)` is the offset in
//! the span, or lies past every span. Then, with `size = odd · 2^k` and
//! `inv` the inverse of `odd` modulo 2^64, `(off · inv) rotated right by k`
//! is `off / size` when `size` divides `off`, and at least `2^(64-k) / odd`
//! otherwise (the divisibility test of Granlund and Montgomery, as
//! compilers use for `x % d == 0`): one comparison against the object
//! count says "object boundary of a span of this class". Its per-class
//! constants are [`OBJECT_CHECKS`].
//!
//! A fallback span's tags carry the [`FALLBACK`] bit, so on its pages the
//! XOR is 32768 or more and the one-branch check fails: its frees take the
//! full check ([`Span::is_object`]), which tries the fallback geometry
//! next. Fallback spans exist only while the heap is short of larger
//! blocks, so the fast path stays one branch and pays nothing for them.
//!
//! # Locking
//!
//! A span's head fields and its free list belong to the central list of
//! its class and change only under that list's lock. The tags of its pages
//! are written when the span is made or retired, under the same lock, and
//! are read without any lock to validate frees.

use crate::addr::{PhysOffset, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::buddy::{kind, PageHeap, PageId, PageMeta, Region, Run};
use crate::size_class::{
    ClassInfo, SizeClass, CLASS_TABLE, FALLBACK_TABLE, MAX_SPAN_ORDER, NUM_CLASSES,
};
use core::sync::atomic::Ordering;
use static_assertions::const_assert;

// A span page's distance to the first page fits in its kind byte.
const_assert!(1 << MAX_SPAN_ORDER <= kind::SPAN_DISTANCE as usize + 1);
// Offsets with a distance of 128 pages or more lie past every span.
const_assert!(PAGE_SIZE << MAX_SPAN_ORDER <= (kind::SPAN_DISTANCE as usize + 1) * PAGE_SIZE);

/// In the high byte of a span page's tag (above the class index): the span
/// has its class's fallback geometry, not its own.
pub(crate) const FALLBACK: u8 = 0x80;
// Class indices leave that bit free.
const_assert!(NUM_CLASSES <= FALLBACK as usize);

const R: Ordering = Ordering::Relaxed;
/// End of a span's free list.
const NIL16: u16 = u16::MAX;

/// The bits of a free object's first word that hold its free-list link;
/// the others hold its check word.
const LINK_MASK: u64 = 0xffff;
// The word is what the debug checks leave alone in a free object.
const_assert!(core::mem::size_of::<u64>() == crate::debug::LINK_BYTES);
// Every object holds the word, aligned.
const_assert!(CLASS_TABLE[0].size as usize >= core::mem::size_of::<u64>());

/// The check word of the object at `obj`: the high 48 bits of the address
/// times an odd constant (Fibonacci hashing), with bit 16 set so that a
/// cleared word (0) never matches. The link bits are 0.
#[inline(always)]
fn check_word(obj: VirtAddr) -> u64 {
    ((obj.as_usize() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | (LINK_MASK + 1)) & !LINK_MASK
}

/// The free-list link in a free object's first word, read as a `u64` (so
/// the link is its low 16 bits on either byte order).
#[inline(always)]
fn link_of(word: u64) -> u16 {
    (word & LINK_MASK) as u16
}

/// The constants of the free check, per class; see "Pointer → span" in
/// the [module docs](self). One array per field, each of full width: every
/// field is an operand of one instruction, and the class index scales into
/// every address directly.
pub(crate) struct ObjectChecks {
    /// The inverse of the odd part of the object size, modulo 2^64.
    inverse: [u64; NUM_CLASSES],
    /// Objects per span.
    objects: [u64; NUM_CLASSES],
    /// Objects per fallback span.
    fallback_objects: [u64; NUM_CLASSES],
    /// The tag of the first page of a span of the class.
    span_tag: [usize; NUM_CLASSES],
    /// Trailing zero bits of the object size.
    twos: [u64; NUM_CLASSES],
}

impl ObjectChecks {
    const fn new() -> Self {
        let mut t = ObjectChecks {
            inverse: [0; NUM_CLASSES],
            objects: [0; NUM_CLASSES],
            fallback_objects: [0; NUM_CLASSES],
            span_tag: [0; NUM_CLASSES],
            twos: [0; NUM_CLASSES],
        };
        let mut i = 0;
        while i < NUM_CLASSES {
            let c: ClassInfo = CLASS_TABLE[i];
            let twos = c.size.trailing_zeros();
            let odd = (c.size >> twos) as u64;
            // Newton's iteration for the inverse modulo 2^64: `odd` is its
            // own inverse modulo 8, and every step doubles the correct low
            // bits (3, 6, 12, 24, 48, 96).
            let mut inverse = odd;
            let mut step = 0;
            while step < 5 {
                inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
                step += 1;
            }
            assert!(odd.wrapping_mul(inverse) == 1);
            t.inverse[i] = inverse;
            t.objects[i] = c.objects as u64;
            t.fallback_objects[i] = FALLBACK_TABLE[i].objects as u64;
            t.span_tag[i] = kind::SPAN_HEAD as usize | i << 8;
            t.twos[i] = twos as u64;
            i += 1;
        }
        t
    }

    /// `off / size` for `class` if `size` divides `off`; otherwise at least
    /// `2^(64 - twos) / odd`, which exceeds any object count.
    #[inline(always)]
    fn quotient(&self, class: SizeClass, off: usize) -> u64 {
        let i = class.index();
        // SAFETY: a SizeClass index is below NUM_CLASSES.
        unsafe {
            (off as u64)
                .wrapping_mul(*self.inverse.get_unchecked(i))
                .rotate_right(*self.twos.get_unchecked(i) as u32)
        }
    }
}

/// [`ObjectChecks`] of every class.
pub(crate) static OBJECT_CHECKS: ObjectChecks = ObjectChecks::new();

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
    /// A single page that is already free, on a CPU's page list.
    CachedPage,
}

impl<'a> Span<'a> {
    /// Tags a fresh run as an empty span of `class`: of the class's own
    /// geometry, or of its fallback one (then the run is
    /// `2^class.fallback().span_order` pages).
    pub(crate) fn init(run: Run<'a>, class: SizeClass, fallback: bool) -> Span<'a> {
        let Run { region, index } = run;
        let (info, high) = if fallback {
            (class.fallback(), class.index() as u8 | FALLBACK)
        } else {
            (class.info(), class.index() as u8)
        };
        let head = region.meta(index);
        head.set_tag(kind::SPAN_HEAD, high);
        head.inuse.store(0, R);
        head.carved.store(0, R);
        head.free.store(NIL16, R);
        head.a.store(PageId::NIL.0, R);
        head.b.store(PageId::NIL.0, R);
        for i in 1..1u64 << info.span_order {
            let m = region.meta(index + i);
            m.set_tag(kind::SPAN_HEAD | i as u8, high);
        }
        Span { region, index }
    }

    /// Clears the tags of the span's later pages; the page heap clears the
    /// first when it takes the run back.
    ///
    /// # Time Complexity
    /// O(pages).
    pub(crate) fn retire(self) -> Run<'a> {
        debug_assert_eq!(self.inuse(), 0);
        let order = self.info().span_order;
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

    /// The span's geometry: its class's own, or its class's fallback.
    #[inline(always)]
    pub(crate) fn info(&self) -> &'static ClassInfo {
        let tag = self.head().tag();
        let class = class_of_tag(tag);
        if (tag >> 8) as u8 & FALLBACK != 0 {
            class.fallback()
        } else {
            class.info()
        }
    }

    /// Pages in the span.
    #[inline(always)]
    pub(crate) fn pages(&self) -> u64 {
        1 << self.info().span_order
    }

    /// Whether the span has its class's fallback geometry.
    #[inline(always)]
    pub(crate) fn is_fallback(&self) -> bool {
        (self.head().tag() >> 8) as u8 & FALLBACK != 0
    }

    #[inline(always)]
    pub(crate) fn base(&self, offset: PhysOffset) -> VirtAddr {
        offset.to_virt(self.region.pfn(self.index).addr())
    }

    #[inline(always)]
    pub(crate) fn inuse(&self) -> u16 {
        self.head().inuse.load(R)
    }

    /// Moves up to `out.len()` objects into `out`: first the free list,
    /// then never-carved objects. Returns how many (0 when the span is
    /// full). The head's counters are read once and written once.
    ///
    /// # Time Complexity
    /// O(out.len()).
    #[inline]
    pub(crate) fn pop_into(
        &self,
        offset: PhysOffset,
        info: &ClassInfo,
        out: &mut [VirtAddr],
    ) -> usize {
        let head = self.head();
        let base = self.base(offset);
        let size = info.size as usize;
        let mut free = head.free.load(R);
        let mut n = 0;
        while free != NIL16 && n < out.len() {
            let obj = base.add(free as usize * size);
            // SAFETY: `free` is a checked index of a free object of this
            // span: span memory is mapped and owned by the heap while the
            // object is free, and objects are 8-byte aligned and at least
            // 8 bytes long. The object leaves the free list: clearing its
            // word removes its check word (the line is already loaded).
            let next = unsafe {
                let word = obj.as_mut_ptr::<u64>();
                let next = link_of(word.read());
                word.write(0);
                next
            };
            if next != NIL16 && next >= info.objects {
                corrupted_free_list(base, info.size, obj, next);
            }
            out[n] = obj;
            n += 1;
            free = next;
        }
        let carved = head.carved.load(R);
        let fresh = (out.len() - n).min((info.objects - carved) as usize);
        for (k, slot) in out[n..n + fresh].iter_mut().enumerate() {
            let obj = base.add((carved as usize + k) * size);
            // SAFETY: a never-carved object of this span, owned by the heap
            // until handed out; see above for alignment and size. Its word
            // is cleared so that whatever the span's memory held before (a
            // check word of an earlier span here, or bytes never written)
            // is never read as the object's check word when it comes back.
            unsafe { obj.as_mut_ptr::<u64>().write(0) };
            *slot = obj;
        }
        n += fresh;
        head.free.store(free, R);
        head.carved.store(carved + fresh as u16, R);
        head.inuse.store(head.inuse.load(R) + n as u16, R);
        n
    }

    /// Returns object `index` (at `obj`, found by [`locate`](Self::locate))
    /// to the span's free list. Returns whether every object was out before
    /// (the span was full) and whether none is now (it is empty), the two
    /// cases in which the central list moves the span.
    ///
    /// # Panics
    /// If the object was never handed out since the span was made or
    /// reset, or is already on the free list (a double free; see "Double
    /// frees" in the [module docs](self)).
    ///
    /// # Time Complexity
    /// O(1), unless the object's first word holds its check word: then
    /// O(objects), one walk of the free list.
    #[inline]
    pub(crate) fn push(&self, info: &ClassInfo, obj: VirtAddr, index: u16) -> (bool, bool) {
        let head = self.head();
        let inuse = head.inuse.load(R);
        if index >= head.carved.load(R) || inuse == 0 {
            never_allocated(obj, info.size);
        }
        let check = check_word(obj);
        let word = obj.as_mut_ptr::<u64>();
        // SAFETY: the object belongs to this span and was just returned, so
        // the heap owns its bytes; see `pop_into` for alignment and size.
        if unsafe { word.read() } & !LINK_MASK == check {
            self.confirm_not_free(info, obj, index);
        }
        // SAFETY: as above.
        unsafe { word.write(check | head.free.load(R) as u64) };
        head.free.store(index, R);
        head.inuse.store(inuse - 1, R);
        (inuse == info.objects, inuse == 1)
    }

    /// Whether object `index` is free: never carved, or on the free list.
    ///
    /// # Time Complexity
    /// O(objects).
    pub(crate) fn is_free(&self, offset: PhysOffset, index: u16) -> bool {
        if index >= self.head().carved.load(R) {
            return true;
        }
        self.on_free_list(self.base(offset), self.info(), index)
    }

    /// Whether object `index` of this span (at `base`, of geometry `info`)
    /// is on the free list.
    ///
    /// # Time Complexity
    /// O(objects).
    fn on_free_list(&self, base: VirtAddr, info: &ClassInfo, index: u16) -> bool {
        let mut i = self.head().free.load(R);
        let mut steps = 0;
        while i != NIL16 && steps <= info.objects {
            if i == index {
                return true;
            }
            let obj = base.add(i as usize * info.size as usize);
            // SAFETY: `i` is a checked index of a free object of this span;
            // see `pop_into`.
            i = link_of(unsafe { obj.as_mut_ptr::<u64>().read() });
            if i != NIL16 && i >= info.objects {
                corrupted_free_list(base, info.size, obj, i);
            }
            steps += 1;
        }
        false
    }

    /// [`push`](Self::push) found the check word in object `index` (at
    /// `obj`): panics if the object is on the free list (a double free);
    /// otherwise the word is the user's data, and the push goes on.
    #[cold]
    #[inline(never)]
    fn confirm_not_free(&self, info: &ClassInfo, obj: VirtAddr, index: u16) {
        let base = VirtAddr::new(obj.as_usize() - index as usize * info.size as usize);
        if self.on_free_list(base, info, index) {
            double_free(obj, info.size);
        }
    }

    /// Resets an empty span's free list so objects are carved afresh (in
    /// address order; `pop_into` clears each one's word as it carves it).
    ///
    /// # Time Complexity
    /// O(1).
    pub(crate) fn reset(&self) {
        let head = self.head();
        debug_assert_eq!(head.inuse.load(R), 0);
        head.free.store(NIL16, R);
        head.carved.store(0, R);
    }

    /// The span holding `addr`, checked to be an object boundary of a span
    /// of `class`, the object's index and the span's geometry
    /// ([`info`](Self::info)). Takes no lock.
    ///
    /// # Time Complexity
    /// O(regions) + O(1).
    pub(crate) fn locate(
        pages: &'a PageHeap,
        addr: VirtAddr,
        class: SizeClass,
    ) -> Result<(Span<'a>, u16, &'static ClassInfo), BadFree> {
        Self::find_object(pages, addr, class, true)
    }

    /// [`locate`](Self::locate) for spans of the class's own geometry
    /// only (`None` for anything else, a fallback span included): what the
    /// central list's flush runs for every object, inline.
    #[inline(always)]
    pub(crate) fn locate_own(
        pages: &'a PageHeap,
        addr: VirtAddr,
        class: SizeClass,
    ) -> Option<(Span<'a>, u16)> {
        let (span, obj, _) = Self::find_object(pages, addr, class, false).ok()?;
        Some((span, obj))
    }

    /// [`locate`](Self::locate), trying the fallback geometry only if
    /// `fallback` (a constant at both call sites).
    #[inline(always)]
    fn find_object(
        pages: &'a PageHeap,
        addr: VirtAddr,
        class: SizeClass,
        fallback: bool,
    ) -> Result<(Span<'a>, u16, &'static ClassInfo), BadFree> {
        let Some((region, index)) = pages.find(addr) else {
            return Err(BadFree::Foreign);
        };
        let tag = region.meta(index).tag();
        let own = kind::SPAN_HEAD as u16 | (class.index() as u16) << 8;
        let fallback_tag = own | (FALLBACK as u16) << 8;
        let (distance, info) = if tag ^ own <= kind::SPAN_DISTANCE as u16 {
            (tag ^ own, class.info())
        } else if fallback && tag ^ fallback_tag <= kind::SPAN_DISTANCE as u16 {
            (tag ^ fallback_tag, class.fallback())
        } else {
            return Err(Self::classify(tag));
        };
        let span = Span {
            region,
            index: index - distance as u64,
        };
        span.object_at(pages.offset(), addr, info)
    }

    /// The index of the object at `addr` in this span of geometry `info`,
    /// if `addr` is the start of one.
    #[inline(always)]
    fn object_at(
        self,
        offset: PhysOffset,
        addr: VirtAddr,
        info: &'static ClassInfo,
    ) -> Result<(Span<'a>, u16, &'static ClassInfo), BadFree> {
        let base = self.base(offset);
        let off = addr.as_usize().wrapping_sub(base.as_usize());
        let obj = info.index_of(off);
        if obj * info.size as usize != off || obj >= info.objects as usize {
            let object = base.add(obj.min(info.objects as usize - 1) * info.size as usize);
            return Err(BadFree::Misaligned { object });
        }
        Ok((self, obj as u16, info))
    }

    /// Whether `addr` is an object boundary of a live span of `class`,
    /// loading only the page's metadata and the class table: the check on
    /// every free's fast path. [`diagnose`](Self::diagnose) says what is
    /// wrong when it is not.
    ///
    /// # Time Complexity
    /// O(regions) + O(1): one comparison per region, one metadata load, a
    /// multiply and a rotate instead of a division.
    #[inline(always)]
    pub(crate) fn is_object(pages: &PageHeap, addr: VirtAddr, class: SizeClass) -> bool {
        match pages.meta_of(addr) {
            Some(m) => {
                Self::is_object_on(m, addr, class) || Self::is_fallback_object_on(m, addr, class)
            }
            None => false,
        }
    }

    /// [`is_object`](Self::is_object), given the metadata of the page
    /// holding `addr`.
    #[inline(always)]
    pub(crate) fn is_object_on(m: &PageMeta, addr: VirtAddr, class: SizeClass) -> bool {
        let checks = &OBJECT_CHECKS;
        let i = class.index();
        // SAFETY: a SizeClass index is below NUM_CLASSES.
        let (span_tag, objects) = unsafe {
            (
                *checks.span_tag.get_unchecked(i),
                *checks.objects.get_unchecked(i),
            )
        };
        Self::is_object_in(m, addr, class, span_tag, objects)
    }

    /// [`is_object_on`](Self::is_object_on) for a span of the class's
    /// fallback geometry.
    #[inline(never)]
    fn is_fallback_object_on(m: &PageMeta, addr: VirtAddr, class: SizeClass) -> bool {
        let checks = &OBJECT_CHECKS;
        let i = class.index();
        let span_tag = checks.span_tag[i] | (FALLBACK as usize) << 8;
        Self::is_object_in(m, addr, class, span_tag, checks.fallback_objects[i])
    }

    /// Whether `addr`, on the page of `m`, is an object boundary of a span
    /// of `class` whose pages' tags are `span_tag` plus their distance to
    /// the first page, holding `objects` objects.
    #[inline(always)]
    fn is_object_in(
        m: &PageMeta,
        addr: VirtAddr,
        class: SizeClass,
        span_tag: usize,
        objects: u64,
    ) -> bool {
        // The distance to the span's first page, or 128 and more if the
        // page is not part of such a span: then `off` lies past every span
        // and the quotient is at least the object count.
        let distance = m.tag() as usize ^ span_tag;
        let off = (addr.as_usize() & (PAGE_SIZE - 1)) | (distance << PAGE_SHIFT);
        OBJECT_CHECKS.quotient(class, off) < objects
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
            k if kind::is_span(k) => BadFree::WrongClass {
                span_class: class_of_tag(tag),
            },
            kind::RUN | kind::INTERNAL => BadFree::IsRun,
            kind::CACHED => BadFree::CachedPage,
            _ => BadFree::NotAllocated,
        }
    }
}

/// The class of a span page's tag.
#[inline(always)]
pub(crate) fn class_of_tag(tag: u16) -> SizeClass {
    SizeClass::new(((tag >> 8) as u8 & !FALLBACK) as usize)
}

#[cold]
#[inline(never)]
fn corrupted_free_list(span: VirtAddr, size: u32, obj: VirtAddr, link: u16) -> ! {
    panic!(
        "strata: free list of the span at {span} ({size}-byte objects) is corrupted: \
         free object {obj} links to object {link}, past the span (written after free?)"
    )
}

/// A pointer that was checked when it was freed fails the check when its
/// CPU cache gives it back: the cache's memory was overwritten.
#[cold]
#[inline(never)]
pub(crate) fn no_longer_valid(obj: VirtAddr, why: BadFree) -> ! {
    panic!("strata: cached object {obj} is no longer valid: {why:?}")
}

#[cold]
#[inline(never)]
fn double_free(obj: VirtAddr, size: u32) -> ! {
    panic!(
        "strata: double free of {obj}: this {size}-byte object is already free in its span \
         (found when a second copy of it came back to the span)"
    )
}

#[cold]
#[inline(never)]
fn never_allocated(obj: VirtAddr, size: u32) -> ! {
    panic!("strata: free of {obj}: this {size}-byte object was never allocated (double free?)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::CLASSES;

    /// The quotient test against plain division, for every offset of every
    /// class's span, past its end, and far past it (a page that is not one
    /// of the class's span pages).
    #[test]
    fn quotient_test_is_exact() {
        for (i, c) in CLASSES.iter().enumerate() {
            let class = SizeClass::new(i);
            let (size, objects) = (c.size as usize, c.objects as usize);
            let far = (kind::SPAN_DISTANCE as usize + 1) * PAGE_SIZE;
            let offsets = (0..c.span_bytes() + 2 * size)
                .chain(far..far + 4 * size)
                .chain([usize::MAX / 2, usize::MAX - size + 1, 1 << 40]);
            let fallback = FALLBACK_TABLE[i].objects as usize;
            assert_eq!(OBJECT_CHECKS.fallback_objects[i], fallback as u64);
            for off in offsets {
                let object = off % size == 0 && off / size < objects;
                let q = OBJECT_CHECKS.quotient(class, off);
                assert_eq!(
                    q < objects as u64,
                    object,
                    "class {i} ({size} B), offset {off}"
                );
                if object {
                    assert_eq!(q, (off / size) as u64);
                }
                // The same quotient decides for the (smaller) fallback span.
                assert_eq!(
                    q < fallback as u64,
                    off % size == 0 && off / size < fallback,
                    "class {i} fallback, offset {off}"
                );
            }
        }
    }

    /// `tag ^ span_tag` is the distance to the head on the pages of a span
    /// of the class, and 128 or more for every other tag.
    #[test]
    fn tag_xor_separates_classes_and_kinds() {
        for i in 0..NUM_CLASSES {
            let span_tag = OBJECT_CHECKS.span_tag[i];
            for tag in 0..=u16::MAX {
                let distance = tag as usize ^ span_tag;
                let kind = tag as u8;
                let own = kind::is_span(kind) && (tag >> 8) as usize == i;
                if own {
                    assert_eq!(distance, (kind & kind::SPAN_DISTANCE) as usize);
                } else {
                    assert!(distance > kind::SPAN_DISTANCE as usize, "tag {tag:#x}");
                }
            }
        }
    }
}
