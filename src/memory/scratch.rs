//! The process's global allocator: the system's, plus a scratch region that one thread at a time
//! may direct its allocations to while it makes a transient copy.
//!
//! Why: [`super::settle`] moves a loaded configuration into fresh blocks so that the pages the
//! parse freed can go back to the system. With glibc, a copy made while the original lives is
//! carved from the holes between the original's blocks, and the next copy from the holes
//! between that one's: which holes fit depends on the sizes of the blocks, down to the length
//! of the configuration file's path. At 10 000 providers, the same configuration settled into
//! 35 or 40 MiB of resident memory depending on whether its path was 24 or 25 bytes long
//! (BENCHMARKS.md, round nine). Copying through the scratch region instead, the intermediate
//! copy lives outside the heap while the original is freed, so the final copy is carved from
//! the heap's joined free memory, packed, whatever the sizes.
//!
//! The region is one anonymous mapping with a bump pointer: blocks are never reused, a free only
//! counts down, and the mapping is unmapped when its last block is freed. Allocations go there
//! only on the thread inside [`into_scratch`] and only while the region has room; every other
//! allocation, and every one that does not fit, is the system allocator's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The address space reserved for one scratch copy. Only the pages written count against memory
/// (`MAP_NORESERVE`); a copy larger than this spills into the heap, which is correct, only
/// less packed. 1 GiB holds the settings of far more than 100 000 providers.
const RESERVE_BYTES: usize = 1 << 30;

/// Every block of the region is aligned at least as malloc aligns its blocks.
const MIN_ALIGN: usize = 16;

/// The system allocator, with the scratch region beside it.
pub struct Allocator;

/// The one region: [`RESERVE_BYTES`] from `start`; `start == 0`: there is none.
struct Region {
    start: AtomicUsize,
    /// The next free byte.
    next: AtomicUsize,
    /// Blocks handed out and not yet freed.
    live: AtomicUsize,
    /// Set while a thread may still allocate in it: a count reaching zero before then does not
    /// unmap it.
    open: AtomicBool,
}

static REGION: Region = Region {
    start: AtomicUsize::new(0),
    next: AtomicUsize::new(0),
    live: AtomicUsize::new(0),
    open: AtomicBool::new(false),
};

/// Held for a whole settle (the scratch copy, and the copy back that frees it), and by the tests
/// that watch the region.
pub(super) static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    /// Whether this thread's allocations go to the region (const: reading it never allocates).
    static INTO_SCRATCH: Cell<bool> = const { Cell::new(false) };
}

/// Runs `make` with this thread's allocations in a fresh scratch region, and returns what it
/// made; the region is unmapped once every block of it has been freed. When no region can be
/// had (another is in use, or the mapping is refused), `make` runs with the system allocator.
pub fn into_scratch<T>(make: impl FnOnce() -> T) -> T {
    let opened = REGION.open();
    if opened {
        let _ = INTO_SCRATCH.try_with(|into| into.set(true));
    }
    let made = make();
    if opened {
        let _ = INTO_SCRATCH.try_with(|into| into.set(false));
        REGION.close();
    }
    made
}

/// Whether a scratch region is mapped now (tests).
#[cfg(test)]
pub fn region_mapped() -> bool {
    REGION.start.load(Ordering::SeqCst) != 0
}

/// Whether `block` lies in the scratch region (tests).
#[cfg(test)]
pub fn in_region<T: ?Sized>(block: *const T) -> bool {
    REGION.contains(block.cast::<u8>() as usize)
}

#[allow(unsafe_code)]
impl Region {
    /// Maps a region and opens it; `false` when one is already mapped or the mapping failed.
    fn open(&self) -> bool {
        if self.start.load(Ordering::SeqCst) != 0 {
            return false;
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing: no
        // existing memory is touched. The result is checked against MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                RESERVE_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return false;
        }
        let base = base as usize;
        self.live.store(0, Ordering::SeqCst);
        self.next.store(base, Ordering::SeqCst);
        self.start.store(base, Ordering::SeqCst);
        self.open.store(true, Ordering::SeqCst);
        true
    }

