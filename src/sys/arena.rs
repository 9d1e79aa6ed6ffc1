//! The process's allocator: its first allocations from a static arena, the
//! rest from the system's.
//!
//! The hook and the runtime wrapper live for a fraction of a millisecond
//! and allocate a few dozen kilobytes. musl's allocator spreads those over a
//! page per size class and gives pages back as soon as they empty (an
//! `mmap`/`munmap` pair and new page faults each time): 8 of a hook's page
//! faults and 6 of its system calls. Bumped through one arena they cost a
//! page fault per 4 KiB actually used and no system call. The arena is
//! never given back; a long-running command (the watcher) fills it once and
//! allocates from the system after that, so it costs at most its size.
//!
//! `main.rs` installs it as the global allocator; the library only defines
//! it, so tests and other programs linking the library keep their own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes in the arena: a hook run at 1,000 policies uses about 40 KiB.
pub const ARENA_BYTES: usize = 256 * 1024;

/// Bump-first allocation over `N` bytes of `.bss`. The offset comes first,
/// so that the first blocks share its page (one page fault, not two).
#[repr(C)]
pub struct Arena<const N: usize> {
    /// Offset of the first free byte.
    next: AtomicUsize,
    bytes: UnsafeCell<[u8; N]>,
}

// A byte is handed out only while no live block holds it: `next` moves
// only by compare-and-swap, forward for a new block and back only over the
// last block, given back.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena {
            bytes: UnsafeCell::new([0; N]),
            next: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    /// Whether `ptr` was handed out by the arena.
    fn owns(&self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= self.base() && p < self.base() + N
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + cur).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > N {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((base + start) as *mut u8),
                Err(now) => cur = now,
            }
        }
    }

    /// Gives the block back if it is the last one handed out, or grows or
    /// shrinks it there to `size`; says whether it could.
    fn resize_last(&self, ptr: *mut u8, old: usize, size: usize) -> bool {
        let start = ptr as usize - self.base();
        let Some(end) = start.checked_add(size).filter(|&e| e <= N) else {
            return false;
        };
        self.next
            .compare_exchange(start + old, end, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    // Out of line: inlined, it would be copied to every allocation site.
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => p,
            None => unsafe { System.alloc(layout) },
        }
    }

    // Out of line: inlined, it would be copied to every allocation site.
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            // Zero until first handed out, but a block given back and
            // handed out again is not.
            Some(p) => unsafe {
                std::ptr::write_bytes(p, 0, layout.size());
                p
            },
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    // Out of line: inlined, it would be copied to every allocation site.
    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            // Only the last block comes back; the others stay used.
            self.resize_last(ptr, layout.size(), 0);
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    // Out of line: inlined, it would be copied to every allocation site.
    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if new_size <= layout.size() || self.resize_last(ptr, layout.size(), new_size) {
            return ptr;
        }
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let p = unsafe { self.alloc(new) };
        if !p.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_apart_and_the_last_one_comes_back() {
        let a: Arena<4096> = Arena::new();
        unsafe {
            let p = a.alloc(layout(3, 1));
            let q = a.alloc(layout(8, 64));
            assert!(a.owns(p) && a.owns(q));
            assert_eq!(q as usize % 64, 0);
            assert!(q as usize >= p as usize + 3);
            let used = a.used();
            a.dealloc(p, layout(3, 1)); // not the last: stays used
            assert_eq!(a.used(), used);
            a.dealloc(q, layout(8, 64));
            assert_eq!(a.used(), q as usize - a.base());
        }
    }

    #[test]
    fn the_last_block_grows_in_place_and_others_move_with_their_bytes() {
        let a: Arena<4096> = Arena::new();
        unsafe {
            let p = a.alloc(layout(16, 8));
            std::ptr::write_bytes(p, 7, 16);
            let p2 = a.realloc(p, layout(16, 8), 64);
            assert_eq!(p, p2, "the last block grows where it is");
            let q = a.alloc(layout(8, 8));
            let p3 = a.realloc(p2, layout(64, 8), 128);
            assert_ne!(p3, p2, "a block with another after it moves");
            assert!((0..16).all(|i| *p3.add(i) == 7));
            let _ = q;
        }
    }

    #[test]
    fn a_full_arena_hands_over_to_the_system_and_takes_back_only_its_own() {
        let a: Arena<256> = Arena::new();
        unsafe {
            let p = a.alloc(layout(200, 8));
            assert!(a.owns(p));
            let q = a.alloc(layout(100, 8));
            assert!(!q.is_null() && !a.owns(q), "over the arena: the system's");
            std::ptr::write_bytes(q, 1, 100);
            // Growing the arena's last block past its end moves it out.
            std::ptr::write_bytes(p, 9, 200);
            let p2 = a.realloc(p, layout(200, 8), 1000);
            assert!(!a.owns(p2));
            assert!((0..200).all(|i| *p2.add(i) == 9));
            assert_eq!(a.used(), 0, "the moved block was the last: given back");
            a.dealloc(p2, layout(1000, 8));
            a.dealloc(q, layout(100, 8));
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_where_a_block_was_given_back() {
        let a: Arena<4096> = Arena::new();
        unsafe {
            let p = a.alloc(layout(32, 8));
            std::ptr::write_bytes(p, 0xff, 32);
            a.dealloc(p, layout(32, 8));
            let z = a.alloc_zeroed(layout(32, 8));
            assert_eq!(z, p);
            assert!((0..32).all(|i| *z.add(i) == 0));
        }
    }

    #[test]
    fn threads_never_get_the_same_bytes() {
        static A: Arena<{ 64 * 1024 }> = Arena::new();
        let hs: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..200 {
                        let p = unsafe { A.alloc(layout(24, 8)) };
                        unsafe { std::ptr::write_bytes(p, t as u8, 24) };
                        got.push(p as usize);
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<usize> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort();
        assert!(all.windows(2).all(|w| w[1] >= w[0] + 24));
    }
}
