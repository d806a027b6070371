//! The guest's stderr: kept for the reason of a call that fails, and never
//! a way to fail. wasmtime's memory pipe refuses writes once full, which
//! traps the guest that writes: a reused instance that writes a line per
//! call would trap, after a few dozen calls, on an innocent request. This
//! keeps the first [`CAPACITY`] bytes of each call's output, counts the
//! rest, and is emptied when the next call begins.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of a call's stderr kept for its reason.
pub(super) const CAPACITY: usize = 4096;

/// How much a guest may write at once: any amount is taken.
const WRITE_BUDGET: usize = 1 << 20;

/// The stderr of one instance; clones share it.
#[derive(Clone, Default)]
pub(super) struct StderrTail(Arc<Mutex<Kept>>);

#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    dropped: u64,
}

impl StderrTail {
    /// What the current call wrote (the first [`CAPACITY`] bytes, and how
    /// many more there were), leaving it empty for the next call.
    pub(super) fn take(&self) -> (Vec<u8>, u64) {
        let mut kept = self.0.lock().unwrap();
        (std::mem::take(&mut kept.bytes), std::mem::take(&mut kept.dropped))
    }

    fn keep(&self, bytes: &[u8]) {
        let mut kept = self.0.lock().unwrap();
        let room = CAPACITY.saturating_sub(kept.bytes.len());
        let (fits, rest) = bytes.split_at(bytes.len().min(room));
        kept.bytes.extend_from_slice(fits);
        kept.dropped += rest.len() as u64;
    }
}

#[async_trait::async_trait]
impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.keep(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
    }
}

#[async_trait::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_tail_takes_every_write_and_each_call_starts_empty() {
        let mut tail = StderrTail::default();
        for _ in 0..100 {
            tail.write(Bytes::from(vec![b'x'; 100])).unwrap();
            assert!(tail.check_write().unwrap() > 0, "never full for the guest");
        }
        let (kept, dropped) = tail.take();
        assert_eq!((kept.len(), dropped), (CAPACITY, 10_000 - CAPACITY as u64));
        tail.write(Bytes::from_static(b"next call")).unwrap();
        assert_eq!(tail.take(), (b"next call".to_vec(), 0));
    }
}