    /// No more allocations; unmapped now if nothing made in it is still alive.
    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        if self.live.load(Ordering::SeqCst) == 0 {
            self.unmap();
        }
    }

    /// One value read: the region's extent is fixed, so no reader can pair one region's start
    /// with another's end.
    fn contains(&self, address: usize) -> bool {
        let start = self.start.load(Ordering::SeqCst);
        start != 0 && address.wrapping_sub(start) < RESERVE_BYTES
    }

    /// A block of `layout` from the region, or `None` when it has no room left. Only the thread
    /// inside [`into_scratch`] calls this.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let align = layout.align().max(MIN_ALIGN);
        let next = self.next.load(Ordering::Relaxed);
        let at = next.checked_add(align - 1)? & !(align - 1);
        let after = at.checked_add(layout.size().max(1))?;
        if after > self.start.load(Ordering::Relaxed) + RESERVE_BYTES {
            return None;
        }
        self.next.store(after, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::SeqCst);
        Some(at as *mut u8)
    }

    /// One block freed; the last one of a closed region unmaps it.
    fn release(&self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 && !self.open.load(Ordering::SeqCst) {
            self.unmap();
        }
    }

    fn unmap(&self) {
        // Claimed by one caller (the close and the last free may race), and forgotten before
        // the mapping goes: an address the system maps there next is the system allocator's.
        let start = self.start.swap(0, Ordering::SeqCst);
        if start == 0 {
            return;
        }
        // SAFETY: exactly the mapping `open` made, and no block in it is alive (`live` is zero
        // and the region is closed, so none can be handed out again).
        unsafe {
            libc::munmap(start as *mut libc::c_void, RESERVE_BYTES);
        }
    }
}

#[allow(unsafe_code)]
// SAFETY: every block is either the system allocator's, passed through unchanged, or a block of
// the region: aligned to `layout` (and to malloc's 16 bytes), never handed out twice (the bump
// pointer only moves forward), and unmapped only once none is alive.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if INTO_SCRATCH.try_with(Cell::get).unwrap_or(false)
            && let Some(block) = REGION.bump(layout)
        {
            return block;
        }
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if INTO_SCRATCH.try_with(Cell::get).unwrap_or(false)
            && let Some(block) = REGION.bump(layout)
        {
            // Never handed out before: a fresh anonymous mapping reads as zeros.
            return block;
        }
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if REGION.contains(block as usize) {
            REGION.release();
        } else {
            // SAFETY: a block the system allocator handed out with this layout.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !REGION.contains(block as usize) {
            // SAFETY: a system block, the caller's layout and size.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // A region block cannot grow in place: moved to a new block (the region's, when this
        // thread is copying into it and it has room).
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: a valid layout; the copy is of the smaller size, within both blocks.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The region is one per process: each test holds the lock `settle` holds.

    #[test]
    fn a_copy_made_in_scratch_lives_there_and_the_region_goes_when_it_is_dropped() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let original: Vec<String> = (0..1000).map(|i| format!("provider-{i}")).collect();
        let copy = into_scratch(|| original.clone());
        assert!(region_mapped());
        assert!(in_region(copy.as_ptr()));
        assert!(copy.iter().all(|name| in_region(name.as_ptr())));
        assert!(!in_region(original.as_ptr()));
        assert_eq!(copy, original);
        // A copy of the scratch copy, outside it, is the system's.
        let settled = copy.clone();
        assert!(!in_region(settled.as_ptr()));
        drop(copy);
        assert!(!region_mapped(), "the last block freed unmaps the region");
        assert_eq!(settled, original);
    }

    #[test]
    fn nothing_made_in_scratch_survives_leaves_no_region() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let length = into_scratch(|| format!("{:>64}", "transient").len());
        assert_eq!(length, 64);
        assert!(!region_mapped());
    }

    #[test]
    fn growing_a_scratch_block_moves_it_and_keeps_its_bytes() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let mut grown = into_scratch(|| {
            let mut text = String::with_capacity(4);
            text.push_str("abcd");
            text
        });
        assert!(in_region(grown.as_ptr()));
        // Outside `into_scratch`: the grown block is the system's, and the region's last block
        // went with the move.
        grown.push_str(&"e".repeat(4096));
        assert!(!in_region(grown.as_ptr()));
        assert!(grown.starts_with("abcde"));
        assert_eq!(grown.len(), 4100);
        assert!(!region_mapped());
    }

    #[test]
    fn other_threads_allocate_from_the_system_meanwhile() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let (inside, outside) = into_scratch(|| {
            let inside = vec![1_u64; 16];
            let outside = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let block = vec![2_u64; 16];
                        (in_region(block.as_ptr()), block)
                    })
                    .join()
            });
            (inside, outside)
        });
        let Ok((outside_in_region, outside)) = outside else {
            panic!("the other thread panicked");
        };
        assert!(in_region(inside.as_ptr()));
        assert!(!outside_in_region);
        assert_eq!(outside, vec![2_u64; 16]);
        drop(inside);
        assert!(!region_mapped());
    }

    #[test]
    fn over_aligned_blocks_are_aligned() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        #[repr(align(4096))]
        struct Page([u8; 4096]);
        let page = into_scratch(|| Box::new(Page([7; 4096])));
        assert!(in_region(&*page));
        assert_eq!((&*page as *const Page as usize) % 4096, 0);
        assert!(page.0.iter().all(|&b| b == 7));
    }
}
