//! Once shapes repeat, a decode step allocates nothing: activations and scratch come
//! back from the CPU backend's pool, the attention scratch is sized for the whole cache
//! at its first use, and the logits go into the caller's buffer. Counted with a global
//! allocator that counts this thread's allocations.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use charter_engine::{LoadOptions, Model};
use common::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches
// only a const-initialized thread-local, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn a_decode_step_allocates_nothing() {
    for file in [SMOLLM2, GEMMA3] {
        let mut model = Model::load(&model_bytes(file), &LoadOptions { context_length: Some(256), ..Default::default() }).unwrap();
        let prompt = model.tokenizer.encode("The keeper climbed the stairs", false).unwrap();
        let d = &mut model.decoder;
        let mut logits = Vec::new();
        d.forward_into(&prompt, false, &mut logits).unwrap();
        let step = |d: &mut charter_engine::ModelDecoder, logits: &mut Vec<f32>| {
            let next = charter_core::sampling::argmax(logits);
            d.forward_into(&[next], false, logits).unwrap();
        };
        for _ in 0..3 {
            step(d, &mut logits);
        }
        let before = ALLOCATIONS.with(Cell::get);
        for _ in 0..8 {
            step(d, &mut logits);
        }
        let made = ALLOCATIONS.with(Cell::get) - before;
        assert_eq!(made, 0, "{file}: 8 decode steps made {made} allocations");
    }
}
