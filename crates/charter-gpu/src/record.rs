//! Recording: every operation becomes a dispatch in one open compute pass; nothing is
//! submitted until a result is read back (or the upload arena fills), so a decode step
//! is one submission.
//!
//! Small per-dispatch data (each kernel's parameters, the token ids of an embedding)
//! goes into one arena buffer, staged on the CPU while recording and written with a
//! single `write_buffer` just before the submission that reads it (WebGPU orders queue
//! writes before later submissions).

use std::collections::HashMap;

/// Bytes of the upload arena: 4,096 dispatches' parameters.
const ARENA: u64 = 1 << 20;

pub(crate) struct Recorder {
    pub(crate) arena: wgpu::Buffer,
    staged: Vec<u8>,
    /// Offsets of arena entries are multiples of this (the uniform offset alignment).
    align: u64,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Mappable buffers for readback, by size and place in one readback.
    staging: HashMap<(u64, usize), wgpu::Buffer>,
    /// Dispatches recorded since the last submission.
    pub(crate) dispatches: usize,
    /// Dispatches recorded since the device opened.
    pub(crate) total: u64,
    /// Submissions since the device opened.
    pub(crate) submissions: u64,
}

impl Recorder {
    pub(crate) fn new(device: &wgpu::Device, align: u64) -> Recorder {
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("arena"),
            size: ARENA,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Recorder {
            arena,
            staged: Vec::new(),
            align,
            encoder: None,
            pass: None,
            staging: HashMap::new(),
            dispatches: 0,
            total: 0,
            submissions: 0,
        }
    }

    /// Whether `bytes` more fit in the arena before a submission.
    pub(crate) fn fits(&self, bytes: usize) -> bool {
        self.staged.len() as u64 + (bytes as u64).next_multiple_of(self.align) <= ARENA
    }

    /// Stages `bytes` in the arena and returns their offset.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> u64 {
        let at = self.staged.len() as u64;
        self.staged.extend_from_slice(bytes);
        let end = self.staged.len().next_multiple_of(self.align as usize);
        self.staged.resize(end, 0);
        at
    }

    /// The open compute pass, begun if need be.
    pub(crate) fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let encoder = self
                .encoder
                .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") }));
            let pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            self.pass = Some(pass.forget_lifetime());
        }
        self.dispatches += 1;
        self.total += 1;
        // Just set.
        self.pass.as_mut().expect("the pass was just begun")
    }

    /// The encoder, with the pass ended (for copies).
    pub(crate) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") }))
    }

    /// Writes the arena and submits everything recorded.
    pub(crate) fn submit(&mut self, queue: &wgpu::Queue) {
        self.pass = None;
        if !self.staged.is_empty() {
            queue.write_buffer(&self.arena, 0, &self.staged);
            self.staged.clear();
        }
        if let Some(encoder) = self.encoder.take() {
            queue.submit([encoder.finish()]);
            self.submissions += 1;
        }
        self.dispatches = 0;
    }

    /// A mappable buffer of `size` bytes for the `slot`-th buffer of one readback (kept
    /// for the next readback of that size).
    pub(crate) fn staging(&mut self, device: &wgpu::Device, size: u64, slot: usize) -> wgpu::Buffer {
        self.staging
            .entry((size, slot))
            .or_insert_with(|| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .clone()
    }
}
