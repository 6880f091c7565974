//! Byte buffers for large results, backed by transparent huge pages.
//!
//! A result that copies gigabytes of text (the plain default output of all pairs of a million
//! responses holds 7 GB) writes them into fresh memory. With 4 KB pages each first touch is a
//! page fault (about 3 us on a VM), which costs more than the copy itself; the allocator is
//! built without huge pages because most of its blocks are partly used. A large buffer that is
//! written whole is mapped on its own instead, advised to use 2 MB pages: 512 times fewer faults.

use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_buffer::Buffer;
use memmap2::{Advice, MmapMut};

/// Buffers from this size on are mapped with huge pages; smaller ones come from the heap.
const MAPPED_BYTES: usize = 8 << 20;

/// The bytes of one output array, `len` of them, to be written whole before [`Self::into_buffer`].
pub enum OutputBytes {
    /// A heap allocation with `len` bytes of capacity.
    Heap(Vec<u8>, usize),
    /// An anonymous mapping of `len` bytes (zeroed by the kernel).
    Mapped(MmapMut),
}

impl OutputBytes {
    /// Room for `len` bytes: mapped with huge pages when large (falling back to the heap if
    /// the mapping fails), else on the heap.
    pub fn new(len: usize) -> Self {
        if len >= MAPPED_BYTES {
            if let Ok(mapping) = MmapMut::map_anon(len) {
                // Only advice: without huge pages the mapping still works, with small pages.
                let _ = mapping.advise(Advice::HugePage);
                return OutputBytes::Mapped(mapping);
            }
        }
        OutputBytes::Heap(Vec::with_capacity(len), len)
    }

    /// The bytes to write, all of them, as possibly uninitialised memory.
    pub fn slots(&mut self) -> &mut [MaybeUninit<u8>] {
        match self {
            OutputBytes::Heap(vec, len) => &mut vec.spare_capacity_mut()[..*len],
            OutputBytes::Mapped(mapping) => {
                let len = mapping.len();
                // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the mapping is
                // borrowed mutably for the slice's lifetime.
                unsafe { std::slice::from_raw_parts_mut(mapping.as_mut_ptr().cast(), len) }
            }
        }
    }

    /// An Arrow buffer owning the bytes.
    ///
    /// # Safety
    /// Every byte of [`Self::slots`] must have been written.
    pub unsafe fn into_buffer(self) -> Buffer {
        match self {
            OutputBytes::Heap(mut vec, len) => {
                // SAFETY: the caller wrote all `len` bytes of the spare capacity.
                unsafe { vec.set_len(len) };
                Buffer::from_vec(vec)
            }
            OutputBytes::Mapped(mut mapping) => {
                let len = mapping.len();
                let ptr = NonNull::new(mapping.as_mut_ptr()).expect("a mapping is not null");
                // SAFETY: the pointer and length are the mapping's, and the buffer keeps the
                // mapping alive (it is unmapped when the last clone of the buffer is dropped).
                unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(mapping)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_buffers_hold_what_was_written() {
        for len in [0, 100, MAPPED_BYTES + 3] {
            let mut bytes = OutputBytes::new(len);
            for (i, slot) in bytes.slots().iter_mut().enumerate() {
                slot.write(i as u8);
            }
            let buffer = unsafe { bytes.into_buffer() };
            assert_eq!(buffer.len(), len);
            assert!(buffer.iter().enumerate().all(|(i, &b)| b == i as u8));
        }
    }
}
