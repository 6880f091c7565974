//! Software prefetch: asking the processor to start loading memory that a loop will read a
//! little later.
//!
//! Loops that rank many short groups (a prompt's responses) read a few rows per group and
//! then branch on what they read; a mispredicted branch discards the loads issued past it, so
//! the hardware never has more than one group's reads in flight and every group waits for
//! memory. Prefetching the rows of a group a few ahead overlaps those waits.

/// Starts loading the cache line holding `address`; a hint only: it never faults, whatever
/// the address, and never changes memory.
#[inline(always)]
pub fn prefetch_read<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults or changes memory, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Starts loading `values[index]` (nothing happens out of bounds: the address is only a hint).
#[inline(always)]
pub fn prefetch_element<T>(values: &[T], index: usize) {
    prefetch_read(values.as_ptr().wrapping_add(index));
}
