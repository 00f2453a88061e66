//! An output that the tasks of one pool job write in disjoint parts.

/// A mutable output lent to every task of a job. Each task writes only the part it
/// owns, and the job ends before the borrow it came from does.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks write disjoint parts (each caller's contract), and the job that shares it
// ends before the borrow it came from does.
unsafe impl Sync for SharedOut {}
// SAFETY: as above.
unsafe impl Send for SharedOut {}

impl SharedOut {
    pub(crate) fn new(out: &mut [f32]) -> SharedOut {
        SharedOut { ptr: out.as_mut_ptr(), len: out.len() }
    }

    /// Values `at..at + len`.
    ///
    /// # Safety
    /// No other thread reads or writes them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.len, "{at}+{len} of {}", self.len);
        // SAFETY: in bounds (checked), and exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}
