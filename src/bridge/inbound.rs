//! The read side of one WebSocket, in front of actix-web-actors' decoder (which buffers all
//! it can read, and checks a frame's size only once the whole frame has arrived).
//! Invariant: the bytes of a connection inside the server (read but not yet handled, and
//! handed to the session but not yet taken) stay under the budget's cap; past it the socket
//! is not read, so the kernel's window pushes back on the client. A frame that declares a
//! payload over the message limit fails as soon as its header is read.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_http::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;
use termcell_actors::budget::{ByteBudget, Credit};

/// What the server counts for one message queued to a session besides its payload (the
/// mailbox envelope), so that a flood of empty frames is bounded too.
pub const MESSAGE_OVERHEAD: usize = 256;

/// The ledger shared by the payload reader and the bridge that handles decoded frames.
#[derive(Clone)]
pub struct Inbound {
    budget: ByteBudget,
    /// The largest frame payload accepted.
    max_payload: u64,
    /// Wire sizes of frames whose header has been read and that are not yet handled.
    frames: Rc<RefCell<VecDeque<usize>>>,
    /// The declared payload length of a frame refused at its header.
    oversized: Rc<Cell<Option<u64>>>,
}

impl Inbound {
    /// `max_message`: the largest frame payload accepted; bytes held are capped a little
    /// above it (one whole frame, with room for the next frame's header).
    pub fn new(max_message: usize) -> Inbound {
        Inbound {
            budget: ByteBudget::new(max_message + 64 * 1024),
            max_payload: max_message as u64,
            frames: Rc::default(),
            oversized: Rc::default(),
        }
    }

    /// Wraps the request payload: the stream the WebSocket decoder reads from.
    pub fn limit<S>(&self, payload: S) -> LimitedPayload<S> {
        LimitedPayload {
            inner: payload,
            ledger: self.clone(),
            scan: FrameScan::default(),
            stash: None,
            failed: false,
        }
    }

    /// One decoded frame was handled: its bytes leave the budget.
    pub fn frame_handled(&self) {
        let size = self.frames.borrow_mut().pop_front();
        if let Some(size) = size {
            self.budget.release(size);
        }
    }

    /// A credit for a message carrying `payload` bytes on to the session.
    pub fn credit(&self, payload: usize) -> Credit {
        self.budget.credit(payload + MESSAGE_OVERHEAD)
    }

    /// The declared length of the frame that was refused at its header, if one was.
    pub fn oversized(&self) -> Option<u64> {
        self.oversized.get()
    }
}

/// The payload stream as the decoder sees it: never more than the budget's room at once.
pub struct LimitedPayload<S> {
    inner: S,
    ledger: Inbound,
    scan: FrameScan,
    /// The part of a chunk beyond the room there was when it arrived.
    stash: Option<Bytes>,
    failed: bool,
}

impl<S> Stream for LimitedPayload<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let room = match this.ledger.budget.poll_room(cx) {
            Poll::Ready(room) => room,
            Poll::Pending => return Poll::Pending,
        };
        let mut chunk = match this.stash.take() {
            Some(chunk) => chunk,
            None => match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => chunk,
                other => return other,
            },
        };
        if chunk.len() > room {
            this.stash = Some(chunk.split_off(room));
        }
        let mut frames = this.ledger.frames.borrow_mut();
        if let Err(declared) = this.scan.feed(&chunk, this.ledger.max_payload, &mut frames) {
            this.failed = true;
            this.stash = None;
            this.ledger.oversized.set(Some(declared));
            return Poll::Ready(Some(Err(PayloadError::Overflow)));
        }
        this.ledger.budget.take(chunk.len());
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// Follows frame boundaries through the byte stream (RFC 6455, section 5.2) without
/// buffering payloads: only a header of at most 14 bytes is kept.
#[derive(Default)]
struct FrameScan {
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
}

impl FrameScan {
    /// Passes `data`, pushing the wire size of every frame whose header completes; `Err`
    /// with the declared length when a frame's payload is over `max_payload`.
    fn feed(
        &mut self,
        mut data: &[u8],
        max_payload: u64,
        frames: &mut VecDeque<usize>,
    ) -> Result<(), u64> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64) as usize;
                self.skip -= n as u64;
                data = &data[n..];
            }
            if data.is_empty() {
                return Ok(());
            }
            let needed = self.header_len().unwrap_or(2);
            let n = (needed - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            let Some(needed) = self.header_len() else {
                continue;
            };
            if self.have < needed {
                continue;
            }
            let payload = self.payload_len();
            if payload > max_payload {
                return Err(payload);
            }
            frames.push_back(needed + payload as usize);
            self.skip = payload;
            self.have = 0;
        }
    }

    /// The whole header's length, once its first two bytes are known.
    fn header_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        Some(2 + ext + mask)
    }

    fn payload_len(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => u64::from_be_bytes(self.header[2..10].try_into().expect("8 bytes")),
            n => u64::from(n),
        }
    }
}

#[cfg(test)]
mod tests;
