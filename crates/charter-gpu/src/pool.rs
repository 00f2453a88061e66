//! Activation buffers, recycled: a decode step asks for the same sizes every time, and
//! creating GPU buffers is far dearer than reusing them.
//!
//! A buffer returned here may be handed out again while commands that read it are still
//! recorded but not yet run; that is safe because one queue runs commands in order, and
//! WebGPU makes each dispatch see the writes of the ones before it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Free buffers by size in bytes.
#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
}

impl Pool {
    pub(crate) fn take(pool: &Rc<RefCell<Pool>>, device: &wgpu::Device, size: u64) -> Rc<Pooled> {
        let buffer = pool.borrow_mut().free.get_mut(&size).and_then(Vec::pop).unwrap_or_else(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activation"),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Rc::new(Pooled { buffer: Some(buffer), size, pool: pool.clone() })
    }
}

/// A buffer that goes back to its pool when the last tensor holding it is dropped.
pub(crate) struct Pooled {
    buffer: Option<wgpu::Buffer>,
    size: u64,
    pool: Rc<RefCell<Pool>>,
}

impl Pooled {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        // Only `drop` takes it out.
        self.buffer.as_ref().expect("a pooled buffer is present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.pool.borrow_mut().free.entry(self.size).or_default().push(b);
        }
    }
}

/// An activation matrix `(n, width)` of `f32` on the GPU.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) data: Rc<Pooled>,
    /// Rows.
    pub n: usize,
    /// Values per row.
    pub width: usize,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({}×{})", self.n, self.width)
    }
}

impl Tensor {
    /// Values held.
    pub fn len(&self) -> usize {
        self.n * self.width
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.data.buffer()
    }
}
