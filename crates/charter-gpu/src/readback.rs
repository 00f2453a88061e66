//! Reading results back: everything recorded runs first, then the buffers are copied
//! into mappable ones and mapped. On the web the mapping completes from the browser's
//! event loop, so the reads are `async` there; natively they wait for the device.

use crate::map::Mapped;
use crate::pool::Tensor;
use crate::{Gpu, GpuError};

impl Gpu {
    /// Runs everything recorded and reads `buffers` back, whole, in order. On the web
    /// the mapping completes from the browser's event loop, so this must be awaited
    /// there; natively it waits for the device first.
    pub(crate) async fn read_buffers(&self, buffers: &[(&wgpu::Buffer, u64)]) -> Result<Vec<Vec<u8>>, GpuError> {
        let staging: Vec<wgpu::Buffer> = {
            let mut rec = self.recorder.borrow_mut();
            let staging: Vec<_> = buffers.iter().enumerate().map(|(i, &(_, size))| rec.staging(&self.device, size, i)).collect();
            let encoder = rec.encoder(&self.device);
            for (&(buffer, size), s) in buffers.iter().zip(&staging) {
                encoder.copy_buffer_to_buffer(buffer, 0, s, 0, size);
            }
            rec.submit(&self.queue);
            staging
        };
        let mapped: Vec<Mapped> = staging.iter().map(Mapped::start).collect();
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuError::Device(e.to_string()))?;
        for m in mapped {
            // A lost device fails every mapping; its own report says why.
            m.await.map_err(|e| self.check().err().unwrap_or_else(|| GpuError::Device(e.to_string())))?;
        }
        self.check()?;
        staging
            .iter()
            .map(|s| {
                let bytes = s.slice(..).get_mapped_range().map(|view| view.to_vec());
                s.unmap();
                bytes.map_err(|e| GpuError::Device(e.to_string()))
            })
            .collect()
    }

    /// Runs everything recorded and reads `x` back, row-major.
    pub async fn read_async(&self, x: &Tensor) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_buffers(&[(x.buffer(), x.buffer().size())]).await?.remove(0);
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes)[..x.len()].to_vec())
    }

    /// [`Gpu::read_async`], waiting for it (native only: the web has no blocking waits).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, x: &Tensor) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.read_async(x))
    }
}
