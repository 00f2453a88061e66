//! A buffer mapping as a future: `map_async` reports through a callback (from the
//! browser's event loop on the web, from `Device::poll` natively).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Slot {
    result: Option<Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// Resolves when the whole of a buffer is mapped for reading.
pub(crate) struct Mapped(Arc<Mutex<Slot>>);

impl Mapped {
    pub(crate) fn start(buffer: &wgpu::Buffer) -> Mapped {
        let slot: Arc<Mutex<Slot>> = Arc::default();
        let done = slot.clone();
        buffer.slice(..).map_async(wgpu::MapMode::Read, move |result| {
            if let Ok(mut s) = done.lock() {
                s.result = Some(result);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
        Mapped(slot)
    }
}

impl Future for Mapped {
    type Output = Result<(), wgpu::BufferAsyncError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut s) = self.0.lock() else {
            return Poll::Ready(Err(wgpu::BufferAsyncError));
        };
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
