//! The rules' allocator: free lists per size class in front of the system allocator.
//!
//! A rule call allocates a handful of short strings (each value the host hands in, the
//! SDK's copies of it, the title and dedup strings the host reads back) and frees them all
//! before the next call. `dlmalloc`, the default in `wasm32-wasip2`, spends about as many
//! instructions on each of those as the rule spends on its logic. Here a block of up to
//! [`MAX_SMALL`] bytes is rounded up to a multiple of [`GRANULE`] and, once freed, kept on
//! a free list for its size class: the next allocation of that class pops it in a few
//! instructions. Blocks on the free lists are never handed back to the system allocator, so
//! a rule's memory stays at its peak use per class (bounded by the host's memory cap, and
//! released when the host replaces the instance). Larger blocks go straight to the system
//! allocator.
//!
//! A component instance runs one call at a time on one thread (`wasm32-wasip2` has no
//! threads), which is what lets the free lists live in a plain `static` without locks.
#![allow(unsafe_code, reason = "a global allocator is unsafe by definition")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this many bytes; it is also the largest alignment served
/// from the free lists.
pub const GRANULE: usize = 16;
/// Largest block served from the free lists.
pub const MAX_SMALL: usize = 512;
const CLASSES: usize = MAX_SMALL / GRANULE;

/// The allocator: one free list head per size class.
pub struct RuleAlloc {
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: a rule instance is single-threaded (see the module docs); natively the allocator
// is only used by its own single-threaded tests, never as the global allocator.
unsafe impl Sync for RuleAlloc {}

impl RuleAlloc {
    /// An allocator with empty free lists.
    pub const fn new() -> Self {
        RuleAlloc {
            free: UnsafeCell::new([ptr::null_mut(); CLASSES]),
        }
    }

    /// The size class of `layout` (block size `(class + 1) * GRANULE`), or `None` when it
    /// goes to the system allocator.
    fn class(layout: Layout) -> Option<usize> {
        let size = layout.size();
        if size == 0 || size > MAX_SMALL || layout.align() > GRANULE {
            return None;
        }
        Some((size - 1) / GRANULE)
    }

    fn block_layout(class: usize) -> Layout {
        // SAFETY: GRANULE is a power of two and the size is a small nonzero multiple of it.
        unsafe { Layout::from_size_align_unchecked((class + 1) * GRANULE, GRANULE) }
    }
}

impl Default for RuleAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is either a fresh system block of at least the requested
// size and alignment, or one that was freed with the same size class (so the same block
// size and GRANULE alignment). A freed block stores the next free block in its first
// bytes, which GRANULE (16) leaves room for.
unsafe impl GlobalAlloc for RuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = Self::class(layout) else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded, and no reference into `free` outlives this call.
        unsafe {
            let head = &mut (*self.free.get())[class];
            if head.is_null() {
                return System.alloc(Self::block_layout(class));
            }
            let block = *head;
            *head = block.cast::<*mut u8>().read();
            block
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = Self::class(layout) else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: `block` came from `alloc` with this class (the caller passes the layout
        // it allocated with), so it is at least GRANULE bytes and GRANULE-aligned.
        unsafe {
            let head = &mut (*self.free.get())[class];
            block.cast::<*mut u8>().write(*head);
            *head = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is nonzero and fits the alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (Self::class(layout), Self::class(new_layout)) {
            // Same block: nothing to move.
            (Some(a), Some(b)) if a == b => block,
            // Both outside the free lists: let the system allocator grow in place.
            // SAFETY: forwarded with the caller's guarantees.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a fresh block for the new layout, the old contents copied up to
                // the smaller size, then the old block freed with its own layout.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_freed_block_is_reused_for_its_class() {
        let a = RuleAlloc::new();
        unsafe {
            let x = a.alloc(layout(20, 1));
            let y = a.alloc(layout(30, 8));
            assert_ne!(x, y);
            a.dealloc(x, layout(20, 1));
            // 17..=32 bytes share a class: the freed block comes back, last freed first.
            let z = a.alloc(layout(32, 4));
            assert_eq!(z, x);
            // Another class does not take it.
            a.dealloc(z, layout(32, 4));
            let w = a.alloc(layout(48, 1));
            assert_ne!(w, z);
            for (p, l) in [(y, layout(30, 8)), (w, layout(48, 1))] {
                a.dealloc(p, l);
            }
        }
    }

    #[test]
    fn blocks_hold_their_data_and_keep_alignment() {
        let a = RuleAlloc::new();
        unsafe {
            let mut blocks = Vec::new();
            for size in [1, 15, 16, 17, 100, 512, 513, 4096] {
                for align in [1, 8, 16, 64] {
                    let l = layout(size, align);
                    let p = a.alloc(l);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    ptr::write_bytes(p, size as u8, size);
                    blocks.push((p, l));
                }
            }
            for &(p, l) in &blocks {
                let bytes = std::slice::from_raw_parts(p, l.size());
                assert!(bytes.iter().all(|&b| b == l.size() as u8));
            }
            for (p, l) in blocks {
                a.dealloc(p, l);
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes() {
        let a = RuleAlloc::new();
        unsafe {
            let l = layout(10, 1);
            let mut p = a.alloc(l);
            ptr::copy_nonoverlapping(b"0123456789".as_ptr(), p, 10);
            let mut size = 10;
            for new_size in [12, 40, 600, 5000, 30, 3] {
                p = a.realloc(p, layout(size, 1), new_size);
                let keep = size.min(new_size).min(10);
                assert_eq!(
                    std::slice::from_raw_parts(p, keep),
                    &b"0123456789"[..keep],
                    "{size} -> {new_size}"
                );
                size = new_size;
            }
            a.dealloc(p, layout(size, 1));
        }
    }
}
